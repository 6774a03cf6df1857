"""Terraform against the sandbox: the real terraform/environments/dev applied in pilot light to the emulator by
environment alone (AWS_ENDPOINT_URL, test credentials, TF_DATA_DIR, and the S3 backend pointed at a state
bucket in the emulator), and the Terraform every later run against the sandbox uses."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

from devops.config import Settings
from devops.console import Console
from devops.errors import DevopsError
from devops.sandbox.aws_emulator import emulator_client
from devops.sandbox.shell_environment import aws_environment
from devops.terraform import Terraform

STATE_KEY = "dev/terraform.tfstate"


def terraform_default(settings: Settings, variable: str) -> str:
    """A variable's default in the environment's Terraform code (variables.tf), e.g. db_engine_version."""
    text = (settings.terraform_dir / "variables.tf").read_text()
    block = re.search(r'variable\s+"' + re.escape(variable) + r'"\s*\{(.*?)\n\}', text, re.S)
    default = re.search(r'^\s*default\s*=\s*"?([^"\n]*?)"?\s*$', block.group(1), re.M) if block else None
    if not default:
        raise DevopsError(f"no default for variable {variable} in {settings.terraform_dir / 'variables.tf'}")
    return default.group(1)


def state_bucket(settings: Settings) -> str:
    """The emulator's bucket that holds Terraform's state."""
    return f"{settings.name_prefix}-sandbox-tfstate"


def sandbox_terraform(settings: Settings, folder: Path, state: dict[str, Any]) -> Terraform:
    """Terraform pointed at the emulator and the sandbox's own data dir, logging into the sandbox's folder."""
    return Terraform(settings, env=aws_environment(settings, folder, state), log=folder / "terraform.log")


def apply_terraform(settings: Settings, folder: Path, state: dict[str, Any], console: Console) -> dict[str, Any]:
    """Create the state bucket, init and apply in pilot light; returns Terraform's outputs."""
    emulator_client(settings, state, "s3").create_bucket(Bucket=state_bucket(settings))
    terraform = sandbox_terraform(settings, folder, state)
    started = time.monotonic()
    terraform.init(backend_config={
        "bucket": state_bucket(settings), "key": STATE_KEY, "region": settings.region,
        # The emulator serves buckets by path, not by virtual host name.
        "use_path_style": "true",
    })
    console.info("Terraform: applying the dev environment in pilot light against the emulator "
                 "(about 90s of provider waits)...")
    terraform.apply(variables={"dev_activated": False})
    outputs = terraform.outputs()
    console.info(f"Terraform applied in {time.monotonic() - started:.0f}s (log: {folder / 'terraform.log'})")
    return outputs


def describe_terraform(settings: Settings, state: dict[str, Any]) -> dict[str, Any]:
    """Its row in `sandbox.status`."""
    return {"component": "terraform", "address": str(settings.terraform_dir),
            "running": bool(state["terraform"].get("applied")),
            "detail": f"state s3://{state['terraform']['state_bucket']}/{STATE_KEY}"}
