"""The sync's flow: one full-replace copy of a database over another, through S3, read top to bottom in ``run``.

A sync and a restore are the same steps with a different source: a database that pg_dump reads
(SyncSource), or an earlier dump in S3, checked against its manifest (DumpSource). The steps (README,
"How a sync works"):

     1. preflight       identity, Terraform outputs, endpoints, tools, versions, bucket   (preflight.py)
     2. source check    a restore: the dump's sha256 against its manifest
     3. divergence      the target read once (rows, checksums, sequences, schema), judged against the
                        newest record of it (guard.py); a sync counts the source's rows meanwhile
     4. plan            the report so far, shown (render.py); --dry-run stops here, a diverged target is
                        refused here, before anything is written
     5. confirm         the one question (unless --yes)
     6. lock            the bucket's sync lock; the keys named under it
     7. safety copy     the target in S3 first: an earlier dump that holds it, or a new dump
     8. transfer        the source streamed into an atomic restore of the target (and, for a sync, to S3),
                        verified inside the restore's transaction before COMMIT (dumps.commit_verified)
     9. report          the summary (render.finish); the Report is also what --json prints
    10. record          the dump's manifest (uploaded once, also when the restore failed), with what the
                        target holds now when it committed; a restore: a record of that

Where a change goes: a new step is a call in ``run`` (its work in a module of its own when it is more than
a few lines); a new decision is a function of data in decisions.py; a new line or table a person reads
goes to render.py; a new field of the report to report.py; a new query of a database to database.py;
a new setting to devops/config.py, read here through ``settings``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Iterator

from devops import aws
from devops.config import Settings
from devops.console import RULE, Console
from devops.errors import DevopsError
from devops.masking import first_line
from devops.sync import render
from devops.sync.database import Database, version_text
from devops.sync.decisions import (Outcome, after_plan, compare, content_hash, downgrade, downgrade_hint,
                                   locks_needed, must_look_again, reusable_dump, too_many_locks, unexpected_target,
                                   version_num)
from devops.sync.dumps import Verified, commit_verified, dump, fingerprint, manifest, probe
from devops.sync.guard import Judgement, judge
from devops.sync.pipeline import Processes, Restore, pump
from devops.sync.preflight import Environment, prepare, store_of
from devops.sync.progress import transfer
from devops.sync.report import (Copy, DumpList, Listed, Locks, PlanRow, Report, RestoredDump, Side, Status,
                                TargetState, Verdict, Versions)
from devops.sync.store import dump_key, utcnow
from devops.threads import in_background

LABELS = {"neon": "Neon", "rds": "RDS"}


@dataclasses.dataclass(frozen=True)
class Direction:
    source: str
    target: str

    @property
    def name(self) -> str:
        return f"{self.source}-to-{self.target}"

    @property
    def arrow(self) -> str:
        return f"{LABELS[self.source]} -> {LABELS[self.target]}"


DIRECTIONS = {d.name: d for d in (Direction("neon", "rds"), Direction("rds", "neon"))}


@dataclasses.dataclass
class Options:
    dry_run: bool = False
    yes: bool = False
    break_lock: bool = False
    force: bool = False  # overwrite a target written to since its last recorded sync
    expect_target: str = ""  # the confirmed plan's target_state.fingerprint: refuse if the target changed since

    @classmethod
    def of(cls, flags: dict[str, Any]) -> "Options":
        """From the sync tasks' flags (tasks.py: SYNC): those the flow reads."""
        return cls(**{field.name: flags.get(field.name) or field.default for field in dataclasses.fields(cls)})


class Phases:
    """Wall-clock seconds per phase, in order."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._started = time.monotonic()

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        start = time.monotonic()
        try:
            yield
        finally:
            self.seconds[name] = round(time.monotonic() - start, 2)

    def total(self) -> float:
        return round(time.monotonic() - self._started, 2)


# --------------------------------------------------------------------------------------------------
# The two sources


class SyncSource:
    """The source of a sync: a database, dumped once (to S3 and into the restore at the same time)."""

    check_phase, transfer_phase, transfer_title = None, "dump + restore + verify", "Dump + restore"

    def __init__(self, env: Environment, direction: Direction):
        self.env, self.direction = env, direction
        self.db = env.databases[direction.source]
        self.key = ""
        self.written: Copy | None = None
        self._counts: dict[str, int] = {}
        self._size = 0  # the tables' sizes: the estimate of the dump's (its progress line)
        self.objects = 0  # sql/lockable_objects.sql: what the restore creates
        self._manifest: dict[str, Any] = {}

    @property
    def version(self) -> int:
        return self.db.version

    def name_dump(self, when: Any) -> Copy:
        """The dump this sync writes of its source, named for the second ``when``."""
        self.key = dump_key(self.db.side, when)
        return Copy(self.env.store.url(self.key))

    def counts(self) -> dict[str, int]:
        tables, self.objects, self._size = self.db.counts()
        self._counts = {name: t.rows for name, t in tables.items()}
        return self._counts

    def announce(self, console: Console, target: Database) -> None:
        console.info(f"Dumping {self.db.label} -> {self.env.store.url(self.key)} and restoring into {target.label}...")

    def estimate(self) -> tuple[int, int]:
        """The bytes and tables the transfer is expected to move (for its progress line)."""
        return self._size, len(self._counts)

    def stream(self, processes: Processes, sinks: tuple[Any, ...]) -> tuple[dict[str, Any], dict[str, Any]]:
        """The source into ``sinks``: the tables and sequences the target must then hold."""
        result = dump(self.env, self.db, self.key, processes, extra_sinks=sinks)
        self._manifest = manifest(self.env, self.db, result, self.direction.name, f"sync {self.direction.name}")
        self.written = Copy(self.env.store.url(self.key), result.size, result.sha256)
        return self._manifest["tables"], result.sequences

    def record(self, target: Database, restored: dict[str, Any] | None, when: Any) -> None:
        """The dump's manifest, uploaded once whatever the restore did (a complete dump is a rollback point):
        with what the target holds now when it committed (``restored``), so that the next sync's safety copy
        can point at this dump instead of dumping the same data again. Nothing when the dump did not end."""
        if self.written is None:
            return
        if restored is not None:
            self._manifest["restored"] = restored
        self.env.store.put_manifest(self.key, self._manifest)


class DumpSource:
    """The source of a restore: an earlier dump in S3, checked against its manifest's sha256."""

    check_phase, transfer_phase, transfer_title = "checksum", "restore + verify", "Restore"

    def __init__(self, env: Environment, key: str):
        self.env, self.key = env, key
        self.recorded = env.store.manifest(key)
        self.written = None
        # What the restore creates (a dump's manifest says since the lock-table check; 0 for older dumps).
        self.objects = int(self.recorded.get("objects") or 0)

    @property
    def version(self) -> int | None:
        return version_num(self.recorded.get("source", {}).get("server_version"))

    def check(self, console: Console) -> None:
        console.info(f"Checking the checksum of {self.env.store.url(self.key)}...")
        digest = hashlib.sha256()
        for chunk in self.env.store.read(self.key):
            digest.update(chunk)
        if digest.hexdigest() != self.recorded.get("sha256"):
            raise DevopsError(f"checksum mismatch for {self.env.store.url(self.key)}: the dump is damaged or was "
                              "replaced (expected sha256 from its manifest); nothing was changed")
        console.passed(f"Checksum matches ({digest.hexdigest()[:16]}...)")

    def name_dump(self, when: Any) -> None:
        return None  # a restore writes no dump of its source: it is one

    def counts(self) -> dict[str, int]:
        return {name: t.get("rows") for name, t in self.recorded.get("tables", {}).items()}

    def announce(self, console: Console, target: Database) -> None:
        console.info(f"Restoring {self.env.store.url(self.key)} into {target.label}...")

    def estimate(self) -> tuple[int, int]:
        return self.recorded.get("size", 0), len(self.recorded.get("tables", {}))

    def stream(self, processes: Processes, sinks: tuple[Any, ...]) -> tuple[dict[str, Any], dict[str, Any]]:
        again = hashlib.sha256()

        def hashed(chunks: Iterator[bytes]) -> Iterator[bytes]:
            for chunk in chunks:
                again.update(chunk)
                yield chunk

        pump(hashed(self.env.store.read(self.key)), list(sinks))  # checked before the restore's COMMIT
        if again.hexdigest() != self.recorded["sha256"]:
            raise DevopsError(f"{self.env.store.url(self.key)} changed while it was read; nothing was changed")
        return self.recorded.get("tables", {}), self.recorded.get("sequences", {})

    def record(self, target: Database, restored: dict[str, Any] | None, when: Any) -> None:
        """What the target holds now is that dump: the next sync neither takes the rollback for foreign
        writes nor dumps the target again for its safety copy. Nothing when the restore did not commit."""
        if restored is None:
            return
        self.env.store.put_restore_record(target.side, when, {
            "key": self.key, "reason": f"restore of {self.key}", "sha256": self.recorded["sha256"],
            "size": self.recorded.get("size", 0), "created": utcnow().isoformat(), "restored": restored})


# --------------------------------------------------------------------------------------------------
# The jobs: what differs between a sync and a restore besides the source


@dataclasses.dataclass(frozen=True)
class Sync:
    direction: Direction
    operation = "sync"

    @property
    def target(self) -> str:
        return self.direction.target

    @property
    def sides(self) -> tuple[str, ...]:
        return (self.direction.source, self.direction.target)

    @property
    def title(self) -> str:
        return f"SYNC: {self.direction.arrow}"

    @property
    def purpose(self) -> str:
        return f"sync {self.direction.name}"

    def source(self, env: Environment) -> SyncSource:
        return SyncSource(env, self.direction)

    def safety_reason(self, label: str) -> tuple[str, str]:
        """(the manifest's direction, its reason) for the target's safety copy."""
        return self.direction.name, f"safety copy of {label} before {self.direction.name}"


@dataclasses.dataclass(frozen=True)
class RestoreDump:
    key: str
    to: str
    operation = "restore"

    def __post_init__(self) -> None:
        if self.to not in LABELS:
            raise DevopsError(f"--to must be neon or rds, not {self.to!r}")

    @property
    def target(self) -> str:
        return self.to

    @property
    def sides(self) -> tuple[str, ...]:
        return (self.to,)

    @property
    def title(self) -> str:
        return f"RESTORE: {self.key} -> {LABELS[self.to]}"

    @property
    def purpose(self) -> str:
        return f"restore {self.key} to {self.to}"

    def source(self, env: Environment) -> DumpSource:
        return DumpSource(env, self.key)

    def safety_reason(self, label: str) -> tuple[str, str]:
        return f"restore-to-{self.to}", f"safety copy of {label} before restoring {self.key}"


Job = Sync | RestoreDump


# --------------------------------------------------------------------------------------------------
# The flow


def run(settings: Settings, console: Console, job: Job, options: Options) -> Report:
    """A sync or a restore; returns the report (also printed).

    Any failure up to the restore's COMMIT raises (the target unchanged); a difference found by the
    verification is the report's status "mismatch".
    """
    phases = Phases()
    render.banner(console, job.title, utcnow(), aws.target_label(settings), options.dry_run)
    with phases("preflight"):                                                             # 1. preflight
        console.info("Checking prerequisites...")
        env = prepare(settings, console, job.sides)
    try:
        return _run(env, console, job, options, phases)
    finally:
        env.close()


def _run(env: Environment, console: Console, job: Job, options: Options, phases: Phases) -> Report:
    target = env.databases[job.target]
    source = job.source(env)
    if source.check_phase:
        with phases(source.check_phase):                                                  # 2. source check
            source.check(console)
    with phases("divergence check"), ThreadPoolExecutor(max_workers=2) as pool:           # 3. divergence
        counting = pool.submit(source.counts)
        state, judgement = read_target(env, target, options.force, pool, console)
        source_counts = counting.result()

    report = plan_report(env, job, source, target, source_counts, state, judgement, options)  # 4. plan
    if options.expect_target:
        render.plan_confirmed(console, report, options.expect_target)
    else:
        render.plan(console, report)
    refusal = unexpected_target(options.expect_target, state.fingerprint, target.label)
    if refusal:
        raise refusal
    render.divergence(console, report, judgement.divergence())
    locks_refusal = too_many_locks(report.locks.needed, target.lock_table, target.label)
    console.line(RULE)
    outcome = after_plan(judgement.verdict, options.dry_run, locks_fit=locks_refusal is None)
    if outcome == Outcome.DRY_RUN:
        render.dry_run_complete(console, report, locks_refusal)
        report.status, report.seconds = Status.DRY_RUN, phases.seconds
        return report
    if outcome == Outcome.REFUSE:
        raise render.refusal(dataclasses.replace(report, status=Status.REFUSED, seconds=phases.seconds))
    if outcome == Outcome.TOO_MANY_LOCKS:
        raise DevopsError(locks_refusal, details=dataclasses.replace(report, status=Status.REFUSED,
                                                                     seconds=phases.seconds).to_json())
    asked = render.confirm(console, report, options.yes)                                  # 5. confirm

    with env.store.lock(job.purpose, options.break_lock) as lock, \
            tempfile.TemporaryDirectory(prefix=f"devops-{job.operation}-") as workdir:   # 6. lock
        if lock.broken:
            render.broken_lock(console, lock.broken)
        # The keys name the second that orders the records (store.latest_fingerprint): chosen now that the
        # lock is held, so that their order is the order the operations held it in. The plan's were a forecast.
        when = env.store.free_time(job.sides, utcnow())
        safety_key = dump_key(target.side, when)
        report.safety_copy, report.dump = Copy(env.store.url(safety_key)), source.name_dump(when)
        processes = Processes()
        try:
            with phases("safety copy"):                                                   # 7. safety copy
                report.safety_copy = safety_copy(env, console, job, target, safety_key, processes, state,
                                                 judgement, report, asked, options.force)
            with phases(source.transfer_phase):                                           # 8. transfer
                source.announce(console, target)
                try:
                    verified, expected = transfer_verified(env, console, source, target, processes, workdir)
                except BaseException:
                    keep_record(console, source, target, when)  # a dump that ended stays a rollback point
                    raise
        finally:
            processes.close()
        report = finish(report, phases, expected, verified, source)                      # 9. report
        restored = fingerprint(target, verified.tables, verified.sequences, verified.schema) \
            if report.status == Status.OK else None
        # The record goes up while the lock is released and the summary printed (a round trip each).
        recording = in_background(source.record, target, restored, when)                 # 10. record
    render.finish(console, report)
    recording.result()
    return report


def keep_record(console: Console, source: SyncSource | DumpSource, target: Database, when: Any) -> None:
    """The record of a transfer that failed (the dump's manifest, if the dump ended), on the way out: a
    failure to write it is a warning, never in place of the failure that is on its way."""
    try:
        source.record(target, None, when)
    except Exception as exc:  # noqa: BLE001
        console.warn(f"the dump's manifest could not be written ({first_line(exc)}): the dump is kept, without it")


def read_target(env: Environment, target: Database, force: bool, pool: ThreadPoolExecutor,
                console: Console | None = None) -> tuple[Any, Judgement]:
    """The divergence guard's verdict on the target: its one probe, against the newest record of it (read
    from S3 while the probe runs)."""
    known = pool.submit(env.store.latest_fingerprint, target.side)
    state = probe(env, target, console)
    return state, judge(known.result(), state.fingerprint, target.label, force)


def plan_report(env: Environment, job: Job, source: SyncSource | DumpSource, target: Database,
                source_counts: dict[str, int], state: Any, judgement: Judgement, options: Options) -> Report:
    """The report as the plan shows it (the keys are a forecast, not looked up: they are named under the lock)."""
    when = utcnow()
    target_counts = {name: t.rows for name, t in state.tables.items()}
    majors = downgrade(source.version, target.version)
    needed = locks_needed(state.objects, source.objects)
    report = Report(
        operation=job.operation, dry_run=options.dry_run, target=aws.target_label(env.settings),
        sides={"target": side_of(target)},
        plan={name: PlanRow(source_counts.get(name), target_counts.get(name))
              for name in sorted(set(source_counts) | set(target_counts))},
        target_state=TargetState(len(state.tables), sum(target_counts.values()), content_hash(state.fingerprint)),
        divergence=judgement.divergence(),
        versions=Versions(version_text(source.version) if source.version else None, target.version_text,
                          majors is not None),
        safety_copy=Copy(env.store.url(dump_key(target.side, when))),
        locks=Locks(needed, target.lock_table.capacity, target.lock_table.max_locks, target.lock_table.slots),
    )
    if isinstance(source, SyncSource):
        report.direction, report.tools = job.direction.name, env.tools.versions
        report.source, report.destination = source.db.endpoint.masked(), target.endpoint.masked()
        report.sides = {"source": side_of(source.db), "target": side_of(target)}
        report.dump = source.name_dump(when)
    else:
        report.key, report.to = job.key, job.to
        report.restored_dump = RestoredDump(env.store.url(job.key), source.recorded.get("reason", "?"),
                                            source.recorded.get("created", "?"))
    return report


def side_of(db: Database) -> Side:
    return Side(db.label, db.endpoint.masked(), db.endpoint.where(), db.version_text)


def safety_copy(env: Environment, console: Console, job: Job, target: Database, key: str, processes: Processes,
                state: Any, judgement: Judgement, report: Report, asked: bool, force: bool) -> Copy:
    """Make sure the data about to be overwritten is in S3, and say where.

    When the newest record of the target (the dump it was last restored from, or its last dump) matches what
    it holds, that dump already is the safety copy; otherwise the target is dumped to ``key``. When the
    confirmation asked, and the plan's verdict or that reuse depend on what the plan read, the target is
    checked for writes since (one query), and read and judged again when it was written to.
    """
    if must_look_again(judgement, state.fingerprint, asked) and not state.still_current(target):
        console.info(f"{target.label} may have been written to since the plan: reading it again...")
        state = probe(env, target, console)
        judgement = judge(judgement.known, state.fingerprint, target.label, force)
        report.divergence = judgement.divergence()
        if judgement.verdict == Verdict.DIVERGED:
            render.divergence(console, report, report.divergence)
            raise render.refusal(dataclasses.replace(report, status=Status.REFUSED))
    known = reusable_dump(judgement, state.fingerprint)
    if known is not None and env.store.exists(known.key):
        render.safety_copy_reused(console, target.label, env.store.url(known.key))
        return Copy(env.store.url(known.key), known.manifest.get("size", 0), known.manifest.get("sha256", ""),
                    reused=True)
    console.info(f"Safety copy of {target.label} -> {env.store.url(key)}")
    result = dump(env, target, key, processes)
    env.store.put_manifest(key, manifest(env, target, result, *job.safety_reason(target.label)))
    return Copy(env.store.url(key), result.size, result.sha256, reused=False)


def transfer_verified(env: Environment, console: Console, source: SyncSource | DumpSource, target: Database,
                      processes: Processes, workdir: str) -> tuple[Verified, dict[str, Any]]:
    """The source streamed into an atomic restore of the target, verified before COMMIT: (what the check
    found, the tables the target had to hold)."""
    restore = Restore(target, processes, workdir,
                      hint=downgrade_hint(downgrade(source.version, target.version), target.label),
                      batched=env.tools.major("psql") >= 15)
    size, tables = source.estimate()
    with transfer(console, source.transfer_title, size, target.endpoint, tables,
                  env.settings.progress_interval) as progress:
        expected, sequences = source.stream(processes, (restore, progress))
    return commit_verified(restore, expected, sequences, console, env.settings.progress_interval), expected


def finish(report: Report, phases: Phases, expected: dict[str, Any], verified: Verified,
           source: SyncSource | DumpSource) -> Report:
    report.status = Status.OK if verified.committed else Status.MISMATCH
    report.committed = verified.committed
    report.tables = compare(expected, verified.tables)
    report.sequence_mismatches = verified.sequence_mismatches
    report.left_out = verified.left_out
    report.locks.held = verified.locks
    report.seconds = {**phases.seconds, "total": phases.total()}
    if source.written is not None:
        report.dump = source.written
    return report


# --------------------------------------------------------------------------------------------------
# List


def list_dumps(settings: Settings, console: Console) -> DumpList:
    render.banner(console, "SYNC DUMPS", None, aws.target_label(settings))
    store = store_of(settings, console)
    now = utcnow()
    entries = []
    for item in store.dumps():
        m = item["manifest"]
        entries.append(Listed(
            item["key"], item["size"], int((now - item["modified"]).total_seconds()),
            m.get("source", {}).get("url", "?"), m.get("reason", "?"),
            {name: t["rows"] for name, t in m.get("tables", {}).items()}, m.get("sha256", ""), item["committed"]))
    report = DumpList(store.bucket, entries)
    render.dumps(console, report)
    return report
