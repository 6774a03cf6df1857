"""Every major Neon and RDS run, through the toolbox's client tools (18): Neon on 18 to RDS on 14, 16 and 18,
and back, with every object kind of tests/test_sync_objects.py, exact after each sync. Each pairing is
servers of their own (tests/conftest.py: server_of_major) in the stand-ins' roles and limits."""

from __future__ import annotations

import json

import pytest

from tests import dbtools
from tests.helpers import assert_no_secret, forget_syncs, inv, redirect


def major_of(url: str) -> int:
    return int(dbtools.scalar(url, "SELECT current_setting('server_version_num')::int")) // 10000


def sync(env: dict, direction: str) -> dict:
    result = inv(env, f"sync.{direction}", "--yes", "--json")
    assert result.returncode == 0, result.stderr[-3000:]
    assert_no_secret(result, env)
    report = json.loads(result.stdout)
    assert report["status"] == "ok" and report["committed"] is True
    return report




@pytest.fixture(scope="module")
def neon_18(server_of_major):
    return server_of_major("18", "neon")


@pytest.mark.parametrize("rds_major", ["14", "16", "18"])
def test_every_object_kind_from_neon_18_to_rds_and_back(sandbox, sandbox_settings, sandbox_env, server_of_major,
                                                       neon_18, rds_major):
    rds = server_of_major(rds_major, "rds")
    env = redirect(sandbox_env, neon=neon_18, rds=rds)
    assert (major_of(neon_18), major_of(rds)) == (18, int(rds_major))
    forget_syncs(sandbox, sandbox_settings.bucket_name)
    dbtools.reset(neon_18)
    dbtools.execute(neon_18, dbtools.every_kind(scale=3))
    dbtools.execute(rds, dbtools.every_kind(scale=2) + dbtools.TARGET_ONLY)
    source = dbtools.snapshot(neon_18)
    for _ in range(2):  # the second time into a target holding the first sync's objects
        report = sync(env, "neon-to-rds")
        assert report["versions"]["downgrade"] is (rds_major != "18")
        assert dbtools.snapshot(rds) == source
    dbtools.execute(rds, "UPDATE app.customers SET name = 'changed on rds' WHERE id = 1;"
                         "CREATE FUNCTION public.new_on_rds() RETURNS int LANGUAGE sql AS 'SELECT 1';")
    changed = dbtools.snapshot(rds)
    for _ in range(2):
        sync(env, "rds-to-neon")
        assert dbtools.snapshot(neon_18) == changed
