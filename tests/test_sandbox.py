"""The sandbox: real PostgreSQL stand-ins, the emulator, Terraform applied, and the shell environment."""

import dataclasses
import datetime as dt
import io
import os
import re
import shutil
import socket
import subprocess
import time

import psycopg2
import pytest
from invoke import Config, Context

from devops.config import REPO_ROOT, Settings
from devops.console import Console
from devops.errors import DevopsError
from devops.sandbox import HOST, Sandbox, find_pg_bin, pid_alive, port_open, task_settings, terraform_default
from devops.sandbox.state_file import StateFile
from tests import dbtools
from tests.helpers import INV, inv, inv_after_eval, without_log



def test_status_shows_every_component_up(sandbox):
    rows = {row["component"]: row for row in sandbox.status()}
    assert set(rows) == {"neon", "rds", "emulator", "app", "network", "terraform"}
    assert all(row["running"] for row in rows.values())
    assert sandbox.is_up()


@pytest.mark.parametrize("side", ["neon", "rds"])
def test_the_stand_ins_accept_tls_only_and_name_themselves_to_the_sandboxs_ca(sandbox, sandbox_state, side):
    """As Neon and RDS: plaintext is refused by the server itself, and verify-full against the sandbox's CA
    passes for the names the tasks use (RDS: its emulated endpoint's, reached at a tunnel's address)."""
    server = sandbox_state[side]
    login = dict(host=HOST, port=server["port"], user=server["user"], password=server["password"],
                 dbname=server["database"], connect_timeout=5)
    with pytest.raises(psycopg2.OperationalError, match="no encryption"):
        psycopg2.connect(**login, sslmode="disable")
    names = {"host": HOST} if side == "neon" else {"host": sandbox_state["rds_endpoint"], "hostaddr": HOST}
    conn = psycopg2.connect(**{**login, **names}, sslmode="verify-full", sslrootcert=sandbox_state["ca"])
    with conn, conn.cursor() as cur:
        cur.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        assert cur.fetchone() == (True,)
    conn.close()


def test_the_network_delays_and_counts_each_round_trip(sandbox, sandbox_env):
    """The proxy in front of the stand-ins: a round trip costs the RTT set, and is counted."""
    network = sandbox.network()
    conn = psycopg2.connect(sandbox_env["NEON_DATABASE_URL"], sslmode="verify-full",
                            sslrootcert=sandbox_env["INVOKE_DEVOPS_NEON_CA_FILE"])
    conn.autocommit = True
    try:
        network.reset()
        network.set_rtt(50)
        with conn.cursor() as cur:
            started = time.monotonic()
            for _ in range(4):
                cur.execute("SELECT 1")
            took = time.monotonic() - started
        counts = network.counts()["neon"]
    finally:
        network.set_rtt(sandbox.settings.sandbox_rtt_ms)
        conn.close()
    assert counts.round_trips == 4 and counts.connections == 0  # opened before the reset
    assert 0.2 <= took < 0.2 + 0.5, took


def test_up_again_is_a_no_op(sandbox, sandbox_settings, sandbox_state):
    out = io.StringIO()
    state = Sandbox(sandbox_settings, Console(out=out)).up()  # how fast: bench/, not here
    assert state == sandbox_state  # the same servers, ports and processes: nothing was started again
    assert "already up" in out.getvalue()


@pytest.mark.first
def test_neon_stand_in_holds_the_sample_data(sandbox_env):
    with psycopg2.connect(sandbox_env["NEON_DATABASE_URL"]) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM projects")
        assert cur.fetchone()[0] == 5
        cur.execute("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'")
        assert cur.fetchone()[0] >= 3
        cur.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
        assert cur.fetchone()[0] is False


def test_rds_stand_in_uses_the_password_rds_put_in_secrets_manager(sandbox, sandbox_env):
    outputs = sandbox.terraform().outputs()
    secret = sandbox.client("secretsmanager").get_secret_value(SecretId=outputs["database_secret_arn"])
    import json

    value = json.loads(secret["SecretString"])
    host, port = sandbox_env["INVOKE_DEVOPS_RDS_ADDRESS"].split(":")
    conn = psycopg2.connect(host=host, port=int(port), user=value["username"], password=value["password"],
                            dbname=outputs["database_name"], connect_timeout=5)
    with conn, conn.cursor() as cur:
        cur.execute("SELECT current_user, rolsuper FROM pg_roles WHERE rolname = current_user")
        assert cur.fetchone() == (value["username"], False)
    conn.close()
    with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
        psycopg2.connect(host=host, port=int(port), user=value["username"], password="wrong",
                         dbname=outputs["database_name"], connect_timeout=5)


def test_the_emulators_cloudwatch_reports_the_rds_stand_ins_free_storage(sandbox, rds):
    """FreeStorageSpace of the emulated instance, as RDS publishes it: its allocated storage (20 GiB) less what
    the stand-in's data folder takes, computed when read, so a write shows; sandbox_rds_storage_mb sets it small."""
    instance = sandbox.terraform().outputs()["db_instance_identifier"]
    cloudwatch = sandbox.client("cloudwatch")

    def free() -> float:
        now = dt.datetime.now(dt.timezone.utc)
        points = cloudwatch.get_metric_statistics(
            Namespace="AWS/RDS", MetricName="FreeStorageSpace", StartTime=now - dt.timedelta(minutes=15), EndTime=now,
            Dimensions=[{"Name": "DBInstanceIdentifier", "Value": instance}], Period=60, Statistics=["Minimum"])
        (point,) = points["Datapoints"]
        assert point["Unit"] == "Bytes" and point["Timestamp"] <= now
        return point["Minimum"]

    gib, mb = 1024 ** 3, 1024 * 1024
    used = sandbox.rds_disk_usage()
    assert abs(free() - (20 * gib - used)) < 64 * mb
    dbtools.execute(rds, "CREATE TABLE storage_probe AS SELECT g, repeat('x', 1000) AS pad "
                         "FROM generate_series(1, 40000) g")  # about 40 MB, and its WAL
    try:
        assert sandbox.rds_disk_usage() > used + 30 * mb  # the table (and its WAL) on disk
        assert abs(free() - (20 * gib - sandbox.rds_disk_usage())) < 64 * mb
        sandbox.set_rds_storage(sandbox.rds_disk_usage() // mb + 100)
        assert 36 * mb < free() < 164 * mb
        sandbox.set_rds_storage(1)
        assert free() == 0
    finally:
        sandbox.set_rds_storage(0)
        dbtools.execute(rds, "DROP TABLE IF EXISTS storage_probe")


@pytest.mark.first
def test_env_lines_work_in_a_posix_shell_with_psql(sandbox, sandbox_settings):
    psql = shutil.which("psql")
    if psql is None:
        pytest.fail("psql (postgresql-client) is needed for this test")
    env = {**os.environ, "INVOKE_DEVOPS_SANDBOX_DIR": str(sandbox_settings.sandbox_dir)}
    script = f'eval "$({" ".join(INV)} sandbox.env)" && psql "$SANDBOX_RDS_URL" -tAc "select 1" ' \
             '&& psql "$NEON_DATABASE_URL" -tAc "select count(*) from projects" && echo "$AWS_ENDPOINT_URL"'
    result = subprocess.run(["sh", "-c", script], env=env, capture_output=True, text=True, cwd=REPO_ROOT)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.split()
    assert lines[:2] == ["1", "5"]
    assert lines[2].startswith(f"http://{HOST}:")


def test_env_names_everything_tasks_need_and_keeps_rds_private_without_a_tunnel(sandbox):
    exported = {line.split()[1].split("=")[0] for line in sandbox.env_lines() if line.startswith("export ")}
    assert {"NEON_DATABASE_URL", "AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
            "SANDBOX_RDS_URL", "TF_DATA_DIR"} <= exported
    assert "INVOKE_DEVOPS_RDS_ADDRESS" not in exported
    assert "unset INVOKE_DEVOPS_RDS_ADDRESS" in sandbox.env_lines()  # a tunnel set earlier in the shell is gone
    assert "unset AWS_PROFILE" in sandbox.env_lines()
    tunnel = {line.split()[1].split("=")[0] for line in sandbox.env_lines(tunnel=True) if line.startswith("export ")}
    assert tunnel == exported | {"INVOKE_DEVOPS_RDS_ADDRESS"}


def test_rds_address_override_maps_the_emulated_endpoint_onto_the_stand_in(sandbox, sandbox_env):
    settings = Settings.load({"rds_address": sandbox_env["INVOKE_DEVOPS_RDS_ADDRESS"]}, environ={})
    host, port = settings.rds_address_override()
    # Through the sandbox's network, as a tunnel is a hop of its own.
    assert (host, port) == (HOST, sandbox.load_state()["network"]["routes"]["rds"])
    assert sandbox.load_state()["rds_endpoint"].endswith(".rds.amazonaws.com")


def test_status_task_as_json(sandbox_env):
    import json

    result = subprocess.run([*INV, "sandbox.status", "--json"], env=sandbox_env, capture_output=True, text=True,
                            cwd=REPO_ROOT)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["up"] is True and len(report["components"]) == 6


def test_task_banner_names_the_sandbox(sandbox_env):
    result = subprocess.run([*INV, "sandbox.status"], env=sandbox_env, capture_output=True, text=True, cwd=REPO_ROOT)
    assert result.returncode == 0
    assert "Target: sandbox (local stand-ins in" in result.stdout


def fake_server_binaries(root, version: str):
    """A bin directory whose postgres reports ``version`` (and an initdb to be found by)."""
    bin_dir = root / "postgresql" / version.split(".")[0] / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "initdb").touch()
    (bin_dir / "postgres").write_text(f"#!/bin/sh\necho 'postgres (PostgreSQL) {version}'\n")
    (bin_dir / "postgres").chmod(0o755)
    return bin_dir


def test_find_pg_bin_names_what_to_install_when_there_is_none(tmp_path):
    with pytest.raises(DevopsError, match="apt-get install postgresql-17"):
        find_pg_bin("17", search=(str(tmp_path / "none*"),), path=str(tmp_path))


def test_find_pg_bin_takes_the_asked_major_and_names_the_ones_there_are(tmp_path):
    for version in ("14.9", "15.18", "17.6"):
        fake_server_binaries(tmp_path, version)
    search = (str(tmp_path / "postgresql/*/bin"),)
    assert find_pg_bin("15", search=search, path=str(tmp_path)) == tmp_path / "postgresql/15/bin"
    assert find_pg_bin("17", search=search, path=str(tmp_path)) == tmp_path / "postgresql/17/bin"
    with pytest.raises(DevopsError, match=r"no PostgreSQL 16 server binaries .*\(found: 14, 15, 17\)"):
        find_pg_bin("16", search=search, path=str(tmp_path))


def test_a_configured_pg_bin_pattern_takes_the_major(tmp_path):
    fake_server_binaries(tmp_path, "15.18")
    pattern = str(tmp_path / "postgresql" / "{major}" / "bin")
    assert find_pg_bin("15", configured=pattern) == tmp_path / "postgresql/15/bin"
    with pytest.raises(DevopsError, match="no initdb in"):
        find_pg_bin("17", configured=pattern)
    with pytest.raises(DevopsError, match="holds PostgreSQL 15, not 17"):
        find_pg_bin("17", configured=str(tmp_path / "postgresql" / "15" / "bin"))


def test_the_rds_stand_in_runs_terraforms_engine_version_unless_set(sandbox_settings):

    variables = (REPO_ROOT / "terraform/environments/dev/variables.tf").read_text()
    default = re.search(r'variable "db_engine_version" \{[^}]*default\s*=\s*"(\d+)"', variables).group(1)
    assert terraform_default(sandbox_settings, "db_engine_version") == default == "18"
    unset = dataclasses.replace(sandbox_settings, sandbox_rds_major="")
    assert Sandbox(unset).majors() == {"neon": sandbox_settings.sandbox_neon_major, "rds": default}
    assert Sandbox(sandbox_settings).majors()["rds"] == sandbox_settings.sandbox_rds_major


def test_up_with_no_server_binaries_is_one_line_and_leaves_nothing(tmp_path):
    env = {**os.environ, "INVOKE_DEVOPS_SANDBOX_PG_BIN": str(tmp_path / "missing"),
           "INVOKE_DEVOPS_SANDBOX_DIR": str(tmp_path / "sandbox")}
    result = subprocess.run([*INV, "sandbox.up"], env=env, capture_output=True, text=True, cwd=REPO_ROOT)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert [without_log(line) for line in result.stderr.splitlines() if line.strip()] == [
        f"[ERROR] no initdb in {tmp_path / 'missing'} (devops.sandbox_pg_bin): point it at PostgreSQL's bin "
        "directory, or a pattern such as /usr/lib/postgresql/{major}/bin"
    ]
    assert not (tmp_path / "sandbox").exists()


def test_a_sandbox_started_in_another_process_namespace_is_judged_by_its_ports(tmp_path):
    """Started on the host and asked about from the toolbox's sandbox container (or the reverse), the sandbox's
    PIDs name other processes here, or none: a component that answers on its port runs, down refuses what it
    cannot stop from here and signals no PID; once nothing answers, down removes the folder."""
    listener = socket.create_server((HOST, 0))
    bystander = subprocess.Popen(["sleep", "60"], start_new_session=True)  # what its recorded PID is here
    folder = tmp_path / "sandbox"
    StateFile(folder).save({"pid_namespace": "pid:[1]", "app": {"port": listener.getsockname()[1],
                                                                "pid": bystander.pid}})
    box = Sandbox(Settings.load({"sandbox_dir": str(folder)}, environ={}), Console(out=io.StringIO()))
    try:
        assert [row["running"] for row in box.status()] == [True]
        with pytest.raises(DevopsError, match=r"^the sandbox in .* runs in another process namespace"):
            box.down()
        assert folder.exists()
        listener.close()
        assert [row["running"] for row in box.status()] == [False]
        box.down()
        assert not folder.exists() and bystander.poll() is None
    finally:
        bystander.kill()
        listener.close()


def test_env_without_a_sandbox_is_one_clear_error(tmp_path):
    env = {**os.environ, "INVOKE_DEVOPS_SANDBOX_DIR": str(tmp_path / "nothing")}
    result = subprocess.run([*INV, "sandbox.env"], env=env, capture_output=True, text=True, cwd=REPO_ROOT)
    assert result.returncode == 1 and result.stdout == ""
    assert "start it with `inv sandbox.up`" in result.stderr and "Traceback" not in result.stderr


def test_the_sandbox_tasks_need_no_file_of_the_sandbox_their_settings_name(tmp_path):
    """The CA that `sandbox.env` exports is gone once `sandbox.down` removed the folder: the sandbox tasks' own
    settings pass without it (they read no CA file), a CA file elsewhere is checked as for every task."""
    folder = tmp_path / "sandbox"
    gone = str(folder / "ca" / "ca.pem")

    def context(**devops) -> Context:
        return Context(Config(overrides={"devops": {"sandbox_dir": str(folder), **devops}}))

    with pytest.raises(DevopsError, match="neon_ca_file .*: no such file"):
        Settings.from_context(context(neon_ca_file=gone))
    settings = task_settings(context(neon_ca_file=gone, rds_ca_file=gone))
    assert (settings.sandbox_dir, settings.neon_ca_file, settings.rds_ca_file) == (folder, "", "")
    with pytest.raises(DevopsError, match="rds_ca_file .*: no such file"):
        task_settings(context(neon_ca_file=gone, rds_ca_file=str(tmp_path / "elsewhere.pem")))


def test_list_shows_every_task_with_help():
    result = subprocess.run([*INV, "--list"], capture_output=True, text=True, cwd=REPO_ROOT)
    assert result.returncode == 0
    listed = {line.split()[0]: line for line in result.stdout.splitlines()[2:] if line.strip() and line.startswith("  ") and not line.startswith("   ")}
    assert {"sandbox.up", "sandbox.down", "sandbox.status", "sandbox.env"} <= set(listed)
    assert all(len(line.split()) > 1 for line in listed.values()), "a task without help"


def assert_stopped(state: dict, settings: Settings) -> None:
    """Nothing of the sandbox ``state`` describes runs any more, and its folder is gone."""
    ports = [state["neon"]["port"], state["rds"]["port"], state["emulator"]["port"], state["app"]["port"],
             state["network"]["control"]]
    assert not any(port_open(port) for port in ports)
    assert not any(pid_alive(state[component]["pid"]) for component in ("emulator", "app", "network"))
    assert not settings.sandbox_dir.exists()
    assert Sandbox(settings, Console()).status() == []


@pytest.mark.last
def test_a_shell_pointed_at_the_sandbox_stops_it_starts_it_again_and_stops_it(sandbox, sandbox_settings):
    """In a shell that ran `eval "$(inv sandbox.env)"`, whose variables name the sandbox's CA in the folder that
    down removes: down stops everything and removes the folder, status says there is no sandbox, up starts it
    again (the session's majors), and down stops that one too."""
    shell = {**os.environ, "INVOKE_DEVOPS_SANDBOX_DIR": str(sandbox_settings.sandbox_dir),
             "INVOKE_DEVOPS_SANDBOX_NEON_MAJOR": sandbox_settings.sandbox_neon_major,
             "INVOKE_DEVOPS_SANDBOX_RDS_MAJOR": sandbox_settings.sandbox_rds_major}
    exports = inv(shell, "sandbox.env")
    assert exports.returncode == 0, exports.stderr
    assert f"INVOKE_DEVOPS_NEON_CA_FILE={sandbox_settings.sandbox_dir}/" in exports.stdout
    first = sandbox.load_state()

    down = inv_after_eval(exports.stdout, shell, "sandbox.down")
    assert down.returncode == 0, down.stderr
    assert_stopped(first, sandbox_settings)
    status = inv_after_eval(exports.stdout, shell, "sandbox.status")
    assert status.returncode == 1 and "No sandbox in" in status.stdout, status.stdout + status.stderr

    up = inv_after_eval(exports.stdout, shell, "sandbox.up", timeout=600)
    assert up.returncode == 0, up.stdout[-2000:] + up.stderr
    assert inv_after_eval(exports.stdout, shell, "sandbox.status").returncode == 0
    again = sandbox.load_state()
    assert again["ca"] == first["ca"]  # the shell's variables name the new sandbox's CA again

    down = inv_after_eval(exports.stdout, shell, "sandbox.down")
    assert down.returncode == 0, down.stderr
    assert_stopped(again, sandbox_settings)
