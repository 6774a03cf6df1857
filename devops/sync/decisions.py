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
import re
from typing import Any

from devops.errors import DevopsError
from devops.postgres import TableStats
from devops.sync.guard import Judgement
from devops.sync.report import Storage, TableResult, Verdict
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
    # What of its own depends on what the sync leaves alone (sql/crossing.sql; a source database's only).
    on_left_alone: tuple[str, ...] = ()

    def as_record(self) -> dict[str, Any]:
        """As a dump's manifest records it ("needs"), for a restore of that dump (``recorded``)."""
        return {"extensions": list(self.extensions), "policy_roles": self.policy_roles, "bytes": self.bytes}

    @classmethod
    def recorded(cls, of: str, record: dict[str, Any] | None) -> "Needs":
        """From a manifest's "needs"; an older manifest without it needs nothing that can be checked."""
        record = record or {}
        return cls(of, tuple(record.get("extensions", ())), record.get("policy_roles", {}),
                   int(record.get("bytes") or 0))


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


def what_target_lacks(needs: Needs, offers: Offers, label: str, storage: Storage | None = None) -> str | None:
    """The refusal when the target lacks something the restore creates or names (before anything is written):
    every problem at once, each with what it concerns and its fix. None when it lacks nothing.
    ``storage``: RDS's room for the replace (rds_room), for a target RDS."""
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
    if storage is not None and storage.room is not None and storage.needed > storage.room:
        problems.append(too_little_storage(needs, storage, label))
    if not problems:
        return None
    return (f"refused: {label} lacks what the restore needs; nothing was changed. "
            + "; ".join(f"({number}) {problem}" for number, problem in enumerate(problems, start=1)))


# ---- RDS's storage -----------------------------------------------------------------------------------------

GIB = 1024 ** 3
# The WAL the restore writes beside its data: with RDS's wal_level (replica, for its backups) every row and
# every index page it creates, so about as much again as the data. It stays on the instance's storage until a
# checkpoint recycles it, at most max_wal_size between checkpoints (RDS's default: 2 GB; more while WAL
# archiving lags): an estimate, as is the data's size (the source database's, indexes included).
WAL_KEPT = 2 * GIB


@dataclasses.dataclass(frozen=True)
class RdsStorage:
    """An RDS instance's storage as AWS reports it (devops/sync/storage.py): its allocated storage and storage
    autoscaling's ceiling (its description, in GiB), and what is free (CloudWatch's FreeStorageSpace; None when
    CloudWatch had no datapoint or did not answer, ``unmeasured`` saying which)."""
    instance: str
    allocated_gib: int
    max_allocated_gib: int | None = None  # MaxAllocatedStorage: storage autoscaling up to this; None: off
    free_bytes: int | None = None
    unmeasured: str = ""


def rds_room(needs: Needs, offers: Offers, storage: RdsStorage | None) -> Storage:
    """RDS's room for the replace against what the replace needs, for the plan (what_target_lacks refuses when
    ``needed`` exceeds ``room``).

    The replace runs in one transaction: until COMMIT RDS keeps its old data (already counted as used) beside
    the new (the source database's size) and the WAL the new data writes (WAL_KEPT). Free is CloudWatch's
    FreeStorageSpace (the whole volume: WAL and logs counted), else the allocated storage less the sizes of the
    databases the role sees (offers.used_bytes: WAL and logs not counted, so more than is really free). With
    storage autoscaling on (MaxAllocatedStorage above the allocated storage) the room goes up to that ceiling.
    """
    if storage is None:
        return Storage(not_checked="the RDS instance's description was not read here, so its storage is unknown")
    if not needs.bytes:
        return Storage(not_checked=f"{needs.of} records no size (a dump made before this check)")
    if storage.free_bytes is not None:
        free, measured = max(storage.free_bytes, 0), "CloudWatch's FreeStorageSpace"
    elif storage.allocated_gib:
        free = max(storage.allocated_gib * GIB - offers.used_bytes, 0)
        measured = "allocated storage less its databases' sizes (WAL and logs not counted)" + \
            (f", since {storage.unmeasured}" if storage.unmeasured else "")
    else:
        return Storage(not_checked=f"RDS {storage.instance} reports no storage: {storage.unmeasured or 'none'}")
    ceiling = storage.max_allocated_gib if (storage.max_allocated_gib or 0) > storage.allocated_gib else None
    room = free + ((ceiling - storage.allocated_gib) * GIB if ceiling else 0)
    return Storage(needs.bytes + min(needs.bytes, WAL_KEPT), free, room, measured, storage.allocated_gib, ceiling)


def amount(size: int, up: bool = True) -> str:
    """A size as the plan says it: GiB (one decimal) from 1 GiB on, else MB; rounded ``up`` (what is needed)
    or down (what is free)."""
    rounding = math.ceil if up else math.floor
    if size >= GIB:
        return f"{rounding(size * 10 / GIB) / 10:,.1f} GiB"
    return f"{rounding(size / MB):,} MB"


def too_little_storage(needs: Needs, storage: Storage, label: str) -> str:
    """The refusal's problem when RDS has no room for the replace: the numbers, and the fixes."""
    has = (f"{label} has {amount(storage.free or 0, up=False)} free ({storage.measured}; {storage.allocated_gib} GiB "
           "allocated")
    if storage.max_allocated_gib:
        has += (f", and storage autoscaling may grow it to {storage.max_allocated_gib} GiB: room for "
                f"{amount(storage.room or 0, up=False)})")
        fix = ("raise db_max_allocated_storage (storage autoscaling's ceiling) or db_allocated_storage in "
               "terraform/environments/dev")
    else:
        has += ", no storage autoscaling)"
        fix = ("raise db_allocated_storage, or turn on storage autoscaling with db_max_allocated_storage, in "
               "terraform/environments/dev")
    return (f"{has}, and the replace keeps what {label} holds beside {needs.of}'s data ({amount(needs.bytes)}) and "
            f"its WAL until it commits: about {amount(storage.needed)} more (an estimate); {fix}, or make room on "
            f"{label} first")


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


# ---- a restore that stopped midway -------------------------------------------------------------------------

# The target refused to grow in the middle of the restore: a Neon compute at its project's size limit (neon's
# pagestore_smgr.c, as it extends a relation file), or a server out of storage (RDS at storage-full). Both are
# SQLSTATE 53100, disk_full; the restore's transaction was rolled back.
SIZE_LIMIT_MET = re.compile(r"project size limit \((\d+) MB\) has been exceeded")
OUT_OF_STORAGE = re.compile(r"No space left on device")
# psql's words when its connection went (the server restarted or stopped, or the connection was cut), and the
# server's own farewell when it said one (a FATAL; a WARNING on an immediate shutdown).
CONNECTION_LOST = re.compile(r"connection to server was lost|server closed the connection unexpectedly|"
                             r"SSL SYSCALL error|SSL connection has been closed unexpectedly|"
                             r"could not (?:receive data from|send data to) server")
FAREWELL = re.compile(r"(?:FATAL|WARNING):\s+(terminating connection [^\n]*)")


def room_ran_out(message: str, label: str, at: str = "") -> str | None:
    """The line for a restore that the target refused to grow (``message``: the server's error; ``at``: the
    archive entry it fell in, if known), with what to do; None for any other error."""
    limit = SIZE_LIMIT_MET.search(message)
    if limit:
        what = f"{label}'s project size limit ({int(limit.group(1)):,} MB, neon.max_cluster_size) was met"
        fix = "raise the project's limit (a bigger plan)"
    elif OUT_OF_STORAGE.search(message):
        what = f"{label} ran out of storage ({message.split(' (HINT: ')[0]})"
        fix = ("give it more storage (db_allocated_storage, or storage autoscaling with db_max_allocated_storage, "
               "in terraform/environments/dev)" if label == "RDS" else "give it more storage")
    else:
        return None
    where = f" at {at}" if at else ""
    return (f"restore into {label} stopped{where}: {what} in the middle of the restore; the restore was rolled "
            f"back, {label} is as it was. Until it commits, the replace keeps what {label} holds beside the new "
            f"data: {fix}, make room on {label}, or leave data out of the sync (--exclude-schema)")


def connection_lost(stderr: str, label: str, committing: bool = False) -> str | None:
    """The line for a restore whose connection to the target went midway (``stderr``: psql's), or None.
    ``committing``: the verification had passed, so its COMMIT may have run before the connection went."""
    if not CONNECTION_LOST.search(stderr):
        return None
    said = FAREWELL.search(stderr)
    why = f"the server restarted, or the connection was cut{'; it said: ' + said.group(1).strip() if said else ''}"
    if committing:
        return (f"{label} closed the connection as the restore committed ({why}): {label} holds either what it "
                "held or the restored data; run the sync again, whose plan says which (written since its last "
                "sync: by this restore, unless someone else writes to it)")
    return (f"{label} closed the connection in the middle of the restore ({why}): the restore was rolled back, "
            f"{label} is as it was; it is safe to run the sync again")
