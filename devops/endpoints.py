"""Where the two databases are: Neon from its URL, RDS from Terraform's outputs and its secret.

The sync and `inv validate` both resolve RDS here, so validate's connection check reaches exactly the
database a sync would.
"""

from __future__ import annotations

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
    aws.require_rds_available(settings, outputs["db_instance_identifier"], rds)
    secret = aws.read_secret_json(settings, outputs["database_secret_arn"])
    host, port = outputs["database_endpoint"], int(outputs.get("database_port") or 5432)
    override = settings.rds_address_override()
    if override:
        host, port = override[0], override[1] or port
    return make_endpoint("RDS", host, port, secret["username"], secret["password"], outputs["database_name"])
