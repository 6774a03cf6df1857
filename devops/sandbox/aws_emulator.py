"""The AWS stand-in: moto's server (devops/emulator.py) on 127.0.0.1, how to reach it, and what the ECS tasks
it runs (devops/emulator_tasks.py) need to reach the other stand-ins."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import botocore.session

from devops import aws
from devops.config import REPO_ROOT, Settings
from devops.console import Console
from devops.emulator_tasks import CREDENTIALS as EMULATOR_CREDENTIALS
from devops.emulator_tasks import TASKS_CONFIG_ENV
from devops.errors import DevopsError
from devops.sandbox import rds_storage
from devops.sandbox.postgres import HOST
from devops.sandbox.processes import free_port, http_ok, runs, wait_for

TASKS_CONFIG = "ecs-tasks.json"


def start_emulator(folder: Path, console: Console) -> dict[str, Any]:
    """Start the moto server; returns its record for the state (port, pid)."""
    try:
        import moto.server  # noqa: F401  (only to fail early with a clear message)
    except ImportError:
        raise DevopsError("the AWS emulator (moto server) is not installed: pip install -r requirements-dev.txt") from None
    port = free_port()
    log = (folder / "emulator.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "devops.emulator", "-H", HOST, "-p", str(port)],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        # AWS-managed IAM policies (AmazonECSTaskExecutionRolePolicy) exist only when moto loads them.
        # ECS services report one running task each (moto runs none by itself; the dev services want
        # one each, var.service_desired_count): `inv validate` then sees an active sandbox as healthy,
        # and an update_service to desiredCount=0 still shows as 0 running.
        # ECS tasks it runs (devops/emulator_tasks.py) learn from this file how to reach the RDS stand-in; its
        # CloudWatch, from the other, which instance the stand-in plays and where its data is (FreeStorageSpace).
        env={**os.environ, "MOTO_IAM_LOAD_MANAGED_POLICIES": "true", "MOTO_ECS_SERVICE_RUNNING": "1",
             TASKS_CONFIG_ENV: str(folder / TASKS_CONFIG), rds_storage.CONFIG_ENV: str(folder / rds_storage.CONFIG)},
        cwd=REPO_ROOT,
    )
    log.close()
    url = f"http://{HOST}:{port}/moto-api/"
    wait_for(lambda: process.poll() is None and http_ok(url), 30, "the AWS emulator")
    console.info(f"AWS emulator (moto, devops.emulator) on http://{HOST}:{port}")
    return {"port": port, "pid": process.pid}


def emulator_url(state: dict[str, Any]) -> str:
    """The emulator itself, not the sandbox's network in front of it (the tasks' way: shell_environment)."""
    return f"http://{HOST}:{state['emulator']['port']}"


def emulator_settings(settings: Settings, state: dict[str, Any]) -> Settings:
    """``settings`` pointed at the emulator, with no AWS profile."""
    return dataclasses.replace(settings, aws_endpoint_url=emulator_url(state), aws_profile="")


def emulator_client(settings: Settings, state: dict[str, Any], service: str) -> Any:
    """A boto3 client of ``service`` on the emulator, with its test credentials whatever the environment holds."""
    boto = botocore.session.Session()
    boto.set_credentials(EMULATOR_CREDENTIALS["AWS_ACCESS_KEY_ID"], EMULATOR_CREDENTIALS["AWS_SECRET_ACCESS_KEY"])
    return aws.client(emulator_settings(settings, state), service, boto)


def describe_emulator(state: dict[str, Any]) -> dict[str, Any]:
    """Its row in `sandbox.status`."""
    emulator = state["emulator"]
    return {"component": "emulator", "address": emulator_url(state),
            "running": runs(state, emulator.get("pid"), emulator["port"]),
            "detail": "moto server (AWS)"}


def write_tasks_config(folder: Path, rds_endpoint: str, rds_port: int, app_port: int, ca: str) -> None:
    """What the emulator's ECS tasks need to reach the RDS stand-in: the endpoint's host name resolves
    to 127.0.0.1 in the container; the stand-in listens on a random port (not 5432), so the RDS address
    override points at it (its certificate's name still verified). The tasks trust the sandbox's CA,
    mounted in the container, for both sides, as the image trusts AWS's and the public ones in the VPC.
    The emulated ALB's name resolves nowhere, in the VPC too: validate's health URL goes to the app
    stand-in, as from the host."""
    config = {"extra_hosts": {rds_endpoint: HOST},
              "volumes": {ca: {"bind": ca, "mode": "ro"}},
              "environment": {"INVOKE_DEVOPS_RDS_ADDRESS": f"{HOST}:{rds_port}",
                              "INVOKE_DEVOPS_ALB_ADDRESS": f"{HOST}:{app_port}",
                              "INVOKE_DEVOPS_NEON_CA_FILE": ca, "INVOKE_DEVOPS_RDS_CA_FILE": ca}}
    (folder / TASKS_CONFIG).write_text(json.dumps(config, indent=2) + "\n")
