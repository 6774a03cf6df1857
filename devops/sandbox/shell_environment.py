"""The variables that point tasks at the sandbox: what `inv sandbox.env` prints for a shell to eval, and the same
as a process environment (tests, benchmarks, the demo)."""

from __future__ import annotations

import dataclasses
import os
import shlex
from pathlib import Path
from typing import Any

from devops.config import Settings
from devops.emulator_tasks import CREDENTIALS as EMULATOR_CREDENTIALS
from devops.sandbox.aws_emulator import emulator_url
from devops.sandbox.postgres import HOST
from devops.sandbox.postgres_stand_ins import server_of


def aws_environment(settings: Settings, folder: Path, state: dict[str, Any]) -> dict[str, str | None]:
    """The AWS side of the environment that points a task (or the sandbox's own Terraform) at the emulator;
    None means unset."""
    return {
        "AWS_ENDPOINT_URL": emulator_url(state),
        "AWS_REGION": settings.region,
        "AWS_DEFAULT_REGION": settings.region,  # what boto3 and AWS CLI v1 read (not AWS_REGION)
        **EMULATOR_CREDENTIALS,
        "AWS_PROFILE": None,
        "AWS_SESSION_TOKEN": None,
        "TF_DATA_DIR": str(folder / "terraform"),
        # The emulated RDS runs the RDS stand-in's major: every Terraform run against the sandbox
        # (activate, validate --drift) keeps it, as a tfvars entry would on AWS.
        "TF_VAR_db_engine_version": state.get("rds_major") or None,
        # And its parameter group the stand-in's lock table.
        "TF_VAR_db_max_locks_per_transaction": str(settings.sandbox_rds_max_locks_per_transaction),
    }


def env_values(settings: Settings, folder: Path, state: dict[str, Any], tunnel: bool) -> dict[str, str | None]:
    """The variables that point every task (and psql) at the sandbox ``state`` describes; None means unset.

    RDS is private, as on AWS: its emulated endpoint leads nowhere from the host, so a local sync fails
    at once and `--on ecs` runs it in the emulator's VPC. ``tunnel`` models a tunnel (SSM or SSH port
    forwarding) instead: the RDS address override points at the stand-in. SANDBOX_RDS_URL is the
    stand-in itself, for looking at the data (as a query editor in the AWS console would); no task reads it.
    """
    neon, rds = server_of(state, "neon"), server_of(state, "rds")
    routes = state["network"]["routes"]
    values: dict[str, str | None] = {
        # The tasks reach each stand-in through the sandbox's network, over TLS verified with its CA.
        "NEON_DATABASE_URL": dataclasses.replace(neon, port=routes["neon"]).url(),
        **aws_environment(settings, folder, state),
        "AWS_ENDPOINT_URL": f"http://{HOST}:{routes['aws']}",
        "INVOKE_DEVOPS_RDS_ADDRESS": f"{HOST}:{routes['rds']}" if tunnel else None,
        "INVOKE_DEVOPS_ALB_ADDRESS": f"{HOST}:{state['app']['port']}" if "app" in state else None,
        "INVOKE_DEVOPS_NEON_CA_FILE": state["ca"],
        "INVOKE_DEVOPS_RDS_CA_FILE": state["ca"],
        "SANDBOX_RDS_URL": rds.url(verified=True),
    }
    if settings.sandbox_dir != Settings().sandbox_dir:
        values["INVOKE_DEVOPS_SANDBOX_DIR"] = str(folder)
    return values


def shell_lines(values: dict[str, str | None]) -> list[str]:
    """POSIX shell lines that set ``values`` (unset for None), for ``eval "$(inv sandbox.env)"``."""
    return [f"unset {k}" if v is None else f"export {k}={shlex.quote(v)}" for k, v in values.items()]


def with_values(values: dict[str, str | None], base: dict[str, str] | None = None) -> dict[str, str]:
    """``base`` (this process's environment by default) as after evaluating shell_lines(values)."""
    env = dict(os.environ if base is None else base)
    for key, value in values.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env
