"""The sync's SQL that is long enough to read as SQL, one file per statement, beside this loader.

A file starts with comment lines saying what it does and which slots (``{name}``) it has; ``load`` leaves
that header out and fills the slots, each by plain replacement (SQL has braces of its own).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from devops.postgres import (CANONICAL_SETTINGS, CHECKSUM, PARALLEL_MIN_BYTES, PARALLEL_ON, PARALLEL_SETTINGS,
                             USER_TABLES)

HERE = Path(__file__).parent


@cache
def _text(name: str) -> str:
    lines = (HERE / f"{name}.sql").read_text().splitlines(keepends=True)
    while lines and lines[0].startswith("--"):
        lines.pop(0)
    return "".join(lines).strip()


def load(name: str, **slots: str) -> str:
    """``name``.sql without its header, each ``{slot}`` replaced (the last given is replaced last: put a
    value that may hold slot-like text, such as a table's name, at the end)."""
    text = _text(name)
    for slot, value in slots.items():
        text = text.replace("{" + slot + "}", value)
    return text


# The pieces every read of the tables shares (read_tables.sql, verify.sql): the fixed output settings, so that
# a row's text (and its checksum) is the same on any server; the parallel settings' values before the loop;
# and per table, the parallel scan's for a large one (postgres.PARALLEL_ON), the server's own otherwise.
SETTINGS = "\n".join(f"    PERFORM set_config('{name}', '{value}', true);" for name, value in CANONICAL_SETTINGS)
PARALLEL_DEFAULTS = ", ".join(f"current_setting('{name}')" for name in PARALLEL_SETTINGS)
PARALLEL = "\n".join(
    f"        PERFORM set_config('{name}', CASE WHEN r.bytes >= {PARALLEL_MIN_BYTES} THEN '{on}' "
    f"ELSE defaults[{index}] END, true);"
    for index, (name, on) in enumerate(zip(PARALLEL_SETTINGS, PARALLEL_ON), start=1))
OWN_SCHEMAS = load("own_schemas")
NEON_SIZE_LIMIT = load("neon_size_limit")
SCHEMA_HASH = load("schema_hash", own_schemas=OWN_SCHEMAS)
# Every sequence's last value (None when never used), as one jsonb object (but those the sync leaves alone).
SEQUENCES = ("SELECT coalesce(jsonb_object_agg(schemaname || '.' || sequencename, last_value), '{}') "
             "FROM pg_sequences WHERE schemaname <> ALL ({left_alone_schemas})")


def count_tables(checksums: bool = True, parallel: bool = True, progress: str = "") -> str:
    """count_tables.sql: without ``checksums`` rows only; ``parallel`` off where the scan runs beside a dump
    of the same server, which needs the cores more."""
    return load("count_tables", user_tables=USER_TABLES, checksum=CHECKSUM if checksums else "NULL",
                parallel=PARALLEL if parallel and checksums else "", progress=progress)


def read_tables(columns: str = "", checksums: bool = True, parallel: bool = True) -> str:
    """read_tables.sql: one query string whose one row is (the tables as jsonb, *columns)."""
    return load("read_tables", settings=SETTINGS, parallel_defaults=PARALLEL_DEFAULTS,
                count_tables=count_tables(checksums, parallel), columns=columns)
