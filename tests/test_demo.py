"""`inv demo`: the whole story, on the session's sandbox (already up, so the demo uses it and leaves it up).

It runs late (marked `last`, before the sandbox's own shutdown): it switches the environment to active and
back and replaces Neon's data with RDS's, as a user's demo does.
"""

import subprocess
import sys

import psycopg2
import pytest

from devops.config import REPO_ROOT
from tests import dbtools
from tests.helpers import forget_syncs

pytestmark = pytest.mark.last


def test_demo_tells_the_story_and_the_edit_in_rds_reaches_neon(sandbox, sandbox_settings, sandbox_env, tmp_path):
    forget_syncs(sandbox, sandbox_settings.bucket_name)  # earlier tests wrote the databases directly
    dbtools.reset(sandbox_env["NEON_DATABASE_URL"])  # a used sandbox: Neon no longer holds the sample data
    (tmp_path / "tmp").mkdir()
    env = {**sandbox_env, "TMPDIR": str(tmp_path / "tmp")}  # to see what the demo leaves in its temp folder
    result = subprocess.run([sys.executable, "-m", "invoke", "demo"], cwd=REPO_ROOT, env=env,
                            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    for step in ("Start the sandbox", "Sample data in the Neon stand-in", "$ inv activate --sync-data --yes",
                 "$ inv validate", "Change a row in RDS", "$ inv deactivate --sync-data --yes",
                 "The change arrived in Neon", "Demo complete"):
        assert step in out, step
    assert "loading the sample data" in out
    assert "left running" in out  # it did not start this sandbox, so it does not stop it
    assert not list((tmp_path / "tmp").glob("devops-demo-tfcli-*"))  # its Terraform CLI folder is gone
    conn = psycopg2.connect(sandbox_env["NEON_DATABASE_URL"])
    try:
        with conn, conn.cursor() as cur:
            cur.execute("SELECT title FROM projects ORDER BY id LIMIT 1")
            assert cur.fetchone()[0].startswith("Edited in RDS by the demo")
    finally:
        conn.close()
