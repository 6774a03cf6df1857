"""Where the two databases are: Neon from its URL, RDS from Terraform's outputs and its secret.

The sync and `inv validate` both resolve RDS here, so validate's connection check reaches exactly the
database a sync would.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

from devops import aws, hints
from devops.config import RDS_CA_BUNDLE, Settings
from devops.console import Console
from devops.errors import DevopsError
from devops.postgres import Endpoint, address_of, make_endpoint, parse_url


NEON_CA_SETTING = "neon_ca_file (INVOKE_DEVOPS_NEON_CA_FILE)"
RDS_CA_SETTING = "rds_ca_file (INVOKE_DEVOPS_RDS_CA_FILE)"


def neon_endpoint(settings: Settings, console: Console) -> Endpoint:
    """Neon from its URL, verified against the system's CA store (Neon's certificates chain to public CAs),
    or neon_ca_file's CA, unless the URL sets sslmode; channel_binding as the URL says."""
    endpoint, notes = parse_url(settings.neon_database_url, "Neon", "NEON_DATABASE_URL",
                                ca_file=settings.neon_ca_file, ca_setting=NEON_CA_SETTING)
    for note in notes:
        console.info(note)
    return endpoint


def rds_endpoint(settings: Settings, outputs: dict[str, Any], rds: Any = None, secrets: Any = None,
                 available: Callable[[str], dict[str, Any]] | None = None) -> Endpoint:
    """RDS from the Terraform outputs and the Secrets Manager secret, through the address override.

    Its certificate is verified against AWS's RDS CA bundle (or rds_ca_file's) for the endpoint's name, also
    through a tunnel: the tunnel's address is where libpq connects (hostaddr), the name what it verifies.
    `rds`, `secrets`: the RDS and Secrets Manager clients to reuse (aws.Clients'); by default new ones.
    `available`: the instance's description, when the caller shares one (validate's checks); by default
    aws.require_rds_available's.
    """
    available = available or (lambda instance: aws.require_rds_available(settings, instance, rds))
    missing = [name for name in ("database_endpoint", "database_secret_arn", "database_name",
                                 "db_instance_identifier") if not outputs.get(name)]
    if missing:
        raise DevopsError(f"Terraform outputs lack {', '.join(missing)}: apply terraform/environments/dev first")
    with ThreadPoolExecutor(max_workers=1) as pool:  # the two requests side by side: a round trip saved
        reading = pool.submit(aws.read_secret_json, settings, outputs["database_secret_arn"], secrets)
        db = available(outputs["db_instance_identifier"])
        override = settings.rds_address_override()
        if not override and not db.get("PubliclyAccessible", True) and not in_ecs_task():
            raise PrivateRds(private_rds(settings, outputs["db_instance_identifier"]))
        secret = reading.result()
    host, port = outputs["database_endpoint"], int(outputs.get("database_port") or 5432)
    hostaddr = ""
    if override:
        hostaddr, port = address_of(override[0]), override[1] or port
    return make_endpoint("RDS", host, port, secret["username"], secret["password"], outputs["database_name"],
                         ca_file=rds_ca_file(settings), ca_setting=RDS_CA_SETTING, hostaddr=hostaddr)


def private_rds(settings: Settings, instance: str) -> str:
    """Why a private RDS cannot be reached from here, and the ways to it: the VPC, or a tunnel. The sandbox
    models the tunnel itself (its RDS address override, on a port of its own), so there the fix is its shell
    line, not a port to forward."""
    why = f"RDS {instance} is private (not publicly accessible) and cannot be reached from here"
    if settings.uses_emulator:
        return (f"{why}: run the task in the sandbox's VPC with --on ecs, or through the tunnel the sandbox models: "
                f"eval \"$({hints.inv('sandbox.env --tunnel')})\", then run it again")
    return (f"{why}: run the task in the VPC with --on ecs, or reach RDS through a tunnel (SSM or SSH port "
            "forwarding) and set rds_address (INVOKE_DEVOPS_RDS_ADDRESS=127.0.0.1:15432)")


def rds_ca_file(settings: Settings) -> str:
    """rds_ca_file, else the RDS CA bundle the toolbox image carries."""
    if settings.rds_ca_file:
        return settings.rds_ca_file
    if not os.path.isfile(RDS_CA_BUNDLE):
        raise DevopsError(f"no RDS CA bundle at {RDS_CA_BUNDLE} (the toolbox image carries it): run the task in the "
                          f"toolbox (./toolbox/inv), or set {RDS_CA_SETTING} to AWS's global-bundle.pem")
    return RDS_CA_BUNDLE


class PrivateRds(DevopsError):
    """RDS is private and nothing leads to it from here: fail at once (not after a connect timeout)."""


def in_ecs_task() -> bool:
    """Inside an ECS task (ECS sets this in every task's environment): in the VPC, where RDS is reachable."""
    return bool(os.environ.get("ECS_CONTAINER_METADATA_URI_V4"))
