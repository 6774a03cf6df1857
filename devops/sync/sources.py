"""The two sources of a full replace: a database that pg_dump reads (SyncSource), or an earlier dump in S3,
checked against its manifest (DumpSource). The flow asks both the same questions; each answers from what it
is, and nothing it answers depends on the order of the questions."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
from typing import Any, Iterator

from devops.console import Console
from devops.errors import DevopsError
from devops.sync.database import Database
from devops.sync.decisions import Needs, version_num
from devops.sync.dumps import dump, manifest
from devops.sync.jobs import Job, RestoreDump, Sync
from devops.sync.preflight import Environment
from devops.sync.processes import Processes, pump
from devops.sync.report import Copy, RestoredDump, Side
from devops.sync.scope import LeftAlone
from devops.sync.store import dump_key, utcnow


@dataclasses.dataclass(frozen=True)
class SourceCounts:
    """What the source holds, as the plan shows it and the transfer's progress expects it."""

    rows: dict[str, int | None]  # by table
    objects: int  # sql/lockable_objects.sql: what a restore of it creates (decisions.locks_needed)
    size: int  # the bytes the transfer is expected to move
    needs: Needs  # what a restore of it needs its target to have already (decisions.what_target_lacks)


@dataclasses.dataclass
class Streamed:
    """What a source's stream said the target must hold, and the dump it wrote on the way (a sync's)."""

    tables: dict[str, Any]  # {name: {"rows", "checksum"}}
    sequences: dict[str, Any]
    written: Copy | None = None
    manifest: dict[str, Any] | None = None  # the written dump's, uploaded by record


def side_of(db: Database) -> Side:
    return Side(db.label, db.endpoint.masked(), db.endpoint.where(), db.version_text)


class SyncSource:
    """The source of a sync: a database, dumped once (to S3 and into the restore at the same time)."""

    check_phase, transfer_phase, transfer_title = None, "dump + restore + verify", "Dump + restore"

    def __init__(self, env: Environment, job: Sync):
        self.env, self.direction = env, job.direction
        self.db = env.databases[job.direction.source]

    dump_of = None  # a database, not a dump of one
    left_alone = LeftAlone()  # nothing but what the settings and flags say

    @property
    def version(self) -> int:
        return self.db.version

    def dump_key(self, when: dt.datetime) -> str:
        """The key of the dump this sync writes of its source, named for the second ``when``."""
        return dump_key(self.db.side, when)

    def counts(self) -> SourceCounts:
        tables, objects, size, needs = self.db.counts()
        return SourceCounts({name: t.rows for name, t in tables.items()}, objects, size, needs)

    def plan_fields(self, target: Database, when: dt.datetime) -> dict[str, Any]:
        """What the plan's report says of this source (the dump's key a forecast: it is named under the lock)."""
        return {"direction": self.direction.name, "tools": self.env.tools.versions,
                "source": self.db.endpoint.masked(), "destination": target.endpoint.masked(),
                "sides": {"source": side_of(self.db), "target": side_of(target)},
                "dump": Copy(self.env.store.url(self.dump_key(when)))}

    def announce(self, console: Console, target: Database, key: str | None) -> None:
        console.info(f"Dumping {self.db.label} -> {self.env.store.url(key)} and restoring into {target.label}...")

    def stream(self, processes: Processes, sinks: tuple[Any, ...], key: str | None, needs: Needs) -> Streamed:
        """The source dumped to ``key`` and into ``sinks`` at once; its manifest records ``needs`` (the
        plan's), so that a restore of it is checked against its target as this sync was."""
        result = dump(self.env, self.db, key, processes, extra_sinks=sinks)
        written = manifest(self.env, self.db, result, self.direction.name, f"sync {self.direction.name}")
        written["needs"] = needs.as_record()
        return Streamed(written["tables"], result.sequences, Copy(self.env.store.url(key), result.size, result.sha256),
                        written)

    def record(self, target: Database, streamed: Streamed | None, restored: dict[str, Any] | None,
               when: dt.datetime) -> None:
        """The dump's manifest, uploaded once whatever the restore did (a complete dump is a rollback point):
        with what the target holds now when it committed (``restored``), so that the next sync's safety copy
        can point at this dump instead of dumping the same data again. Nothing when the dump did not end."""
        if streamed is None or streamed.manifest is None:
            return
        record = dict(streamed.manifest, **({"restored": restored} if restored is not None else {}))
        self.env.store.put_manifest(record["key"], record)


class DumpSource:
    """The source of a restore: an earlier dump in S3, checked against its manifest's sha256."""

    check_phase, transfer_phase, transfer_title = "checksum", "restore + verify", "Restore"

    def __init__(self, env: Environment, job: RestoreDump):
        self.env, self.key, self.to = env, job.key, job.to
        self.recorded = env.store.manifest(job.key)

    @property
    def version(self) -> int | None:
        return version_num(self.recorded.get("source", {}).get("server_version"))

    @property
    def dump_of(self) -> str | None:
        """The database it is a dump of (neon, rds), as its manifest says."""
        return self.recorded.get("source", {}).get("side")

    @property
    def left_alone(self) -> LeftAlone:
        """What the dump left out: left alone on the target too (a restore of it must not drop the target's)."""
        return LeftAlone.recorded(self.recorded.get("left_alone"))

    def dump_key(self, when: dt.datetime) -> None:
        return None  # a restore writes no dump of its source: it is one

    def check(self, console: Console) -> None:
        console.info(f"Checking the checksum of {self.env.store.url(self.key)}...")
        digest = hashlib.sha256()
        for chunk in self.env.store.read(self.key):
            digest.update(chunk)
        if digest.hexdigest() != self.recorded.get("sha256"):
            raise DevopsError(f"checksum mismatch for {self.env.store.url(self.key)}: the dump is damaged or was "
                              "replaced (expected sha256 from its manifest); nothing was changed")
        console.passed(f"Checksum matches ({digest.hexdigest()[:16]}...)")

    def _restored(self, named: dict[str, Any]) -> dict[str, Any]:
        """Of the dump's tables or sequences, those the restore restores: not those in a schema it leaves alone
        (a dump made before that schema was left alone holds them; pg_restore leaves them out)."""
        left_alone = self.env.databases[self.to].left_alone
        return {name: value for name, value in named.items() if not left_alone.ignores_table(name)}

    def counts(self) -> SourceCounts:
        tables = self._restored(self.recorded.get("tables", {}))
        # A manifest without "objects" counts none: the lock-table check then counts the target's alone.
        return SourceCounts({name: t.get("rows") for name, t in tables.items()},
                            int(self.recorded.get("objects") or 0), self.recorded.get("size", 0),
                            Needs.recorded("the dump", self.recorded.get("needs")))

    def plan_fields(self, target: Database, when: dt.datetime) -> dict[str, Any]:
        return {"key": self.key, "to": target.side,
                "restored_dump": RestoredDump(self.env.store.url(self.key), self.recorded.get("reason", "?"),
                                              self.recorded.get("created", "?"), self.dump_of)}

    def announce(self, console: Console, target: Database, key: str | None) -> None:
        console.info(f"Restoring {self.env.store.url(self.key)} into {target.label}...")

    def stream(self, processes: Processes, sinks: tuple[Any, ...], key: str | None, needs: Needs) -> Streamed:
        again = hashlib.sha256()

        def hashed(chunks: Iterator[bytes]) -> Iterator[bytes]:
            for chunk in chunks:
                again.update(chunk)
                yield chunk

        pump(hashed(self.env.store.read(self.key)), list(sinks))  # checked before the restore's COMMIT
        if again.hexdigest() != self.recorded["sha256"]:
            raise DevopsError(f"{self.env.store.url(self.key)} changed while it was read; nothing was changed")
        return Streamed(self._restored(self.recorded.get("tables", {})),
                        self._restored(self.recorded.get("sequences", {})))

    def record(self, target: Database, streamed: Streamed | None, restored: dict[str, Any] | None,
               when: dt.datetime) -> None:
        """What the target holds now is that dump: the next sync neither takes the rollback for foreign
        writes nor dumps the target again for its safety copy. Nothing when the restore did not commit."""
        if restored is None:
            return
        self.env.store.put_restore_record(target.side, when, {
            "key": self.key, "reason": f"restore of {self.key}", "sha256": self.recorded["sha256"],
            "size": self.recorded.get("size", 0), "created": utcnow().isoformat(), "restored": restored})


Source = SyncSource | DumpSource


def source_for(job: Job, env: Environment) -> Source:
    match job:
        case Sync():
            return SyncSource(env, job)
        case RestoreDump():
            return DumpSource(env, job)
    raise TypeError(job)
