"""Leaving parts alone (devops/sync/scope.py) against the sandbox's real servers: a schema that Neon's own service
writes (Neon Auth's neon_auth) and an extension only Neon has (pg_session_jwt, the Neon stand-in's), synced
around both ways, restored from a dump that left them out, and what depends across that boundary refused in
the plan with nothing written."""

from __future__ import annotations

import json
import re

import pytest

from tests import dbtools
from tests.helpers import inv, redirect, s3_state

# What Neon Auth keeps: its users, written by Neon on every sign-in.
NEON_AUTH = """
CREATE SCHEMA neon_auth;
CREATE TABLE neon_auth.users_sync (id text PRIMARY KEY, name text, signed_in_at timestamptz DEFAULT now());
INSERT INTO neon_auth.users_sync (id, name) VALUES ('u1', 'Ada'), ('u2', 'Grace');
"""
LEAVE_ALONE = ("--exclude-schema", "neon_auth", "--exclude-extension", "pg_session_jwt")


def tables_outside(snapshot: dict, schema: str) -> dict:
    return {name: table for name, table in snapshot["tables"].items() if not name.startswith(f"{schema}.")}


@pytest.fixture
def neon_with_its_own(databases, neon, rds):
    """Neon holds the rich dataset and Neon Auth's schema (and, on 18, pg_session_jwt); RDS something else."""
    databases(neon="rich", rds="settings_and_rds_only")
    dbtools.execute(neon, NEON_AUTH)
    if int(dbtools.scalar(neon, "SHOW server_version_num")) >= 180000:
        dbtools.execute(neon, "CREATE EXTENSION pg_session_jwt")
    yield
    dbtools.execute(neon, "DROP SCHEMA IF EXISTS neon_auth CASCADE; DROP EXTENSION IF EXISTS pg_session_jwt")


def test_what_is_left_alone_stays_where_it_is_both_ways(sandbox, sandbox_env, sandbox_settings, neon_with_its_own,
                                                        neon, rds):
    # Neon -> RDS, leaving Neon's own alone: RDS gets everything else, exactly, and no neon_auth.
    result = inv(sandbox_env, "sync.neon-to-rds", *LEAVE_ALONE, "--yes", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["left_alone"] == {"schemas": ["neon_auth"], "extensions": ["pg_session_jwt"]}
    assert re.search(r"Left alone: +schema neon_auth, extension pg_session_jwt", result.stderr), result.stderr
    assert tables_outside(dbtools.snapshot(rds), "neon_auth") == tables_outside(dbtools.snapshot(neon), "neon_auth")
    assert dbtools.scalar(rds, "SELECT to_regnamespace('neon_auth')") is None
    assert dbtools.scalar(rds, "SELECT count(*) FROM pg_extension WHERE extname = 'pg_session_jwt'") == 0
    key = report["dump"]["url"].split(f"{sandbox_settings.bucket_name}/", 1)[1]
    manifest = json.loads(sandbox.client("s3").get_object(Bucket=sandbox_settings.bucket_name,
                                                          Key=key.replace(".dump", ".manifest.json"))["Body"].read())
    assert manifest["left_alone"] == {"schemas": ["neon_auth"], "extensions": ["pg_session_jwt"]}

    # A sign-in on Neon while dev is active, and a change on RDS: with the settings leaving neon_auth alone,
    # the guard sees no write on Neon, and RDS -> Neon replaces everything but Neon Auth's users.
    dbtools.execute(neon, "INSERT INTO neon_auth.users_sync (id, name) VALUES ('u3', 'Barbara')")
    dbtools.execute(rds, "UPDATE app.customers SET name = 'changed on rds' WHERE id = 1")
    # Without leaving it alone, this run would replace Neon Auth's users, never synced anywhere: refused.
    before = dbtools.snapshot(neon)
    replacing = inv(sandbox_env, "sync.rds-to-neon", "--yes")
    assert replacing.returncode == 1 and "Every write is in neon_auth, which Neon Auth writes itself: to sync " \
        "around it, leave it alone (--exclude-schema neon_auth" in replacing.stderr, replacing.stdout + replacing.stderr
    assert dbtools.snapshot(neon) == before
    settings = {**sandbox_env, "INVOKE_DEVOPS_EXCLUDE_SCHEMAS": "neon_auth",
                "INVOKE_DEVOPS_EXCLUDE_EXTENSIONS": "pg_session_jwt"}
    back = inv(settings, "sync.rds-to-neon", "--yes")
    assert back.returncode == 0, back.stdout + back.stderr
    assert "[PASS] Divergence check: Neon is unchanged since" in back.stdout
    assert dbtools.scalar(neon, "SELECT string_agg(id, ',' ORDER BY id) FROM neon_auth.users_sync") == "u1,u2,u3"
    assert dbtools.scalar(neon, "SELECT name FROM app.customers WHERE id = 1") == "changed on rds"
    assert tables_outside(dbtools.snapshot(neon), "neon_auth") == dbtools.snapshot(rds)["tables"]

    # The dump of Neon left neon_auth out: restoring it (no flag, no setting) leaves Neon's alone too.
    restored = inv(sandbox_env, "sync.restore", "--key", key, "--to", "neon", "--yes")
    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert re.search(r"Left alone: +schema neon_auth, extension pg_session_jwt", restored.stdout), restored.stdout
    assert dbtools.scalar(neon, "SELECT count(*) FROM neon_auth.users_sync") == 3
    assert dbtools.scalar(neon, "SELECT name FROM app.customers WHERE id = 1") != "changed on rds"


def test_what_depends_across_the_boundary_is_refused_in_the_plan(sandbox, sandbox_env, sandbox_settings,
                                                                 neon_with_its_own, neon, rds):
    """A foreign key from the app's table to Neon Auth's users (the source's side), and a view in neon_auth
    over the app's table (the target's side, which the replace would drop with CASCADE): named in the plan, and
    the run refused with nothing written."""
    dbtools.execute(neon, "ALTER TABLE app.customers ADD COLUMN user_id text REFERENCES neon_auth.users_sync (id);"
                          "CREATE VIEW neon_auth.customers_seen AS SELECT id, name FROM app.customers")
    bucket = sandbox_settings.bucket_name
    before, objects = dbtools.snapshot(rds), s3_state(sandbox, bucket)["objects"]
    planned = inv(sandbox_env, "sync.neon-to-rds", *LEAVE_ALONE, "--dry-run")
    assert planned.returncode == 0, planned.stdout + planned.stderr
    assert "A real run would stop here: refused: the sync leaves alone schema neon_auth" in planned.stdout
    assert ("on Neon, what the sync copies depends on what it leaves alone: constraint customers_user_id_fkey on "
            "table app.customers -> table neon_auth.users_sync. The restore") in planned.stdout, planned.stdout[-1500:]
    result = inv(sandbox_env, "sync.neon-to-rds", *LEAVE_ALONE, "--yes")
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("[ERROR]")]
    assert len(errors) == 1 and "on Neon, what the sync copies depends on what it leaves alone" in errors[0], errors
    assert dbtools.snapshot(rds) == before and s3_state(sandbox, bucket)["objects"] == objects

    # Neon as the target: its view in neon_auth over app.customers would go with the replace's DROP ... CASCADE.
    dbtools.execute(neon, "ALTER TABLE app.customers DROP COLUMN user_id")
    before = dbtools.snapshot(neon)
    result = inv(sandbox_env, "sync.rds-to-neon", *LEAVE_ALONE, "--yes", "--force")
    assert result.returncode == 1
    assert ("on Neon, what the sync leaves alone depends on what it replaces: view neon_auth.customers_seen -> "
            "table app.customers") in result.stderr, result.stderr
    assert dbtools.snapshot(neon) == before


def test_a_dump_made_before_a_schema_was_left_alone_is_restored_without_it(sandbox_env, sandbox_settings,
                                                                          neon_with_its_own, neon, rds):
    """A dump of Neon that holds neon_auth, restored into RDS leaving neon_auth alone: the rest restored and
    verified (the dump's record of neon_auth's rows not expected of RDS), RDS's own neon_auth kept."""
    synced = inv(sandbox_env, "sync.neon-to-rds", "--exclude-extension", "pg_session_jwt", "--yes", "--json")
    assert synced.returncode == 0, synced.stdout + synced.stderr
    key = json.loads(synced.stdout)["dump"]["url"].split(f"{sandbox_settings.bucket_name}/", 1)[1]
    try:
        assert dbtools.scalar(rds, "SELECT count(*) FROM neon_auth.users_sync") == 2  # it went along this time
        dbtools.execute(rds, "INSERT INTO neon_auth.users_sync (id, name) VALUES ('r1', 'only on RDS')")
        restored = inv(sandbox_env, "sync.restore", "--key", key, "--to", "rds", *LEAVE_ALONE, "--yes", "--json")
        assert restored.returncode == 0, restored.stdout + restored.stderr
        report = json.loads(restored.stdout)
        assert report["status"] == "ok" and "neon_auth.users_sync" not in {row["table"] for row in report["tables"]}
        assert dbtools.scalar(rds, "SELECT count(*) FROM neon_auth.users_sync") == 3
        assert tables_outside(dbtools.snapshot(rds), "neon_auth") == tables_outside(dbtools.snapshot(neon), "neon_auth")
    finally:
        dbtools.execute(rds, "DROP SCHEMA IF EXISTS neon_auth CASCADE")


def test_an_extension_only_rds_has_is_refused_in_the_plan_and_synced_around_when_left_alone(
        sandbox_env, databases, server_of_major, neon):
    """aws_commons (the RDS stand-in's own on 18, as RDS has it; Neon has no such extension) created on RDS: the
    plan into Neon refuses it with nothing written; left alone, the rest of RDS reaches Neon."""
    databases(neon="rich")
    rds = server_of_major("18", "rds")
    env = redirect(sandbox_env, rds=rds)
    dbtools.execute(rds, "CREATE EXTENSION aws_commons; CREATE TABLE public.uploads (id int PRIMARY KEY, uri text);"
                         "INSERT INTO public.uploads SELECT 1, (aws_commons.create_s3_uri('b', 'k', 'r')).file_path")
    before = dbtools.snapshot(neon)
    planned = inv(env, "sync.rds-to-neon", "--dry-run")
    assert "A real run would stop here: refused: Neon lacks what the restore needs" in planned.stdout, planned.stdout
    refused = inv(env, "sync.rds-to-neon", "--yes")
    assert refused.returncode == 1 and "Neon cannot create the extension(s) aws_commons that RDS has" in \
        refused.stderr, refused.stdout + refused.stderr
    assert dbtools.snapshot(neon) == before
    synced = inv(env, "sync.rds-to-neon", "--exclude-extension", "aws_commons", "--yes")
    assert synced.returncode == 0, synced.stdout + synced.stderr
    assert dbtools.snapshot(neon)["tables"] == dbtools.snapshot(rds)["tables"]
    assert dbtools.scalar(neon, "SELECT count(*) FROM pg_extension WHERE extname = 'aws_commons'") == 0
