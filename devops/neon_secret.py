"""`inv secrets.set-neon-url`: the Neon URL into the Secrets Manager secret Terraform created empty.

The sync tasks in the VPC get the URL from that secret (injected by ECS as NEON_DATABASE_URL), so it is in
no task definition, override or log. It is read from stdin, never from argv (argv shows in `ps` and in
shell history); on a terminal without echo.
"""

from __future__ import annotations

import getpass
import sys
from typing import IO

from devops import aws, hints
from devops.config import Settings
from devops.console import Console
from devops.errors import DevopsError
from devops.masking import register_secret
from devops.postgres import parse_url
from devops.terraform import Terraform


def read_url(stdin: IO[str] | None = None) -> str:
    stdin = stdin or sys.stdin
    if stdin.isatty():
        return getpass.getpass("Neon URL (postgresql://user:password@host/dbname, not echoed): ").strip()
    return stdin.read().strip()


def neon_secret_arn(settings: Settings) -> str:
    arn = (Terraform(settings).outputs().get("operations") or {}).get("neon_url_secret_arn")
    if not arn:
        raise DevopsError("Terraform outputs lack operations.neon_url_secret_arn: apply terraform/environments/dev first")
    return arn


def run_set_neon_url(settings: Settings, console: Console, stdin: IO[str] | None = None) -> None:
    url = read_url(stdin)
    register_secret(url)
    if not url:
        raise DevopsError("no Neon URL on stdin: pipe it in, e.g. `printenv NEON_DATABASE_URL | "
                          f"{hints.inv('secrets.set-neon-url')}`")
    endpoint, _notes = parse_url(url, "Neon", "the Neon URL on stdin")  # one clear line when malformed
    console.banner("Set the Neon URL secret", f"Target: {aws.target_label(settings)}")
    arn = neon_secret_arn(settings)
    try:
        aws.client(settings, "secretsmanager").put_secret_value(SecretId=arn, SecretString=url)
    except Exception as exc:  # noqa: BLE001 - boto errors of any kind become one line
        raise DevopsError(f"cannot store the Neon URL in {arn}: {aws.describe(exc)}") from None
    console.passed(f"Neon URL for {endpoint.user}@{endpoint.host}/{endpoint.dbname} stored in {arn}")
