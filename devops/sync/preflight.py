"""Step 1 of every sync, restore and list: what the operation talks to, resolved and checked once."""

from __future__ import annotations

import dataclasses
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from devops import aws
from devops.config import Settings
from devops.console import Console
from devops.endpoints import neon_endpoint, rds_endpoint
from devops.sync.database import Database
from devops.sync.pipeline import ToolVersions, check_tools_match_servers, compression_for, tool_versions
from devops.sync.store import DumpStore
from devops.terraform import Terraform


@dataclasses.dataclass
class Environment:
    settings: Settings
    identity: dict[str, Any]
    outputs: dict[str, Any]
    store: DumpStore
    tools: ToolVersions
    databases: dict[str, Database]  # by side: neon, rds

    @property
    def compression(self) -> str:
        return compression_for(self.tools, self.settings.dump_compression)

    def close(self) -> None:
        for database in self.databases.values():
            database.close()


def checked_store(settings: Settings, console: Console, s3: Any, outputs: dict[str, Any]) -> DumpStore:
    """The dumps bucket the Terraform outputs name (else the setting's), checked."""
    store = DumpStore(s3, outputs.get("db_backups_bucket_name") or settings.bucket_name, warn=console.warn)
    store.check_bucket()
    return store


def store_of(settings: Settings, console: Console) -> DumpStore:
    """The dumps bucket, for a task that needs nothing else (sync.list)."""
    s3 = aws.client(settings, "s3")
    return checked_store(settings, console, s3, Terraform(settings).outputs(s3))


def prepare(settings: Settings, console: Console, sides: tuple[str, ...]) -> Environment:
    """Identity, Terraform outputs, endpoints, tools, each database's version and identity, the bucket."""
    s3 = aws.client(settings, "s3")
    with ThreadPoolExecutor(max_workers=1) as pool:
        # Side by side with the identity call; one HEAD of the state instead of Terraform while it is unchanged.
        reading = pool.submit(Terraform(settings).outputs, s3)
        identity = aws.identity(settings)
        console.info(f"AWS identity: {identity['arn']}")
        outputs = reading.result()
    databases = {side: Database(side, neon_endpoint(settings, console) if side == "neon"
                                else rds_endpoint(settings, outputs)) for side in sides}
    tools = tool_versions()
    store = checked_store(settings, console, s3, outputs)
    with ThreadPoolExecutor(max_workers=len(sides)) as pool:
        list(pool.map(Database.read_server, databases.values()))
    check_tools_match_servers(tools, {db.label: db.version for db in databases.values()})
    return Environment(settings, identity, outputs, store, tools, databases)
