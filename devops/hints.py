"""The command a printed hint names, as the user can run it: `inv` on a host with the package, or the
toolbox's shim as the user typed it (toolbox/inv passes it in DEVOPS_INV: `./toolbox/inv` on a Docker-only
host)."""

from __future__ import annotations

import os

INV_ENV = "DEVOPS_INV"


def inv(args: str = "") -> str:
    """`inv ARGS` as this user runs it: inv("sync.list") -> "./toolbox/inv sync.list" through the shim."""
    command = os.environ.get(INV_ENV) or "inv"
    return f"{command} {args}".strip()
