"""What the flow reads of a database and writes to S3: its state (``probe``), a dump of it (``dump``), the
records of both (``fingerprint``, ``manifest``), and the restore's verified COMMIT (``commit_verified``)."""

from __future__ import annotations

import dataclasses
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from devops.console import Console
from devops.errors import DevopsError
from devops.postgres import TableStats
from devops.progress import Steps
from devops.sync.database import Database
from devops.sync.decisions import compare_sequences
from devops.sync.processes import Processes, pump, read_chunks
from devops.sync.restore import Restore, VerificationFailed
from devops.sync.tools import dump_args
from devops.sync.preflight import Environment
from devops.sync.store import utcnow, utcnow_precise


def fingerprint(db: Database, tables: dict[str, TableStats], sequences: dict[str, Any], schema: str) -> dict[str, Any]:
    """What a database holds, compactly: rows and checksum per table, sequences, schema hash (and how it was
    taken: Database.schema_by), and which database it is (Database.identity); and what was left alone
    (scope.py), which none of these include."""
    return {"side": db.side, "where": db.endpoint.where(), "server": db.identity or None,
            **({"left_alone": db.left_alone.as_record()} if db.left_alone else {}),
            "recorded": utcnow_precise(),
            "tables": {name: {"rows": t.rows, "checksum": t.checksum} for name, t in tables.items()},
            "sequences": sequences, "schema": schema, "schema_by": db.schema_by,
            # For readers of records that name the pg_dump which took the schema hash, and compare hashes only
            # when it is their own: a catalog hash never names one, so they leave it uncompared.
            "pg_dump": db.schema_by}


@dataclasses.dataclass
class State:
    """What a database holds now: its fingerprint and table stats, read in one snapshot, and the
    transactions that snapshot had seen (transactions_seen), to tell cheaply later whether it still holds."""

    fingerprint: dict[str, Any]
    tables: dict[str, TableStats]
    seen: str
    objects: int  # Database.lockable_objects
    # What is left alone but depends on what the replace drops (Database.kept_depending), when the plan read it.
    kept_depending: list[str] = dataclasses.field(default_factory=list)

    def still_current(self, db: Database) -> bool:
        """True when nothing was written since (no transaction id taken, sequences where they were)."""
        return db.still_holds(self.seen, self.fingerprint["sequences"])


def probe(env: Environment, db: Database, console: Console | None = None) -> State:
    """One read of a database: every table's rows and checksum, the schema hash and the sequences.

    This is the one scan of the target per sync: the plan shows its counts, the divergence guard and the
    safety copy compare its fingerprint with the newest record. With ``console``, its progress (the time it
    takes: the scan is one statement).
    """
    with Steps(console, f"Reading {db.label}", env.settings.progress_interval):
        found = db.read()
    return State(fingerprint(db, found.tables, found.sequences, found.schema), found.tables, found.seen,
                 found.objects)


@dataclasses.dataclass
class Dump:
    key: str
    sha256: str
    size: int
    tables: dict[str, TableStats]
    sequences: dict[str, int | None]
    schema: str
    seconds: float
    objects: int  # Database.lockable_objects: what a restore of it creates


def dump(env: Environment, db: Database, key: str, processes: Processes, extra_sinks: tuple[Any, ...] = ()) -> Dump:
    """pg_dump of a database, streamed to S3 (and to ``extra_sinks``), with its stats from the same snapshot.

    Returns once pg_dump succeeded and the upload is complete; any failure aborts the upload.
    """
    started = time.monotonic()
    with db.snapshot() as snapshot, ThreadPoolExecutor(max_workers=1) as pool:
        # Beside pg_dump, on the snapshot's own connection: no parallel workers (pg_dump needs those cores).
        reading = pool.submit(snapshot.read, parallel=False)
        proc = processes.start("pg_dump", dump_args(env.compression, snapshot.name) + db.left_alone.pg_dump_args(),
                               endpoint=db.endpoint)
        with env.store.writer(key) as writer:
            pump(read_chunks(proc.stdout), [writer, *extra_sinks])
            if proc.wait() != 0:
                raise DevopsError(f"pg_dump of {db.label} failed: {processes.error_of(proc)}")
            sha256 = writer.close()
        found = reading.result()
    return Dump(key, sha256, writer.size, found.tables, found.sequences, found.schema,
                round(time.monotonic() - started, 2), found.objects)


def manifest(env: Environment, db: Database, result: Dump, direction: str, reason: str) -> dict[str, Any]:
    return {
        "key": result.key,
        "bucket": env.store.bucket,
        "direction": direction,
        "reason": reason,
        "source": {"side": db.side, "url": db.endpoint.masked(), "server_version": db.version_text},
        "tools": env.tools.versions,
        "format": "custom",
        "compression": env.compression,
        "sha256": result.sha256,
        "size": result.size,
        "tables": {name: {"rows": s.rows, "checksum": s.checksum} for name, s in result.tables.items()},
        "sequences": result.sequences,
        "objects": result.objects,  # the locks a restore of it takes to create them (decisions.locks_needed)
        # What it left out (scope.py): a restore of it leaves that alone too.
        "left_alone": db.left_alone.as_record(),
        "seconds": result.seconds,
        # The dumped database as it was in the dump's snapshot; a later sync compares against it.
        "fingerprint": fingerprint(db, result.tables, result.sequences, result.schema),
        "created": utcnow().isoformat(),
    }


@dataclasses.dataclass
class Verified:
    """What the restore's transaction held when it was checked, before COMMIT, and whether it committed
    (only when every table and sequence matched the source)."""

    tables: dict[str, TableStats]
    sequences: dict[str, Any]
    sequence_mismatches: list[str]
    left_out: list[str]
    committed: bool
    locks: int | None  # held by the restore's transaction at its peak (restore.RestoreResult.locks)
    schema: str = ""  # the restored schema's hash (restore.RestoreResult.schema)


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
                        compare_sequences(sequences, found["sequences"]), restore.result.left_out, False,
                        restore.result.locks)
    return Verified(_as_stats(expected), dict(sequences), [], result.left_out, True, result.locks, result.schema)


def _as_stats(tables: dict[str, dict[str, Any]]) -> dict[str, TableStats]:
    return {name: TableStats(*name.split(".", 1), int(t["rows"]), str(t["checksum"])) for name, t in tables.items()}
