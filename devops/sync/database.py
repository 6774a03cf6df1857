"""One database of an operation (Neon or RDS), as one object for the whole operation.

Every query the operation makes of a database goes through its one connection, opened on first use: the
server's version and identity, the plan's counts, the snapshot that pg_dump and the counts share, the
sequences, the restore's look at the target's settings. psycopg2's errors become one DevopsError naming
the database, here only. (pg_dump, pg_restore and psql are processes with connections of their own.)

Each read is one round trip (one query string; 20-80 ms each from a laptop): the
connection is in autocommit mode, so psycopg2 sends no BEGIN and no ROLLBACK of its own, and a read that
needs several statements sends them together (sql/read_tables.sql).
"""

from __future__ import annotations

import contextlib
import dataclasses
import select
from typing import Any, Iterator

import psycopg2
import psycopg2.extensions

from devops.errors import DevopsError
from devops.masking import first_line
from devops.postgres import Endpoint, TableStats
from devops.sync import sql
from devops.sync.decisions import LockTable, Needs, Offers
from devops.sync.scope import LeftAlone

# What a plain custom-format dump roughly holds: the user tables (heap and TOAST), not their indexes.
SIZE_QUERY = """
SELECT coalesce(sum(pg_table_size(c.oid)), 0)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\\_%' AND n.nspname <> ALL ({left_alone_schemas})
"""
LOCKABLE_OBJECTS = sql.load("lockable_objects", own_schemas=sql.OWN_SCHEMAS)
# Which database this is: the cluster's system identifier (NULL where pg_control_system() is not granted, as
# some managed services do), the database's name (a reopened connection checks these alone); the server's read
# adds its lock table (sql/lock_table.sql) and what it offers a restore (sql/offers.sql).
IDENTITY = """
SELECT CASE WHEN has_function_privilege('pg_catalog.pg_control_system()', 'EXECUTE')
            THEN (SELECT system_identifier::text FROM pg_control_system()) END,
       current_database()"""
SERVER = f"""{IDENTITY}, lock_table.*, {sql.load("offers", neon_size_limit=sql.NEON_SIZE_LIMIT)}
FROM ({sql.load("lock_table")}) AS lock_table
"""
# What a restore of a database needs its target to have (decisions.Needs): read with the plan's counts.
NEEDS = sql.load("needs", own_schemas=sql.OWN_SCHEMAS)
# The snapshot's transaction ids (xmin:xmax:in-progress), cluster-wide. Every write, DDL included, takes a
# transaction id, so the same value later means no write committed or began in between (sequences excepted:
# nextval takes none, so they are compared too). Read-only work leaves it; other databases of the same
# server, and ANALYZE, move it too.
TRANSACTIONS_SEEN = "pg_current_snapshot()::text"
# The probe's and the dump's read, in the snapshot: tables, transactions seen, objects, sequences, schema.
READ_STATE = f", {TRANSACTIONS_SEEN}, ({LOCKABLE_OBJECTS}), ({sql.SEQUENCES}), ({sql.SCHEMA_HASH})"
# What depends across the boundary of what the sync leaves alone (sql/crossing.sql).
CROSSING = sql.load("crossing", own_schemas=sql.OWN_SCHEMAS)


def closed_by_server(conn: Any) -> bool:
    """Whether the server closed ``conn`` while it sat idle (Neon closes idle connections when its compute
    suspends, after 5 minutes with no query, and when it restarts): the server's goodbye (a FATAL message, the
    end of the stream) is waiting on the socket, where an idle connection has nothing to read. No round trip."""
    readable, _, _ = select.select([conn], [], [], 0)
    return bool(readable)


def version_text(version_num: int) -> str:
    """150018 -> '15.18'."""
    return f"{version_num // 10000}.{version_num % 10000}"


def _stats(tables: dict[str, Any]) -> dict[str, TableStats]:
    """read_tables.sql's jsonb as TableStats, in name order."""
    return {name: TableStats(*name.split(".", 1), int(t["rows"]), t["checksum"] or "")
            for name, t in sorted(tables.items())}


@dataclasses.dataclass
class Reading:
    """What one read of a database in a snapshot found."""

    tables: dict[str, TableStats]
    seen: str  # TRANSACTIONS_SEEN
    objects: int  # sql/lockable_objects.sql: the locks dropping them, or creating them again, takes
    sequences: dict[str, int | None]
    schema: str  # sql/schema_hash.sql


class Database:
    def __init__(self, side: str, endpoint: Endpoint, left_alone: LeftAlone = LeftAlone()):
        self.side = side
        self.endpoint = endpoint
        self.label = endpoint.label
        # What the operation leaves alone (scope.py): every read of the database's own objects skips it.
        self.left_alone = left_alone
        self.version = 0  # server_version_num, once read_server ran
        self.identity: dict[str, Any] = {}  # which database this is (read_server)
        self.lock_table = LockTable(0, 0)  # its lock table's size, once read_server ran
        self.offers = Offers.of([], None, [])  # what a restore into it can use, once read_server ran
        self._conn: Any = None

    @property
    def version_text(self) -> str:
        return version_text(self.version)

    @property
    def schema_by(self) -> str:
        """How its schema hash is taken: hashes compare only when taken the same way (guard.changes), which
        includes what was left out of it."""
        left_alone = "".join(f" -{name}" for name in sorted(self.left_alone.schemas + self.left_alone.extensions))
        return f"catalog-1 {self.version // 10000}{left_alone}"

    @contextlib.contextmanager
    def errors_named(self, reading: str) -> Iterator[None]:
        """psycopg2's errors as one line: "cannot read {reading} of RDS: ..."."""
        try:
            yield
        except psycopg2.Error as exc:
            raise DevopsError(f"cannot read {reading} of {self.label}: {first_line(exc)}") from None

    @contextlib.contextmanager
    def session(self, reading: str) -> Iterator[Any]:
        """A cursor on the connection for one piece of work, no transaction left open afterwards (an idle
        connection must hold no lock that the restore's DROPs would wait on); errors named by ``reading``."""
        if self._conn is not None and not self._conn.closed and closed_by_server(self._conn):
            self._conn.close()  # opened again below, and checked to be the same database
        if self._conn is None or self._conn.closed:
            self._connect(reading)
        conn = self._conn
        try:
            with self.errors_named(reading), conn.cursor() as cur:
                yield cur
        finally:
            if not conn.closed and conn.info.transaction_status != psycopg2.extensions.TRANSACTION_STATUS_IDLE:
                with contextlib.suppress(psycopg2.Error):
                    conn.rollback()

    def _connect(self, reading: str) -> None:
        """The connection, opened (again). Opened again, after the server closed the last one, it must lead to
        the database the operation read first (read_server's identity): a failover or a re-created branch
        between the plan and the write is refused, not written to."""
        conn = self.endpoint.connect()
        conn.autocommit = True
        self._conn = conn
        if not self.identity:
            return
        with self.errors_named(reading), conn.cursor() as cur:
            cur.execute(IDENTITY)
            identifier, database = cur.fetchone()
        if (identifier, database) != (self.identity["system_identifier"], self.identity["database"]):
            raise DevopsError(f"{self.label} closed the connection and, opened again, leads to another database "
                              f"than the plan read ({database}, system {identifier}): nothing was written; run "
                              "the task again")

    def _one(self, reading: str, query: str) -> tuple[Any, ...]:
        with self.session(reading) as cur:
            cur.execute(self.left_alone.fill(query))
            return cur.fetchone()

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def read_server(self) -> None:
        """The server's version, identity and lock table (preflight)."""
        identifier, database, max_locks, slots, *offers = self._one("the server identity", SERVER)
        self.version = int(self._conn.server_version)
        self.identity = {"system_identifier": identifier, "database": database,
                         "host": f"{self.endpoint.host}:{self.endpoint.port}"}
        self.lock_table = LockTable(max_locks, slots)
        self.offers = Offers.of(*offers)

    def counts(self) -> tuple[dict[str, TableStats], int, int, Needs]:
        """Every table's rows, without checksums (the plan's counts of a source); how many objects of its own
        it holds (what a restore of it creates); the estimate of a dump's size (the tables' sizes); and what a
        restore of it needs of its target (with what depends across the boundary of what is left alone)."""
        crossing = f"({CROSSING})" if self.left_alone else "'[[], []]'::jsonb"
        tables, objects, size, extensions, roles, database_bytes, crossing = self._one("the tables", sql.read_tables(
            f", ({LOCKABLE_OBJECTS}), ({SIZE_QUERY}), {NEEDS}, {crossing}", checksums=False))
        return _stats(tables), int(objects), int(size), Needs(self.label, tuple(extensions), roles,
                                                              int(database_bytes), tuple(crossing[0]))

    @contextlib.contextmanager
    def snapshot(self) -> Iterator["Snapshot"]:
        """A read-only repeatable-read transaction whose snapshot is exported (for pg_dump --snapshot):
        what is read through the Snapshot is exactly what those pg_dumps see. It ends on exit, once every
        pg_dump that imports it has started (they are waited for inside the block)."""
        with self.session("a snapshot") as cur:
            cur.execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY; SELECT pg_export_snapshot()")
            try:
                yield Snapshot(self, cur, cur.fetchone()[0])
            finally:
                with contextlib.suppress(psycopg2.Error):
                    cur.execute("ROLLBACK")

    def read(self) -> Reading:
        """What Snapshot.read reads, in a repeatable-read transaction that the same query string opens (its
        first statement) and that ends with it (an implicit one): one round trip, where a snapshot to share
        costs three (BEGIN and the export, the read, ROLLBACK)."""
        with self.session("the tables") as cur:
            cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY;\n"
                        + self.left_alone.fill(sql.read_tables(READ_STATE)))
            return _reading(cur.fetchone())

    def still_holds(self, seen: str, sequences: dict[str, Any]) -> bool:
        """True when nothing was written since a snapshot that had seen ``seen`` (TRANSACTIONS_SEEN) and
        ``sequences`` (no transaction id taken since, the sequences where they were)."""
        now_seen, now_sequences = self._one("the transactions", f"SELECT {TRANSACTIONS_SEEN}, ({sql.SEQUENCES})")
        return now_seen == seen and now_sequences == sequences

    def kept_depending(self) -> list[str]:
        """What is left alone but depends on what a replace of this database drops ("dependent -> what it
        depends on", sql/crossing.sql); nothing to read when nothing is left alone."""
        return self._one("the dependencies", f"SELECT ({CROSSING})")[0][1] if self.left_alone else []

    def settings_and_kept_schemas(self, kept_schemas_query: str) -> tuple[set[str], set[str]]:
        """The server's setting names (so that the restore sends none it lacks) and the schemas the full
        replace keeps."""
        settings, kept = self._one("the settings", f"SELECT array(SELECT name FROM pg_settings), "
                                                   f"array({kept_schemas_query})")
        return set(settings), set(kept)


class Snapshot:
    """Reads inside a Database.snapshot's transaction (its connection, from one thread at a time)."""

    def __init__(self, database: Database, cur: Any, name: str):
        self.database = database
        self.cur = cur
        self.name = name

    def read(self, parallel: bool = True) -> Reading:
        """Every table's rows and checksum, the transactions seen, the objects, the sequences (outside
        transactions: their value now) and the schema's hash, as the snapshot sees them: one round trip.
        ``parallel``: a large table's checksum may use the server's parallel workers (not beside a dump)."""
        with self.database.errors_named("the tables"):
            self.cur.execute(self.database.left_alone.fill(sql.read_tables(READ_STATE, parallel=parallel)))
            return _reading(self.cur.fetchone())


def _reading(row: tuple[Any, ...]) -> Reading:
    tables, seen, objects, sequences, schema = row
    return Reading(_stats(tables), seen, int(objects), sequences, schema)
