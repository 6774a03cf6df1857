"""The emulator runs ECS tasks for real (devops/emulator_tasks.py): a Fargate run_task starts the container
through the local Docker engine, with its environment, its secrets from the emulated Secrets Manager, its task
role's credentials from a container credentials endpoint, the RDS endpoint resolving to the RDS stand-in, its
output in CloudWatch Logs, and its end on the task."""

from __future__ import annotations

import datetime
import json
import socket
import time
from urllib.parse import urlsplit

import docker
import pytest

from devops import toolbox
from devops.emulator_tasks import LABEL, ROLE_REFRESH, RoleCredentials

UNSET = object()
# What would give a container an identity other than its task role's (Fargate sets none of them).
KEYS = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"}
# Run in a task's container: which AWS_ variables it holds, and the identity AWS sees (botocore's chain).
WHO_AM_I = """python3 -c '
import json, os, boto3, botocore.exceptions
env = {name: value for name, value in os.environ.items() if name.startswith("AWS_")}
try:
    arn = boto3.client("sts").get_caller_identity()["Arn"]
except botocore.exceptions.NoCredentialsError as exc:
    arn = type(exc).__name__
print("identity " + json.dumps({"names": sorted(env), "uri": env.get("AWS_CONTAINER_CREDENTIALS_FULL_URI"),
                                "arn": arn}))
'"""


@pytest.fixture(scope="module")
def ops(sandbox):
    return sandbox.terraform().outputs()["operations"]


def run(sandbox, sandbox_settings, ops, command, image=None, secrets=(), overrides=None, family="emulator-test",
        role=UNSET):
    ecs = sandbox.client("ecs")
    role = ops["task_role_arn"] if role is UNSET else role
    definition = ecs.register_task_definition(
        family=family, requiresCompatibilities=["FARGATE"], networkMode="awsvpc", cpu="256", memory="512",
        executionRoleArn=ops["execution_role_arn"], **({"taskRoleArn": role} if role else {}),
        containerDefinitions=[{
            "name": "main", "image": image or toolbox.image("toolbox"), "essential": True,
            "command": ["sh", "-c", command], "environment": [{"name": "GREETING", "value": "hello"}],
            "secrets": list(secrets),
            "logConfiguration": {"logDriver": "awslogs", "options": {
                "awslogs-group": ops["log_group"], "awslogs-region": sandbox_settings.region,
                "awslogs-stream-prefix": family}}}])["taskDefinition"]
    [task] = ecs.run_task(cluster=ops["cluster"], taskDefinition=definition["taskDefinitionArn"], launchType="FARGATE",
                          networkConfiguration={"awsvpcConfiguration": {
                              "subnets": ops["subnet_ids"], "securityGroups": [ops["security_group_id"]],
                              "assignPublicIp": "ENABLED"}},
                          overrides=overrides or {})["tasks"]
    return task["taskArn"]


def describe(sandbox, ops, arn):
    return sandbox.client("ecs").describe_tasks(cluster=ops["cluster"], tasks=[arn])["tasks"][0]


def wait_stopped(sandbox, ops, arn, timeout=90):
    deadline = time.monotonic() + timeout
    while (task := describe(sandbox, ops, arn))["lastStatus"] != "STOPPED":
        assert time.monotonic() < deadline, task
        time.sleep(0.5)
    return task


def log_lines(sandbox, ops, arn, family="emulator-test"):
    stream = f"{family}/main/{arn.split('/')[-1]}"
    logs = sandbox.client("logs")
    try:
        events = logs.get_log_events(logGroupName=ops["log_group"], logStreamName=stream, startFromHead=True)["events"]
    except logs.exceptions.ResourceNotFoundException:
        return []  # the container has not written yet
    return [event["message"] for event in events]


def test_run_task_runs_its_container_with_environment_secrets_rds_and_logs(sandbox, sandbox_settings, sandbox_state,
                                                                          ops):
    secret = sandbox.client("secretsmanager").create_secret(Name="emulator-test-secret",
                                                           SecretString='{"password": "pw-from-secret"}')["ARN"]
    host = sandbox_state["rds_endpoint"]
    command = ('echo "greeting $GREETING $EXTRA"; [ "$PASSWORD" = pw-from-secret ] && echo secret-resolved; '
               f'getent hosts {host} | tr -s " "; pg_isready -h {host} -p "${{INVOKE_DEVOPS_RDS_ADDRESS##*:}}"; '
               'echo "$AWS_ENDPOINT_URL" | grep -c "^http://127.0.0.1:"; exit 3')
    arn = run(sandbox, sandbox_settings, ops, command, secrets=[{"name": "PASSWORD", "valueFrom": f"{secret}:password::"}],
              overrides={"containerOverrides": [{"name": "main", "environment": [{"name": "EXTRA", "value": "more"}]}]})
    task = wait_stopped(sandbox, ops, arn)
    assert (task["containers"][0]["exitCode"], task["stoppedReason"]) == (3, "Essential container in task exited")
    lines = log_lines(sandbox, ops, arn)
    assert lines[:3] == ["greeting hello more", "secret-resolved", f"127.0.0.1 {host}"], lines
    assert lines[3].endswith("accepting connections") and lines[4] == "1", lines
    assert not docker.from_env().containers.list(all=True, filters={"label": f"{LABEL}={arn}"})


def test_stop_task_stops_the_container(sandbox, sandbox_settings, ops):
    arn = run(sandbox, sandbox_settings, ops, "echo started; exec sleep 300")
    deadline = time.monotonic() + 60
    while "started" not in log_lines(sandbox, ops, arn):
        assert time.monotonic() < deadline
        time.sleep(0.5)
    assert describe(sandbox, ops, arn)["lastStatus"] == "RUNNING"
    sandbox.client("ecs").stop_task(cluster=ops["cluster"], task=arn, reason="Interrupted by the user")
    task = wait_stopped(sandbox, ops, arn, timeout=45)
    assert task["stoppedReason"] == "Interrupted by the user"
    assert task["containers"][0]["exitCode"] != 0
    assert not docker.from_env().containers.list(all=True, filters={"label": f"{LABEL}={arn}"})


def test_an_image_the_engine_lacks_stops_the_task_with_cannot_pull(sandbox, sandbox_settings, ops):
    arn = run(sandbox, sandbox_settings, ops, "true", image="devops-no-such-image:nothing")
    task = wait_stopped(sandbox, ops, arn)
    assert task["stoppedReason"].startswith("CannotPullContainerError:"), task
    assert "exitCode" not in task["containers"][0]


def identity(sandbox, ops, arn, family="emulator-test"):
    task = wait_stopped(sandbox, ops, arn)
    assert task["containers"][0]["exitCode"] == 0, (task, log_lines(sandbox, ops, arn, family))
    [line] = [line for line in log_lines(sandbox, ops, arn, family) if line.startswith("identity ")]
    return json.loads(line.split(" ", 1)[1])


def listening(uri):
    with socket.socket() as probe:
        return probe.connect_ex((urlsplit(uri).hostname, urlsplit(uri).port)) == 0


def test_a_task_gets_its_task_roles_credentials_from_the_container_endpoint_and_no_keys(sandbox, sandbox_settings,
                                                                                        ops):
    arn = run(sandbox, sandbox_settings, ops, WHO_AM_I)
    seen = identity(sandbox, ops, arn)
    account, role = ops["task_role_arn"].split(":")[4], ops["task_role_arn"].rsplit("/", 1)[1]
    # As on Fargate: the role assumed under the task's id.
    assert seen["arn"] == f"arn:aws:sts::{account}:assumed-role/{role}/{arn.split('/')[-1]}", seen
    assert {"AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_AUTHORIZATION_TOKEN"} <= set(seen["names"]), seen
    assert not (KEYS | {"AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"}) & set(seen["names"]), seen
    assert seen["uri"].startswith("http://127.0.0.1:"), seen
    assert not listening(seen["uri"])  # the task's endpoint ended with its container


def test_without_a_task_role_no_credentials_and_the_runs_role_override_wins(sandbox, sandbox_settings, ops):
    bare = run(sandbox, sandbox_settings, ops, WHO_AM_I, family="emulator-test-no-role", role=None)
    overridden = run(sandbox, sandbox_settings, ops, WHO_AM_I, family="emulator-test-no-role",
                     role=None, overrides={"taskRoleArn": ops["validate_role_arn"]})
    seen = identity(sandbox, ops, bare, "emulator-test-no-role")
    assert seen["arn"] == "NoCredentialsError", seen
    assert not (KEYS | {"AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_AUTHORIZATION_TOKEN"}) & set(seen["names"])
    role = ops["validate_role_arn"].rsplit("/", 1)[1]
    assert f":assumed-role/{role}/" in identity(sandbox, ops, overridden, "emulator-test-no-role")["arn"]


class FakeSts:
    def __init__(self, now):
        self.now, self.calls = now, []

    def assume_role(self, **kwargs):
        self.calls.append(kwargs)
        n = len(self.calls)
        return {"Credentials": {"AccessKeyId": f"ASIA{n}", "SecretAccessKey": f"secret{n}", "SessionToken": f"token{n}",
                                "Expiration": self.now() + datetime.timedelta(seconds=kwargs["DurationSeconds"])}}


def test_role_credentials_are_kept_until_they_near_their_expiry_then_assumed_again():
    clock = [datetime.datetime(2025, 1, 1, tzinfo=datetime.timezone.utc)]
    sts = FakeSts(lambda: clock[0])
    credentials = RoleCredentials(sts, "arn:aws:iam::123456789012:role/task", "task-id", now=lambda: clock[0])
    first = credentials()
    assert (first.access_key, first.token) == ("ASIA1", "token1")
    assert sts.calls == [{"RoleArn": "arn:aws:iam::123456789012:role/task", "RoleSessionName": "task-id",
                          "DurationSeconds": 3600}]
    clock[0] = first.expiry - ROLE_REFRESH - datetime.timedelta(seconds=1)
    assert credentials() == first and len(sts.calls) == 1
    clock[0] += datetime.timedelta(seconds=2)
    assert credentials().access_key == "ASIA2" and len(sts.calls) == 2
