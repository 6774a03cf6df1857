"""The command a printed hint names, as the user can run it: `inv` on a host with the package, or the
toolbox's shim as the user typed it (toolbox/inv passes it in DEVOPS_INV: `./toolbox/inv` on a Docker-only
host)."""

from __future__ import annotations

import os
import shlex

INV_ENV = "DEVOPS_INV"


def command() -> str:
    """The command itself, as DEVOPS_INV passes it on (an ECS task's hints are the user's too)."""
    return os.environ.get(INV_ENV) or "inv"


def inv(args: str = "") -> str:
    """`inv ARGS` as this user runs it: inv("sync.list") -> "./toolbox/inv sync.list" through the shim."""
    # Quoted when it must be (a checkout's path with a space): the hint runs as printed.
    return f"{shlex.quote(command())} {args}".strip()
