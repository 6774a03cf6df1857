"""PostgreSQL endpoints, and what every read of a database's tables shares: which tables, which checksum.

An Endpoint never puts its password in a URL, an argv or a message: libpq tools get it through the
environment of their own process (``libpq_env``), psycopg2 as a keyword argument.
"""

from __future__ import annotations

import dataclasses
import os
import re
import socket
import ssl
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import psycopg2

from devops.errors import DevopsError
from devops.masking import first_line, register_secret

CONNECT_TIMEOUT = 10
# libpq URL query parameters the tools understand, passed on as PG* variables.
LIBPQ_PARAMS = {
    "sslmode": "PGSSLMODE", "sslrootcert": "PGSSLROOTCERT", "sslcert": "PGSSLCERT", "sslkey": "PGSSLKEY",
    "channel_binding": "PGCHANNELBINDING", "application_name": "PGAPPNAME", "options": "PGOPTIONS",
    "target_session_attrs": "PGTARGETSESSIONATTRS",
}
# Fixed output settings, so that a row's text (and so its checksum) is the same on any server, and the schema's
# text (sql/schema_hash.sql) the same in any session: with no search_path every name is schema-qualified, as in
# the restore's session (pg_dump's script empties it).
CANONICAL_SETTINGS = (
    ("search_path", ""),
    ("TimeZone", "UTC"),
    ("DateStyle", "ISO, YMD"),
    ("IntervalStyle", "postgres"),
    ("extra_float_digits", "3"),
    ("bytea_output", "hex"),
)
# The user tables that are counted and checksummed: every table (partitioned ones too) outside the system
# schemas and other sessions' temporary ones, except an extension's. The restore's verification
# (devops/sync/sql/verify.sql) reads the same set with the same expression (sql/count_tables.sql).
USER_TABLES = """
    SELECT n.nspname, c.relname, pg_table_size(c.oid) AS bytes
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'p')
      AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_(toast|temp)'
      AND n.nspname <> ALL ({left_alone_schemas})
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
    # The address to connect to when it is not the host's (a tunnel's): the host is then only the name
    # the server's certificate is verified against (libpq's hostaddr).
    hostaddr: str = ""
    # What to set when the server's certificate is not trusted: "neon_ca_file (INVOKE_DEVOPS_NEON_CA_FILE)".
    ca_setting: str = ""

    def masked(self) -> str:
        return f"postgresql://****@{self.host}:{self.port}/{self.dbname}"

    def where(self) -> str:
        via = f" (via {self.hostaddr})" if self.hostaddr else ""
        return f"{self.host}:{self.port}/{self.dbname}{via}"

    def connect(self, timeout: int = CONNECT_TIMEOUT) -> Any:
        """A psycopg2 connection, or one clear error naming the endpoint (never the password)."""
        try:
            return psycopg2.connect(
                host=self.host, port=self.port, user=self.user, password=self.password, dbname=self.dbname,
                connect_timeout=timeout, **({"hostaddr": self.hostaddr} if self.hostaddr else {}),
                **dict(self.params),
            )
        except psycopg2.OperationalError as exc:
            raise DevopsError(self.refusal(first_line(exc))) from None

    def refusal(self, error: str) -> str:
        """libpq's connection error as one line that names the side and, for TLS, what to set."""
        where = f"{self.label} at {self.where()}"
        ca = dict(self.params).get("sslrootcert", "")
        if "certificate verify failed" in error or "self-signed certificate" in error:
            return (f"{where}: its TLS certificate is not signed by a CA trusted here ({ca or 'the default'}); "
                    f"set {self.ca_setting or 'sslrootcert'} to the PEM file of the CA that signed it")
        if "does not support SSL" in error:
            return (f"{where} offers no TLS, and the tasks reach {self.label} over verified TLS only "
                    f"(sslmode={dict(self.params).get('sslmode')}): check that the address leads to {self.label}")
        if "does not match host name" in error:
            return (f"{where}: its TLS certificate is for another name ({error}); connect by the name on the "
                    "certificate (a tunnel: set the address override, the name stays verified)")
        return f"cannot connect to {where}: {error}"

    def libpq_env(self) -> dict[str, str]:
        """Environment for pg_dump/pg_restore/psql: the connection without any argv."""
        env = {"PGHOST": self.host, "PGPORT": str(self.port), "PGUSER": self.user, "PGDATABASE": self.dbname,
               "PGCONNECT_TIMEOUT": str(CONNECT_TIMEOUT)}
        if self.hostaddr:
            env["PGHOSTADDR"] = self.hostaddr
        env.update({LIBPQ_PARAMS[key]: value for key, value in self.params if key in LIBPQ_PARAMS})
        if self.password:
            env["PGPASSWORD"] = self.password
        return env


# Where Neon's hosts are: its own domain, and the legacy Vercel Postgres one (Neon databases under Vercel's name).
NEON_DOMAINS = (".neon.tech", ".postgres.vercel-storage.com")


def parse_url(url: str, label: str, variable: str, ca_file: str = "", ca_setting: str = "") -> tuple[Endpoint, list[str]]:
    """An Endpoint from a postgresql:// URL, and notes about what was adjusted.

    TLS is verified (make_endpoint) unless the URL sets sslmode itself. A Neon pooler host
    (ep-...-pooler.<region>.aws.neon.tech, or a legacy Vercel Postgres one, ep-...-pooler.<region>.postgres.
    vercel-storage.com, which is Neon's) is replaced by the direct one: pg_dump must not go through PgBouncer in
    transaction mode.
    """
    if not url:
        vercel = (f"; from Vercel's Neon integration, its unpooled URL: `export {variable}=\"$DATABASE_URL_UNPOOLED\"`"
                  if variable == "NEON_DATABASE_URL" else "")
        raise DevopsError(f"{variable} is not set: export it (postgresql://<user>:<password>@<host>/<dbname>, "
                          f"as the Neon console's Connect dialog shows it{vercel})")
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
    direct = re.sub(r"^(ep-[^.]+)-pooler\.", r"\1.", host) if host.endswith(NEON_DOMAINS) else host
    if direct != host:
        notes.append(f"{label}: using the direct host {direct} instead of the pooler {host} "
                     "(pg_dump cannot run through PgBouncer)")
        host = direct
    return make_endpoint(label, host, port, user, password, dbname, params, ca_file=ca_file,
                         ca_setting=ca_setting), notes


def make_endpoint(label: str, host: str, port: int, user: str, password: str, dbname: str,
                  params: dict[str, str] | None = None, ca_file: str = "", ca_setting: str = "",
                  hostaddr: str = "") -> Endpoint:
    """An Endpoint over verified TLS: sslmode=verify-full against ``ca_file`` (else the system's CA store),
    unless ``params`` set sslmode (then as they say; ``ca_file`` only where they name no sslrootcert)."""
    params = dict(params or {})
    if "sslmode" not in params:
        params["sslmode"] = "verify-full"
        params.setdefault("sslrootcert", ca_file or system_ca_file())
    elif ca_file:
        params.setdefault("sslrootcert", ca_file)
    register_secret(password)
    return Endpoint(label, host, int(port), user, dbname, password, tuple(sorted(params.items())),
                    hostaddr=hostaddr, ca_setting=ca_setting)


def system_ca_file() -> str:
    """The system's CA store as one PEM file (libpq's sslrootcert=system would ask the OpenSSL that libpq was
    built with, whose default paths a wheel's bundled OpenSSL may not share with this system)."""
    paths = ssl.get_default_verify_paths()
    for candidate in (os.environ.get("SSL_CERT_FILE"), paths.cafile, paths.openssl_cafile,
                      "/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt", "/etc/ssl/cert.pem"):
        if candidate and os.path.isfile(candidate):
            return candidate
    return "system"


def address_of(host: str) -> str:
    """A host's IP address (libpq's hostaddr takes no name); the host itself when it cannot be resolved
    (libpq then says so)."""
    try:
        return socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)[0][4][0]
    except (OSError, IndexError):
        return host


@dataclasses.dataclass(frozen=True)
class TableStats:
    schema: str
    table: str
    rows: int
    checksum: str

    @property
    def name(self) -> str:
        return f"{self.schema}.{self.table}"
