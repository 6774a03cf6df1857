"""How the sync tasks' reports look: the flow (devops/sync/flow.py) builds each report (report.py), and
everything a person reads about it is printed here, from that data alone. So a report computed elsewhere
(an ECS task's `--dry-run --json`) is shown, refused or confirmed locally exactly as a local one.

    banner       the task's opening banner
    plan         sync.neon-to-rds / sync.rds-to-neon's plan, sync.restore's plan
    divergence   the guard's verdict, its table of changes, the choices; ``refusal``, its error
    confirm      the one question before overwriting a database
    finish       the closing summary: tables, dumps, phases, verdict
    dumps        sync.list's table
"""

from __future__ import annotations

import datetime
from typing import Any

from devops import hints
from devops.console import Console, age, cell
from devops.errors import DevopsError
from devops.progress import size
from devops.sync.decisions import amount
from devops.sync.report import Change, Divergence, DumpList, PlanRow, Report, Status, Verdict
from devops.sync.scope import LeftAlone


def banner(console: Console, title: str, when: datetime.datetime | None, target: str, dry_run: bool = False) -> None:
    """The task's opening banner: what it does, when, and against what (the sandbox, or an AWS account)."""
    console.banner(title, *([when.strftime("%Y-%m-%dT%H-%M-%S")] if when else []), f"Target: {target}")
    if dry_run:
        console.banner("DRY RUN - No changes will be made")


def plan(console: Console, report: Report) -> None:
    (sync_plan if report.operation == "sync" else restore_plan)(console, report)


def plan_confirmed(console: Console, report: Report, expected: str) -> None:
    """--expect-target: the plan was shown and confirmed already (`--on ecs` asks before its real run)."""
    console.info(f"The plan was confirmed for {report.sides['target'].label} holding {expected}: checking that it "
                 "still does")


def sync_plan(console: Console, report: Report) -> None:
    src, tgt = report.sides["source"], report.sides["target"]
    console.banner("SYNC PLAN")
    console.fields([
        ("Source", f"{src.label} ({src.url}, PostgreSQL {src.version})"),
        ("Target", f"{tgt.label} ({tgt.url}, PostgreSQL {tgt.version})"),
        ("S3 Dump", report.dump.url),
        ("Safety copy", f"{report.safety_copy.url} (or an earlier dump, if it holds the target's data)"),
        ("Tools", ", ".join(f"{tool} {version}" for tool, version in (report.tools or {}).items())),
        _fingerprint(report),
        *_locks(report),
        *_storage(report),
        *_downgrade(report),
        *_left_alone(report),
    ])
    console.line()
    _rows(console, report.plan, f"{src.label} rows", f"{tgt.label} rows")
    _totals(console, report, f"{src.label} rows", "the sync")


def restore_plan(console: Console, report: Report) -> None:
    tgt, dump = report.sides["target"], report.restored_dump
    console.banner("RESTORE PLAN")
    console.fields([("Dump", f"{dump.url} ({dump.reason}, {dump.created})"),
                    ("Target", f"{tgt.label} ({tgt.url}, PostgreSQL {tgt.version})"),
                    ("Safety copy", report.safety_copy.url),
                    _fingerprint(report),
                    *_locks(report),
                    *_storage(report),
                    *_downgrade(report),
                    *_left_alone(report)])
    console.line()
    _rows(console, report.plan, "dump rows", f"{tgt.label} rows")
    _totals(console, report, "Dump rows", "the restore")


def _left_alone(report: Report) -> list[tuple[str, str]]:
    """The plan's 'Left alone' field (scope.py), when anything is."""
    if not report.left_alone:
        return []
    named = LeftAlone.recorded(report.left_alone).describe()
    return [("Left alone", f"{named} (on both sides: not dumped, not replaced, not compared)")]


def _fingerprint(report: Report) -> tuple[str, str]:
    """The plan's 'Target fingerprint' field: what --expect-target takes to run exactly this plan."""
    value = report.target_state.fingerprint
    return ("Target fingerprint", f"{value} (--expect-target {value} runs only while "
                                  f"{report.sides['target'].label} still holds what this plan read)")


def _totals(console: Console, report: Report, source: str, operation: str) -> None:
    """The totals under the plan's table: the source's rows, the target's now and after; then what the plan
    would destroy beyond the ordinary, said plainly."""
    state, label = report.target_state, report.sides["target"].label
    after = "?" if state.rows_after is None else f"{state.rows_after:,}"
    console.fields([(source, after), (f"{label} rows", f"{state.rows:,} now, {after} after {operation} "
                                                       "(every table replaced)")])
    console.line()
    for warning in report.warnings or []:
        console.warn(warning[0].upper() + warning[1:])


def _rows(console: Console, plan: dict[str, PlanRow], source: str, target: str) -> None:
    console.table([[name, cell(rows.source_rows),
                    cell(rows.target_rows) + (" (will be replaced)" if rows.target_rows is not None else "")]
                   for name, rows in sorted(plan.items())],
                  headers=["table", source, target])
    console.line()


def _locks(report: Report) -> list[tuple[str, str]]:
    """The plan's 'Locks: about 12,570 of 41,856 in RDS's lock table (...)' field."""
    locks = report.locks
    if locks is None or not locks.capacity:
        return []
    return [("Locks", f"about {locks.needed:,} of {locks.capacity:,} in {report.sides['target'].label}'s lock "
                      f"table (max_locks_per_transaction {locks.max_locks} x {locks.slots} slots): the restore "
                      "drops and creates every object in one transaction")]


def _storage(report: Report) -> list[tuple[str, str]]:
    """The plan's 'Storage: about 20 MB needed until COMMIT, 19.9 GiB free on RDS (...)' field (a target RDS)."""
    storage, label = report.storage, report.sides["target"].label
    if storage is None:
        return []
    if storage.not_checked or storage.room is None:
        return [("Storage", f"not checked: {storage.not_checked}")]
    free = amount(storage.free or 0, up=False)
    if storage.max_allocated_gib:
        grows = (f"{storage.allocated_gib} GiB allocated; storage autoscaling may grow it to "
                 f"{storage.max_allocated_gib} GiB: room for {amount(storage.room, up=False)}")
    else:
        grows = f"{storage.allocated_gib} GiB allocated, no storage autoscaling"
    line = (f"about {amount(storage.needed)} needed until COMMIT (the new data and its WAL beside {label}'s own: "
            f"an estimate), {free} free on {label} ({storage.measured}; {grows})")
    if storage.free is not None and storage.needed > storage.free and storage.needed <= storage.room:
        line += ("; more than is free now: storage autoscaling grows the instance only once free space has stayed "
                 "under 10% for 5 minutes, so a restore that fills it sooner stops at storage-full and is rolled back")
    return [("Storage", line)]


def _downgrade(report: Report) -> list[tuple[str, str]]:
    """The plan's 'Versions: PostgreSQL 17 -> 15: a downgrade ...' field, on a downgrade only."""
    versions = report.versions
    if not versions.downgrade:
        return []
    newer, older = (version.split(".")[0] for version in (versions.source or "?", versions.target))
    return [("Versions", f"PostgreSQL {newer} -> {older}: a downgrade (an object using what {older} lacks fails "
                         "the restore, which then changes nothing)")]


# ---- the divergence guard --------------------------------------------------------------------------------


def _commands(report: Report) -> tuple[str, str | None]:
    """(the same command with --force, the sync that would first bring the target's writes to the other side)."""
    if report.operation == "restore":
        return hints.inv(f"sync.restore --key {report.key} --to {report.to} --force"), None
    source, target = report.direction.split("-to-")
    return hints.inv(f"sync.{report.direction} --force"), hints.inv(f"sync.{target}-to-{source}")


def divergence(console: Console, report: Report, found: Divergence) -> None:
    """The guard's verdict as part of the plan: one line, and for a change the table and the choices."""
    label = report.sides["target"].label
    if found.verdict == Verdict.FIRST_SYNC:
        console.info(f"Divergence check: {found.note}; proceeding as usual")
        return
    since = _since(found)
    if found.verdict == Verdict.UNCHANGED:
        console.passed(f"Divergence check: {label} is unchanged since {since}: nothing on it would be lost")
        if found.note:
            console.info(found.note[0].upper() + found.note[1:])
        return
    say = console.warn if found.verdict == Verdict.FORCED else console.fail
    say(f"Divergence check: {label} was written to since {since}. These writes would be lost:")
    console.line()
    console.table([[c.table, cell(c.recorded_rows), cell(c.rows), _what(c)] for c in found.changes],
                  headers=[f"changed on {label}", "rows then", "rows now", "change"])
    console.line()
    if found.verdict == Verdict.FORCED:
        console.warn(f"--force: overwriting {label} anyway; these writes will be only in the safety copy "
                     f"({report.safety_copy.url})")
        return
    rerun, other_way = _commands(report)
    width = max(len(rerun), len(other_way or "")) + 2
    console.line("  Choices:")
    if other_way:
        console.line(f"    {other_way:<{width}}first: the other side gets {label}'s data, these writes "
                     "included (guarded the same way)")
    console.line(f"    {rerun:<{width}}overwrite anyway: the safety copy of {label} keeps these writes")


# Schemas a service writes on its own, named in the guard's refusal when they hold every write it found.
SERVICE_SCHEMAS = {"neon_auth": "Neon Auth"}


def refusal(report: Report) -> DevopsError:
    """The error of a target the guard refuses to overwrite (a local plan's or an ECS task's dry run's)."""
    rerun, other_way = _commands(report)
    changed = ", ".join(c.table for c in report.divergence.changes)
    first = f"{other_way}, or " if other_way else ""
    return DevopsError(f"refused: {report.sides['target'].label} was written to since its last recorded sync "
                       f"({changed}) and those writes would be lost; nothing was changed. Run {first}{rerun}"
                       f"{_service_schema(report.divergence)}", details=report.to_json())


def _service_schema(found: Divergence) -> str:
    """A hint when every write is in a schema a service keeps (Neon Auth's neon_auth): leave it alone."""
    schemas = {c.table.split(".", 1)[0] for c in found.changes if not c.table.startswith("(")}
    if len(schemas) != 1 or not schemas <= SERVICE_SCHEMAS.keys() or len(found.changes) != len(found.changed_tables):
        return ""
    schema = schemas.pop()
    return (f". Every write is in {schema}, which {SERVICE_SCHEMAS[schema]} writes itself: to sync around it, leave "
            f"it alone (--exclude-schema {schema}, or the setting exclude_schemas)")


def dry_run_complete(console: Console, report: Report, unfit: list[str] | None = None) -> None:
    if report.divergence.verdict == Verdict.DIVERGED:
        console.warn(f"A real run would stop here (pass --force to overwrite {report.sides['target'].label} anyway)")
    elif unfit:
        console.warn(f"A real run would stop here: {' '.join(unfit)}")
    console.info(f"Dry run complete. Run without --dry-run to {report.operation}.")


def _since(found: Divergence) -> str:
    last = found.last_recorded
    if last is None:
        return "?"
    recorded = last.recorded or "?"
    try:
        ago = age((datetime.datetime.now(datetime.timezone.utc)
                   - datetime.datetime.fromisoformat(recorded)).total_seconds())
        when = f"{recorded[:19].replace('T', ' ')} UTC, {ago} ago"
    except ValueError:
        when = recorded
    return f"{when} ({last.reason or '?'}, {last.record})"


def _what(change: Change) -> str:
    if change.kind != "changed":
        return change.kind
    if change.rows_added:
        return f"{change.rows_added} row(s) added"
    if change.rows_removed:
        return f"{change.rows_removed} row(s) removed"
    return "content changed (same row count)"


# ---- the run ---------------------------------------------------------------------------------------------


def confirm(console: Console, report: Report, yes: bool) -> bool:
    """Ask before overwriting the report's target, unless --yes; True when it asked (and so may have waited)."""
    tgt, state = report.sides["target"], report.target_state
    what = f"{tgt.label} at {tgt.where} ({state.tables} tables, {state.rows} rows)"
    warnings = "".join(f" {warning[0].upper() + warning[1:]}." for warning in report.warnings or [])
    return console.confirm(f"overwrite {what}", yes, warning=f"This replaces everything in {what}.{warnings}")


def broken_lock(console: Console, holder: dict[str, Any]) -> None:
    console.warn(f"Removed the sync lock of {holder.get('purpose')} on {holder.get('host')} "
                 f"(pid {holder.get('pid')}, started {holder.get('started')})")


def safety_copy_reused(console: Console, label: str, url: str) -> None:
    console.info(f"Safety copy: {url} already holds {label}'s current data (same rows, checksums, sequences and "
                 "schema): not dumped again")


def finish(console: Console, report: Report) -> None:
    tables, ok = report.tables or [], report.status == Status.OK
    tgt = report.sides["target"]
    operation = report.operation.upper()
    console.banner(f"{operation} COMPLETE" if ok else f"{operation} ROLLED BACK: THE RESTORED DATA DIFFERED")
    dumps = [(name, copy) for name, copy in (("dump", report.dump), ("safety_copy", report.safety_copy))
             if copy is not None and copy.size is not None]
    console.fields([
        ("Target", f"{tgt.label} ({tgt.where})"),
        ("Tables", f"{len(tables)} ({sum(r.match for r in tables)} match)"),
        ("Rows", sum(r.target_rows or 0 for r in tables)),
        *([("Locks", f"{report.locks.held:,} held at the peak (about {report.locks.needed:,} expected; the lock "
                     f"table holds {report.locks.capacity:,})")] if report.locks and report.locks.held else []),
        *[(name.replace("_", " ").capitalize(), f"{copy.url} ({size(copy.size)})") for name, copy in dumps],
    ])
    console.line()
    console.table([[r.table, cell(r.source_rows), cell(r.target_rows), "yes" if r.match else "NO"]
                   for r in tables], headers=["table", "source rows", "target rows", "match"])
    console.line()
    console.table([[name, f"{seconds:.1f}s"] for name, seconds in (report.seconds or {}).items()],
                  headers=["phase", "time"])
    console.line()
    for entry in report.left_out or []:
        console.info(f"Left out on purpose (not allowed on a managed service): {entry}")
    for name in report.sequence_mismatches or []:
        console.fail(f"Sequence {name} differs between source and target")
    if ok:
        console.passed(f"Row counts and checksums match (checked before COMMIT) - {report.operation} successful!")
    else:
        console.fail(f"Verification failed: {sum(not r.match for r in tables)} table(s) and "
                     f"{len(report.sequence_mismatches or [])} sequence(s) differ; {tgt.label} was left as it was "
                     "(the restore was rolled back)")


def dumps(console: Console, report: DumpList, wide: bool = False) -> None:
    """sync.list's table: within 80 columns (key, size, age, what), or with every detail (``wide``)."""
    if not report.dumps:
        console.info(f"No dumps in s3://{report.bucket}")
        return
    # A dump of a sync or restore that did not commit: the target was left as it was (or it is running now).
    if wide:
        console.table([[e.key, size(e.size), age(e.age_seconds), e.source,
                        e.reason if e.committed else f"{e.reason} (did not commit)",
                        ", ".join(f"{n.removeprefix('public.')}={r}" for n, r in e.tables.items()),
                        e.sha256[:12]] for e in report.dumps],
                      headers=["key", "size", "age", "source", "reason", "rows", "sha256"])
        return
    console.table([[e.key, size(e.size), age(e.age_seconds), _kind(e.reason) + ("" if e.committed else " *")]
                   for e in report.dumps], headers=["key", "size", "age", "what"])
    console.line()
    if not all(e.committed for e in report.dumps):
        console.line("  * did not commit: its sync or restore left the target as it was (or runs now)")
    console.line(f"  Source, reason, rows and sha256: {hints.inv('sync.list --wide')} (or --json)")


def _kind(reason: str) -> str:
    """A dump's reason in a few words: 'sync neon-to-rds', 'safety copy'."""
    return "safety copy" if reason.startswith("safety copy") else reason
