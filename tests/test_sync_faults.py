"""Bad input and faults: each gets one clear line, a non-zero exit, the target unchanged, the lock released,
no incomplete multipart upload left, and no password in any output. All against the sandbox's real servers;
S3 faults go through a real HTTP proxy in front of the emulator (tests/faults.py)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time

import math

import pytest

from devops import toolbox
from devops.config import REPO_ROOT
from devops.errors import DevopsError
from devops.sandbox import PostgresCluster
from devops.sync.decisions import connection_lost, room_ran_out
from devops.sync.tools import ToolVersions, check_tools_match_servers
from tests import dbtools
from tests.faults import S3FaultProxy
from tests.helpers import INV, assert_no_secret, inv, s3_state, without_log

def assert_failed_cleanly(result, sandbox, sandbox_env, settings, rds_before, rds, message: str, code: int = 1):
    """One [ERROR] line with ``message``, no traceback, target unchanged, lock gone, no multipart upload."""
    assert result.returncode == code, result.stdout + result.stderr
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("[ERROR]"), result.stderr
    assert message in errors[0], errors[0]
    assert "Traceback" not in result.stdout + result.stderr
    assert dbtools.snapshot(rds) == rds_before
    state = s3_state(sandbox, settings.bucket_name)
    assert "locks/sync.lock" not in state["objects"]
    assert state["uploads"] == []
    assert_no_secret(result, sandbox_env)


@pytest.mark.parametrize("url, message", [
    (None, "NEON_DATABASE_URL is not set"),
    ("mysql://u:p@h/db", "NEON_DATABASE_URL is not a valid PostgreSQL URL: it must start with postgresql://"),
    ("postgresql://user:pw@/neondb", "no host"),
    ("postgresql://user:pw@host:notaport/db", "bad port"),
])
def test_bad_neon_url(sandbox, sandbox_env, sandbox_settings, prepared, rds, url, message):
    env = {k: v for k, v in sandbox_env.items() if k != "NEON_DATABASE_URL"}
    if url:
        env["NEON_DATABASE_URL"] = url
    before = dbtools.snapshot(rds)
    result = inv(env, "sync.neon-to-rds", "--yes")
    assert_failed_cleanly(result, sandbox, sandbox_env, sandbox_settings, before, rds, message)


def test_wrong_password(sandbox, sandbox_env, sandbox_settings, prepared, neon, rds):
    wrong = neon.replace("@127.0.0.1", "x@127.0.0.1")
    before = dbtools.snapshot(rds)
    result = inv({**sandbox_env, "NEON_DATABASE_URL": wrong}, "sync.neon-to-rds", "--yes")
    assert_failed_cleanly(result, sandbox, sandbox_env, sandbox_settings, before, rds, "password authentication failed")
    assert wrong.split(":")[2].split("@")[0] not in result.stdout + result.stderr


def test_unreachable_host_gives_up_instead_of_hanging(sandbox, sandbox_env, sandbox_settings, prepared, neon, rds):
    # A listener that accepts connections and never answers: the worst kind of unreachable.
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    port = silent.getsockname()[1]
    before = dbtools.snapshot(rds)
    url = neon.replace(neon.split("@")[1].split("/")[0], f"127.0.0.1:{port}")
    # The sync's connect timeout is 10 s; 120 s is a margin for a loaded machine that only a hang exceeds
    # (subprocess.TimeoutExpired fails the test). How long it takes is measured in bench/, not here.
    result = inv({**sandbox_env, "NEON_DATABASE_URL": url}, "sync.neon-to-rds", "--yes", timeout=120)
    silent.close()
    assert_failed_cleanly(result, sandbox, sandbox_env, sandbox_settings, before, rds, "cannot connect to Neon")


def test_rds_stopped(sandbox, sandbox_env, sandbox_settings, prepared, rds):
    client = sandbox.client("rds")
    client.stop_db_instance(DBInstanceIdentifier=sandbox_settings.rds_instance_id)
    try:
        before = dbtools.snapshot(rds)
        result = inv(sandbox_env, "sync.neon-to-rds", "--yes")
        assert_failed_cleanly(result, sandbox, sandbox_env, sandbox_settings, before, rds,
                              f"RDS instance {sandbox_settings.rds_instance_id} is stopped, not available")
    finally:
        client.start_db_instance(DBInstanceIdentifier=sandbox_settings.rds_instance_id)


def test_bucket_missing(sandbox, sandbox_env, sandbox_settings, prepared, rds):
    s3 = sandbox.client("s3")
    bucket = sandbox_settings.bucket_name
    # Kept to put the bucket back exactly as Terraform made it (faster than a re-apply's provider waits).
    config = {
        "policy": s3.get_bucket_policy(Bucket=bucket)["Policy"],
        "lifecycle": s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"],
        "block": s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"],
        "encryption": s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"],
        "tags": s3.get_bucket_tagging(Bucket=bucket)["TagSet"],
    }
    for item in s3.list_objects_v2(Bucket=bucket).get("Contents", []):
        s3.delete_object(Bucket=bucket, Key=item["Key"])
    s3.delete_bucket(Bucket=bucket)
    try:
        before = dbtools.snapshot(rds)
        result = inv(sandbox_env, "sync.neon-to-rds", "--yes")
        assert result.returncode == 1
        assert [without_log(line) for line in result.stderr.splitlines() if line] == [
            f"[ERROR] bucket {bucket} not found: apply the Terraform environment (terraform/environments/dev) first"]
        assert dbtools.snapshot(rds) == before
    finally:
        s3.create_bucket(Bucket=bucket)
        s3.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": config["tags"]})
        s3.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration=config["block"])
        s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration=config["encryption"])
        s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": config["lifecycle"]})
        s3.put_bucket_policy(Bucket=bucket, Policy=config["policy"])


def test_s3_failing_in_the_middle_of_the_upload(sandbox, sandbox_env, sandbox_settings, big, rds, proxy):
    proxy.key_prefix, proxy.fail_from_part = "neon-dumps/", 2
    before = dbtools.snapshot(rds)
    result = inv({**sandbox_env, "AWS_ENDPOINT_URL": proxy.url}, "sync.neon-to-rds", "--yes")
    assert proxy.parts_seen >= 2
    assert_failed_cleanly(result, sandbox, sandbox_env, sandbox_settings, before, rds, "upload to s3://")


def test_a_lost_answer_to_the_dump_upload_start_leaves_no_upload_behind(sandbox, sandbox_env, sandbox_settings,
                                                                         prepared, rds, proxy):
    """The emulator starts the dump's multipart upload and its answer is lost: botocore asks again and a second
    upload starts. The sync completes one and aborts the other (AWS can lose an answer as well)."""
    proxy.key_prefix, proxy.lost_start_answers = "neon-dumps/", 1
    result = inv({**sandbox_env, "AWS_ENDPOINT_URL": proxy.url}, "sync.neon-to-rds", "--yes")
    assert result.returncode == 0, result.stdout + result.stderr
    assert proxy.lost_start_answers == 0
    state = s3_state(sandbox, sandbox_settings.bucket_name)
    assert state["uploads"] == []
    assert [key for key in state["objects"] if key.startswith("neon-dumps/") and key.endswith(".dump")]


def _run_and_break(env: dict, proxy: S3FaultProxy, action) -> subprocess.CompletedProcess:
    """Start a sync, and once its dump is mid-upload (a part of it uploaded), call ``action(process)``."""
    process = subprocess.Popen([*INV, "sync.neon-to-rds", "--yes"], env=env, cwd=REPO_ROOT, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                               start_new_session=True,
                               # As a terminal's foreground job: Ctrl-C not ignored, even when this test
                               # runs in a background job (whose SIGINT a shell ignores).
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    while proxy.parts_done < 1 and process.poll() is None:
        assert time.monotonic() < deadline, "no part of the dump was uploaded"
        time.sleep(0.05)
    action(process)
    out, err = process.communicate(timeout=120)
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def assert_broken_mid_upload(sandbox, settings, proxy: S3FaultProxy) -> None:
    """The fault landed mid-upload: a part was uploaded, and the dump never completed."""
    assert proxy.parts_done >= 1
    assert not [key for key in s3_state(sandbox, settings.bucket_name)["objects"]
                if key.startswith("neon-dumps/") and key.endswith(".dump")]


@pytest.mark.parametrize("side, message", [
    ("neon", "Neon"),
    # The target crashed: its restore is rolled back (a server recovers committed transactions only).
    ("rds", "RDS closed the connection in the middle of the restore (the server restarted, or the connection was "
            "cut; it said: terminating connection due to immediate shutdown command): the restore was rolled back, "
            "RDS is as it was; it is safe to run the sync again"),
])
def test_a_server_dying_mid_sync(sandbox, sandbox_env, sandbox_settings, big, rds, proxy, side, message):
    # Slow uploads keep the dump streaming long enough to kill a server in the middle of it.
    proxy.key_prefix, proxy.part_delay = "neon-dumps/", 1.0
    before = dbtools.snapshot(rds)
    cluster = sandbox.cluster(side)
    try:
        result = _run_and_break({**sandbox_env, "AWS_ENDPOINT_URL": proxy.url}, proxy,
                                lambda _: cluster.stop(mode="immediate"))
    finally:
        cluster.start()
    assert_broken_mid_upload(sandbox, sandbox_settings, proxy)
    assert result.returncode == 1, result.stdout + result.stderr
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and message in errors[0] and "Traceback" not in result.stderr, result.stderr
    assert dbtools.snapshot(rds) == before
    state = s3_state(sandbox, sandbox_settings.bucket_name)
    assert "locks/sync.lock" not in state["objects"] and state["uploads"] == []
    assert_no_secret(result, sandbox_env)


def test_a_target_restarting_mid_restore_leaves_it_as_it_was_and_a_second_run_completes(
        sandbox, sandbox_env, sandbox_settings, big, neon, rds, proxy):
    """RDS restarts (a reboot, Neon's weekly compute update: a fast shutdown, then a start) while the restore
    streams into it: the server rolls the restore back, the sync says so in one line and that it is safe to run
    again, and the next run completes."""
    proxy.key_prefix, proxy.part_delay = "neon-dumps/", 1.0
    before = dbtools.snapshot(rds)
    cluster = sandbox.cluster("rds")

    def restart(_) -> None:
        cluster.stop(mode="fast")
        cluster.start()

    try:
        result = _run_and_break({**sandbox_env, "AWS_ENDPOINT_URL": proxy.url}, proxy, restart)
    finally:
        if not (cluster.data / "postmaster.pid").exists():  # the restart failed halfway
            cluster.start()
    assert_broken_mid_upload(sandbox, sandbox_settings, proxy)
    assert_failed_cleanly(result, sandbox, sandbox_env, sandbox_settings, before, rds,
                          "RDS closed the connection in the middle of the restore (the server restarted, or the "
                          "connection was cut; it said: terminating connection due to administrator command): the "
                          "restore was rolled back, RDS is as it was; it is safe to run the sync again")
    again = inv(sandbox_env, "sync.neon-to-rds", "--yes")
    assert again.returncode == 0, again.stdout + again.stderr
    assert dbtools.snapshot(rds) == dbtools.snapshot(neon)


def superuser_sql(sandbox, side: str, statements: list[str], database: str = "postgres") -> list:
    """Run ``statements`` as a stand-in's superuser, one by one in autocommit; the last one's rows (or [])."""
    conn = sandbox.server(side).connect(as_superuser=True, database=database)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            for statement in statements:
                cur.execute(statement)
            return cur.fetchall() if cur.description else []
    finally:
        conn.close()


MB = 1024 * 1024
# Rows of about 1 KB each (960 characters of md5 text: under the TOAST threshold, so stored as they are).
BULK = "CREATE TABLE {name} (id int PRIMARY KEY, data text); " \
       "INSERT INTO {name} SELECT g, repeat(md5(g::text), 30) FROM generate_series(1, {rows}) g;"
OTHER_DATABASE = "devops_other_branch"


def test_neon_size_limit_met_mid_restore_is_rolled_back_with_one_line(sandbox, sandbox_env, sandbox_settings,
                                                                      databases, neon, rds):
    """The plan's estimate fits under Neon's project size limit, but the branch also holds a database the sync's
    role may not connect to, which the plan cannot size: the restore meets the limit for real (the stand-in's
    server refuses to extend a file, as Neon's compute does) halfway through its data, is rolled back, and the
    sync says so in one line with the limit and what to do."""
    if not (sandbox.cluster("neon").root / PostgresCluster.PRELOAD).exists():
        message = "the Neon stand-in does not enforce its size limit here (see sandbox.up's warning)"
        if toolbox.inside() == "dev":
            pytest.fail(message)
        pytest.skip(message)
    databases(neon="rich", rds="keep_me")
    rows = 20000
    dbtools.execute(rds, BULK.format(name="bulk", rows=rows))
    data = dbtools.scalar(rds, "SELECT pg_total_relation_size('public.bulk')")
    # The plan's estimate of what the restore writes: the source database's size (its catalogs too).
    source = dbtools.scalar(rds, "SELECT pg_database_size(current_database())")
    size_of_other = f"SELECT pg_database_size('{OTHER_DATABASE}')"
    try:
        empty = superuser_sql(sandbox, "neon", [f"CREATE DATABASE {OTHER_DATABASE}",
                                                f"REVOKE CONNECT ON DATABASE {OTHER_DATABASE} FROM PUBLIC",
                                                size_of_other])[0][0]
        # The other database holds what puts the limit 4 MB above the plan's estimate and halfway through the
        # restore's data.
        filler = max(1, math.ceil((source - data // 2 + 4 * MB - empty) / (data / rows)))
        superuser_sql(sandbox, "neon", [BULK.format(name="filler", rows=filler)], database=OTHER_DATABASE)
        # What the plan counts (the databases the role may connect to), and what it cannot see.
        seen = dbtools.scalar(neon, "SELECT sum(pg_database_size(oid)) FROM pg_database "
                                    "WHERE has_database_privilege(oid, 'CONNECT')")
        unseen = superuser_sql(sandbox, "neon", [size_of_other])[0][0]
        limit_mb = math.ceil((seen + unseen + data // 2) / MB)
        assert seen + source < limit_mb * MB, "the plan would refuse: the test's sizes need adjusting"
        before = dbtools.snapshot(neon)
        superuser_sql(sandbox, "neon", [f"ALTER SYSTEM SET neon.max_cluster_size = '{limit_mb}MB'",
                                        "SELECT pg_reload_conf()"])
        time.sleep(0.3)  # the reload reaches new connections
        result = inv(sandbox_env, "sync.rds-to-neon", "--yes")
        assert_failed_cleanly(result, sandbox, sandbox_env, sandbox_settings, before, neon,
                              f"restore into Neon stopped at TABLE DATA public.bulk: Neon's project size limit "
                              f"({limit_mb:,} MB, neon.max_cluster_size) was met in the middle of the restore; the "
                              "restore was rolled back, Neon is as it was.")
        assert "raise the project's limit (a bigger plan), make room on Neon" in result.stderr
    finally:
        superuser_sql(sandbox, "neon", ["ALTER SYSTEM RESET neon.max_cluster_size", "SELECT pg_reload_conf()",
                                        f"DROP DATABASE IF EXISTS {OTHER_DATABASE}"])


def test_ctrl_c_in_the_middle(sandbox, sandbox_env, sandbox_settings, big, rds, proxy):
    proxy.key_prefix, proxy.part_delay = "neon-dumps/", 1.0
    before = dbtools.snapshot(rds)
    # As a terminal does: SIGINT to the whole foreground process group.
    result = _run_and_break({**sandbox_env, "AWS_ENDPOINT_URL": proxy.url}, proxy,
                            lambda process: os.killpg(process.pid, signal.SIGINT))
    assert_broken_mid_upload(sandbox, sandbox_settings, proxy)
    assert_failed_cleanly(result, sandbox, sandbox_env, sandbox_settings, before, rds, "interrupted", code=130)


def test_tools_older_than_a_server_are_refused_with_the_fix():
    tools = ToolVersions({"pg_dump": "15.8", "pg_restore": "15.8", "psql": "15.8"})
    check_tools_match_servers(tools, {"RDS": 150004})
    with pytest.raises(DevopsError, match=r"pg_dump 15.8 is older than the Neon server \(PostgreSQL 17\): "
                                          r"install postgresql-client-17 or newer, or run the task in the toolbox"):
        check_tools_match_servers(tools, {"RDS": 150004, "Neon": 170002})


# psql's stderr when the target went away mid-restore, as psql 15 and 18 print it (a fast shutdown, or
# pg_terminate_backend; an immediate shutdown says WARNING instead of FATAL).
RESTARTED = """psql:<stdin>:3: FATAL:  terminating connection due to administrator command
psql:<stdin>:3: server closed the connection unexpectedly
\tThis probably means the server terminated abnormally
\tbefore or while processing the request.
psql:<stdin>:3: error: connection to server was lost
"""


def test_a_lost_connection_is_one_line_that_says_whether_the_target_changed():
    assert connection_lost(RESTARTED, "RDS") == (
        "RDS closed the connection in the middle of the restore (the server restarted, or the connection was cut; "
        "it said: terminating connection due to administrator command): the restore was rolled back, RDS is as it "
        "was; it is safe to run the sync again")
    cut = "psql:<stdin>:9: SSL SYSCALL error: EOF detected\npsql:<stdin>:9: error: connection to server was lost\n"
    assert "(the server restarted, or the connection was cut): the restore was rolled back, Neon is as it was" \
        in connection_lost(cut, "Neon")
    # The verification had passed: its COMMIT may have run before the connection went.
    assert "RDS holds either what it held or the restored data" in connection_lost(RESTARTED, "RDS", committing=True)
    assert connection_lost("psql:<stdin>:7: ERROR:  relation \"x\" does not exist\n", "RDS") is None


def test_a_target_out_of_room_is_one_line_with_the_fix():
    neon = room_ran_out("could not extend file because project size limit (512 MB) has been exceeded (HINT: This "
                        "limit is defined externally by the project size limit, and internal by the "
                        "'max_cluster_size' GUC)", "Neon", "TABLE DATA public.blobs")
    assert neon.startswith("restore into Neon stopped at TABLE DATA public.blobs: Neon's project size limit (512 MB, "
                           "neon.max_cluster_size) was met in the middle of the restore; the restore was rolled back, "
                           "Neon is as it was.")
    assert "raise the project's limit (a bigger plan), make room on Neon, or leave data out of the sync" in neon
    rds = room_ran_out('could not extend file "base/16384/16400": No space left on device (HINT: Check free disk '
                       'space.)', "RDS")
    assert rds.startswith('restore into RDS stopped: RDS ran out of storage (could not extend file '
                          '"base/16384/16400": No space left on device) in the middle of the restore')
    assert "db_max_allocated_storage" in rds
    assert room_ran_out('relation "x" does not exist', "RDS") is None
