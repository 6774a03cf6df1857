"""One database of an operation (Neon or RDS), as one object for the whole operation.

Every query the operation makes of a database goes through its one connection, opened on first use: the
server's version and identity, the plan's counts, the snapshot that pg_dump and the counts share, the
sequences, the restore's look at the target's settings. psycopg2's errors become one DevopsError naming
the database, here only. (pg_dump, pg_restore and psql are processes with connections of their own.)
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator

import psycopg2

from devops.errors import DevopsError
from devops.masking import first_line
from devops.postgres import Endpoint, TableStats, sequence_values, server_identity, table_stats, transactions_seen
from devops.sync import sql
from devops.sync.decisions import LockTable

# What a plain custom-format dump roughly holds: the user tables (heap and TOAST), not their indexes.
SIZE_QUERY = """
SELECT coalesce(sum(pg_table_size(c.oid)), 0)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\\_%'
"""


LOCKABLE_OBJECTS = sql.load("lockable_objects", own_schemas=sql.load("own_schemas"))


def version_text(version_num: int) -> str:
    """150018 -> '15.18'."""
    return f"{version_num // 10000}.{version_num % 10000}"


class Database:
    def __init__(self, side: str, endpoint: Endpoint):
        self.side = side
        self.endpoint = endpoint
        self.label = endpoint.label
        self.version = 0  # server_version_num, once read_server ran
        self.identity: dict[str, Any] = {}  # postgres.server_identity: which database this is
        self.lock_table = LockTable(0, 0)  # its lock table's size, once read_server ran
        self._conn: Any = None

    @property
    def version_text(self) -> str:
        return version_text(self.version)

    @contextlib.contextmanager
    def errors_named(self, reading: str) -> Iterator[None]:
        """psycopg2's errors as one line: "cannot read {reading} of RDS: ..."."""
        try:
            yield
        except psycopg2.Error as exc:
            raise DevopsError(f"cannot read {reading} of {self.label}: {first_line(exc)}") from None

    @contextlib.contextmanager
    def session(self, reading: str) -> Iterator[Any]:
        """The connection for one piece of work, its transaction ended afterwards (an idle connection must
        hold no lock that the restore's DROPs would wait on); errors named by ``reading``."""
        if self._conn is None or self._conn.closed:
            self._conn = self.endpoint.connect()
        conn = self._conn
        try:
            with self.errors_named(reading):
                yield conn
        finally:
            if not conn.closed:
                with contextlib.suppress(psycopg2.Error):
                    conn.rollback()

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def read_server(self) -> None:
        """The server's version, identity and lock table (preflight)."""
        with self.session("the server identity") as conn, conn.cursor() as cur:
            self.version, self.identity = int(conn.server_version), server_identity(conn, self.endpoint)
            cur.execute(sql.load("lock_table"))
            self.lock_table = LockTable(*cur.fetchone())

    def counts(self) -> dict[str, TableStats]:
        """Every table's rows, without checksums (the plan's counts of the source)."""
        with self.session("the tables") as conn:
            return table_stats(conn, checksums=False)

    def size(self) -> int:
        """The estimate of a dump's size: the tables' sizes (0 when they cannot be read)."""
        try:
            with self.session("the tables' sizes") as conn, conn.cursor() as cur:
                cur.execute(SIZE_QUERY)
                return int(cur.fetchone()[0])
        except DevopsError:  # no estimate: the progress line still shows bytes and rate
            return 0

    def lockable_objects(self) -> int:
        """How many objects of its own the database holds: the locks that dropping them, or creating them
        again, takes (sql/lockable_objects.sql)."""
        with self.session("the objects") as conn:
            return _count_objects(conn)

    @contextlib.contextmanager
    def snapshot(self) -> Iterator["Snapshot"]:
        """A read-only repeatable-read transaction whose snapshot is exported (for pg_dump --snapshot):
        what is read through the Snapshot is exactly what those pg_dumps see. It ends on exit, once every
        pg_dump that imports it has started (they are waited for inside the block)."""
        with self.session("a snapshot") as conn, conn.cursor() as cur:
            cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            cur.execute("SELECT pg_export_snapshot()")
            yield Snapshot(self, conn, cur.fetchone()[0])

    def still_holds(self, seen: str, sequences: dict[str, Any]) -> bool:
        """True when nothing was written since a snapshot that had seen ``seen`` (transactions_seen) and
        ``sequences`` (no transaction id taken since, the sequences where they were)."""
        with self.session("the transactions") as conn:
            return transactions_seen(conn) == seen and sequence_values(conn) == sequences

    def settings_and_kept_schemas(self, kept_schemas_query: str) -> tuple[set[str], set[str]]:
        """The server's setting names (so that the restore sends none it lacks) and the schemas the full
        replace keeps."""
        with self.session("the settings") as conn, conn.cursor() as cur:
            cur.execute("SELECT name FROM pg_settings")
            settings = {name for (name,) in cur.fetchall()}
            cur.execute(kept_schemas_query)
            return settings, {name for (name,) in cur.fetchall()}


def _count_objects(conn: Any) -> int:
    with conn.cursor() as cur:
        cur.execute(LOCKABLE_OBJECTS)
        return int(cur.fetchone()[0])


class Snapshot:
    """Reads inside a Database.snapshot's transaction (its connection, from one thread at a time)."""

    def __init__(self, database: Database, conn: Any, name: str):
        self.database = database
        self.conn = conn
        self.name = name

    def _read(self, reading: str, read: Callable[[Any], Any]) -> Any:
        with self.database.errors_named(reading):
            return read(self.conn)

    def tables(self, on_table: Callable[[int, int], None] | None = None, parallel: bool = True) -> dict[str, TableStats]:
        """Every table's rows and checksum, as the snapshot sees them."""
        return self._read("the tables", lambda conn: table_stats(conn, on_table=on_table, parallel=parallel))

    def transactions_seen(self) -> str:
        return self._read("the transactions", transactions_seen)

    def lockable_objects(self) -> int:
        """Database.lockable_objects, in the snapshot."""
        return self._read("the objects", _count_objects)

    def sequences(self) -> dict[str, int | None]:
        """Every sequence's last value (sequences are outside transactions: their value now)."""
        return self._read("the sequences", sequence_values)
