"""The sync's flow (devops/sync/flow.py) as pure logic: its steps in order, --dry-run, each refusal and its
early exit, on in-memory stand-ins for the databases and the store. pg_dump, pg_restore and psql are the
only parts stood in for by functions (``dump``, ``Restore``, ``commit_verified``): what they do to the data is
tested against real servers in test_sync*.py."""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import io
import json
import types

import pytest

from devops.config import Settings
from devops.console import Console
from devops.errors import DevopsError
from devops.postgres import TableStats
from devops.sync import flow, render, safety, sources
from devops.sync.database import Reading
from devops.sync.decisions import LockTable, Needs, Offers
from devops.sync.dumps import Dump, Verified, fingerprint
from devops.sync.jobs import DIRECTIONS, Options, RestoreDump, Sync, expected_fingerprint
from devops.sync.preflight import Environment
from devops.sync.processes import pump
from devops.sync.report import DumpList, Listed, Status
from devops.sync.scope import LeftAlone
from devops.sync.store import dump_key, manifest_key, newest_record, restore_record_key, utcnow
from devops.sync.tools import ToolVersions

LABELS = {"neon": "Neon", "rds": "RDS"}


class FakeEndpoint:
    def __init__(self, side: str):
        self.label, self.side = LABELS[side], side

    def masked(self) -> str:
        return f"postgresql://****:****@{self.side}.example/app"

    def where(self) -> str:
        return f"{self.side}.example:5432/app"

    def connect(self, *_):
        raise OSError("an in-memory database takes no connection")


class FakeDatabase:
    """A database as the flow sees it: tables of so many rows, a sequence, and a count of writes (its
    transactions seen)."""

    def __init__(self, world: "World", side: str, tables: dict[str, int], max_locks: int = 64):
        self.world, self.side, self.label = world, side, LABELS[side]
        self.endpoint = FakeEndpoint(side)
        self.version = 170004
        self.identity = {"system_identifier": f"{side}-1", "database": "app"}
        self.lock_table = LockTable(max_locks, 100)
        self.offers = Offers.of(["pgcrypto"], None, ["app"])
        self.needs = Needs(self.label, ("pgcrypto",), {"app": ["public.items own_rows"]})
        self.tables = dict(tables)
        self.sequences = {"public.items_id_seq": sum(tables.values())}
        self.writes = 0
        self.left_alone = LeftAlone()
        self.kept_objects: list[str] = []  # what Database.kept_depending would find

    version_text = property(lambda self: "17.4")
    schema_by = property(lambda self: "catalog-1 17")

    def stats(self) -> dict[str, TableStats]:
        return {name: TableStats(*name.split("."), rows, f"sum-{rows}") for name, rows in sorted(self.tables.items())}

    def read(self) -> Reading:
        self.world.events.append(f"read {self.side}")
        return Reading(self.stats(), str(self.writes), 10 * len(self.tables), dict(self.sequences), "schema-1")

    def still_holds(self, seen: str, sequences: dict) -> bool:
        return seen == str(self.writes) and sequences == self.sequences

    def counts(self):
        self.world.events.append(f"count {self.side}")
        return self.stats(), 10 * len(self.tables), 1000 * sum(self.tables.values()), self.needs

    def kept_depending(self) -> list[str]:
        return self.kept_objects if self.left_alone else []

    def write(self, table: str, rows: int) -> None:
        self.tables[table] = rows
        self.writes += 1

    def close(self) -> None:
        pass


class FakeStore:
    """The dumps bucket in memory: objects, manifests and restore records, the lock."""

    bucket = "dev-dumps"

    def __init__(self, world: "World"):
        self.world = world
        self.objects: dict[str, bytes] = {}
        self.manifests: dict[str, dict] = {}
        self.locked = False

    def url(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def latest_fingerprint(self, side: str):
        return newest_record(side, list(self.manifests.items()))

    @contextlib.contextmanager
    def lock(self, purpose: str, break_lock: bool = False):
        self.world.events.append("lock")
        self.locked = True
        try:
            yield types.SimpleNamespace(broken=None)
        finally:
            self.locked = False
            self.world.events.append("unlock")

    def free_time(self, sides, when):
        """As DumpStore.free_time: the first second from ``when`` at which no dump of ``sides`` exists."""
        when = when.replace(microsecond=0)
        while any(dump_key(side, when) in self.objects for side in sides):
            when += dt.timedelta(seconds=1)
        return when

    def exists(self, key: str) -> bool:
        return key in self.objects

    def put_manifest(self, key: str, manifest: dict) -> None:
        self.world.events.append(f"manifest {key.split('/')[0]}")
        self.manifests[manifest_key(key)] = manifest

    def put_restore_record(self, side: str, when, record: dict) -> None:
        self.world.events.append(f"restore record {side}")
        self.manifests[restore_record_key(side, when)] = record

    def manifest(self, key: str) -> dict:
        return self.manifests[manifest_key(key)]

    def read(self, key: str):
        yield self.objects[key]


class World:
    """Neon, RDS and the bucket, and what happened to them, in order."""

    def __init__(self, neon: dict[str, int], rds: dict[str, int], rds_max_locks: int = 64):
        self.events: list[str] = []
        self.fail_restore = False
        self.databases = {"neon": FakeDatabase(self, "neon", neon),
                          "rds": FakeDatabase(self, "rds", rds, rds_max_locks)}
        self.store = FakeStore(self)
        tools = ToolVersions({"pg_dump": "17.4", "pg_restore": "17.4", "psql": "17.4"})
        self.env = Environment(Settings(), {"arn": "arn:aws:iam::123456789012:user/dev"}, {}, self.store, tools,
                               self.databases)

    def dump(self, env, db, key, processes, extra_sinks=()) -> Dump:
        """pg_dump of ``db`` to ``key`` (and into ``extra_sinks``), as dumps.dump returns it."""
        self.events.append(f"dump {db.side}")
        data = json.dumps(db.tables, sort_keys=True).encode()
        pump([data], list(extra_sinks))
        self.store.objects[key] = data
        found = db.read()
        return Dump(key, hashlib.sha256(data).hexdigest(), len(data), found.tables, found.sequences, found.schema,
                    0.0, found.objects)

    def commit_verified(self, restore, expected, sequences, console=None, interval=10) -> Verified:
        """The restore's COMMIT after its verification: the target now holds ``expected``."""
        self.events.append(f"commit {restore.target.side}")
        if self.fail_restore:
            raise DevopsError(f"restore into {restore.target.label} failed at TABLE public.items: boom")
        restore.target.tables = {name: t["rows"] for name, t in expected.items()}
        restore.target.sequences = dict(sequences)
        restore.target.writes += 1
        tables = {name: TableStats(*name.split("."), t["rows"], t["checksum"]) for name, t in expected.items()}
        return Verified(tables, dict(sequences), [], [], True, 42, "schema-1")

    def record_sync(self, side: str) -> None:
        """A record of what ``side`` holds now, as a sync that restored it would have left."""
        db = self.databases[side]
        key = dump_key("neon" if side == "rds" else "rds", utcnow())
        self.store.objects[key] = b"earlier dump"
        self.store.manifests[manifest_key(key)] = {
            "key": key, "reason": "an earlier sync", "sha256": "0" * 64, "size": 12,
            "restored": fingerprint(db, db.stats(), dict(db.sequences), "schema-1")}

    def snapshot(self) -> tuple:
        """Everything a run could change."""
        return ({side: (dict(db.tables), db.writes) for side, db in self.databases.items()},
                dict(self.store.objects), json.dumps(self.store.manifests, sort_keys=True, default=str))


class Restore:
    """The atomic restore stood in for: it takes the stream; commit_verified decides what the target holds."""

    def __init__(self, target, processes, workdir, hint="", batched=True):
        self.target, self.received = target, b""

    def write(self, chunk: bytes) -> None:
        self.received += chunk

    def end_input(self) -> None:
        pass


@pytest.fixture
def world(monkeypatch):
    world = World(neon={"public.items": 5, "public.users": 2}, rds={"public.items": 3, "public.users": 2})
    monkeypatch.setattr(sources, "dump", world.dump)
    monkeypatch.setattr(safety, "dump", world.dump)
    monkeypatch.setattr(flow, "Restore", Restore)
    monkeypatch.setattr(flow, "commit_verified", world.commit_verified)
    return world


def run(world: World, job=None, console: Console | None = None, **options):
    job = job or Sync(DIRECTIONS["neon-to-rds"])
    return flow.run_steps(world.env, console or Console(out=io.StringIO()), job, Options(**options), flow.Phases())


def refused(world: World, match: str, **options) -> DevopsError:
    """A run that must be refused before anything is written: no lock taken, no database or object changed."""
    before = world.snapshot()
    with pytest.raises(DevopsError, match=match) as error:
        run(world, **options)
    assert "lock" not in world.events and world.snapshot() == before
    return error.value


def test_a_sync_reads_plans_locks_keeps_the_target_then_replaces_it_and_records_both(world):
    report = run(world, yes=True)
    assert report.status == Status.OK and report.committed
    assert sorted(world.events[:2]) == ["count neon", "read rds"]  # side by side
    after_plan = world.events[world.events.index("lock"):]
    # The safety copy of RDS (a dump and its manifest) before the source is dumped into it, all under the lock;
    # the source dump's manifest once the restore committed.
    assert after_plan[:3] == ["lock", "dump rds", "read rds"]
    assert after_plan[3] == "manifest rds-dumps"
    assert after_plan[4:7] == ["dump neon", "read neon", "commit rds"]
    assert "manifest neon-dumps" in after_plan[7:] and after_plan.count("unlock") == 1
    assert world.databases["rds"].tables == world.databases["neon"].tables
    assert not report.safety_copy.reused and report.safety_copy.url.startswith("s3://dev-dumps/rds-dumps/")
    # The source's dump records what RDS holds now: the next sync's guard and safety copy start from it.
    recorded = world.store.latest_fingerprint("rds")
    assert recorded.key.startswith("neon-dumps/") and recorded.record["tables"]["public.items"]["rows"] == 5


def test_a_dry_run_shows_the_plan_and_writes_nothing(world):
    before = world.snapshot()
    out = io.StringIO()
    report = run(world, console=Console(out=out), dry_run=True)
    assert report.status == Status.DRY_RUN
    assert "lock" not in world.events and not any(e.startswith(("dump", "commit", "manifest")) for e in world.events)
    assert world.snapshot() == before
    assert report.plan["public.items"].source_rows == 5 and report.plan["public.items"].target_rows == 3
    assert "public.items" in out.getvalue()


def test_a_target_written_since_its_last_sync_is_refused_before_anything_is_written(world):
    world.record_sync("rds")
    world.databases["rds"].write("public.items", 4)  # a write nobody synced
    assert refused(world, "RDS was written to since its last recorded sync", yes=True).details["status"] == "refused"


def test_a_forced_run_overwrites_a_diverged_target_after_its_safety_copy(world):
    world.record_sync("rds")
    world.databases["rds"].write("public.items", 4)
    report = run(world, yes=True, force=True)
    assert report.status == Status.OK and not report.safety_copy.reused
    assert world.events.index("dump rds") < world.events.index("commit rds")


def test_an_unexpected_target_fingerprint_is_refused_before_anything_is_written(world):
    refused(world, "RDS changed after the confirmed plan", yes=True, expect_target="0123456789abcdef")


def test_the_plans_own_fingerprint_lets_the_run_go_on(world):
    planned = run(world, dry_run=True)
    report = run(world, yes=True, expect_target=planned.target_state.fingerprint)
    assert report.status == Status.OK


def test_a_restore_that_would_not_fit_the_lock_table_is_refused_before_anything_is_written(world):
    world.databases["rds"].lock_table = LockTable(1, 2)
    assert refused(world, "lock table holds 2", yes=True).details["status"] == "refused"


def test_a_dry_run_says_the_lock_table_is_too_small_and_exits_as_a_dry_run(world):
    world.databases["rds"].lock_table = LockTable(1, 2)
    assert run(world, dry_run=True).status == Status.DRY_RUN


def test_what_the_target_lacks_is_refused_all_at_once_before_anything_is_written(world):
    """Neon holds an extension RDS cannot create and a policy naming a role RDS does not have (its Data API's):
    one refusal names both, with their fixes, and the lock table's too when it is also too small."""
    world.databases["neon"].needs = Needs("Neon", ("pg_session_jwt", "pgcrypto"),
                                          {"app": ["public.items own_rows"], "authenticated": ["public.items read"]})
    world.databases["rds"].lock_table = LockTable(1, 2)
    error = refused(world, "lock table holds 2", yes=True)
    assert "(1) RDS cannot create the extension(s) pg_session_jwt that Neon has" in str(error)
    assert ("(2) RDS has no role authenticated, which the row-level security policies of Neon name (public.items "
            "read): create it on RDS (CREATE ROLE authenticated NOLOGIN)") in str(error)
    out = io.StringIO()
    assert run(world, console=Console(out=out), dry_run=True).status == Status.DRY_RUN
    assert "A real run would stop here: refused: the restore replaces everything" in out.getvalue()
    assert "(2) RDS has no role authenticated" in out.getvalue()


class FakeCloudWatch:
    """CloudWatch's FreeStorageSpace of the target RDS: ``free`` bytes (None: no datapoint), and the requests."""

    def __init__(self, free: int | None):
        self.free, self.asked = free, []

    def get_metric_statistics(self, **request):
        self.asked.append(request)
        return {"Datapoints": [] if self.free is None else [{"Timestamp": utcnow(), "Minimum": float(self.free)}]}


def test_rds_without_room_for_the_replace_is_refused_with_the_other_problems_before_anything_is_written(world):
    """RDS's free storage (CloudWatch's FreeStorageSpace, one request) against Neon's data and its WAL: in the
    one refusal beside what else RDS lacks, and in the plan; with room, the sync goes on."""
    mb = 1024 * 1024
    world.databases["neon"].needs = Needs("Neon", ("pg_session_jwt", "pgcrypto"), {}, 300 * mb)
    cloudwatch = FakeCloudWatch(100 * mb)
    world.env.rds_instance = {"DBInstanceIdentifier": "app-dev-db", "AllocatedStorage": 20}
    world.env.clients = {"cloudwatch": cloudwatch}.__getitem__
    error = refused(world, "RDS lacks what the restore needs", yes=True)
    assert "(1) RDS cannot create the extension(s) pg_session_jwt that Neon has" in str(error)
    assert ("(2) RDS has 100 MB free (CloudWatch's FreeStorageSpace; 20 GiB allocated, no storage autoscaling), and "
            "the replace keeps what RDS holds beside Neon's data (300 MB) and its WAL until it commits: about 600 MB "
            "more") in str(error)
    assert error.details["storage"]["needed"] == 600 * mb
    (asked,) = cloudwatch.asked
    assert (asked["Namespace"], asked["MetricName"], asked["Dimensions"], asked["Statistics"]) == \
        ("AWS/RDS", "FreeStorageSpace", [{"Name": "DBInstanceIdentifier", "Value": "app-dev-db"}], ["Minimum"])
    out = io.StringIO()
    assert run(world, console=Console(out=out), dry_run=True).status == Status.DRY_RUN
    assert "A real run would stop here: refused: RDS lacks what the restore needs" in out.getvalue()
    assert "Storage" in out.getvalue() and "about 600 MB needed until COMMIT" in out.getvalue()
    world.databases["neon"].needs = Needs("Neon", ("pgcrypto",), {}, 300 * mb)
    cloudwatch.free = 2 * 1024 * mb
    report = run(world, yes=True)
    assert report.status == Status.OK and report.storage.free == 2 * 1024 * mb


def test_a_sync_into_neon_asks_nothing_of_rds_storage(world):
    cloudwatch = FakeCloudWatch(0)
    world.env.rds_instance = {"DBInstanceIdentifier": "app-dev-db", "AllocatedStorage": 20}
    world.env.clients = {"cloudwatch": cloudwatch}.__getitem__
    report = run(world, job=Sync(DIRECTIONS["rds-to-neon"]), yes=True)
    assert report.status == Status.OK and report.storage is None and not cloudwatch.asked


def test_an_rds_whose_instance_is_not_known_here_is_not_checked_and_the_plan_says_so(world):
    out = io.StringIO()
    report = run(world, console=Console(out=out), dry_run=True)
    assert report.storage.not_checked and "Storage" in out.getvalue() and "not checked: " in out.getvalue()


def test_a_restore_checks_what_its_dump_recorded_that_it_needs(world):
    world.databases["neon"].needs = Needs("Neon", ("pg_session_jwt",), {})
    world.databases["rds"].offers = Offers.of(["pg_session_jwt"], None, ["app"])
    key = run(world, yes=True).dump.url.split("/", 3)[3]
    assert world.store.manifest(key)["needs"] == {"extensions": ["pg_session_jwt"], "policy_roles": {}, "bytes": 0}
    world.databases["neon"].offers = Offers.of(["pgcrypto"], "pgcrypto", ["app"])
    world.events.clear()
    error = refused(world, "Neon cannot create the extension", job=RestoreDump(key, "neon"), yes=True)
    assert "that the dump has" in str(error)


def test_an_unchanged_target_points_at_its_last_dump_instead_of_dumping_it_again(world):
    world.record_sync("rds")
    report = run(world, yes=True)
    assert report.status == Status.OK and report.safety_copy.reused
    assert "dump rds" not in world.events


def test_the_reused_dump_must_still_be_in_the_bucket(world):
    world.record_sync("rds")
    world.store.objects.clear()  # expired by the bucket's lifecycle
    report = run(world, yes=True)
    assert not report.safety_copy.reused and "dump rds" in world.events


def test_a_failed_restore_leaves_the_target_and_keeps_the_dump_as_a_rollback_point(world):
    world.fail_restore = True
    rds_before = dict(world.databases["rds"].tables)
    with pytest.raises(DevopsError, match="restore into RDS failed"):
        run(world, yes=True)
    assert world.databases["rds"].tables == rds_before
    assert "manifest neon-dumps" in world.events  # the dump that ended, with its manifest
    dump = next(m for m in world.store.manifests.values() if m.get("key", "").startswith("neon-dumps/"))
    assert "restored" not in dump
    assert world.events[-1] == "unlock" and not world.store.locked


class Terminal(io.StringIO):
    """A person at a terminal who answers "yes"; ``meanwhile`` runs while they read the plan."""

    def __init__(self, meanwhile):
        super().__init__()
        self.meanwhile = meanwhile

    def isatty(self) -> bool:
        return True

    def readline(self, *_) -> str:
        self.meanwhile()
        return "yes\n"


def test_a_write_made_while_the_confirmation_waited_is_refused_after_a_second_look(world, monkeypatch):
    world.record_sync("rds")
    monkeypatch.setattr("sys.stdin", Terminal(lambda: world.databases["rds"].write("public.users", 9)))
    with pytest.raises(DevopsError) as refused:
        run(world)
    assert refused.value.details["status"] == "refused"
    assert world.events.count("read rds") == 2  # the plan's read, and the second look
    assert "dump rds" not in world.events and "commit rds" not in world.events
    assert world.databases["rds"].tables["public.users"] == 9


def test_no_write_while_the_confirmation_waited_costs_no_second_read(world, monkeypatch):
    world.record_sync("rds")
    monkeypatch.setattr("sys.stdin", Terminal(lambda: None))
    assert run(world).status == Status.OK
    assert world.events.count("read rds") == 1


def test_no_terminal_and_no_yes_refuses_before_anything_is_written(world, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    refused(world, "no terminal to ask on; pass --yes")


def test_a_restore_checks_the_dumps_checksum_first_and_records_what_the_target_holds(world):
    run(world, yes=True)  # a dump of Neon in the bucket
    key = next(k for k in world.store.objects if k.startswith("neon-dumps/"))
    world.databases["neon"].write("public.items", 1)
    world.events.clear()
    report = run(world, job=RestoreDump(key, "neon"), yes=True, force=True)
    assert report.status == Status.OK and world.databases["neon"].tables["public.items"] == 5
    assert world.events.index("dump neon") < world.events.index("commit neon")  # its safety copy first
    assert "restore record neon" in world.events
    assert world.store.latest_fingerprint("neon").key == key


def test_a_damaged_dump_is_refused_before_the_target_is_read(world):
    run(world, yes=True)
    key = next(k for k in world.store.objects if k.startswith("neon-dumps/"))
    world.store.objects[key] += b"!"
    world.events.clear()
    with pytest.raises(DevopsError, match="checksum mismatch"):
        run(world, job=RestoreDump(key, "rds"), yes=True)
    assert world.events == []


def test_a_plan_that_would_leave_the_target_empty_says_so_and_the_question_repeats_it(world, monkeypatch):
    world.databases["neon"].tables = {"public.items": 0, "public.users": 0}
    out = io.StringIO()
    report = run(world, console=Console(out=out), dry_run=True)
    assert report.target_state.rows == 5 and report.target_state.rows_after == 0
    assert report.warnings == ["RDS would be left empty: it holds 5 rows now, and what replaces them holds none"]
    assert "RDS rows:  5 now, 0 after the sync" in out.getvalue()
    assert "[WARN] RDS would be left empty" in out.getvalue()
    out = io.StringIO()
    monkeypatch.setattr("sys.stdin", Terminal(lambda: None))
    run(world, console=Console(out=out))
    question = out.getvalue().split("Type 'yes'")[0].rsplit("\n", 2)[-2]
    assert question.startswith("[WARN] This replaces everything in RDS") and "RDS would be left empty" in question


def test_a_plan_that_would_take_most_rows_away_says_so_and_an_ordinary_one_says_nothing(world):
    assert run(world, dry_run=True).warnings == []
    world.databases["neon"].tables = {"public.items": 1, "public.users": 1}
    world.databases["rds"].tables = {"public.items": 30, "public.users": 20}
    assert run(world, dry_run=True).warnings == ["RDS would lose most of its rows: 50 now, 2 after"]


def test_a_restore_of_a_dump_of_the_other_database_says_so(world):
    run(world, yes=True)
    key = next(k for k in world.store.objects if k.startswith("rds-dumps/"))  # RDS's safety copy
    report = run(world, job=RestoreDump(key, "neon"), dry_run=True)
    assert report.restored_dump.side == "rds"
    assert "this dump is of RDS, not of Neon: Neon would hold RDS's data as it was when dumped" in report.warnings
    assert not any("of RDS" in w for w in run(world, job=RestoreDump(key, "rds"), dry_run=True).warnings)


def test_the_text_plan_shows_the_fingerprint_that_expect_target_takes(world):
    out = io.StringIO()
    report = run(world, console=Console(out=out), dry_run=True)
    fingerprint = report.target_state.fingerprint
    assert f"Target fingerprint: {fingerprint} (--expect-target {fingerprint} runs only while" in out.getvalue()


def test_expect_target_takes_a_fingerprint_or_a_dry_run_report_and_refuses_anything_else(world, tmp_path):
    fingerprint = run(world, dry_run=True).target_state.fingerprint
    assert expected_fingerprint(fingerprint) == fingerprint and expected_fingerprint("") == ""
    report = tmp_path / "plan.json"
    report.write_text(json.dumps(run(world, dry_run=True).to_json()))
    assert Options.of({"expect_target": str(report)}).expect_target == fingerprint
    with pytest.raises(DevopsError, match=r"^--expect-target takes the plan's target fingerprint \(16 hex digits.*"
                                          r"'/nonexistent' is neither$"):
        Options.of({"expect_target": "/nonexistent"})
    report.write_text("{}")
    with pytest.raises(DevopsError, match="the file is not a plan's `--dry-run --json` report"):
        expected_fingerprint(str(report))


def test_the_dump_list_fits_80_columns_and_wide_shows_every_detail():
    listed = [Listed(f"{side}-dumps/2026-12-07T17-36-0{n}.dump", 1023 * 1024 * 1023, 86400 * 29,
                     f"postgresql://****:****@ep-quiet-{side}-123456.us-east-2.aws.neon.tech/neondb",
                     reason, {f"public.table_{i}": 12345 for i in range(8)}, "ab" * 32, committed)
              for n, (side, reason, committed) in enumerate([
                  ("neon", "sync neon-to-rds", True),
                  ("rds", "safety copy of RDS before neon-to-rds", False),
                  ("neon", "safety copy of Neon before restoring rds-dumps/2026-12-07T17-36-01.dump", True)])]
    out = io.StringIO()
    render.dumps(Console(out=out), DumpList("dev-dumps", listed))
    lines = out.getvalue().splitlines()
    assert max(len(line) for line in lines) <= 80, out.getvalue()
    assert any(line.split()[-2:] == ["safety", "copy"] for line in lines)
    assert any(line.split()[-3:] == ["safety", "copy", "*"] for line in lines) and "* did not commit" in out.getvalue()
    out = io.StringIO()
    render.dumps(Console(out=out), DumpList("dev-dumps", listed), wide=True)
    assert "safety copy of RDS before neon-to-rds (did not commit)" in out.getvalue() and "abababababab" in out.getvalue()


def test_what_depends_across_what_is_left_alone_is_refused_before_anything_is_written(world):
    world.databases["neon"].needs = Needs("Neon", on_left_alone=(
        "constraint f on table public.items -> table neon_auth.users",))
    world.databases["rds"].kept_objects = ["view neon_auth.v -> table public.items"]
    error = refused(world, "refused: the sync leaves alone schema neon_auth, and on Neon", yes=True,
                    exclude_schema="neon_auth")
    assert "on RDS, what the sync leaves alone depends on what it replaces" in str(error)
    planned = run(world, dry_run=True, exclude_schema="neon_auth")
    assert planned.left_alone == {"schemas": ["neon_auth"], "extensions": []}
