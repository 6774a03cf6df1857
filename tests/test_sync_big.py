"""A big schema through the tasks, at the real services' limits: 300 tables in 6 schemas (partitions,
triggers, functions, enums, domains, sequences, 1,000+ indexes), synced twice each way and exact after each
sync; into a target whose lock table is too small, refused before anything is written.

The sync replaces the target in one transaction, which holds a lock per object it drops and per object it
creates (about 12,500 here). The RDS stand-in has the lock table Terraform gives the dev RDS (its parameter
group: 384 x ~110 slots); the Neon stand-in a 0.25 CU compute's (64 x ~126 slots, about 8,000), too small for
this schema, or, restarted with 1 CU's 419 connections (about 28,000), big enough.
"""

from __future__ import annotations

import json

import pytest

from devops.sandbox.postgres import Server
from tests import dbtools
from tests.helpers import inv, s3_state

NEON_1_CU = 419  # max_connections of a 1 CU Neon compute (Neon's documentation: max_connections by compute size)


@pytest.fixture
def big(databases):
    """Both sides hold the big schema, with different rows; no sync recorded."""
    databases(neon="big_seed_1", rds="big_seed_2")


@pytest.fixture
def neon_1_cu(sandbox):
    """The Neon stand-in as a 1 CU compute (419 connections, so a lock table of about 28,000), put back after."""
    def restart_with(max_connections: str | None) -> None:
        conn = Server(**sandbox.load_state()["neon"]).connect(as_superuser=True)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f"ALTER SYSTEM SET max_connections = {max_connections}" if max_connections
                        else "ALTER SYSTEM RESET max_connections")
        conn.close()
        cluster = sandbox.cluster("neon")
        cluster.stop()
        cluster.start()

    restart_with(str(NEON_1_CU))
    yield
    restart_with(None)


def sync(env: dict, direction: str, *flags: str) -> dict:
    result = inv(env, f"sync.{direction}", "--yes", "--json", *flags, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert report["status"] == "ok" and report["committed"] is True
    locks = report["locks"]
    # The estimate the refusal is decided on is never below what the restore held, and close to it (between
    # majors too: a source on 18 counts NOT NULL constraints an older target has no objects for).
    assert locks["held"] <= locks["needed"] <= locks["held"] * 1.25 and locks["needed"] <= locks["capacity"], locks
    return report


def test_a_big_schema_into_a_small_neon_compute_is_refused_before_anything_is_written(sandbox, sandbox_env,
                                                                                     sandbox_settings, big, neon):
    before, bucket = dbtools.snapshot(neon), s3_state(sandbox, sandbox_settings.bucket_name)
    plan = inv(sandbox_env, "sync.rds-to-neon", "--dry-run", "--json")
    assert plan.returncode == 0, plan.stderr
    locks = json.loads(plan.stdout)["locks"]
    assert locks["needed"] > locks["capacity"] and locks["max_locks"] == 64, locks
    assert "[WARN] A real run would stop here: refused: the restore replaces everything in Neon" in plan.stderr

    refused = inv(sandbox_env, "sync.rds-to-neon", "--yes")
    errors = [line for line in refused.stderr.splitlines() if line.startswith("[ERROR]")]
    assert refused.returncode == 1 and len(errors) == 1 and "Traceback" not in refused.stderr, refused.stderr
    assert f"needs about {locks['needed']:,} locks, and Neon's lock table holds {locks['capacity']:,}" in errors[0]
    assert "nothing was changed" in errors[0] and "1 CU" in errors[0]
    assert dbtools.snapshot(neon) == before
    assert s3_state(sandbox, sandbox_settings.bucket_name) == bucket  # no dump, no safety copy, no lock left


def test_a_big_schema_syncs_twice_each_way_exactly_at_the_real_limits(sandbox_env, big, neon_1_cu, neon, rds):
    for direction, source, target, write in (
            ("neon-to-rds", neon, rds, None),
            ("neon-to-rds", neon, rds, "INSERT INTO s3.t7 (name) VALUES ('new on Neon')"),
            ("rds-to-neon", rds, neon, "UPDATE s5.t49 SET name = 'changed on RDS'; DROP VIEW s0.recent"),
            ("rds-to-neon", rds, neon, "INSERT INTO s1.events VALUES (99, '2026-06-01', 'late')")):
        if write:
            dbtools.execute(source, write)
        report = sync(sandbox_env, direction)
        assert len(report["tables"]) == 6 * 54  # 50 tables, a partitioned table and its 3 partitions a schema
        assert dbtools.snapshot(target) == dbtools.snapshot(source), direction


def test_the_dev_rds_parameter_group_sizes_its_lock_table_and_requires_tls(sandbox, sandbox_settings):
    """Terraform gives the dev RDS a parameter group of its own: max_locks_per_transaction (static: applied
    at the next reboot) at db_max_locks_per_transaction, as the RDS stand-in runs it, and rds.force_ssl."""
    rds = sandbox.client("rds")
    instance = rds.describe_db_instances(DBInstanceIdentifier=sandbox_settings.rds_instance_id)["DBInstances"][0]
    group = instance["DBParameterGroups"][0]["DBParameterGroupName"]
    assert group.endswith(f"-postgres{sandbox.majors()['rds']}")
    found = {p["ParameterName"]: p for p in rds.describe_db_parameters(DBParameterGroupName=group, Source="user")
             ["Parameters"]}
    assert found["max_locks_per_transaction"]["ParameterValue"] == str(
        sandbox_settings.sandbox_rds_max_locks_per_transaction)
    assert found["max_locks_per_transaction"]["ApplyMethod"] == "pending-reboot"
    assert found["rds.force_ssl"]["ParameterValue"] == "1"
