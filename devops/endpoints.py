"""Where the two databases are: Neon from its URL, RDS from Terraform's outputs and its secret.

The sync and `inv validate` both resolve RDS here, so validate's connection check reaches exactly the
database a sync would.
"""

from __future__ import annotations

import os
from typing import Any

from devops import aws
from devops.config import Settings
from devops.console import Console
from devops.errors import DevopsError
from devops.postgres import Endpoint, make_endpoint, parse_url


def neon_endpoint(settings: Settings, console: Console) -> Endpoint:
    endpoint, notes = parse_url(settings.neon_database_url, "Neon", "NEON_DATABASE_URL")
    for note in notes:
        console.info(note)
    return endpoint


def rds_endpoint(settings: Settings, outputs: dict[str, Any], rds: Any = None) -> Endpoint:
    """RDS from the Terraform outputs and the Secrets Manager secret, through the address override."""
    missing = [name for name in ("database_endpoint", "database_secret_arn", "database_name",
                                 "db_instance_identifier") if not outputs.get(name)]
    if missing:
        raise DevopsError(f"Terraform outputs lack {', '.join(missing)}: apply terraform/environments/dev first")
    db = aws.require_rds_available(settings, outputs["db_instance_identifier"], rds)
    override = settings.rds_address_override()
    if not override and not db.get("PubliclyAccessible", True) and not in_ecs_task():
        raise PrivateRds(f"RDS {outputs['db_instance_identifier']} is private (not publicly accessible) and "
                         "cannot be reached from here: run the task in the VPC with --on ecs, or reach RDS through "
                         "a tunnel (SSM or SSH port forwarding) and set rds_address "
                         "(INVOKE_DEVOPS_RDS_ADDRESS=127.0.0.1:15432)")
    secret = aws.read_secret_json(settings, outputs["database_secret_arn"])
    host, port = outputs["database_endpoint"], int(outputs.get("database_port") or 5432)
    if override:
        host, port = override[0], override[1] or port
    return make_endpoint("RDS", host, port, secret["username"], secret["password"], outputs["database_name"])


class PrivateRds(DevopsError):
    """RDS is private and nothing leads to it from here: fail at once (not after a connect timeout)."""


def in_ecs_task() -> bool:
    """Inside an ECS task (ECS sets this in every task's environment): in the VPC, where RDS is reachable."""
    return bool(os.environ.get("ECS_CONTAINER_METADATA_URI_V4"))
