"""`--on ecs`: the sync as a one-off ECS task, through the sandbox's emulator, which runs it in the local Docker
engine (devops/emulator_tasks.py). The data is checked with tests/dbtools.py, independently of the engine."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from urllib.parse import urlsplit

import pytest

from devops.config import REPO_ROOT
from tests import dbtools
from tests.helpers import INV, assert_no_secret, inv, on_a_terminal, s3_state, secrets_of


def test_neon_to_rds_on_ecs_moves_the_data_and_streams_the_remote_lines(sandbox, private_env, prepared, neon_secret,
                                                                       neon, rds):
    result = inv(private_env, "sync.neon-to-rds", "--on", "ecs", "--yes", timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    assert dbtools.snapshot(rds) == dbtools.snapshot(neon)
    assert dbtools.scalar(rds, "SELECT to_regclass('public.keep_me')") is None  # full replace
    out = result.stdout
    assert "as ECS task" in out
    # The remote's own lines, in order: its banner, its plan, its report.
    assert out.index("SYNC PLAN") < out.index("SYNC COMPLETE") < out.index("sync successful")
    assert "Image " in out and ("pushed to" in out or "already in ECR: not pushed" in out)
    assert_no_secret(result, private_env)


def test_a_second_run_finds_the_image_in_ecr_and_the_run_holds_no_secret(sandbox, private_env, prepared,
                                                                        neon_secret, ops, neon, rds):
    result = inv(private_env, "sync.neon-to-rds", "--on", "ecs", "--yes", timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "already in ECR: not pushed" in result.stdout
    assert dbtools.snapshot(rds) == dbtools.snapshot(neon)
    ecs = sandbox.client("ecs")
    definition = ecs.describe_task_definition(taskDefinition=ops["task_family"])["taskDefinition"]
    [container] = definition["containerDefinitions"]
    assert container["secrets"] == [{"name": "NEON_DATABASE_URL", "valueFrom": ops["neon_url_secret_arn"]}]
    assert "@sha256:" in container["image"]  # pinned by digest
    # Its identity is the task role's (the emulator serves it as Fargate does), never keys or a profile from here.
    assert definition["taskRoleArn"] == ops["task_role_arn"]
    arns = ecs.list_tasks(cluster=ops["cluster"], family=ops["task_family"])["taskArns"]
    runs = ecs.describe_tasks(cluster=ops["cluster"], tasks=arns)["tasks"]
    assert runs and all(task["overrides"]["containerOverrides"][0]["command"][0] == "inv" for task in runs)
    passed = {item["name"] for task in runs for override in task["overrides"]["containerOverrides"]
              for item in override.get("environment", [])} | {item["name"] for item in container["environment"]}
    assert not passed & {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"}, passed
    assert all("taskRoleArn" not in task["overrides"] for task in runs)
    text = json.dumps([definition, [task["overrides"] for task in runs]])
    for secret in [*secrets_of(private_env), private_env["NEON_DATABASE_URL"]]:
        assert secret not in text


def test_a_remote_failure_gives_the_remote_error_line_and_exit_1(sandbox, private_env, prepared, neon_secret, ops,
                                                                 neon, rds):
    wrong = neon.replace(f":{urlsplit(neon).password}@", ":not-the-password@")
    neon_secret.put_secret_value(SecretId=ops["neon_url_secret_arn"], SecretString=wrong)
    before = dbtools.snapshot(rds)
    result = inv(private_env, "sync.neon-to-rds", "--on", "ecs", "--yes", timeout=900)
    assert result.returncode == 1, result.stdout + result.stderr
    errors = [line for line in result.stdout.splitlines() if line.startswith("[ERROR]")]
    assert len(errors) == 1 and "Neon" in errors[0], result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert "not-the-password" not in result.stdout + result.stderr
    assert dbtools.snapshot(rds) == before


def test_on_needs_yes_or_dry_run_and_a_known_runner(private_env):
    result = inv(private_env, "sync.neon-to-rds", "--on", "ecs")
    assert result.returncode == 1 and "pass --yes" in result.stderr + result.stdout
    result = inv(private_env, "sync.neon-to-rds", "--on", "lambda", "--yes")
    assert result.returncode == 1 and "invalid runner 'lambda'" in result.stderr + result.stdout


def test_ctrl_c_during_the_remote_dump_stops_the_task_and_changes_nothing(sandbox, private_env, sandbox_settings, big,
                                                                          neon_secret, ops, rds):
    before = dbtools.snapshot(rds)
    process = subprocess.Popen([*INV, "sync.neon-to-rds", "--on", "ecs", "--yes"], env=private_env, cwd=REPO_ROOT,
                               text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                               start_new_session=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    lines = []
    for line in process.stdout:
        lines.append(line)
        if line.startswith("[INFO] Dumping Neon"):
            os.killpg(process.pid, signal.SIGINT)  # as a terminal does: the whole foreground group
            break
    out, err = process.communicate(timeout=180)
    out = "".join(lines) + out
    assert process.returncode == 130, out + err
    assert "Ctrl-C: stopping the ECS task" in out
    assert "[ERROR] interrupted" in out  # the remote's own line: it was interrupted too
    arn = sandbox.client("ecs").list_tasks(cluster=ops["cluster"], family=ops["task_family"])["taskArns"]
    tasks = sandbox.client("ecs").describe_tasks(cluster=ops["cluster"], tasks=arn)["tasks"]
    [task] = [task for task in tasks if task["stoppedReason"] == "Interrupted by the user (Ctrl-C)"]
    assert task["lastStatus"] == "STOPPED" and task["containers"][0]["exitCode"] == 130
    assert dbtools.snapshot(rds) == before
    assert "locks/sync.lock" not in s3_state(sandbox, sandbox_settings.bucket_name)["objects"]


def test_validate_on_ecs_runs_the_checks_in_the_task_with_its_read_only_role(sandbox, private_env, ops):
    result = inv(private_env, "validate", "--on", "ecs", timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "as ECS task" in result.stdout
    assert "[PASS]" in result.stdout and "[FAIL]" not in result.stdout
    definition = sandbox.client("ecs").describe_task_definition(
        taskDefinition=f"{ops['task_family']}-validate")["taskDefinition"]
    assert definition["taskRoleArn"] == ops["validate_role_arn"] != ops["task_role_arn"]
    policy = sandbox.client("iam").get_role_policy(RoleName=ops["validate_role_arn"].rsplit("/", 1)[1],
                                                   PolicyName="operations-validate")["PolicyDocument"]
    actions = set()
    for statement in policy["Statement"]:
        actions |= {statement["Action"]} if isinstance(statement["Action"], str) else set(statement["Action"])
    assert actions and all(a.split(":")[1].startswith(("Describe", "List", "Get")) for a in actions), actions
    result = inv(private_env, "validate", "--on", "ecs", "--drift")
    assert result.returncode == 1 and "--drift runs terraform plan" in result.stdout + result.stderr


def test_without_a_way_to_the_private_rds_a_local_sync_fails_at_once_naming_both_ways_out(private_env, prepared, rds):
    before = dbtools.snapshot(rds)
    result = inv(private_env, "sync.neon-to-rds", "--yes")
    assert result.returncode == 1
    [line] = [line for line in (result.stdout + result.stderr).splitlines() if line.startswith("[ERROR]")]
    # The sandbox's own tunnel, not a port to forward (a port of the sandbox's network, not 15432).
    assert "is private" in line and "--on ecs" in line and 'eval "$(inv sandbox.env --tunnel)"' in line, line
    assert "15432" not in line, line
    assert "Traceback" not in result.stderr and dbtools.snapshot(rds) == before


def test_validate_from_outside_the_vpc_warns_that_private_rds_is_not_reachable_and_passes_on_ecs(private_env):
    result = inv(private_env, "validate")
    assert result.returncode == 0, result.stdout + result.stderr
    [line] = [line for line in result.stdout.splitlines() if "not reachable from here (private)" in line]
    assert line.startswith("[WARN]") and "--on ecs" in line
    remote = inv(private_env, "validate", "--on", "ecs", timeout=600)
    assert remote.returncode == 0, remote.stdout + remote.stderr
    assert "not reachable from here" not in remote.stdout and "[FAIL]" not in remote.stdout


def test_rds_to_neon_and_restore_on_ecs(sandbox, private_env, sandbox_settings, prepared, neon_secret, neon, rds):
    assert inv(private_env, "sync.neon-to-rds", "--on", "ecs", "--yes", timeout=900).returncode == 0
    dbtools.execute(rds, "UPDATE app.customers SET name = 'changed on rds' WHERE id = 1;")
    result = inv(private_env, "sync.rds-to-neon", "--on", "ecs", "--yes", timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    assert dbtools.snapshot(neon) == dbtools.snapshot(rds)
    assert dbtools.scalar(neon, "SELECT name FROM app.customers WHERE id = 1") == "changed on rds"
    # Back to the first dump of Neon (before the change), into RDS, in the VPC.
    keys = sorted(k for k in s3_state(sandbox, sandbox_settings.bucket_name)["objects"]
                  if k.startswith("neon-dumps/") and k.endswith(".dump"))
    result = inv(private_env, "sync.restore", "--key", keys[0], "--to", "rds", "--on", "ecs", "--yes", timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Checksum matches" in result.stdout
    assert dbtools.scalar(rds, "SELECT name FROM app.customers WHERE id = 1") != "changed on rds"


def test_a_task_stopped_by_someone_else_is_one_error_line_with_its_reason(sandbox, private_env, big, neon_secret, ops,
                                                                        rds):
    before = dbtools.snapshot(rds)
    process = subprocess.Popen([*INV, "sync.neon-to-rds", "--on", "ecs", "--yes"], env=private_env, cwd=REPO_ROOT,
                               text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    lines = []
    for line in process.stdout:
        lines.append(line)
        if line.startswith("[INFO] Dumping Neon"):
            ecs = sandbox.client("ecs")
            [arn] = ecs.list_tasks(cluster=ops["cluster"], family=ops["task_family"], desiredStatus="RUNNING")["taskArns"]
            ecs.stop_task(cluster=ops["cluster"], task=arn, reason="Stopped by an operator")
            break
    out, err = process.communicate(timeout=180)
    assert process.returncode != 0
    [line] = [line for line in err.splitlines() if line.startswith("[ERROR]")]
    assert "the ECS task stopped abnormally: Stopped by an operator" in line, err
    assert dbtools.snapshot(rds) == before


def test_an_empty_neon_secret_is_one_line_with_the_fix_before_anything_runs(sandbox, private_env, monkeypatch):
    """Terraform creates the Neon URL's secret empty: ECS could not start the task, so the runner says so
    first (from the secret's metadata), naming `inv secrets.set-neon-url`."""
    from devops import remote
    from devops.errors import DevopsError

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, private_env[name])  # the runner's own client, as the task's process has it
    settings = sandbox.emulator_settings(sandbox.load_state())
    secrets = sandbox.client("secretsmanager")
    empty = secrets.create_secret(Name="test/empty-neon-url")["ARN"]
    try:
        with pytest.raises(DevopsError, match=r"is empty: store the URL first .*inv secrets.set-neon-url"):
            remote.require_neon_url(settings, empty)
        secrets.put_secret_value(SecretId=empty, SecretString="postgresql://u:p@h/db")
        remote.require_neon_url(settings, empty)
    finally:
        secrets.delete_secret(SecretId=empty, ForceDeleteWithoutRecovery=True)


def test_without_yes_the_plan_is_computed_in_the_vpc_and_confirmed_here(private_env, prepared, neon_secret, neon,
                                                                        rds):
    code, out = on_a_terminal(private_env, "sync.neon-to-rds", "--on", "ecs")
    assert code == 0, out
    plan, real = re.findall(r"^\[INFO\] Running `(inv sync\.neon-to-rds [^`]*)` as ECS task", out, re.M)
    assert plan == "inv sync.neon-to-rds --dry-run --json"
    assert re.fullmatch(r"inv sync\.neon-to-rds --yes --expect-target [0-9a-f]{16}", real), real
    # The plan once (from the dry run), the question here, then the real run's report.
    assert out.count("SYNC PLAN") == 1 and "Dry run complete" not in out
    assert out.index("SYNC PLAN") < out.index("Type 'yes' to overwrite RDS at") < out.index("SYNC COMPLETE")
    assert "still does" in out  # the real run checked the target against the confirmed plan
    assert dbtools.snapshot(rds) == dbtools.snapshot(neon)


def test_a_target_written_to_after_the_confirmed_plan_is_refused(sandbox, sandbox_settings, private_env, prepared,
                                                                neon_secret, rds):
    def write_to_rds():
        dbtools.execute(rds, "INSERT INTO keep_me VALUES (99);")

    code, out = on_a_terminal(private_env, "sync.neon-to-rds", "--on", "ecs", before_answer=write_to_rds)
    assert code == 1, out
    [error] = [line for line in out.splitlines() if line.startswith("[ERROR]")]
    assert "refused: RDS changed after the confirmed plan" in error and "nothing was changed" in error, error
    assert dbtools.scalar(rds, "SELECT count(*) FROM keep_me WHERE id = 99") == 1  # the write is kept
    assert "locks/sync.lock" not in s3_state(sandbox, sandbox_settings.bucket_name)["objects"]


def test_declining_the_remote_plan_runs_nothing_more(private_env, prepared, neon_secret, rds):
    before = dbtools.snapshot(rds)
    code, out = on_a_terminal(private_env, "sync.neon-to-rds", "--on", "ecs", answer="no")
    assert code == 1 and "cancelled: nothing was changed" in out, out
    assert len(re.findall(r"as ECS task", out)) == 1 and dbtools.snapshot(rds) == before


def test_json_on_ecs_is_the_same_object_as_a_local_run(sandbox_env, private_env, prepared, neon_secret):
    local = inv(sandbox_env, "sync.neon-to-rds", "--yes", "--json")
    remote = inv(private_env, "sync.neon-to-rds", "--on", "ecs", "--yes", "--json", timeout=900)
    assert remote.returncode == 0, remote.stdout + remote.stderr
    local_report, remote_report = json.loads(local.stdout), json.loads(remote.stdout)  # stdout: one object each
    assert remote_report["status"] == "ok" and set(remote_report) == set(local_report)
    assert remote_report["tables"] == local_report["tables"]
    assert "SYNC COMPLETE" in remote.stderr and "devops-report" not in remote.stdout + remote.stderr
    assert_no_secret(remote, private_env)


def test_expect_target_refuses_a_changed_target_locally_too(sandbox_env, prepared, rds):
    """--expect-target is the guard --on ecs uses, and a user can script with it: plan, look, run."""
    plan = json.loads(inv(sandbox_env, "sync.neon-to-rds", "--dry-run", "--json").stdout)
    fingerprint = plan["target_state"]["fingerprint"]
    dbtools.execute(rds, "DELETE FROM keep_me WHERE id = 1;")
    before = dbtools.snapshot(rds)
    result = inv(sandbox_env, "sync.neon-to-rds", "--yes", "--expect-target", fingerprint, "--json")
    assert result.returncode == 1
    assert json.loads(result.stdout)["error"].startswith("refused: RDS changed after the confirmed plan")
    assert dbtools.snapshot(rds) == before
    again = json.loads(inv(sandbox_env, "sync.neon-to-rds", "--dry-run", "--json").stdout)["target_state"]
    result = inv(sandbox_env, "sync.neon-to-rds", "--yes", "--expect-target", again["fingerprint"])
    assert result.returncode == 0, result.stdout + result.stderr



def test_a_remote_plan_the_guard_would_refuse_stops_here_without_asking(private_env, prepared, neon_secret, rds):
    assert inv(private_env, "sync.neon-to-rds", "--on", "ecs", "--yes", timeout=900).returncode == 0
    dbtools.execute(rds, "UPDATE app.customers SET name = 'written on rds' WHERE id = 1;")
    before = dbtools.snapshot(rds)
    code, out = on_a_terminal(private_env, "sync.neon-to-rds", "--on", "ecs", answer="yes")
    assert code == 1 and "Type 'yes'" not in out, out
    [error] = [line for line in out.splitlines() if line.startswith("[ERROR]")]
    assert error.startswith("[ERROR] refused: RDS was written to since its last recorded sync (app.customers)"), error
    assert "--force" in error and dbtools.snapshot(rds) == before
