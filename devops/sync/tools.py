"""The PostgreSQL client tools a sync runs: their versions, whether they can read the servers, and pg_dump's
arguments and compression."""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass

from devops.errors import DevopsError

TOOLS = ("pg_dump", "pg_restore", "psql")


class ToolError(DevopsError):
    pass


@dataclass(frozen=True)
class ToolVersions:
    versions: dict[str, str]

    def major(self, tool: str) -> int:
        return int(self.versions[tool].split(".")[0])


def tool_versions(path: str | None = None) -> ToolVersions:
    """pg_dump, pg_restore and psql versions; one clear error when one is missing."""
    versions = {}
    for tool in TOOLS:
        binary = shutil.which(tool, path=path)
        if binary is None:
            raise ToolError(f"{tool} not found on PATH: install the PostgreSQL client tools "
                            "(postgresql-client-18) or run the tasks in the toolbox (./toolbox/inv)")
        out = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout
        found = re.search(r"(\d+)(?:\.(\d+))?", out)
        versions[tool] = found.group(0) if found else "0"
    return ToolVersions(versions)


def check_tools_match_servers(tools: ToolVersions, servers: dict[str, int]) -> None:
    """pg_dump/pg_restore must be of a major version at least each server's."""
    for label, version_num in servers.items():
        server_major = version_num // 10000
        for tool in ("pg_dump", "pg_restore"):
            if tools.major(tool) < server_major:
                raise ToolError(
                    f"{tool} {tools.versions[tool]} is older than the {label} server (PostgreSQL {server_major}): "
                    f"install postgresql-client-{server_major} or newer, or run the task in the toolbox (./toolbox/inv)"
                )


def dump_args(compression: str, snapshot: str | None = None) -> list[str]:
    args = ["pg_dump", "--format=custom", "--no-owner", "--no-acl", f"--compress={compression}"]
    if snapshot:
        args.append(f"--snapshot={snapshot}")
    return args


def compression_for(tools: ToolVersions, setting: str = "auto") -> str:
    """pg_dump's --compress value. "auto": zstd level 1 where pg_dump has it (16+), which roughly halves
    the bytes sent to S3 at little CPU; none before that, because gzip (the only older choice) costs
    several times the dump itself (measured in bench/sync_throughput.py)."""
    if setting != "auto":
        return setting
    return "zstd:1" if tools.major("pg_dump") >= 16 else "0"
