"""The sync engine: one full-replace copy of a PostgreSQL database over another, through S3.

One engine, two directions: a Direction is data (source side, target side), and ``sync.restore`` is the
same machinery with an S3 object as the source. The flow:

    preflight -> plan (--dry-run stops here) -> confirm -> lock
      (the plan includes the divergence guard: what the target holds now against the newest record of it;
       changed since, the sync stops here unless --force)
      -> safety copy: the target dumped to S3, so every overwrite can be undone with sync.restore
      -> the source dumped once (pg_dump --snapshot), streamed at the same time to S3 and into an atomic
         restore of the target, while its per-table counts and checksums are taken in the same snapshot
      -> verify every table (rows, checksum) and sequence -> manifest -> report

Each report is data (the JSON of --json); devops/sync/render.py prints everything a person reads about it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Iterator

import psycopg2

from devops import aws
from devops.config import Settings
from devops.console import RULE, Console
from devops.endpoints import neon_endpoint, rds_endpoint
from devops.errors import DevopsError
from devops.masking import first_line
from devops.postgres import (Endpoint, TableStats, export_snapshot, sequence_values, server_identity, table_stats,
                             transactions_seen)
from devops.sync.pipeline import (Processes, Restore, ToolVersions, VerificationFailed, check_tools_match_servers,
                                  compression_for, dump_args, pump, read_chunks, tool_versions)
from devops.progress import Steps
from devops.sync import render
from devops.sync.guard import DIVERGED, UNCHANGED, Guard, Verdict
from devops.sync.progress import source_size, transfer
from devops.sync.store import DumpStore, dump_key, utcnow, utcnow_precise
from devops.terraform import Terraform

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
# Endpoints and preflight


@dataclasses.dataclass
class Environment:
    """Everything a sync talks to, resolved once."""

    settings: Settings
    identity: dict[str, str]
    outputs: dict[str, Any]
    store: DumpStore
    tools: ToolVersions
    endpoints: dict[str, Endpoint]
    versions: dict[str, int] = dataclasses.field(default_factory=dict)
    servers: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)  # server_identity per side

    @property
    def compression(self) -> str:
        return compression_for(self.tools, self.settings.dump_compression)


def prepare(settings: Settings, console: Console, sides: tuple[str, ...]) -> Environment:
    """Preflight: identity, Terraform outputs, endpoints, tools, reachability, bucket."""
    s3 = aws.client(settings, "s3")
    with ThreadPoolExecutor(max_workers=1) as pool:
        # Side by side with the identity call; one HEAD of the state instead of Terraform while it is unchanged.
        reading = pool.submit(Terraform(settings).outputs, s3)
        identity = aws.identity(settings)
        console.info(f"AWS identity: {identity['arn']}")
        outputs = reading.result()
    endpoints = {}
    for side in sides:
        endpoints[side] = neon_endpoint(settings, console) if side == "neon" else rds_endpoint(settings, outputs)
    tools = tool_versions()
    bucket = outputs.get("db_backups_bucket_name") or settings.bucket_name
    store = DumpStore(s3, bucket, warn=console.warn)
    store.check_bucket()
    env = Environment(settings, identity, outputs, store, tools, endpoints)
    with ThreadPoolExecutor(max_workers=len(sides)) as pool:
        for side, (version, server) in zip(sides, pool.map(lambda s: _server_info(endpoints[s]), sides)):
            env.versions[side], env.servers[side] = version, server
    check_tools_match_servers(tools, {LABELS[side]: env.versions[side] for side in sides})
    return env


def _server_info(endpoint: Endpoint) -> tuple[int, dict[str, Any]]:
    conn = endpoint.connect()
    try:
        return int(conn.server_version), server_identity(conn, endpoint)
    except psycopg2.Error as exc:
        raise DevopsError(f"cannot read {endpoint.label}'s server identity: {first_line(exc)}") from None
    finally:
        conn.close()


def _version_text(version_num: int) -> str:
    return f"{version_num // 10000}.{version_num % 10000}"


def _stats(endpoint: Endpoint, checksums: bool = True, snapshot: str | None = None,
           on_table: Callable[[int, int], None] | None = None, parallel: bool = True) -> dict[str, TableStats]:
    conn = endpoint.connect()
    try:
        return table_stats(conn, checksums=checksums, snapshot=snapshot, on_table=on_table, parallel=parallel)
    except psycopg2.Error as exc:
        raise DevopsError(f"cannot read the tables of {endpoint.label}: {first_line(exc)}") from None
    finally:
        conn.close()


def _sequences(endpoint: Endpoint) -> dict[str, int | None]:
    conn = endpoint.connect()
    try:
        return sequence_values(conn)
    finally:
        conn.close()


# --------------------------------------------------------------------------------------------------
# Dump


@dataclasses.dataclass
class Dump:
    key: str
    sha256: str
    size: int
    tables: dict[str, TableStats]
    sequences: dict[str, int | None]
    schema: str
    seconds: float


def schema_hash(endpoint: Endpoint, snapshot: str | None = None) -> str:
    """sha256 of the database's schema (pg_dump --schema-only, plain): any DDL change shows in it.

    The random key of the \\restrict/\\unrestrict lines that recent pg_dump versions write is left out.
    """
    args = ["pg_dump", "--schema-only", "--no-owner", "--no-acl", *([f"--snapshot={snapshot}"] if snapshot else [])]
    processes = Processes()
    try:
        proc = processes.start("pg_dump --schema-only", args, endpoint=endpoint)
        digest = hashlib.sha256()
        for line in proc.stdout:  # a schema is small: a line at a time is fine
            if not line.startswith((b"\\restrict ", b"\\unrestrict ")):
                digest.update(line)
        if proc.wait() != 0:
            raise DevopsError(f"pg_dump --schema-only of {endpoint.label} failed: {processes.error_of(proc)}")
        return digest.hexdigest()
    finally:
        processes.close()


def fingerprint(env: Environment, side: str, tables: dict[str, TableStats], sequences: dict[str, Any],
                schema: str) -> dict[str, Any]:
    """What a database holds, compactly: rows and checksum per table, sequences, schema hash (and the
    pg_dump that took it), and which database it is (server_identity)."""
    return {"side": side, "where": env.endpoints[side].where(), "server": env.servers.get(side),
            "recorded": utcnow_precise(),
            "tables": {name: {"rows": t.rows, "checksum": t.checksum} for name, t in tables.items()},
            "sequences": sequences, "schema": schema, "pg_dump": env.tools.versions.get("pg_dump")}


@dataclasses.dataclass
class State:
    """What a database holds now: its fingerprint and table stats, read in one snapshot, and the
    transactions that snapshot had seen (transactions_seen), to tell cheaply later whether it still holds."""

    fingerprint: dict[str, Any]
    tables: dict[str, TableStats]
    seen: str

    def still_current(self, endpoint: Endpoint) -> bool:
        """True when nothing was written since (no transaction id taken, sequences where they were)."""
        conn = endpoint.connect()
        try:
            return transactions_seen(conn) == self.seen and sequence_values(conn) == self.fingerprint["sequences"]
        except psycopg2.Error as exc:
            raise DevopsError(f"cannot read {endpoint.label}: {first_line(exc)}") from None
        finally:
            conn.close()


def probe(env: Environment, side: str, console: Console | None = None) -> State:
    """One read of a database: every table's rows and checksum, the schema hash and the sequences.

    This is the one scan of the target per sync: the plan shows its counts, the divergence guard and the
    safety copy compare its fingerprint with the newest record. With ``console``, its progress (tables read).
    """
    endpoint = env.endpoints[side]
    holder = endpoint.connect()  # holds the exported snapshot open for the stats and pg_dump --schema-only
    try:
        snapshot = export_snapshot(holder)
        seen = transactions_seen(holder)
        with ThreadPoolExecutor(max_workers=1) as pool, \
                Steps(console, f"Reading {endpoint.label}", env.settings.progress_interval) as steps:
            schema = pool.submit(schema_hash, endpoint, snapshot)
            tables = _stats(endpoint, True, snapshot, on_table=steps.update)
            schema_sha = schema.result()
        sequences = _sequences(endpoint)
    except psycopg2.Error as exc:
        raise DevopsError(f"cannot read {endpoint.label}: {first_line(exc)}") from None
    finally:
        holder.close()
    return State(fingerprint(env, side, tables, sequences, schema_sha), tables, seen)


def same_content(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return all(a.get(part) == b.get(part) for part in ("tables", "sequences", "schema"))


def content_hash(record: dict[str, Any]) -> str:
    """A short hash of what a fingerprint says the database holds (and which database it is): the plan's
    `target_state.fingerprint`, which `--expect-target` checks again before anything is written."""
    text = json.dumps({part: record.get(part) for part in ("tables", "sequences", "schema", "server")},
                      sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def target_state(state: State) -> dict[str, Any]:
    """The target as the plan saw it: counts for the confirmation, and its content hash."""
    return {"tables": len(state.tables), "rows": sum(t.rows for t in state.tables.values()),
            "fingerprint": content_hash(state.fingerprint)}


def check_expected(options: "Options", endpoint: Endpoint, state: State) -> None:
    """--expect-target: refuse unless the target still holds what the confirmed plan showed."""
    if options.expect_target and options.expect_target != content_hash(state.fingerprint):
        raise DevopsError(f"refused: {endpoint.label} changed after the confirmed plan (its fingerprint is "
                          f"{content_hash(state.fingerprint)}, the plan's {options.expect_target}); nothing was "
                          "changed. Run the command again to see the new plan")


def dump(env: Environment, side: str, key: str, processes: Processes, extra_sinks: tuple[Any, ...] = ()) -> Dump:
    """pg_dump of one side, streamed to S3 (and to ``extra_sinks``), with its stats from the same snapshot.

    Returns once pg_dump succeeded and the upload is complete; any failure aborts the upload.
    """
    endpoint = env.endpoints[side]
    started = time.monotonic()
    holder = endpoint.connect()  # holds the exported snapshot open for pg_dump and the stats
    try:
        snapshot = export_snapshot(holder)
        with ThreadPoolExecutor(max_workers=2) as pool:
            stats = pool.submit(_stats, endpoint, True, snapshot, parallel=False)  # beside pg_dump: no extra workers
            schema = pool.submit(schema_hash, endpoint, snapshot)
            proc = processes.start("pg_dump", dump_args(env.compression, snapshot), endpoint=endpoint)
            with env.store.writer(key) as writer:
                pump(read_chunks(proc.stdout), [writer, *extra_sinks])
                if proc.wait() != 0:
                    raise DevopsError(f"pg_dump of {endpoint.label} failed: {processes.error_of(proc)}")
                sha256 = writer.close()
            tables, schema_sha = stats.result(), schema.result()
        sequences = _sequences(endpoint)
    except psycopg2.Error as exc:
        raise DevopsError(f"{endpoint.label} failed during the dump: {first_line(exc)}") from None
    finally:
        holder.close()
    return Dump(key, sha256, writer.size, tables, sequences, schema_sha, round(time.monotonic() - started, 2))


def manifest(env: Environment, side: str, result: Dump, direction: str, reason: str) -> dict[str, Any]:
    endpoint = env.endpoints[side]
    return {
        "key": result.key,
        "bucket": env.store.bucket,
        "direction": direction,
        "reason": reason,
        "source": {"side": side, "url": endpoint.masked(), "server_version": _version_text(env.versions[side])},
        "tools": env.tools.versions,
        "format": "custom",
        "compression": env.compression,
        "sha256": result.sha256,
        "size": result.size,
        "tables": {name: {"rows": s.rows, "checksum": s.checksum} for name, s in result.tables.items()},
        "sequences": result.sequences,
        "seconds": result.seconds,
        # The dumped database as it was in the dump's snapshot; a later sync compares against it.
        "fingerprint": fingerprint(env, side, result.tables, result.sequences, result.schema),
        "created": utcnow().isoformat(),
    }


# --------------------------------------------------------------------------------------------------
# Verify


def compare(expected: dict[str, dict[str, Any]], actual: dict[str, TableStats]) -> list[dict[str, Any]]:
    """One row per table on either side: rows and checksum expected vs found, and whether they match."""
    rows = []
    for name in sorted(set(expected) | set(actual)):
        want, got = expected.get(name), actual.get(name)
        rows.append({
            "table": name,
            "source_rows": want["rows"] if want else None,
            "target_rows": got.rows if got else None,
            "match": bool(want and got and want["rows"] == got.rows and want["checksum"] == got.checksum),
        })
    return rows


def compare_sequences(expected: dict[str, Any], actual: dict[str, Any]) -> list[str]:
    return [name for name in sorted(set(expected) | set(actual)) if expected.get(name) != actual.get(name)]


@dataclasses.dataclass
class Verified:
    """What the restore's transaction held when it was checked, before COMMIT, and whether it committed
    (only when every table and sequence matched the source)."""

    tables: dict[str, TableStats]
    sequences: dict[str, Any]
    sequence_mismatches: list[str]
    left_out: list[str]
    committed: bool


def commit_verified(restore: Restore, expected: dict[str, dict[str, Any]], sequences: dict[str, Any],
                    console: Console | None = None, interval: float = 10) -> Verified:
    """Commit the restore only if the target's tables (rows, checksums) and sequences equal ``expected``;
    with ``console``, the verification's progress (tables checked)."""
    def announce() -> None:  # only once the restore reached the verification (not after a failed restore)
        if console is not None:
            console.info(f"Verifying every table (rows and checksums) and sequence in {restore.target.label} "
                         "before COMMIT...")

    try:
        with Steps(console, f"Verifying {restore.target.label}", interval, poll=restore.verified_tables):
            result = restore.commit({"tables": expected, "sequences": sequences}, announce)
    except VerificationFailed as failed:
        found = failed.found
        return Verified(_as_stats(found["tables"]), found["sequences"],
                        compare_sequences(sequences, found["sequences"]), restore.result.left_out, False)
    return Verified(_as_stats(expected), dict(sequences), [], result.left_out, True)


def _as_stats(tables: dict[str, dict[str, Any]]) -> dict[str, TableStats]:
    return {name: TableStats(*name.split(".", 1), int(t["rows"]), str(t["checksum"])) for name, t in tables.items()}


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


def _version_num(text: str | None) -> int | None:
    """'17.2' (a manifest's server_version) -> 170002."""
    try:
        major, _, minor = str(text).partition(".")
        return int(major) * 10000 + int(minor or 0)
    except ValueError:
        return None


# --------------------------------------------------------------------------------------------------
# Sync


@dataclasses.dataclass
class Options:
    dry_run: bool = False
    yes: bool = False
    break_lock: bool = False
    force: bool = False  # overwrite a target written to since its last recorded sync
    expect_target: str = ""  # the confirmed plan's target_state.fingerprint: refuse if the target changed since

    @classmethod
    def of(cls, flags: dict[str, Any]) -> "Options":
        """From the sync tasks' flags (tasks.py: SYNC): those the engine reads."""
        return cls(**{field.name: flags.get(field.name) or field.default for field in dataclasses.fields(cls)})


def run_sync(settings: Settings, console: Console, direction: Direction, options: Options) -> dict[str, Any]:
    """A full-replace sync in one direction; returns the report (also printed).

    Any failure up to the restore's COMMIT raises (the target unchanged); a difference found by the
    verification is the report's status "mismatch".
    """
    when = utcnow()
    phases = Phases()
    target_label = aws.target_label(settings)
    render.banner(console, f"SYNC: {direction.arrow}", when, target_label, options.dry_run)
    with phases("preflight"):
        console.info("Checking prerequisites...")
        env = prepare(settings, console, (direction.source, direction.target))
    source, target = env.endpoints[direction.source], env.endpoints[direction.target]
    when = env.store.free_time((direction.source, direction.target), when)
    source_key, safety_key = dump_key(direction.source, when), dump_key(direction.target, when)
    other = DIRECTIONS[f"{direction.target}-to-{direction.source}"]
    guard = Guard(target.label, options.force, rerun=f"inv sync.{direction.name} --force",
                  other_way=f"inv sync.{other.name}")
    with ThreadPoolExecutor(max_workers=2) as pool:
        counting = pool.submit(_stats, source, False)
        with phases("divergence check"):
            state, verdict = check_divergence(env, direction.target, guard, pool, console)
        with phases("plan"):
            source_before = counting.result()
    target_before = state.tables
    majors = downgrade(env.versions[direction.source], env.versions[direction.target])
    report: dict[str, Any] = {
        "operation": "sync", "direction": direction.name, "dry_run": options.dry_run, "target": target_label,
        "source": source.masked(), "destination": target.masked(),
        "sides": {"source": _side(env, direction.source), "target": _side(env, direction.target)},
        "tools": env.tools.versions,
        "dump": env.store.url(source_key), "safety_copy": env.store.url(safety_key),
        "plan": {name: {"source_rows": source_before[name].rows if name in source_before else None,
                        "target_rows": target_before[name].rows if name in target_before else None}
                 for name in sorted(set(source_before) | set(target_before))},
        "target_state": target_state(state),
        "divergence": verdict.report(),
        "versions": {"source": _version_text(env.versions[direction.source]),
                     "target": _version_text(env.versions[direction.target]),
                     "downgrade": majors is not None},
    }
    show_plan(console, report, options, render.sync_plan)
    check_expected(options, target, state)
    guard.show(console, verdict, env.store.url(safety_key))
    console.line(RULE)
    if stop_or_dry_run(console, guard, verdict, report, phases, options, "sync"):
        return report
    asked = render.confirm(console, report, options.yes)

    with env.store.lock(f"sync {direction.name}", options.break_lock) as lock, \
            tempfile.TemporaryDirectory(prefix="devops-sync-") as workdir:
        if lock.broken:
            console.warn(f"Removed the sync lock of {lock.broken.get('purpose')} on {lock.broken.get('host')} "
                         f"(pid {lock.broken.get('pid')}, started {lock.broken.get('started')})")
        # The keys name the second that orders the records (store.latest_fingerprint): chosen now that the
        # lock is held, so that their order is the order the operations held it in. The plan's were a forecast.
        when = env.store.free_time((direction.source, direction.target), utcnow())
        source_key, safety_key = dump_key(direction.source, when), dump_key(direction.target, when)
        report.update(dump=env.store.url(source_key), safety_copy=env.store.url(safety_key))
        processes = Processes()
        try:
            with phases("safety copy"):
                safety_info = safety_copy(env, console, direction.target, safety_key, processes,
                                          f"safety copy of {target.label} before {direction.name}", direction.name,
                                          state, verdict, guard, report, asked)
            with phases("dump + restore + verify"):
                console.info(f"Dumping {source.label} -> {env.store.url(source_key)} and restoring into {target.label}...")
                restore = Restore(target, processes, workdir,
                                  hint=downgrade_hint(majors, target.label))
                with transfer(console, "Dump + restore", source_size(source), target, len(source_before),
                              settings.progress_interval) as progress:
                    source_dump = dump(env, direction.source, source_key, processes, extra_sinks=(restore, progress))
                # The dump is complete and valid whatever happens next: record it, then commit the restore.
                source_manifest = manifest(env, direction.source, source_dump, direction.name, f"sync {direction.name}")
                env.store.put_manifest(source_key, source_manifest)
                expected = {n: {"rows": s.rows, "checksum": s.checksum} for n, s in source_dump.tables.items()}
                verified = commit_verified(restore, expected, source_dump.sequences, console,
                                           settings.progress_interval)
        finally:
            processes.close()
    report = _finish(console, report, phases, expected, verified,
                     {"dump": _dump_info(env, source_dump), "safety_copy": safety_info})
    if report["status"] == "ok":
        # What the target holds now, recorded with the dump it came from: the next sync's safety copy
        # can point at this dump instead of dumping the same data again.
        source_manifest["restored"] = fingerprint(env, direction.target, verified.tables, verified.sequences,
                                                  schema_hash(target))
        env.store.put_manifest(source_key, source_manifest)
    return report


def check_divergence(env: Environment, side: str, guard: Guard, pool: ThreadPoolExecutor,
                     console: Console | None = None) -> tuple[State, Verdict]:
    """The divergence guard's verdict on ``side``: its one probe, against the newest record of it (read from
    S3 while the probe runs)."""
    known = pool.submit(env.store.latest_fingerprint, side)
    state = probe(env, side, console)
    return state, guard.judge(known.result(), state.fingerprint)


def stop_or_dry_run(console: Console, guard: Guard, verdict: Verdict, report: dict[str, Any], phases: Phases,
                    options: Options, operation: str) -> bool:
    """After the plan: True to end a dry run there; raises when the guard refuses (before anything is written)."""
    if options.dry_run:
        if verdict.verdict == DIVERGED:
            console.warn(f"A real run would stop here (pass --force to overwrite {guard.label} anyway)")
        console.info(f"Dry run complete. Run without --dry-run to {operation}.")
        report.update(status="dry-run", seconds=phases.seconds)
        return True
    if verdict.verdict == DIVERGED:
        raise guard.refusal(verdict, {**report, "seconds": phases.seconds})
    return False


def safety_copy(env: Environment, console: Console, side: str, key: str, processes: Processes, reason: str,
                operation: str, state: State, verdict: Verdict, guard: Guard, report: dict[str, Any],
                asked: bool) -> dict[str, Any]:
    """Make sure the data about to be overwritten is in S3, and say where.

    When the newest record of this database (the guard's ``verdict.known``: the dump it was last restored
    from, or its last dump) matches what it holds (``state``, from the plan: every table's rows and
    checksum, the sequences, the schema), that dump already is the safety copy; otherwise the database is
    dumped to ``key``. When the confirmation asked (``asked``), it may have waited for minutes since the
    plan: where the plan's verdict or that reuse depend on it, and unless nothing was written since
    (State.still_current, one query), the database is read again and the guard judges again, before
    anything is written. (With --yes, the plan was a fraction of a second ago, a gap smaller than the one
    between this decision and the restore's start; and the cheap check fails on any transaction of the
    server, an autoanalyze after a bulk load included, which would mean a second scan for nothing.)
    """
    endpoint = env.endpoints[side]
    known = verdict.known
    reusable = known is not None and same_content(known.record, state.fingerprint)
    if asked and (reusable or verdict.verdict == UNCHANGED) and not state.still_current(endpoint):
        console.info(f"{endpoint.label} may have been written to since the plan: reading it again...")
        state = probe(env, side, console)
        verdict = guard.judge(known, state.fingerprint)
        if verdict.verdict == DIVERGED:
            guard.show(console, verdict, env.store.url(key))
            raise guard.refusal(verdict, {**report, "divergence": verdict.report()})
    if known is not None and same_content(known.record, state.fingerprint) and env.store.exists(known.key):
        console.info(f"Safety copy: {env.store.url(known.key)} already holds {endpoint.label}'s current data "
                     "(same rows, checksums, sequences and schema): not dumped again")
        return {"url": env.store.url(known.key), "size": known.manifest.get("size", 0),
                "sha256": known.manifest.get("sha256", ""), "reused": True}
    console.info(f"Safety copy of {endpoint.label} -> {env.store.url(key)}")
    result = dump(env, side, key, processes)
    env.store.put_manifest(key, manifest(env, side, result, operation, reason))
    return {**_dump_info(env, result), "reused": False}


def _dump_info(env: Environment, result: Dump) -> dict[str, Any]:
    return {"url": env.store.url(result.key), "size": result.size, "sha256": result.sha256}


def _finish(console: Console, report: dict[str, Any], phases: Phases, expected: dict[str, dict[str, Any]],
            verified: "Verified", dumps: dict[str, Any]) -> dict[str, Any]:
    report.update(status="ok" if verified.committed else "mismatch", committed=verified.committed,
                  tables=compare(expected, verified.tables), sequence_mismatches=verified.sequence_mismatches,
                  left_out=verified.left_out, seconds={**phases.seconds, "total": phases.total()}, **dumps)
    render.finish(console, report)
    return report


def _side(env: Environment, side: str) -> dict[str, str]:
    endpoint = env.endpoints[side]
    return render.side(endpoint.label, endpoint.masked(), endpoint.where(), _version_text(env.versions[side]))


def show_plan(console: Console, report: dict[str, Any], options: Options,
              printer: Callable[[Console, dict[str, Any]], None]) -> None:
    """The plan, unless it was already shown and confirmed (--expect-target: a run after its plan, as
    `--on ecs` makes one): then one line."""
    if options.expect_target:
        console.info(f"The plan was confirmed for {report['sides']['target']['label']} holding "
                     f"{options.expect_target}: checking that it still does")
    else:
        printer(console, report)


# --------------------------------------------------------------------------------------------------
# Restore an earlier dump


def run_restore(settings: Settings, console: Console, key: str, side: str, options: Options) -> dict[str, Any]:
    """Put an earlier dump back into ``side`` after checking its checksum (a rollback)."""
    if side not in LABELS:
        raise DevopsError(f"--to must be neon or rds, not {side!r}")
    when = utcnow()
    phases = Phases()
    target_label = aws.target_label(settings)
    render.banner(console, f"RESTORE: {key} -> {LABELS[side]}", when, target_label, options.dry_run)
    with phases("preflight"):
        env = prepare(settings, console, (side,))
        target = env.endpoints[side]
        recorded = env.store.manifest(key)
    with phases("checksum"):
        console.info(f"Checking the checksum of {env.store.url(key)}...")
        digest = hashlib.sha256()
        for chunk in env.store.read(key):
            digest.update(chunk)
        if digest.hexdigest() != recorded.get("sha256"):
            raise DevopsError(f"checksum mismatch for {env.store.url(key)}: the dump is damaged or was replaced "
                              "(expected sha256 from its manifest); nothing was changed")
        console.passed(f"Checksum matches ({digest.hexdigest()[:16]}...)")
    restore_when = env.store.free_time((side,), when)
    safety_key = dump_key(side, restore_when)
    guard = Guard(target.label, options.force, rerun=f"inv sync.restore --key {key} --to {side} --force")
    with phases("divergence check"), ThreadPoolExecutor(max_workers=1) as pool:
        state, verdict = check_divergence(env, side, guard, pool, console)
    target_before = state.tables
    dumped = recorded.get("source", {}).get("server_version")
    majors = downgrade(_version_num(dumped), env.versions[side])
    dump_rows = {name: t.get("rows") for name, t in recorded.get("tables", {}).items()}
    report: dict[str, Any] = {
        "operation": "restore", "key": key, "to": side, "dry_run": options.dry_run, "target": target_label,
        "sides": {"target": _side(env, side)},
        "restored_dump": {"url": env.store.url(key), "reason": recorded.get("reason", "?"),
                          "created": recorded.get("created", "?")},
        "safety_copy": env.store.url(safety_key),
        "plan": {name: {"source_rows": dump_rows.get(name),
                        "target_rows": target_before[name].rows if name in target_before else None}
                 for name in sorted(set(dump_rows) | set(target_before))},
        "target_state": target_state(state),
        "divergence": verdict.report(),
        "versions": {"source": dumped, "target": _version_text(env.versions[side]), "downgrade": majors is not None},
    }
    show_plan(console, report, options, render.restore_plan)
    check_expected(options, target, state)
    guard.show(console, verdict, env.store.url(safety_key))
    if stop_or_dry_run(console, guard, verdict, report, phases, options, "restore"):
        return report
    asked = render.confirm(console, report, options.yes)
    with env.store.lock(f"restore {key} to {side}", options.break_lock), \
            tempfile.TemporaryDirectory(prefix="devops-restore-") as workdir:
        # Named under the lock, as in run_sync: the records' order is the order the lock was held in.
        restore_when = env.store.free_time((side,), utcnow())
        safety_key = dump_key(side, restore_when)
        report["safety_copy"] = env.store.url(safety_key)
        processes = Processes()
        try:
            with phases("safety copy"):
                safety_info = safety_copy(env, console, side, safety_key, processes,
                                          f"safety copy of {target.label} before restoring {key}", f"restore-to-{side}",
                                          state, verdict, guard, report, asked)
            with phases("restore + verify"):
                console.info(f"Restoring {env.store.url(key)} into {target.label}...")
                restore = Restore(target, processes, workdir,
                                  hint=downgrade_hint(majors, target.label))
                again = hashlib.sha256()
                with transfer(console, "Restore", recorded.get("size", 0), target, len(recorded.get("tables", {})),
                              settings.progress_interval) as progress:
                    for chunk in env.store.read(key):
                        again.update(chunk)
                        restore.write(chunk)
                        progress.write(chunk)
                if again.hexdigest() != recorded["sha256"]:
                    raise DevopsError(f"{env.store.url(key)} changed while it was read; nothing was changed")
                verified = commit_verified(restore, recorded.get("tables", {}), recorded.get("sequences", {}),
                                           console, settings.progress_interval)
        finally:
            processes.close()
    target_after, sequences_after = verified.tables, verified.sequences
    report = _finish(console, report, phases, recorded.get("tables", {}), verified, {"safety_copy": safety_info})
    if report["status"] == "ok":
        # What the target holds now is that dump: the next sync neither takes the rollback for foreign writes
        # nor dumps the target again for its safety copy.
        env.store.put_restore_record(side, restore_when, {
            "key": key, "reason": f"restore of {key}", "sha256": recorded["sha256"], "size": recorded.get("size", 0),
            "created": utcnow().isoformat(),
            "restored": fingerprint(env, side, target_after, sequences_after, schema_hash(target))})
    return report


# --------------------------------------------------------------------------------------------------
# List


def run_list(settings: Settings, console: Console) -> dict[str, Any]:
    render.banner(console, "SYNC DUMPS", None, aws.target_label(settings))
    s3 = aws.client(settings, "s3")
    outputs = Terraform(settings).outputs(s3)
    store = DumpStore(s3, outputs.get("db_backups_bucket_name") or settings.bucket_name, warn=console.warn)
    store.check_bucket()
    now = utcnow()
    entries = []
    for item in store.dumps():
        m = item["manifest"]
        entries.append({
            "key": item["key"], "size": item["size"], "age_seconds": int((now - item["modified"]).total_seconds()),
            "source": m.get("source", {}).get("url", "?"), "reason": m.get("reason", "?"),
            "tables": {name: t["rows"] for name, t in m.get("tables", {}).items()},
            "sha256": m.get("sha256", ""), "committed": item["committed"],
        })
    report = {"bucket": store.bucket, "dumps": entries}
    render.dumps(console, report)
    return report

