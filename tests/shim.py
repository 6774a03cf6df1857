"""Running toolbox/inv as a Docker-only host does: a PATH of core utilities and docker, nothing else."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from devops.config import REPO_ROOT
from tests.conftest import PROVIDER_MIRRORS

SHIM = REPO_ROOT / "toolbox" / "inv"
# What toolbox/inv runs with besides docker: a host with only Docker and core utilities (setsid: util-linux's,
# on every Linux; the shim falls back to perl's on macOS).
CORE_UTILITIES = ("sh", "dirname", "basename", "id", "sha256sum", "sort", "cut", "env", "grep", "stat", "tail", "cat",
                  "sleep", "date", "setsid", "mktemp", "cp", "mkdir", "rm", "touch")


def bin_dir(path: Path, docker: str | None) -> str:
    """A PATH holding only the core utilities (and docker when given): no python3."""
    path.mkdir()
    for name in CORE_UTILITIES:
        os.symlink(shutil.which(name), path / name)
    if docker:
        os.symlink(docker, path / "docker")
    return str(path)


def shim_env(path: str, **extra: str) -> dict[str, str]:
    """The environment of a shim run: HOME, the engine, the provider mirror and the CA; ``extra`` on top."""
    keep = ("HOME", "DOCKER_HOST", "TF_PROVIDER_MIRROR", "DEVOPS_TOOLBOX_CA")
    env = {k: v for k, v in os.environ.items() if k in keep}
    # The machine's provider mirror, for the sandbox's Terraform in the container (toolbox/entrypoint).
    mirror = next((m for m in (env.get("TF_PROVIDER_MIRROR", ""), *PROVIDER_MIRRORS)
                   if m and Path(m, "registry.terraform.io").is_dir()), None)
    if mirror:
        env["TF_PROVIDER_MIRROR"] = mirror
    return {**env, "PATH": path, **extra}
