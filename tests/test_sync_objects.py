"""The full replace on databases as teams run them: every object kind, on the majors Neon and RDS run.

The sandbox's Neon stand-in runs PostgreSQL 18 and its RDS stand-in 15 (tests/conftest.py), so every sync
here crosses majors as it does on AWS with an older RDS: 18 -> 15 is a downgrade, 15 -> 18 an upgrade, all
through the same client tools (17 in the toolbox). The databases are compared with tests/dbtools.py, which
reads them independently of the engine.
"""

from __future__ import annotations

import json
import re
import tempfile

import pytest

from devops.postgres import make_endpoint
from devops.sync.database import Database
from devops.sync.processes import Processes
from devops.sync.restore import Restore, VerificationFailed
from tests import dbtools
from tests.helpers import assert_no_secret, inv


def major_of(url: str) -> int:
    return int(dbtools.scalar(url, "SELECT current_setting('server_version_num')::int")) // 10000


@pytest.fixture
def every_kind(databases):
    """Both sides hold every object kind with different contents, and RDS holds objects Neon has not."""
    databases(neon="every_kind_scale_3", rds="every_kind_scale_2_and_target_only")


def sync(env: dict, direction: str) -> dict:
    result = inv(env, f"sync.{direction}", "--yes", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    assert_no_secret(result, env)
    report = json.loads(result.stdout)
    assert report["status"] == "ok" and report["committed"] is True
    return report


def test_the_stand_ins_run_the_majors_of_the_real_services(sandbox, neon, rds):
    majors = sandbox.majors()
    assert str(major_of(neon)) == majors["neon"]
    assert str(major_of(rds)) == majors["rds"]
    state = sandbox.load_state()
    assert sandbox.environment()["TF_VAR_db_engine_version"] == majors["rds"] == state["rds_major"]


def test_the_stand_ins_run_the_limits_of_the_real_services(sandbox_settings, neon, rds):
    """A small Neon compute's and RDS's default class's connections, and their lock table's size."""
    for url, side in ((neon, "neon"), (rds, "rds")):
        assert int(dbtools.scalar(url, "SHOW max_connections")) == getattr(sandbox_settings,
                                                                         f"sandbox_{side}_max_connections")
        assert int(dbtools.scalar(url, "SHOW max_locks_per_transaction")) == getattr(
            sandbox_settings, f"sandbox_{side}_max_locks_per_transaction")
    assert (sandbox_settings.sandbox_neon_max_connections, sandbox_settings.sandbox_rds_max_connections) == (104, 87)


def test_every_object_kind_survives_two_syncs_each_way(sandbox_env, every_kind, neon, rds):
    source_before = dbtools.snapshot(neon)
    assert dbtools.snapshot(rds) != source_before
    for _ in range(2):  # the second time into a target holding the first sync's objects
        report = sync(sandbox_env, "neon-to-rds")
        assert dbtools.snapshot(rds) == dbtools.snapshot(neon) == source_before
    assert report["versions"]["source"].startswith(str(major_of(neon)))
    assert dbtools.scalar(rds, "SELECT to_regclass('only_here.things')") is None
    assert dbtools.scalar(rds, "SELECT count(*) FROM pg_proc WHERE proname = 'not_the_extensions'") == 0
    # Objects of the extensions were left alone, and still work.
    assert dbtools.scalar(rds, "SELECT 'A'::ext.citext OPERATOR(ext.=) 'a'::ext.citext") is True

    dbtools.execute(rds, "INSERT INTO app.orders (customer_id, total) VALUES (1, 77);"
                         "CREATE VIEW reporting.new_on_rds AS SELECT count(*) FROM app.orders;"
                         "REFRESH MATERIALIZED VIEW reporting.moods;"
                         "SELECT lo_from_bytea(0, 'written on rds');")
    changed = dbtools.snapshot(rds)
    for _ in range(2):
        sync(sandbox_env, "rds-to-neon")
        assert dbtools.snapshot(neon) == dbtools.snapshot(rds) == changed
    assert ["reporting", "new_on_rds", "v", False, False, None] in [list(r) for r in changed["relations"]]


def test_a_downgrade_is_named_in_the_plan(sandbox_env, every_kind, neon, rds):
    if major_of(neon) <= major_of(rds):
        pytest.skip("needs a Neon stand-in newer than RDS (the dev image runs 18 and 15: ./toolbox/inv test)")
    result = inv(sandbox_env, "sync.neon-to-rds", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert f"PostgreSQL {major_of(neon)} -> {major_of(rds)}: a downgrade" in result.stdout


def test_an_object_the_older_target_cannot_create_fails_the_sync_and_changes_nothing(sandbox_env, every_kind,
                                                                                      neon, rds):
    if major_of(neon) < 17 or major_of(rds) >= 17:
        pytest.skip("needs Neon on 17 or later and RDS older (the dev image runs 18 and 15: ./toolbox/inv test)")
    # random(min, max) is new in PostgreSQL 17.
    dbtools.execute(neon, "CREATE VIEW reporting.dice AS SELECT random(1, 6) AS roll;")
    before = dbtools.snapshot(rds)
    result = inv(sandbox_env, "sync.neon-to-rds", "--yes")
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and "Traceback" not in result.stdout + result.stderr, result.stderr
    line = errors[0]
    assert line.startswith("[ERROR] restore into RDS failed at VIEW reporting.dice (CREATE VIEW reporting.dice AS"), line
    assert "function random(integer, integer) does not exist" in line
    newer = major_of(neon)
    assert f"the data comes from PostgreSQL {newer} and RDS runs 15" in line and f'db_engine_version = "{newer}"' in line
    assert dbtools.snapshot(rds) == before


def test_restore_of_a_safety_copy_into_the_older_major(sandbox_env, every_kind, neon, rds):
    before = dbtools.snapshot(rds)
    report = sync(sandbox_env, "neon-to-rds")
    assert report["safety_copy"]["reused"] is False
    key = report["safety_copy"]["url"].split("/", 3)[3]
    result = inv(sandbox_env, "sync.restore", "--key", key, "--to", "rds", "--yes", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(result.stdout)["committed"] is True
    assert dbtools.snapshot(rds) == before


def test_a_restore_that_comes_out_different_is_rolled_back(sandbox, every_kind, neon, rds):
    """The verification inside the restore's transaction: told to expect other rows than the archive
    holds, the restore raises and the target keeps what it had."""
    before = dbtools.snapshot(rds)
    state = sandbox.load_state()
    server = state["rds"]
    target = make_endpoint("RDS", "127.0.0.1", server["port"], server["user"], server["password"], server["database"],
                           ca_file=state["ca"])
    processes = Processes()
    try:
        dump = processes.start("pg_dump", ["pg_dump", "--format=custom", "--no-owner", "--no-acl"],
                               endpoint=make_endpoint("Neon", "127.0.0.1", state["neon"]["port"], state["neon"]["user"],
                                                      state["neon"]["password"], state["neon"]["database"],
                                                      ca_file=state["ca"]))
        with tempfile.TemporaryDirectory() as workdir:
            restore = Restore(Database("rds", target), processes, workdir)
            for chunk in iter(lambda: dump.stdout.read(65536), b""):
                restore.write(chunk)
            assert dump.wait() == 0
            with pytest.raises(VerificationFailed) as failed:
                restore.commit({"tables": {"app.customers": {"rows": 1, "checksum": "0"}}, "sequences": {}})
    finally:
        processes.close()
    assert failed.value.found["tables"]["app.customers"]["rows"] == 120  # what the restore held, then rolled back
    assert "was left as it was" in str(failed.value)
    assert dbtools.snapshot(rds) == before


def test_clearing_a_target_the_login_cannot_clear_is_one_line(sandbox, every_kind, sandbox_env, rds):
    """An object of another role in the target: the prelude's drop fails, the sync names it, nothing changes."""
    state = sandbox.load_state()
    conn = sandbox.server("rds", state).connect(as_superuser=True, database=state["rds"]["database"])
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("CREATE ROLE someone_else; CREATE SCHEMA theirs AUTHORIZATION someone_else")
    conn.close()
    try:
        before = dbtools.snapshot(rds)
        result = inv(sandbox_env, "sync.neon-to-rds", "--yes")
        assert result.returncode == 1
        assert "[ERROR] clearing RDS before the restore failed: must be owner of schema theirs (objects the login " \
               "role may not drop); the restore was rolled back" in result.stderr
        assert dbtools.snapshot(rds) == before
        assert "Verifying" not in result.stdout  # the restore never reached the verification
        # Its safety copy is listed as a dump of a sync that did not commit.
        dumps = json.loads(inv(sandbox_env, "sync.list", "--json").stdout)["dumps"]
        safety = next(d for d in dumps if d["reason"] == "safety copy of RDS before neon-to-rds")
        assert safety["committed"] is False
        assert "safety copy of RDS before neon-to-rds (did not commit)" in inv(sandbox_env, "sync.list", "--wide").stdout
        assert re.search(r"rds-dumps/\S+ +\S+ \S+ +\S+ +safety copy \*", inv(sandbox_env, "sync.list").stdout)
    finally:
        conn = sandbox.server("rds", state).connect(as_superuser=True, database=state["rds"]["database"])
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("DROP SCHEMA theirs; DROP ROLE someone_else")
        conn.close()
