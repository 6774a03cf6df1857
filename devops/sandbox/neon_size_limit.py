"""The Neon stand-in's project size limit, enforced: neon_size_limit.c, preloaded into the stand-in's server,
refuses to extend a relation file once the cluster holds neon.max_cluster_size, with a Neon compute's error
(docs/sandbox.md, "The stand-ins' versions and limits")."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from devops.masking import last_line
from devops.sandbox.postgres import PostgresCluster

SOURCE = Path(__file__).with_name("neon_size_limit.c")
# Built into the dev image (toolbox/Dockerfile), which has no compiler.
PREBUILT = Path("/usr/local/lib/devops-toolbox/neon_size_limit.so")


def library(folder: Path) -> tuple[Path | None, str]:
    """The library: the dev image's, else built here into ``folder`` with the host's C compiler. (None, why)
    when there is none to be had."""
    if sys.platform != "linux":
        return None, "it is preloaded with LD_PRELOAD, which only Linux has (the toolbox runs the sandbox on Linux)"
    if PREBUILT.exists():
        return PREBUILT, ""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        return None, f"no C compiler here to build {SOURCE.name} (the toolbox's dev image has it built)"
    built = folder / "neon_size_limit.so"
    result = subprocess.run([compiler, "-shared", "-fPIC", "-O2", "-o", str(built), str(SOURCE), "-ldl"],
                            capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if result.returncode != 0:
        return None, f"building {SOURCE.name} failed: {last_line(result.stderr, 'no output')}"
    return built, ""


def enforce(cluster: PostgresCluster, folder: Path) -> str:
    """Give ``cluster`` the library to preload at each start (PostgresCluster.PRELOAD); "" when done, else why
    the limit is only reported."""
    found, why = library(folder)
    if found is None:
        return why
    shutil.copyfile(found, cluster.root / cluster.PRELOAD)
    return ""
