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
from devops.sync.tools import ToolVersions, check_tools_match_servers, compression_for, tool_versions
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
    clients: aws.Clients | None = None  # the clients of the task's one AWS identity, for what comes later
    rds_instance: dict[str, Any] | None = None  # RDS's description (describe_db_instances), when RDS is a side

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
    """Identity, Terraform outputs, endpoints, tools, each database's version and identity, the bucket: all at
    once, each a round trip or a login away on a real network. What needs the outputs (RDS, the bucket) starts
    with the outputs read last time (one HEAD of the state says whether they still hold) and is done again
    with the state's own when they do not."""
    clients = aws.Clients(settings)
    s3 = clients("s3")
    terraform = Terraform(settings)
    guess = terraform.last_outputs() or {}
    opened: list[Database] = []
    described: dict[str, dict[str, Any]] = {}  # RDS's description by instance: its storage, for the plan

    def available(instance: str) -> dict[str, Any]:
        described[instance] = aws.require_rds_available(settings, instance, clients("rds"))
        return described[instance]

    def database(side: str, outputs: dict[str, Any]) -> Database:
        endpoint = neon_endpoint(settings, console) if side == "neon" else \
            rds_endpoint(settings, outputs, clients("rds"), clients("secretsmanager"), available)
        db = Database(side, endpoint)
        opened.append(db)
        db.read_server()
        return db

    pool = ThreadPoolExecutor(max_workers=3 + 2 * len(sides))
    try:
        reading = pool.submit(terraform.outputs, s3)
        tools = pool.submit(tool_versions)
        started = {side: pool.submit(database, side, guess) for side in sides}
        checking = pool.submit(checked_store, settings, console, s3, guess)
        identity = aws.identity(settings, clients("sts"))
        console.info(f"AWS identity: {identity['arn']}")
        outputs = reading.result()
        if outputs != guess:  # the state changed since (or was never read): what used the guess, again
            started.update({side: pool.submit(database, side, outputs) for side in sides if side != "neon"})
            checking = pool.submit(checked_store, settings, console, s3, outputs)
        databases = {side: future.result() for side, future in started.items()}
        store = checking.result()
        check_tools_match_servers(tools.result(), {db.label: db.version for db in databases.values()})
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        for db in opened:
            db.close()
        raise
    pool.shutdown()
    for db in opened:  # the guess's, when it did not hold
        if db not in databases.values():
            db.close()
    return Environment(settings, identity, outputs, store, tools.result(), databases, clients,
                       described.get(outputs.get("db_instance_identifier") or ""))
