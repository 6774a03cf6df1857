"""One Settings object for every task.

Project settings come from Invoke's configuration (``invoke.yaml``, ``INVOKE_DEVOPS_*`` variables) under
the ``devops`` key; AWS and the Neon connection come from the standard environment. Every resource name
the tasks use is derived here, so no name is spelled out anywhere else in the Python code.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from devops.errors import DevopsError
from devops.sync.scope import names

REPO_ROOT = Path(__file__).resolve().parent.parent

# Invoke configuration defaults, under the "devops" key. Each one is overridable in invoke.yaml or as
# INVOKE_DEVOPS_<KEY> (e.g. INVOKE_DEVOPS_PROJECT_NAME=acme).
CONFIG_DEFAULTS: dict[str, Any] = {
    "project_name": "davidshaevel",
    # Empty means: AWS_REGION, then AWS_DEFAULT_REGION, then DEFAULT_REGION.
    "region": "",
    # A region newer than the installed botocore, named here to use it anyway: the tasks refuse a region that
    # no partition of botocore's endpoint data lists (a typo would otherwise reach AWS as requests to a host
    # that does not exist), unless it is exactly this one (devops.aws.region_problem).
    "new_region": "",
    # host[:port] to reach RDS at instead of its endpoint: an SSH/SSM tunnel to a private instance,
    # or the sandbox's stand-in.
    "rds_address": "",
    # host:port to reach the app at instead of the ALB's DNS name (sent as the Host header) for
    # `inv validate`'s health URL: a tunnel, or the sandbox's app stand-in.
    "alb_address": "",
    # TLS: every connection to Neon and RDS is verified (sslmode=verify-full) against a CA file: Neon's against
    # the system's CA store (its certificates chain to public CAs) unless NEON_DATABASE_URL sets sslmode;
    # RDS's against AWS's RDS CA bundle, which the toolbox image carries (RDS_CA_BUNDLE). A file here (any
    # path on the host: the toolbox mounts it) replaces that side's: a private CA, or the sandbox's.
    "neon_ca_file": "",
    "rds_ca_file": "",
    "terraform_dir": "terraform/environments/dev",
    "sandbox_dir": ".sandbox",
    # PostgreSQL server binaries (initdb, pg_ctl, postgres) for the sandbox's stand-ins: a directory, or a
    # pattern with {major} (/usr/lib/postgresql/{major}/bin); empty means search the usual places.
    "sandbox_pg_bin": "",
    # The stand-ins' server majors, as the real services run them: Neon creates projects on 18; RDS runs
    # Terraform's db_engine_version (empty: that variable's default; the sandbox passes it to Terraform).
    "sandbox_neon_major": "18",
    "sandbox_rds_major": "",
    # The stand-ins' server limits, as the real services set them (Neon's and RDS's documentation on connection
    # limits): a small Neon compute (0.25 CU: 104 connections, PostgreSQL's default lock table of 64 locks per
    # transaction and connection)
    # and the dev RDS as Terraform makes it (db.t4g.micro: LEAST(DBInstanceClassMemory/9531392, 5000), about
    # 87 connections; its parameter group's max_locks_per_transaction, db_max_locks_per_transaction's
    # default: tests/test_config.py keeps the two equal). A test can make them tight.
    "sandbox_neon_max_connections": 104,
    "sandbox_rds_max_connections": 87,
    "sandbox_neon_max_locks_per_transaction": 64,
    "sandbox_rds_max_locks_per_transaction": 384,
    # Seconds after which the Neon stand-in closes a connection with no query running (PostgreSQL's
    # idle_session_timeout): a Neon compute suspends after 5 minutes without one (the default, and fixed on the
    # free plan) and closes its connections. RDS closes none. 0: never.
    "sandbox_neon_idle_seconds": 300,
    # The Neon stand-in's project size limit in MB (neon.max_cluster_size, which a Neon compute enforces): the
    # free plan's 0.5 GB. The stand-in reports it and, as Neon's compute does, refuses to grow past it
    # (devops/sandbox/neon_size_limit.c). 0: none.
    "sandbox_neon_max_cluster_size": 512,
    # The RDS stand-in's storage in MB as the emulator's CloudWatch counts it (FreeStorageSpace: this less what the
    # stand-in's data folder takes); 0: the emulated instance's allocated storage (db_allocated_storage, 20 GiB).
    # A test makes it small to see a sync into RDS refused for want of room.
    "sandbox_rds_storage_mb": 0,
    # The round-trip time, in milliseconds, that the sandbox's network (devops/sandbox/network.py) adds between
    # the tasks and the stand-ins of Neon, RDS and AWS: 20-80 from a laptop to the real services.
    "sandbox_rtt_ms": 0,
    # pg_dump --compress for the dumps in S3; "auto" picks by pg_dump's version (see devops/sync/tools.py).
    "dump_compression": "auto",
    # What every sync and restore leaves alone on both sides (devops/sync/scope.py): schemas and extensions,
    # comma-separated or a list, e.g. neon_auth (Neon Auth's users, which Neon writes on every sign-in) and
    # pg_session_jwt (Neon's Data API; RDS cannot create it). Not dumped, not dropped or replaced on the
    # target, not compared; the sync tasks' --exclude-schema and --exclude-extension add to them.
    "exclude_schemas": "",
    "exclude_extensions": "",
    # Where `inv TASK` runs on a host with Python: "container" re-runs it inside the toolbox image
    # (devops/toolbox.py); "host" keeps it here (the host-native test run sets INVOKE_DEVOPS_TOOLBOX=host).
    "toolbox": "container",
    # Each task's run log (its whole output and every tool's, masked; git-ignored), and how many to keep.
    "log_dir": ".devops/logs",
    "log_keep": 50,
    # Seconds between the progress lines of long work when there is no terminal to update one line on.
    "progress_interval": 10.0,
    # Where syncs and validate run: "local" (here), or "ecs" (a one-off ECS Fargate task in the VPC,
    # devops/remote.py); a task's --on flag overrides it.
    "runner": "local",
}
# The stand-ins' server limits, per side (devops.sandbox.stand_ins.Sandbox.limits): positive integers.
SANDBOX_LIMITS = tuple(f"sandbox_{side}_{limit}" for side in ("neon", "rds")
                       for limit in ("max_connections", "max_locks_per_transaction"))
DEFAULT_REGION = "us-east-1"
# Where the toolbox image keeps AWS's RDS CA bundle (toolbox/Dockerfile: RDS_CA_PACKAGE).
RDS_CA_BUNDLE = "/usr/local/share/devops-toolbox/rds-global-bundle.pem"
# The rule of terraform/environments/dev/variables.tf's project_name validation (a test keeps them equal).
PROJECT_NAME_PATTERN = r"^[a-z][a-z0-9-]{1,30}[a-z0-9]$"
ENVIRONMENT = "dev"
ECR_REPOSITORIES = ("backend", "frontend", "grafana")
ECS_SERVICES = ("backend", "frontend", "prometheus", "grafana")


@dataclass(frozen=True)
class Settings:
    project_name: str = CONFIG_DEFAULTS["project_name"]
    region: str = DEFAULT_REGION
    # Where the region came from, for the line that refuses it: the setting or variable to change.
    region_source: str = ""
    new_region: str = ""
    terraform_dir: Path = REPO_ROOT / CONFIG_DEFAULTS["terraform_dir"]
    sandbox_dir: Path = REPO_ROOT / CONFIG_DEFAULTS["sandbox_dir"]
    sandbox_pg_bin: str = ""
    sandbox_neon_major: str = "18"
    sandbox_rds_major: str = ""
    sandbox_neon_max_connections: int = CONFIG_DEFAULTS["sandbox_neon_max_connections"]
    sandbox_rds_max_connections: int = CONFIG_DEFAULTS["sandbox_rds_max_connections"]
    sandbox_neon_max_locks_per_transaction: int = CONFIG_DEFAULTS["sandbox_neon_max_locks_per_transaction"]
    sandbox_rds_max_locks_per_transaction: int = CONFIG_DEFAULTS["sandbox_rds_max_locks_per_transaction"]
    sandbox_neon_idle_seconds: float = CONFIG_DEFAULTS["sandbox_neon_idle_seconds"]
    sandbox_neon_max_cluster_size: int = CONFIG_DEFAULTS["sandbox_neon_max_cluster_size"]
    sandbox_rds_storage_mb: int = CONFIG_DEFAULTS["sandbox_rds_storage_mb"]
    sandbox_rtt_ms: float = 0
    dump_compression: str = "auto"
    exclude_schemas: tuple[str, ...] = ()
    exclude_extensions: tuple[str, ...] = ()
    rds_address: str = ""
    alb_address: str = ""
    neon_ca_file: str = ""
    rds_ca_file: str = ""
    aws_profile: str = ""
    aws_endpoint_url: str = ""
    log_dir: Path = REPO_ROOT / CONFIG_DEFAULTS["log_dir"]
    log_keep: int = CONFIG_DEFAULTS["log_keep"]
    progress_interval: float = CONFIG_DEFAULTS["progress_interval"]
    runner: str = "local"
    # A secret: kept out of repr so it never lands in a log or a traceback.
    neon_database_url: str = field(default="", repr=False)

    @classmethod
    def load(
        cls, config: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
    ) -> "Settings":
        """Build settings from Invoke's ``devops`` config section (or a plain dict) and the environment."""
        env = os.environ if environ is None else environ
        values = dict(CONFIG_DEFAULTS)
        values.update({k: v for k, v in dict(config or {}).items() if v is not None})
        unknown = set(values) - set(CONFIG_DEFAULTS)
        if unknown:
            raise DevopsError(
                f"unknown devops setting(s): {', '.join(sorted(unknown))}; "
                f"known: {', '.join(CONFIG_DEFAULTS)}"
            )
        project = str(values["project_name"]).strip()
        if not re.fullmatch(PROJECT_NAME_PATTERN, project):
            raise DevopsError(
                f"invalid project_name {project!r}: use 3-32 lower-case letters, digits and dashes, starting with "
                "a letter and not ending with a dash (it names the S3 bucket and the RDS instance)"
            )
        region, region_source = next(
            (value, source) for value, source in (
                (str(values["region"] or ""), "devops.region"),
                (env.get("AWS_REGION", ""), "AWS_REGION"),
                (env.get("AWS_DEFAULT_REGION", ""), "AWS_DEFAULT_REGION"),
                (DEFAULT_REGION, "the default"),
            ) if value
        )
        return cls(
            project_name=project,
            region=region,
            region_source=region_source,
            new_region=str(values["new_region"] or "").strip(),
            terraform_dir=_repo_path(values["terraform_dir"]),
            sandbox_dir=_repo_path(values["sandbox_dir"]),
            sandbox_pg_bin=str(values["sandbox_pg_bin"] or ""),
            sandbox_neon_major=_major(values["sandbox_neon_major"], "sandbox_neon_major") or "18",
            sandbox_rds_major=_major(values["sandbox_rds_major"], "sandbox_rds_major"),
            **{name: _number(values[name], name, int) for name in SANDBOX_LIMITS},
            sandbox_neon_idle_seconds=_number(values["sandbox_neon_idle_seconds"], "sandbox_neon_idle_seconds", float,
                                              zero=True),
            sandbox_neon_max_cluster_size=_number(values["sandbox_neon_max_cluster_size"],
                                                  "sandbox_neon_max_cluster_size", int, zero=True),
            sandbox_rds_storage_mb=_number(values["sandbox_rds_storage_mb"], "sandbox_rds_storage_mb", int, zero=True),
            sandbox_rtt_ms=_number(values["sandbox_rtt_ms"], "sandbox_rtt_ms", float, zero=True),
            dump_compression=str(values["dump_compression"] or "auto"),
            exclude_schemas=names(values["exclude_schemas"], "devops.exclude_schemas"),
            exclude_extensions=names(values["exclude_extensions"], "devops.exclude_extensions"),
            rds_address=str(values["rds_address"] or ""),
            alb_address=str(values["alb_address"] or ""),
            neon_ca_file=_ca_file(values["neon_ca_file"], "neon_ca_file"),
            rds_ca_file=_ca_file(values["rds_ca_file"], "rds_ca_file"),
            aws_profile=env.get("AWS_PROFILE", ""),
            aws_endpoint_url=env.get("AWS_ENDPOINT_URL", ""),
            neon_database_url=env.get("NEON_DATABASE_URL", ""),
            log_dir=_repo_path(values["log_dir"]),
            log_keep=_number(values["log_keep"], "log_keep", int),
            progress_interval=_number(values["progress_interval"], "progress_interval", float),
            runner=str(values["runner"] or "local"),
        )

    @classmethod
    def from_context(cls, ctx: Any) -> "Settings":
        """Settings from an Invoke Context (its merged config)."""
        return cls.load(ctx.config.get("devops", {}))

    # Names, derived in one place. Terraform derives the same ones from var.project_name, which the
    # tasks pass as TF_VAR_project_name (see terraform_variables), so the two cannot drift apart.
    @property
    def name_prefix(self) -> str:
        return f"{self.project_name}-{ENVIRONMENT}"

    @property
    def bucket_name(self) -> str:
        return f"{self.name_prefix}-db-backups"

    @property
    def rds_instance_id(self) -> str:
        return f"{self.name_prefix}-db"

    @property
    def ecr_repository_names(self) -> tuple[str, ...]:
        return tuple(f"{self.project_name}/{name}" for name in ECR_REPOSITORIES)

    @property
    def service_discovery_namespace(self) -> str:
        return f"{self.project_name}.local"

    @property
    def uses_emulator(self) -> bool:
        return bool(self.aws_endpoint_url)

    def rds_address_override(self) -> tuple[str, int | None] | None:
        """The configured RDS address as (host, port or None), or None when not set."""
        return _address(self.rds_address, "rds_address", port_required=False)

    def alb_address_override(self) -> tuple[str, int] | None:
        """The configured ALB address as (host, port), or None when not set."""
        return _address(self.alb_address, "alb_address", port_required=True)  # type: ignore[return-value]

    def terraform_variables(self) -> dict[str, str]:
        """Environment that gives Terraform the same names and region as the tasks."""
        return {"TF_VAR_project_name": self.project_name, "TF_VAR_aws_region": self.region}


def _address(value: str, setting: str, port_required: bool) -> tuple[str, int | None] | None:
    """host[:port] of an address override, or None when the setting is empty."""
    if not value:
        return None
    host, sep, port = value.rpartition(":")
    if not sep and not port_required:
        return value, None
    if not host or not port.isdigit():
        expected = "host:port" if port_required else "host or host:port"
        raise DevopsError(f"invalid {setting} {value!r}: expected {expected} (INVOKE_DEVOPS_{setting.upper()})")
    return host, int(port)


def _major(value: Any, setting: str) -> str:
    """A PostgreSQL major version setting ("15"), or "" when empty."""
    text = str(value or "").strip()
    if text and not text.isdigit():
        raise DevopsError(f"invalid {setting} {text!r}: expected a PostgreSQL major version such as 17 "
                          f"(INVOKE_DEVOPS_{setting.upper()})")
    return text


def _number(value: Any, setting: str, kind: type, zero: bool = False) -> Any:
    try:
        number = kind(value)
    except (TypeError, ValueError):
        number = -1
    if number < 0 or (number == 0 and not zero):
        expected = "a number, 0 or more" if zero else "a positive number"
        raise DevopsError(f"invalid {setting} {value!r}: expected {expected} (INVOKE_DEVOPS_{setting.upper()})")
    return number


def _ca_file(value: Any, setting: str) -> str:
    """A CA file setting: empty, or a PEM file that exists (checked now: libpq's own error names no setting)."""
    text = str(value or "").strip()
    if not text:
        return ""
    path = _repo_path(text)
    if not path.is_file():
        raise DevopsError(f"{setting} {text!r}: no such file; name the PEM file of the CA that signed the server's "
                          f"certificate (INVOKE_DEVOPS_{setting.upper()})")
    return str(path)


def _repo_path(value: Any) -> Path:
    path = Path(str(value)).expanduser()
    return path if path.is_absolute() else REPO_ROOT / path
