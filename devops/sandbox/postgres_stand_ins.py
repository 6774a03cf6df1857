"""The Neon and RDS stand-ins: a PostgreSQL server each (postgres.py), accepting TLS only with a certificate of
the sandbox's CA, holding the application role and database the real service gives (a Neon project's owner,
an RDS master user), and, on Neon, the sample data."""

from __future__ import annotations

import dataclasses
import secrets
from pathlib import Path
from typing import Any

from psycopg2 import sql

from devops.console import Console
from devops.sandbox import certificates, neon_size_limit
from devops.sandbox.postgres import HOST, PostgresCluster, Server, unprivileged_user
from devops.sandbox.processes import free_port, port_open

SAMPLE_DATA = Path(__file__).with_name("sample_data.sql")
NEON_ROLE = "neondb_owner"
NEON_DATABASE = "neondb"
# The stand-ins, by their name in the state and in the sandbox's folder.
ROLES = {"neon": "Neon stand-in", "rds": "RDS stand-in"}


def server_of(state: dict[str, Any], name: str) -> Server:
    """The stand-in ``name`` ("neon" or "rds") as ``state`` records it."""
    return Server(**state[name])


def cluster_of(folder: Path, state: dict[str, Any], name: str) -> PostgresCluster:
    """The data directory and server binaries of the stand-in ``name``."""
    return PostgresCluster(Path(state["pg_bin"][name]), folder / name, state.get("run_as"))


def start_server(folder: Path, name: str, bin_dir: Path, run_as: str | None, ca: str, limits: dict[str, int],
                 console: Console) -> Server:
    """A new cluster in ``folder``/``name`` with ``limits``, TLS only with a certificate of the CA in
    ``folder``/ca, started; its role and database come later (create_app_database)."""
    cluster = PostgresCluster(bin_dir, folder / name, run_as)
    server = Server(name=name, port=free_port(), superuser_password=secrets.token_urlsafe(18),
                    version=cluster.version(), ca=ca)
    cluster.root.mkdir(parents=True, exist_ok=True)
    tls = certificates.issue(folder / "ca", cluster.root, [HOST, "localhost"], run_as)
    cluster.init(server, {**limits, **own_extensions(name, server.version)}, tls)
    if name == "neon" and limits.get("neon.max_cluster_size") not in (None, "0MB"):
        # Neon's compute refuses to grow past its project's size limit: so does the stand-in, where it can.
        if why := neon_size_limit.enforce(cluster, folder):
            console.warn(f"the Neon stand-in reports neon.max_cluster_size without enforcing it: {why}")
    cluster.start()
    console.info(f"PostgreSQL {server.version} for the {name} stand-in on {HOST}:{server.port}")
    return server


def create_app_database(server: Server, user: str, password: str, database: str) -> None:
    """A login role and a database it owns (like a Neon owner or an RDS master user, not a superuser), on any
    server this package started; ``server`` then logs in as that role. A role that exists gets the password."""
    conn = server.connect(as_superuser=True)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (user,))
            verb = "ALTER" if cur.fetchone() else "CREATE"
            cur.execute(sql.SQL(verb + " ROLE {} LOGIN CREATEDB CREATEROLE PASSWORD %s").format(
                sql.Identifier(user)), (password,))
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,))
            if not cur.fetchone():
                cur.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(
                    sql.Identifier(database), sql.Identifier(user)))
    finally:
        conn.close()
    server.user, server.password, server.database = user, password, database


# Extensions only one stand-in can create (neon_extensions/extension/*.control: Neon's pg_session_jwt;
# rds_extensions: RDS's aws_commons).
OWN_EXTENSIONS = {"neon": Path(__file__).parent / "neon_extensions", "rds": Path(__file__).parent / "rds_extensions"}


def own_extensions(role: str, version: str) -> dict[str, str]:
    """The server setting that gives a stand-in (``role``: neon, rds) the extensions only its service has:
    PostgreSQL 18's extension_control_path, a directory of its own. An older server has no such setting, and
    no such extension."""
    if role not in OWN_EXTENSIONS or int(version.split(".")[0]) < 18:
        return {}
    return {"extension_control_path": f"{OWN_EXTENSIONS[role]}:$system"}


# The roles Neon's Data API creates in a project (its requests run as one of them, and row-level security
# policies name them): RDS has no such roles.
NEON_DATA_API_ROLES = ("authenticated", "anonymous")


def create_neon_roles(server: Server) -> None:
    """What a Neon project holds that RDS does not: the Data API's roles (NOLOGIN, as Neon creates them)."""
    conn = server.connect(as_superuser=True)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            for role in NEON_DATA_API_ROLES:
                cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,))
                if not cur.fetchone():
                    cur.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(role)))
    finally:
        conn.close()


def load_sample_data(server: Server) -> None:
    """sample_data.sql, as the application role, into its database."""
    conn = server.connect()
    try:
        with conn, conn.cursor() as cur:
            cur.execute(SAMPLE_DATA.read_text())
    finally:
        conn.close()


def name_the_rds_endpoint(folder: Path, state: dict[str, Any], endpoint: str) -> None:
    """A new certificate for the RDS stand-in that also names the emulated RDS endpoint: the tasks verify that
    name, through a tunnel too. The server reads it on a reload."""
    certificates.issue(folder / "ca", folder / "rds", [HOST, "localhost", endpoint], state.get("run_as"))
    cluster_of(folder, state, "rds").reload()


def describe_servers(state: dict[str, Any]) -> list[dict[str, Any]]:
    """Their rows in `sandbox.status`, for those the state records."""
    rows = []
    for name, role in ROLES.items():
        if name in state:
            server = server_of(state, name)
            rows.append({"component": name, "address": f"{HOST}:{server.port}", "running": port_open(server.port),
                         "detail": f"{role}, PostgreSQL {server.version or '?'}, database {server.database or '-'}"})
    return rows


def stop_servers(folder: Path, state: dict[str, Any]) -> None:
    """Stop every stand-in that runs in ``folder``."""
    for name in ROLES:
        root = folder / name
        if (root / "data" / "postmaster.pid").exists():
            PostgresCluster(Path(state["pg_bin"][name]), root, state.get("run_as", unprivileged_user())).stop()


def record(server: Server) -> dict[str, Any]:
    """A server as the state records it (server_of reads it back)."""
    return dataclasses.asdict(server)
