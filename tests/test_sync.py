"""The sync engine against the sandbox's real servers: both directions, dry run, restore, list, lock.

Every test starts from data it loads itself, runs the real task (`python -m invoke sync.*`), and checks
the databases with tests/dbtools.py, which reads them independently of the engine.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from devops.errors import DevopsError
from devops.postgres import parse_url
from devops.sync.database import Database
from tests import dbtools
from tests.helpers import assert_no_secret, inv, on_a_terminal, s3_state


@pytest.fixture
def fresh(databases):
    """Neon holds the rich dataset; RDS holds something else (including a table only it has); no sync has
    been recorded (the databases were written directly, so earlier tests' records no longer apply)."""
    databases(neon="rich", rds="settings_and_rds_only")


def test_neon_to_rds_copies_every_table_exactly(sandbox, sandbox_env, sandbox_settings, fresh, neon, rds):
    result = inv(sandbox_env, "sync.neon-to-rds", "--yes", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["status"] == "ok"
    assert dbtools.snapshot(rds) == dbtools.snapshot(neon)
    assert dbtools.scalar(rds, "SELECT to_regclass('public.rds_only')") is None  # full replace
    assert dbtools.scalar(rds, "SELECT obj_description('app.customers'::regclass)") == "people who buy things"
    assert report["left_out"] == ["COMMENT ON EXTENSION pgcrypto"]
    assert {row["table"] for row in report["tables"]} == {"app.customers", "app.orders", "public.settings"}
    assert all(row["match"] for row in report["tables"])
    bucket = sandbox_settings.bucket_name
    keys = s3_state(sandbox, bucket)["objects"]
    dump_key = report["dump"]["url"].split(f"{bucket}/", 1)[1]
    safety_key = report["safety_copy"]["url"].split(f"{bucket}/", 1)[1]
    assert dump_key.startswith("neon-dumps/") and safety_key.startswith("rds-dumps/")
    assert {dump_key, safety_key, dump_key.replace(".dump", ".manifest.json")} <= set(keys)
    assert not s3_state(sandbox, bucket)["uploads"]
    assert "locks/sync.lock" not in keys
    assert_no_secret(result, sandbox_env)


def test_rds_to_neon_brings_changes_back(sandbox_env, fresh, neon, rds):
    assert inv(sandbox_env, "sync.neon-to-rds", "--yes").returncode == 0
    dbtools.execute(rds, "UPDATE app.customers SET name = 'changed on rds' WHERE id = 1;"
                         "INSERT INTO app.orders (customer_id, total) VALUES (2, 999);"
                         "CREATE TABLE public.new_on_rds AS SELECT 1 AS x;")
    result = inv(sandbox_env, "sync.rds-to-neon", "--yes")
    assert result.returncode == 0, result.stderr
    assert "SYNC COMPLETE" in result.stdout and "sync successful" in result.stdout
    # Writes only on the source: the guard lets the sync through.
    assert "[PASS] Divergence check: Neon is unchanged since" in result.stdout
    assert dbtools.snapshot(neon) == dbtools.snapshot(rds)
    assert dbtools.scalar(neon, "SELECT name FROM app.customers WHERE id = 1") == "changed on rds"
    # Sequences follow the data: the next order id continues after the one inserted on RDS.
    assert dbtools.scalar(neon, "SELECT last_value FROM app.orders_id_seq") == 1001


def test_dry_run_changes_nothing_anywhere(sandbox, sandbox_env, sandbox_settings, fresh, neon, rds):
    before = (dbtools.snapshot(neon), dbtools.snapshot(rds), s3_state(sandbox, sandbox_settings.bucket_name))
    for task in ("sync.neon-to-rds", "sync.rds-to-neon"):
        result = inv(sandbox_env, task, "--dry-run")
        assert result.returncode == 0, result.stderr
        assert "SYNC PLAN" in result.stdout and "Dry run complete" in result.stdout
        assert "app.customers" in result.stdout and "300" in result.stdout  # the per-table counts
    result = inv(sandbox_env, "sync.neon-to-rds", "--dry-run", "--json")
    plan = json.loads(result.stdout)
    assert plan["status"] == "dry-run" and plan["plan"]["app.customers"] == {"source_rows": 300, "target_rows": None}
    after = (dbtools.snapshot(neon), dbtools.snapshot(rds), s3_state(sandbox, sandbox_settings.bucket_name))
    assert after == before


def test_restore_of_the_safety_copy_brings_the_old_target_back(sandbox_env, fresh, rds):
    old_rds = dbtools.snapshot(rds)
    report = json.loads(inv(sandbox_env, "sync.neon-to-rds", "--yes", "--json").stdout)
    assert dbtools.snapshot(rds) != old_rds
    safety_key = report["safety_copy"]["url"].split("/", 3)[3]
    result = inv(sandbox_env, "sync.restore", "--key", safety_key, "--to", "rds", "--yes")
    assert result.returncode == 0, result.stderr
    assert "Checksum matches" in result.stdout and "restore successful" in result.stdout
    assert dbtools.snapshot(rds) == old_rds


def test_list_shows_the_dumps_newest_first(sandbox_env, fresh):
    assert inv(sandbox_env, "sync.neon-to-rds", "--yes").returncode == 0
    result = inv(sandbox_env, "sync.list", "--json")
    assert result.returncode == 0, result.stderr
    dumps = json.loads(result.stdout)["dumps"]
    assert dumps and [d["age_seconds"] for d in dumps] == sorted(d["age_seconds"] for d in dumps)
    newest_sync = next(d for d in dumps if d["reason"] == "sync neon-to-rds")
    assert newest_sync["tables"]["app.customers"] == 300 and newest_sync["committed"] is True
    assert len(newest_sync["sha256"]) == 64 and newest_sync["source"].startswith("postgresql://****@")
    table = inv(sandbox_env, "sync.list")
    assert "neon-dumps/" in table.stdout and "rds-dumps/" in table.stdout


def test_outputs_read_last_time_that_no_longer_hold_are_not_used(sandbox_env, fresh, neon, rds):
    """The preflight starts RDS and the bucket from the outputs read last time; cached at an older state (an
    RDS instance and a secret that are gone), they give way to the state's, and the sync goes through."""
    assert inv(sandbox_env, "sync.list").returncode == 0  # the cache is written
    cache = Path(sandbox_env["TF_DATA_DIR"]) / "devops-outputs.json"
    entry = json.loads(cache.read_text())
    stale = {**entry["outputs"], "db_instance_identifier": "gone-db", "db_backups_bucket_name": "gone-bucket",
             "database_secret_arn": entry["outputs"]["database_secret_arn"] + "-gone"}
    cache.write_text(json.dumps({**entry, "etag": '"an-older-state"', "outputs": stale}))
    result = inv(sandbox_env, "sync.neon-to-rds", "--yes", "--json")
    assert result.returncode == 0, result.stderr
    assert dbtools.snapshot(rds) == dbtools.snapshot(neon)
    assert "gone" not in result.stdout + result.stderr
    assert json.loads(cache.read_text())["outputs"] == entry["outputs"]


def test_without_a_terminal_it_refuses_to_overwrite_unless_yes(sandbox_env, fresh, rds):
    before = dbtools.snapshot(rds)
    result = inv(sandbox_env, "sync.neon-to-rds")
    assert result.returncode == 1
    assert "no terminal to ask on; pass --yes" in result.stderr and "Traceback" not in result.stderr
    assert dbtools.snapshot(rds) == before


def test_restore_refuses_a_dump_whose_checksum_does_not_match(sandbox, sandbox_env, sandbox_settings, fresh, rds):
    report = json.loads(inv(sandbox_env, "sync.neon-to-rds", "--yes", "--json").stdout)
    key = report["dump"]["url"].split("/", 3)[3]
    s3 = sandbox.client("s3")
    body = s3.get_object(Bucket=sandbox_settings.bucket_name, Key=key)["Body"].read()
    s3.put_object(Bucket=sandbox_settings.bucket_name, Key=key, Body=body[:-10] + b"0123456789")
    dbtools.execute(rds, "CREATE TABLE marker (x int)")
    before = (dbtools.snapshot(rds), s3_state(sandbox, sandbox_settings.bucket_name))
    result = inv(sandbox_env, "sync.restore", "--key", key, "--to", "rds", "--yes")
    assert result.returncode == 1
    assert "checksum mismatch" in result.stderr and "nothing was changed" in result.stderr
    assert (dbtools.snapshot(rds), s3_state(sandbox, sandbox_settings.bucket_name)) == before


def test_restore_of_an_unknown_key_is_one_clear_line(sandbox_env):
    result = inv(sandbox_env, "sync.restore", "--key", "rds-dumps/1999-01-01T00-00-00.dump", "--to", "rds", "--yes")
    assert result.returncode == 1
    assert "no manifest for" in result.stderr and "inv sync.list" in result.stderr


def test_a_held_lock_stops_a_second_sync_and_a_stale_one_needs_break_lock(sandbox, sandbox_env, sandbox_settings,
                                                                          fresh, rds):
    s3 = sandbox.client("s3")
    bucket = sandbox_settings.bucket_name
    before = dbtools.snapshot(rds)
    live = {"host": "other-laptop", "pid": 4242, "purpose": "sync rds-to-neon",
            "started": __import__("devops.sync.store", fromlist=["utcnow"]).utcnow().isoformat()}
    s3.put_object(Bucket=bucket, Key="locks/sync.lock", Body=json.dumps(live).encode())
    result = inv(sandbox_env, "sync.neon-to-rds", "--yes")
    assert result.returncode == 1 and "another sync is running: sync rds-to-neon on other-laptop" in result.stderr
    stale = {**live, "started": "2026-01-01T00:00:00+00:00"}
    s3.put_object(Bucket=bucket, Key="locks/sync.lock", Body=json.dumps(stale).encode())
    result = inv(sandbox_env, "sync.neon-to-rds", "--yes")
    assert result.returncode == 1 and "stale sync lock" in result.stderr and "--break-lock" in result.stderr
    assert dbtools.snapshot(rds) == before
    result = inv(sandbox_env, "sync.neon-to-rds", "--yes", "--break-lock")
    assert result.returncode == 0, result.stderr
    assert "Removed the sync lock of sync rds-to-neon on other-laptop" in result.stdout
    assert "locks/sync.lock" not in s3_state(sandbox, bucket)["objects"]


def test_safety_copy_points_at_an_existing_dump_only_when_the_target_is_unchanged(sandbox_env, fresh, neon, rds):
    first = json.loads(inv(sandbox_env, "sync.neon-to-rds", "--yes", "--json").stdout)
    assert first["safety_copy"]["reused"] is False
    # RDS now holds exactly the dump just made: the next sync's safety copy is that dump, not a new one.
    second = json.loads(inv(sandbox_env, "sync.neon-to-rds", "--yes", "--json").stdout)
    assert second["safety_copy"] == {**first["dump"], "reused": True}
    # Any change on the target, data or schema, means a real safety copy again.
    for change in ("UPDATE app.orders SET note = 'edited' WHERE id = 7", "CREATE INDEX extra_idx ON public.settings (value)"):
        dbtools.execute(rds, change)
        changed = dbtools.snapshot(rds)
        # A change on the target is a divergence: overwriting it is what this test means, hence --force.
        report = json.loads(inv(sandbox_env, "sync.neon-to-rds", "--yes", "--json", "--force").stdout)
        assert report["divergence"]["verdict"] == "forced"
        assert report["safety_copy"]["reused"] is False
        key = report["safety_copy"]["url"].split("/", 3)[3]
        assert inv(sandbox_env, "sync.restore", "--key", key, "--to", "rds", "--yes").returncode == 0
        assert dbtools.snapshot(rds) == changed
        if "INDEX" in change:
            assert dbtools.scalar(rds, "SELECT to_regclass('public.extra_idx')") is not None
        # The restore recorded what it put back: RDS is unchanged since, and the next sync goes through.
        assert inv(sandbox_env, "sync.neon-to-rds", "--yes").returncode == 0


def test_a_table_mostly_in_toast_checksums_alike_with_parallel_workers_and_without(sandbox_env, fresh, neon, rds):
    """16 MB of bytea in a small heap: the guard's read and the verification let the server's parallel
    workers share it (postgres.PARALLEL_ON), the source's read beside the dump does not. The sums must
    agree: else the verification would roll the sync back, and the next guard would see a divergence."""
    dbtools.execute(neon, "CREATE TABLE public.files (id int PRIMARY KEY, content bytea);"
                          "INSERT INTO public.files SELECT g, " + " || ".join(["gen_random_bytes(1024)"] * 8)
                          + " FROM generate_series(1, 2048) g;")
    assert dbtools.scalar(neon, "SELECT pg_table_size('public.files') >= 8 * 1024 * 1024")
    first = json.loads(inv(sandbox_env, "sync.neon-to-rds", "--yes", "--json").stdout)
    assert first["status"] == "ok" and all(row["match"] for row in first["tables"])
    second = json.loads(inv(sandbox_env, "sync.neon-to-rds", "--yes", "--json").stdout)
    assert second["divergence"]["verdict"] == "unchanged" and second["safety_copy"]["reused"] is True
    assert dbtools.snapshot(rds) == dbtools.snapshot(neon)


# --------------------------------------------------------------------------------------------------
# The divergence guard


LIVE_WRITE = "INSERT INTO app.orders (customer_id, total, note) VALUES (3, 42, 'written on the live site')"


def test_a_write_on_neon_stops_the_sync_back_before_anything_changes(sandbox, sandbox_env, sandbox_settings,
                                                                     fresh, neon, rds):
    assert inv(sandbox_env, "sync.neon-to-rds", "--yes").returncode == 0
    dbtools.execute(neon, LIVE_WRITE)
    before = (dbtools.snapshot(neon), dbtools.snapshot(rds), s3_state(sandbox, sandbox_settings.bucket_name))
    plan = json.loads(inv(sandbox_env, "sync.rds-to-neon", "--dry-run", "--json").stdout)
    assert plan["status"] == "dry-run" and plan["divergence"]["verdict"] == "diverged"
    assert plan["divergence"]["changed_tables"] == ["app.orders"]
    assert plan["divergence"]["changes"][0] == {"table": "app.orders", "kind": "changed", "recorded_rows": 1000,
                                                "rows": 1001, "rows_added": 1, "rows_removed": 0,
                                                "content_changed": True}
    result = inv(sandbox_env, "sync.rds-to-neon", "--yes")
    assert result.returncode == 1
    assert "Divergence check: Neon was written to since" in result.stdout and "These writes would be lost" in result.stdout
    assert "app.orders" in result.stdout and "1 row(s) added" in result.stdout
    assert "inv sync.neon-to-rds" in result.stdout and "inv sync.rds-to-neon --force" in result.stdout
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("[ERROR] refused: Neon was written to"), result.stderr
    assert "app.orders" in errors[0] and "nothing was changed" in errors[0] and "Traceback" not in result.stderr
    # Nothing changed on either side, and nothing was written to the bucket (not even the lock).
    after = (dbtools.snapshot(neon), dbtools.snapshot(rds), s3_state(sandbox, sandbox_settings.bucket_name))
    assert after == before
    refused = json.loads(inv(sandbox_env, "sync.rds-to-neon", "--yes", "--json").stdout)
    assert refused["status"] == "refused" and refused["divergence"]["changed_tables"] == ["app.orders"]
    assert_no_secret(result, sandbox_env)


def test_force_overwrites_and_the_safety_copy_keeps_the_write(sandbox_env, fresh, neon, rds):
    assert inv(sandbox_env, "sync.neon-to-rds", "--yes").returncode == 0
    dbtools.execute(neon, LIVE_WRITE)
    with_write = dbtools.snapshot(neon)
    result = inv(sandbox_env, "sync.rds-to-neon", "--yes", "--force", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["status"] == "ok" and report["divergence"]["verdict"] == "forced"
    assert report["safety_copy"]["reused"] is False
    assert "--force: overwriting Neon anyway" in result.stderr
    assert dbtools.snapshot(neon) == dbtools.snapshot(rds)
    key = report["safety_copy"]["url"].split("/", 3)[3]
    assert inv(sandbox_env, "sync.restore", "--key", key, "--to", "neon", "--yes").returncode == 0
    assert dbtools.snapshot(neon) == with_write
    assert dbtools.scalar(neon, "SELECT count(*) FROM app.orders WHERE note = 'written on the live site'") == 1
    # The restore recorded what it put back: the rollback is not taken for a foreign write.
    plan = json.loads(inv(sandbox_env, "sync.rds-to-neon", "--dry-run", "--json").stdout)
    assert plan["divergence"]["verdict"] == "unchanged"


@pytest.mark.parametrize("change, named", [
    ("CREATE TABLE public.added_on_neon (id int)", "public.added_on_neon"),
    ("ALTER TABLE app.customers DROP COLUMN tags", "app.customers"),
])
def test_a_schema_change_on_the_target_is_a_divergence(sandbox_env, fresh, neon, rds, change, named):
    assert inv(sandbox_env, "sync.neon-to-rds", "--yes").returncode == 0
    dbtools.execute(neon, change)
    before = (dbtools.snapshot(neon), dbtools.snapshot(rds))
    result = inv(sandbox_env, "sync.rds-to-neon", "--yes", "--json")
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["status"] == "refused" and report["divergence"]["changed_tables"] == [named]
    assert "(schema)" in [c["table"] for c in report["divergence"]["changes"]]
    assert (dbtools.snapshot(neon), dbtools.snapshot(rds)) == before


def test_a_person_who_answers_after_neon_closed_the_idle_connection_gets_a_complete_sync(sandbox_env, fresh,
                                                                                          neon, rds):
    """Neon closes connections idle past its suspend timeout (the stand-in: idle_session_timeout, here 1 s for
    the application's role); the sync's connection to it sat idle during the question, and is opened again."""
    dbtools.execute(neon, "ALTER ROLE CURRENT_USER SET idle_session_timeout = '1s'")
    try:
        code, output = on_a_terminal(sandbox_env, "sync.neon-to-rds", before_answer=lambda: time.sleep(3))
    finally:
        dbtools.execute(neon, "ALTER ROLE CURRENT_USER RESET idle_session_timeout")
    assert code == 0, output
    assert "SYNC COMPLETE" in output
    assert dbtools.snapshot(rds) == dbtools.snapshot(neon)


def close_idle_connections(url: str) -> None:
    """What Neon does when its compute suspends: the role's other connections closed (their goodbye sent)."""
    dbtools.execute(url, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                         "WHERE usename = current_user AND pid <> pg_backend_pid()")
    time.sleep(0.3)  # the goodbye on its way


def test_a_connection_the_server_closed_is_opened_again_only_to_the_same_database(sandbox_env, fresh, neon):
    """The connection the sync keeps is checked before each use, with no round trip: one the server closed is
    opened again, and must lead to the database read first; elsewhere, nothing is written."""
    database = Database("neon", parse_url(sandbox_env["NEON_DATABASE_URL"], "Neon", "NEON_DATABASE_URL",
                                          ca_file=sandbox_env["INVOKE_DEVOPS_NEON_CA_FILE"])[0])
    try:
        database.read_server()
        close_idle_connections(neon)  # as a suspending compute does
        assert database.counts()[0]  # read through a connection opened again
        database.identity["database"] = "another"  # a branch re-created under the same address, say
        close_idle_connections(neon)
        with pytest.raises(DevopsError, match=r"^Neon closed the connection and, opened again, leads to another "
                                              r"database than the plan read \(neondb, system \d+\): nothing was "
                                              r"written; run the task again$"):
            database.counts()
    finally:
        database.close()


def test_a_policy_naming_a_role_only_neon_has_is_refused_in_the_plan_before_anything_is_written(
        sandbox, sandbox_env, sandbox_settings, fresh, neon, rds):
    """Neon's Data API roles (the stand-in has them, RDS does not) named by a row-level security policy: the
    plan says a real run would stop, the run refuses with nothing written; with the role on RDS, it syncs."""
    dbtools.execute(neon, "ALTER TABLE app.customers ENABLE ROW LEVEL SECURITY; "
                          "CREATE POLICY customers_read ON app.customers FOR SELECT TO authenticated USING (true)")
    bucket = sandbox_settings.bucket_name
    before, objects = dbtools.snapshot(rds), s3_state(sandbox, bucket)["objects"]
    try:
        planned = inv(sandbox_env, "sync.neon-to-rds", "--dry-run")
        assert planned.returncode == 0 and "A real run would stop here: refused: RDS lacks what the restore " \
                                          "needs" in planned.stdout + planned.stderr, planned.stdout
        result = inv(sandbox_env, "sync.neon-to-rds", "--yes")
        assert result.returncode == 1
        assert ("RDS has no role authenticated, which the row-level security policies of Neon name (app.customers "
                "customers_read): create it on RDS (CREATE ROLE authenticated NOLOGIN)") in result.stderr
        assert dbtools.snapshot(rds) == before and s3_state(sandbox, bucket)["objects"] == objects
        dbtools.execute(rds, "CREATE ROLE authenticated NOLOGIN")
        synced = inv(sandbox_env, "sync.neon-to-rds", "--yes")
        assert synced.returncode == 0, synced.stderr
        assert dbtools.scalar(rds, "SELECT count(*) FROM pg_policy WHERE polname = 'customers_read'") == 1
    finally:
        dbtools.execute(neon, "DROP POLICY IF EXISTS customers_read ON app.customers; "
                              "ALTER TABLE app.customers DISABLE ROW LEVEL SECURITY")
        dbtools.execute(rds, "DROP POLICY IF EXISTS customers_read ON app.customers")
        dbtools.execute(rds, "DROP ROLE IF EXISTS authenticated")


def neon_setting(sandbox, name: str, value: str | None) -> None:
    """A server setting of the Neon stand-in, as the service would set it (None: back to its file's)."""
    conn = sandbox.server("neon").connect(as_superuser=True, database="neondb")
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(f"ALTER SYSTEM SET {name} = '{value}'" if value is not None else f"ALTER SYSTEM RESET {name}")
            cur.execute("SELECT pg_reload_conf()")
    finally:
        conn.close()


def test_a_neon_project_too_small_for_the_replace_is_refused_in_the_plan(sandbox, sandbox_env, fresh, neon, rds):
    """Until COMMIT the replace keeps Neon's data beside RDS's: a project limit (neon.max_cluster_size) that
    cannot hold both is refused before anything is written, and the plan says so."""
    before = dbtools.snapshot(neon)
    neon_setting(sandbox, "neon.max_cluster_size", "1MB")
    try:
        time.sleep(0.3)  # the reload reaches new connections
        planned = inv(sandbox_env, "sync.rds-to-neon", "--dry-run")
        assert planned.returncode == 0, planned.stderr
        assert "A real run would stop here: refused: Neon lacks what the restore needs" in planned.stdout
        result = inv(sandbox_env, "sync.rds-to-neon", "--yes")
        assert result.returncode == 1
        assert "Neon's project is limited to 1 MB (neon.max_cluster_size, its plan's)" in result.stderr
        assert dbtools.snapshot(neon) == before
    finally:
        neon_setting(sandbox, "neon.max_cluster_size", None)


def test_an_rds_without_room_for_the_replace_is_refused_in_the_plan_with_the_other_problems(
        sandbox, sandbox_env, sandbox_settings, fresh, neon, rds):
    """RDS's free storage as the emulator's CloudWatch reports it (FreeStorageSpace: the stand-in's storage less
    its data folder), with no room for Neon's data and its WAL: one refusal names it beside a role RDS lacks, and
    nothing is written (RDS's content, the bucket: no dump, no lock); the dry run says a real run would stop.
    With the instance's 20 GiB, the sync goes on and its report says what it found."""
    dbtools.execute(neon, "ALTER TABLE app.customers ENABLE ROW LEVEL SECURITY; "
                          "CREATE POLICY customers_read ON app.customers FOR SELECT TO authenticated USING (true)")
    bucket = sandbox_settings.bucket_name
    before, objects = dbtools.snapshot(rds), s3_state(sandbox, bucket)["objects"]
    sandbox.set_rds_storage(1)  # less than the stand-in's data folder already takes: nothing free
    try:
        planned = inv(sandbox_env, "sync.neon-to-rds", "--dry-run")
        assert planned.returncode == 0, planned.stderr
        assert "A real run would stop here: refused: RDS lacks what the restore needs" in planned.stdout
        assert "0 MB free on RDS (CloudWatch's FreeStorageSpace; 20 GiB allocated, no storage autoscaling)" in \
            planned.stdout
        result = inv(sandbox_env, "sync.neon-to-rds", "--yes")
        assert result.returncode == 1
        (line,) = [line for line in result.stderr.splitlines() if line.strip()]
        assert line.startswith("[ERROR] refused: RDS lacks what the restore needs; nothing was changed. (1) RDS has "
                               "no role authenticated"), line
        assert ("(2) RDS has 0 MB free (CloudWatch's FreeStorageSpace; 20 GiB allocated, no storage autoscaling), "
                "and the replace keeps what RDS holds beside Neon's data") in line
        assert "raise db_allocated_storage, or turn on storage autoscaling with db_max_allocated_storage" in line
        after = s3_state(sandbox, bucket)
        assert dbtools.snapshot(rds) == before and after["objects"] == objects and not after["uploads"]
        assert "locks/sync.lock" not in after["objects"]
    finally:
        sandbox.set_rds_storage(0)
        dbtools.execute(neon, "DROP POLICY IF EXISTS customers_read ON app.customers; "
                              "ALTER TABLE app.customers DISABLE ROW LEVEL SECURITY")
    synced = inv(sandbox_env, "sync.neon-to-rds", "--yes", "--json")
    assert synced.returncode == 0, synced.stderr
    storage = json.loads(synced.stdout)["storage"]
    assert storage["measured"] == "CloudWatch's FreeStorageSpace" and storage["allocated_gib"] == 20
    assert 0 < storage["needed"] < storage["free"] < 20 * 1024 ** 3
    assert dbtools.snapshot(rds) == dbtools.snapshot(neon)


def test_an_extension_only_neon_has_is_refused_in_the_plan_before_anything_is_written(sandbox, sandbox_env,
                                                                                       sandbox_settings, fresh, neon,
                                                                                       rds):
    """pg_session_jwt (the Neon stand-in's, as Neon's Data API has it; RDS has no such extension) created on Neon:
    the plan says a real run would stop, the run refuses with nothing written."""
    if int(dbtools.scalar(neon, "SHOW server_version_num")) < 180000:
        pytest.skip("the Neon stand-in has Neon's own extensions from PostgreSQL 18 on (extension_control_path)")
    dbtools.execute(neon, "CREATE EXTENSION pg_session_jwt")
    bucket = sandbox_settings.bucket_name
    before, objects = dbtools.snapshot(rds), s3_state(sandbox, bucket)["objects"]
    try:
        planned = inv(sandbox_env, "sync.neon-to-rds", "--dry-run")
        assert "A real run would stop here: refused: RDS lacks what the restore needs" in planned.stdout, \
            planned.stdout + planned.stderr
        result = inv(sandbox_env, "sync.neon-to-rds", "--yes")
        assert result.returncode == 1
        assert "RDS cannot create the extension(s) pg_session_jwt that Neon has" in result.stderr
        assert dbtools.snapshot(rds) == before and s3_state(sandbox, bucket)["objects"] == objects
    finally:
        dbtools.execute(neon, "DROP EXTENSION IF EXISTS pg_session_jwt")
