"""The sync's decisions, as functions of data: they print nothing and touch no server (render.py says what
they mean to a person; flow.py acts on them). The divergence guard's verdict is in guard.py.

A new check belongs here when it can be decided from what the flow has already read: give it data, return
data (an error to raise, a choice), and test it in tests/test_sync_decisions.py.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
import math
from typing import Any

from devops.errors import DevopsError
from devops.postgres import TableStats
from devops.sync.guard import Judgement
from devops.sync.report import TableResult, Verdict
from devops.sync.store import Known


class Outcome(enum.Enum):
    """What follows the plan."""
    PROCEED = "proceed"
    DRY_RUN = "dry-run"  # the plan was all that was asked for
    REFUSE = "refuse"    # the guard's verdict: the target was written to since
    UNFIT = "unfit"  # the target cannot take the restore: its lock table is too small, or it lacks what it needs


def after_plan(verdict: Verdict, dry_run: bool, fits: bool = True) -> Outcome:
    if dry_run:
        return Outcome.DRY_RUN
    if verdict == Verdict.DIVERGED:
        return Outcome.REFUSE
    return Outcome.PROCEED if fits else Outcome.UNFIT


# ---- the lock table ----------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class LockTable:
    """A server's lock table: max_locks_per_transaction x slots (connections, prepared transactions,
    background processes) locks for the whole server (sql/lock_table.sql)."""
    max_locks: int
    slots: int

    @property
    def capacity(self) -> int:
        return self.max_locks * self.slots


def locks_needed(dropped: int, created: int) -> int:
    """The locks the restore's one transaction holds at its peak: one per object it drops (the target's own,
    Database.lockable_objects) and per object it creates (the source's). Measured with pg_locks on a generated
    schema of 300 tables (tests/test_sync_big.py): the drop takes its objects' count and about 40 more, the
    restore about 11% more than its objects' count (a source on 18 counts its NOT NULL constraints, which a
    restore creates without a lock of their own: less); 15% and 100 leave room for the catalogs' and the
    verification's own. 17 -> 17: 12,745 for 12,461 held; 18 -> 15: 13,267 for 11,519."""
    return dropped + math.ceil(created * 1.15) + 100


def too_many_locks(needed: int, table: LockTable, label: str) -> str | None:
    """The refusal when the restore would not fit in the target's lock table (before anything is written):
    both numbers, and what to change on that side."""
    if not table.capacity or needed <= table.capacity:
        return None
    if label == "RDS":
        fix = (f"raise RDS's max_locks_per_transaction to at least {math.ceil(needed / table.slots)} "
               "(db_max_locks_per_transaction in terraform/environments/dev, its parameter group; the instance "
               "applies it at its next reboot)")
    else:
        # Neon sizes max_connections (and so the lock table) by the compute's size, not by a setting.
        fix = (f"give the Neon project's compute at least {math.ceil(needed / table.max_locks)} slots (a bigger "
               "compute: max_connections grows with its size, 104 at 0.25 CU, 419 at 1 CU)")
    return (f"refused: the restore replaces everything in {label} in one transaction, which needs about {needed:,} "
            f"locks, and {label}'s lock table holds {table.capacity:,} (max_locks_per_transaction {table.max_locks} x "
            f"{table.slots} slots); nothing was changed. To sync this database, {fix}, or sync fewer objects")


MB = 1024 * 1024


# ---- what the target must have already --------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Needs:
    """What a restore of a source needs its target to have already (sql/needs.sql): the extensions it creates,
    the roles its row-level security policies name (each with those policies), and room for its data."""
    of: str  # the source, as a refusal names it: Neon, RDS, the dump
    extensions: tuple[str, ...] = ()
    policy_roles: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    bytes: int = 0  # its database's size: what the restore writes beside the target's data until COMMIT


@dataclasses.dataclass(frozen=True)
class Offers:
    """What a database offers a restore (sql/offers.sql): the extensions its server can create, RDS's
    rds.allowed_extensions (None: no such limit), its roles, and Neon's size limit with what counts against it."""
    extensions: frozenset[str]
    allowed: frozenset[str] | None
    roles: frozenset[str]
    size_limit: int | None = None  # Neon's neon.max_cluster_size in bytes (its plan's); None: no limit
    used_bytes: int = 0  # what counts against that limit now (the databases' sizes)

    @classmethod
    def of(cls, extensions: list[str], allowed: str | None, roles: list[str], size_limit: int | None = None,
           used_bytes: int | None = None) -> "Offers":
        names = {name.strip() for name in (allowed or "").split(",") if name.strip()}
        return cls(frozenset(extensions), None if not names or "*" in names else frozenset(names), frozenset(roles),
                   size_limit if size_limit and size_limit > 0 else None, int(used_bytes or 0))


def what_target_lacks(needs: Needs, offers: Offers, label: str) -> str | None:
    """The refusal when the target lacks something the restore creates or names (before anything is written):
    every problem at once, each with what it concerns and its fix. None when it lacks nothing."""
    problems = []
    missing = [name for name in needs.extensions if name not in offers.extensions]
    if missing:
        problems.append(f"{label} cannot create the extension(s) {', '.join(missing)} that {needs.of} has: drop them "
                        f"on {needs.of} if the app does not use them (DROP EXTENSION {missing[0]}), or sync to a "
                        "target that has them")
    barred = [name for name in needs.extensions
              if name in offers.extensions and offers.allowed is not None and name not in offers.allowed]
    if barred:
        problems.append(f"{label}'s rds.allowed_extensions leaves out {', '.join(barred)}: add them in its parameter "
                        "group")
    for role, policies in sorted(needs.policy_roles.items()):
        if role not in offers.roles:
            problems.append(f"{label} has no role {role}, which the row-level security policies of {needs.of} name "
                            f"({', '.join(policies)}): create it on {label} (CREATE ROLE {role} NOLOGIN), or drop "
                            f"those policies on {needs.of}")
    needed = offers.used_bytes + needs.bytes
    if offers.size_limit is not None and needs.bytes and needed > offers.size_limit:
        problems.append(f"{label}'s project is limited to {math.ceil(offers.size_limit / MB):,} MB "
                        f"(neon.max_cluster_size, its plan's), and the replace keeps what {label} holds "
                        f"({math.ceil(offers.used_bytes / MB):,} MB) beside {needs.of}'s data "
                        f"({math.ceil(needs.bytes / MB):,} MB) until it commits: about {math.ceil(needed / MB):,} MB; "
                        f"raise the project's limit (a bigger plan), or make room on {label} first")
    if not problems:
        return None
    return (f"refused: {label} lacks what the restore needs; nothing was changed. "
            + "; ".join(f"({number}) {problem}" for number, problem in enumerate(problems, start=1)))


# ---- what a database holds ---------------------------------------------------------------------------------


def same_content(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two fingerprints say the same rows, checksums, sequences and schema."""
    return all(a.get(part) == b.get(part) for part in ("tables", "sequences", "schema"))


def content_hash(record: dict[str, Any]) -> str:
    """A short hash of what a fingerprint says the database holds (and which database it is): the plan's
    `target_state.fingerprint`, which `--expect-target` checks again before anything is written."""
    text = json.dumps({part: record.get(part) for part in ("tables", "sequences", "schema", "server")},
                      sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def unexpected_target(expect_target: str, fingerprint: dict[str, Any], label: str) -> DevopsError | None:
    """--expect-target: the refusal when the target no longer holds what the confirmed plan showed."""
    now = content_hash(fingerprint)
    if not expect_target or expect_target == now:
        return None
    return DevopsError(f"refused: {label} changed after the confirmed plan (its fingerprint is {now}, the plan's "
                       f"{expect_target}); nothing was changed. Run the command again to see the new plan")


def plan_warnings(label: str, rows_now: int, rows_after: int | None, dump_of: str | None = None,
                  target_side: str = "") -> list[str]:
    """What a plan must say plainly before it replaces ``label``: that it would be left empty or lose most of
    its rows, or that the dump being restored is of the other database."""
    warnings = []
    if rows_after is not None and rows_now > 0:
        if rows_after == 0:
            warnings.append(f"{label} would be left empty: it holds {rows_now:,} rows now, and what replaces them "
                            "holds none")
        elif rows_after < rows_now / 2:
            warnings.append(f"{label} would lose most of its rows: {rows_now:,} now, {rows_after:,} after")
    if dump_of and target_side and dump_of != target_side:
        other = {"neon": "Neon", "rds": "RDS"}.get(dump_of, dump_of)
        warnings.append(f"this dump is of {other}, not of {label}: {label} would hold {other}'s data as it was "
                        "when dumped")
    return warnings


# ---- the safety copy ---------------------------------------------------------------------------------------


def must_look_again(judgement: Judgement, fingerprint: dict[str, Any], asked: bool) -> bool:
    """Whether the target must be checked for writes since the plan before its safety copy is decided.

    Only after the confirmation asked (it may have waited for minutes), and only where the verdict or the
    reuse of a dump depends on what the plan read. (With --yes, the plan was a fraction of a second ago, a gap
    smaller than the one between this decision and the restore's start.)
    """
    return asked and (reusable_dump(judgement, fingerprint) is not None or judgement.verdict == Verdict.UNCHANGED)


def reusable_dump(judgement: Judgement, fingerprint: dict[str, Any]) -> Known | None:
    """The newest record of the target (the dump it was last restored from, or its last dump) when it holds
    exactly what the target holds now: that dump already is the safety copy, no need to dump it again."""
    known = judgement.known
    return known if known is not None and same_content(known.record, fingerprint) else None


# ---- the verification --------------------------------------------------------------------------------------


def compare(expected: dict[str, dict[str, Any]], actual: dict[str, TableStats]) -> list[TableResult]:
    """One row per table on either side: rows and checksum expected vs found, and whether they match."""
    rows = []
    for name in sorted(set(expected) | set(actual)):
        want, got = expected.get(name), actual.get(name)
        rows.append(TableResult(name, want["rows"] if want else None, got.rows if got else None,
                                bool(want and got and want["rows"] == got.rows and want["checksum"] == got.checksum)))
    return rows


def compare_sequences(expected: dict[str, Any], actual: dict[str, Any]) -> list[str]:
    return [name for name in sorted(set(expected) | set(actual)) if expected.get(name) != actual.get(name)]


# ---- versions ----------------------------------------------------------------------------------------------


def version_num(text: str | None) -> int | None:
    """'17.2' (a manifest's server_version) -> 170002."""
    try:
        major, _, minor = str(text).partition(".")
        return int(major) * 10000 + int(minor or 0)
    except ValueError:
        return None


def downgrade(source_version: int | None, target_version: int) -> tuple[int, int] | None:
    """(source major, target major) when the data comes from a newer major than the target runs; else None."""
    if not source_version or source_version // 10000 <= target_version // 10000:
        return None
    return source_version // 10000, target_version // 10000


def downgrade_hint(majors: tuple[int, int] | None, label: str) -> str:
    """Advice added to a restore error on a downgrade."""
    if not majors:
        return ""
    newer, older = majors
    fix = (f'run RDS on {newer} (db_engine_version = "{newer}" in terraform/environments/dev, then upgrade the '
           "instance)" if label == "RDS" else f"use a Neon project on PostgreSQL {newer}")
    return (f" -- the data comes from PostgreSQL {newer} and {label} runs {older}, which lacks what this object "
            f"uses: {fix}, or change the object in the source")
