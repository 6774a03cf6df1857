"""The emulator runs ECS tasks for real (devops/emulator_tasks.py): a Fargate run_task starts the container
through the local Docker engine, with its environment, its secrets from the emulated Secrets Manager, the RDS
endpoint resolving to the RDS stand-in, its output in CloudWatch Logs, and its end on the task."""

from __future__ import annotations

import time

import docker
import pytest

from devops import toolbox
from devops.emulator_tasks import LABEL


@pytest.fixture(scope="module")
def ops(sandbox):
    return sandbox.terraform().outputs()["operations"]


def run(sandbox, sandbox_settings, ops, command, image=None, secrets=(), overrides=None, family="emulator-test"):
    ecs = sandbox.client("ecs")
    definition = ecs.register_task_definition(
        family=family, requiresCompatibilities=["FARGATE"], networkMode="awsvpc", cpu="256", memory="512",
        executionRoleArn=ops["execution_role_arn"], taskRoleArn=ops["task_role_arn"],
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
