"""PostgreSQL endpoints and what the tasks read from a database: version, tables, counts, checksums.

An Endpoint never puts its password in a URL, an argv or a message: libpq tools get it through the
environment of their own process (``libpq_env``), psycopg2 as a keyword argument.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Callable
from urllib.parse import parse_qsl, unquote, urlsplit

import psycopg2
from psycopg2 import sql

from devops.errors import DevopsError
from devops.masking import first_line, register_secret

LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1"}
CONNECT_TIMEOUT = 10
# libpq URL query parameters the tools understand, passed on as PG* variables.
LIBPQ_PARAMS = {
    "sslmode": "PGSSLMODE", "sslrootcert": "PGSSLROOTCERT", "sslcert": "PGSSLCERT", "sslkey": "PGSSLKEY",
    "channel_binding": "PGCHANNELBINDING", "application_name": "PGAPPNAME", "options": "PGOPTIONS",
    "target_session_attrs": "PGTARGETSESSIONATTRS",
}
# Fixed output settings, so that a row's text (and so its checksum) is the same on any server.
CANONICAL_SETTINGS = (
    ("TimeZone", "UTC"),
    ("DateStyle", "ISO, YMD"),
    ("IntervalStyle", "postgres"),
    ("extra_float_digits", "3"),
    ("bytea_output", "hex"),
)
# The user tables that are counted and checksummed: every table (partitioned ones too) outside the system
# schemas and other sessions' temporary ones, except an extension's. The restore's verification
# (devops.sync.pipeline.VERIFY) reads the same set with the same expression.
USER_TABLES = """
    SELECT n.nspname, c.relname, pg_table_size(c.oid) AS bytes
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'p')
      AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_(toast|temp)'
      AND NOT EXISTS (SELECT 1 FROM pg_depend d
                      WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
    ORDER BY 1, 2"""
# An order-independent checksum of a table's rows (alias t): the sum of a 64-bit hash of each row's text.
CHECKSUM = "coalesce(sum(hashtextextended(t::text, 0)::numeric), 0)"
# The planner sizes a parallel scan by the table's heap alone, so a table whose rows live mostly in TOAST
# (large bytea, text, jsonb) is checksummed on one core, though turning its rows into text is most of the
# work (the 200 MB of bytea in bench/sync_throughput.py's dataset: 1.8 s on one core, 1.2 s with two
# workers on a busy 2-core machine). For a table of at least PARALLEL_MIN_BYTES in all (pg_table_size:
# heap and TOAST), PARALLEL_ON lets the server's parallel workers share its rows (as many as
# max_parallel_workers_per_gather allows); smaller ones keep the server's own settings, where starting a
# worker costs more than it saves. The sum is the same whichever process adds which rows.
PARALLEL_MIN_BYTES = 8 * 1024 * 1024
PARALLEL_SETTINGS = ("parallel_setup_cost", "min_parallel_table_scan_size")
PARALLEL_ON = ("0", "0")


@dataclasses.dataclass(frozen=True)
class Endpoint:
    label: str
    host: str
    port: int
    user: str
    dbname: str
    password: str = dataclasses.field(default="", repr=False)
    params: tuple[tuple[str, str], ...] = ()

    def masked(self) -> str:
        return f"postgresql://****@{self.host}:{self.port}/{self.dbname}"

    def where(self) -> str:
        return f"{self.host}:{self.port}/{self.dbname}"

    def connect(self, timeout: int = CONNECT_TIMEOUT) -> Any:
        """A psycopg2 connection, or one clear error naming the endpoint (never the password)."""
        try:
            return psycopg2.connect(
                host=self.host, port=self.port, user=self.user, password=self.password, dbname=self.dbname,
                connect_timeout=timeout, **dict(self.params),
            )
        except psycopg2.OperationalError as exc:
            raise DevopsError(f"cannot connect to {self.label} at {self.where()}: {first_line(exc)}") from None

    def libpq_env(self) -> dict[str, str]:
        """Environment for pg_dump/pg_restore/psql: the connection without any argv."""
        env = {"PGHOST": self.host, "PGPORT": str(self.port), "PGUSER": self.user, "PGDATABASE": self.dbname,
               "PGCONNECT_TIMEOUT": str(CONNECT_TIMEOUT)}
        env.update({LIBPQ_PARAMS[key]: value for key, value in self.params if key in LIBPQ_PARAMS})
        if self.password:
            env["PGPASSWORD"] = self.password
        return env


def parse_url(url: str, label: str, variable: str) -> tuple[Endpoint, list[str]]:
    """An Endpoint from a postgresql:// URL, and notes about what was adjusted.

    TLS is required for any non-local host unless the URL sets sslmode itself. A Neon pooler host
    (ep-...-pooler.<region>.aws.neon.tech) is replaced by the direct one: pg_dump must not go through
    PgBouncer in transaction mode.
    """
    if not url:
        raise DevopsError(f"{variable} is not set: export it (postgresql://user:password@host/dbname)")
    hint = f"{variable} is not a valid PostgreSQL URL"
    try:
        parts = urlsplit(url.strip())
        port = parts.port or 5432
    except ValueError:
        raise DevopsError(f"{hint}: bad port; expected postgresql://user:password@host[:port]/dbname") from None
    if parts.scheme not in ("postgres", "postgresql"):
        raise DevopsError(f"{hint}: it must start with postgresql://")
    host, dbname = parts.hostname or "", unquote(parts.path.lstrip("/"))
    user = unquote(parts.username or "")
    if not host or not dbname or not user:
        missing = [name for name, value in (("user", user), ("host", host), ("database name", dbname)) if not value]
        raise DevopsError(f"{hint}: no {', no '.join(missing)}; expected postgresql://user:password@host/dbname")
    password = unquote(parts.password or "")
    register_secret(password)
    params = dict(parse_qsl(parts.query))
    unknown = sorted(set(params) - set(LIBPQ_PARAMS) - {"connect_timeout"})
    if unknown:
        raise DevopsError(f"{hint}: unsupported parameter(s) {', '.join(unknown)}")
    params.pop("connect_timeout", None)
    notes = []
    direct = re.sub(r"^(ep-[^.]+)-pooler\.", r"\1.", host) if host.endswith(".neon.tech") else host
    if direct != host:
        notes.append(f"{label}: using the direct host {direct} instead of the pooler {host} "
                     "(pg_dump cannot run through PgBouncer)")
        host = direct
    return make_endpoint(label, host, port, user, password, dbname, params), notes


def make_endpoint(label: str, host: str, port: int, user: str, password: str, dbname: str,
                  params: dict[str, str] | None = None) -> Endpoint:
    """An Endpoint that requires TLS for any non-local host unless ``params`` set sslmode."""
    params = dict(params or {})
    if host not in LOCAL_HOSTS and "sslmode" not in params:
        params["sslmode"] = "require"
    register_secret(password)
    return Endpoint(label, host, int(port), user, dbname, password, tuple(sorted(params.items())))


def server_version(conn: Any) -> int:
    """server_version_num, e.g. 150018."""
    return int(conn.server_version)


def major(version_num: int) -> int:
    return version_num // 10000


@dataclasses.dataclass(frozen=True)
class TableStats:
    schema: str
    table: str
    rows: int
    checksum: str

    @property
    def name(self) -> str:
        return f"{self.schema}.{self.table}"


def table_stats(conn: Any, checksums: bool = True, on_table: Callable[[int, int], None] | None = None,
                parallel: bool = True) -> dict[str, TableStats]:
    """Every user table in every non-system schema: exact row count and an order-independent checksum.

    The checksum is the sum of a 64-bit hash of each row's text, computed by the server in one scan (no
    sort, nothing sent back but two numbers); the session uses fixed output settings so that the same
    rows give the same sum on any server. It reads in the connection's transaction (in the one whose
    snapshot a pg_dump imports, exactly what that pg_dump saw), which the caller ends: the fixed settings
    are local to it. ``on_table(done, total)`` follows the scan.
    ``parallel``: a large table's checksum may use the server's parallel workers (PARALLEL_ON); off where
    the scan runs beside a dump of the same server, which needs those cores more.
    """
    with conn.cursor() as cur:
        for name, value in CANONICAL_SETTINGS:
            cur.execute("SELECT set_config(%s, %s, true)", (name, value))
        cur.execute("SELECT " + ", ".join(f"current_setting('{name}')" for name in PARALLEL_SETTINGS))
        defaults = cur.fetchone()
        cur.execute(USER_TABLES)
        stats = {}
        aggregate = CHECKSUM if checksums else "NULL"
        tables = cur.fetchall()
        current = defaults
        for done, (schema, table, size) in enumerate(tables):
            if on_table:
                on_table(done, len(tables))
            values = PARALLEL_ON if parallel and checksums and (size or 0) >= PARALLEL_MIN_BYTES else defaults
            if values != current:  # a round trip only where it changes
                cur.execute("SELECT " + ", ".join("set_config(%s, %s, true)" for _ in PARALLEL_SETTINGS),
                            [item for pair in zip(PARALLEL_SETTINGS, values) for item in pair])
                current = values
            cur.execute(sql.SQL("SELECT count(*), " + aggregate + " FROM {} AS t").format(sql.Identifier(schema, table)))
            rows, checksum = cur.fetchone()
            stats[f"{schema}.{table}"] = TableStats(schema, table, int(rows), "" if checksum is None else str(checksum))
    return stats


def server_identity(conn: Any, endpoint: Endpoint) -> dict[str, str | None]:
    """Which database this is: the cluster's system identifier, the database's name, and where it was reached.

    The system identifier is None where pg_control_system() is not granted (some managed services revoke it).
    """
    identifier = None
    with conn.cursor() as cur:
        try:
            cur.execute("SELECT system_identifier::text FROM pg_control_system()")
            identifier = cur.fetchone()[0]
        except psycopg2.Error:
            conn.rollback()
        cur.execute("SELECT current_database()")
        database = cur.fetchone()[0]
    conn.rollback()
    return {"system_identifier": identifier, "database": database, "host": f"{endpoint.host}:{endpoint.port}"}


def transactions_seen(conn: Any) -> str:
    """The current snapshot's transaction ids (xmin:xmax:in-progress), cluster-wide.

    Every write, DDL included, takes a transaction id, so the same value later means no write committed or
    began in between (sequences excepted: nextval takes none). Read-only work leaves it as it is; other
    databases of the same server, and ANALYZE, move it too.
    """
    with conn.cursor() as cur:
        cur.execute("SELECT pg_current_snapshot()::text")
        return cur.fetchone()[0]


def sequence_values(conn: Any) -> dict[str, int | None]:
    """Every sequence's last value (None when never used)."""
    with conn.cursor() as cur:
        cur.execute("SELECT schemaname || '.' || sequencename, last_value FROM pg_sequences ORDER BY 1")
        return {name: value for name, value in cur.fetchall()}
