"""The divergence guard: never overwrite writes that nobody has synced.

Data moves both ways by full replace (Neon -> RDS on activation, RDS -> Neon on deactivation), so a
write made on the target since the last sync would be silently destroyed by the next one. Every sync,
dump and restore records what a database held (its fingerprint: rows and checksum per table, sequences,
schema hash, and which server it is); before overwriting a target, the flow compares what the target
holds now with the newest of those records. Changed since: the sync stops before anything is written,
unless --force.

This module only judges, from data: the fingerprints and records come from the flow and the store, and
render.py says what a verdict means to a person.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from devops.sync.report import Change, Divergence, LastRecorded, Verdict
from devops.sync.scope import LeftAlone
from devops.sync.store import Known


def same_database(recorded: dict[str, Any], current: dict[str, Any]) -> bool:
    """Whether two fingerprints are of the same database.

    The system identifier (set at initdb, kept by the server for life) and the database name decide when
    both records have it: the host does not, since one server is reached under many names (a tunnel through
    rds_address, Neon's pooler and direct hosts). Without it (pg_control_system() not granted, or a record
    that does not name it), host, port and database name decide.
    """
    a, b = recorded.get("server") or {}, current.get("server") or {}
    if a.get("system_identifier") and b.get("system_identifier"):
        return (a["system_identifier"], a.get("database")) == (b["system_identifier"], b.get("database"))
    return recorded.get("where") == current.get("where")


def changes(recorded: dict[str, Any], current: dict[str, Any]) -> list[Change]:
    """What differs between a recorded fingerprint and the current one: one entry per changed table, then
    the schema (DDL that no table's rows show, such as an index or a view).

    Rows are counted, not listed: "added" and "removed" are the net change of the count; a checksum that
    differs at the same count is "content changed".
    """
    found = []
    before, now = recorded.get("tables", {}), current.get("tables", {})
    # A table in a schema this run leaves alone (scope.py) is not compared: it is not replaced. One that only the
    # record left alone is (a "new table" to it): it was never synced, and this run would replace it.
    left_alone = LeftAlone.recorded(current.get("left_alone"))
    for name in sorted(set(before) | set(now)):
        old, new = before.get(name), now.get(name)
        if old == new or left_alone.ignores_table(name):
            continue
        old_rows, new_rows = (old or {}).get("rows"), (new or {}).get("rows")
        delta = (new_rows or 0) - (old_rows or 0)
        kind = "new table" if old is None else "table dropped" if new is None else "changed"
        found.append(Change(name, kind, old_rows, new_rows, rows_added=max(delta, 0), rows_removed=max(-delta, 0),
                            content_changed=bool(old and new and old.get("checksum") != new.get("checksum"))))
    # A schema hash taken another way (a record's pg_dump, another server major's catalogs) may differ
    # for nothing: compared only when taken the same way.
    same_method = recorded.get("schema_by") == current.get("schema_by")
    if same_method and recorded.get("schema") != current.get("schema"):
        found.append(Change("(schema)", "definitions changed", None, None))
    return found


def moved_sequences(recorded: dict[str, Any], current: dict[str, Any]) -> list[str]:
    before, now = recorded.get("sequences", {}), current.get("sequences", {})
    left_alone = LeftAlone.recorded(current.get("left_alone"))
    return [name for name in sorted(set(before) | set(now))
            if before.get(name) != now.get(name) and not left_alone.ignores_table(name)]


@dataclasses.dataclass
class Judgement:
    """The guard's verdict, the record it compared with (``known``: the safety copy may reuse its dump), and
    what changed since."""

    verdict: Verdict
    known: Known | None
    changes: list[Change] = dataclasses.field(default_factory=list)
    note: str = ""

    def divergence(self) -> Divergence:
        """The report's "divergence"."""
        last = None
        if self.known is not None:
            last = LastRecorded(self.known.record.get("recorded"), self.known.record.get("where"),
                                self.known.manifest.get("reason"), self.known.found_in, self.known.key)
        return Divergence(self.verdict, [c.table for c in self.changes if not c.table.startswith("(")],
                          self.changes, last, self.note)


def judge(known: Known | None, current: dict[str, Any], label: str, force: bool) -> Judgement:
    """The verdict on a target (``label``) holding ``current``, whose newest record is ``known``."""
    if known is None:
        return Judgement(Verdict.FIRST_SYNC, None, note=f"no earlier sync, dump or restore recorded {label}: "
                                                        "nothing to compare with (first sync)")
    if not same_database(known.record, current):
        # What we recorded is of another database (RDS re-created, another Neon branch or project): it says
        # nothing about this one, and refusing would block every sync until someone forced one. Treated as a
        # first sync, with a note; the safety copy still keeps this database's data.
        return Judgement(Verdict.FIRST_SYNC, known,
                         note=f"the last record of {label} is of a different database ({_server(known.record)}, "
                              f"now {_server(current)}): no record of this one, treated as a first sync")
    found = changes(known.record, current)
    if not found:
        # A sequence that moved while no row differs (an insert rolled back, or deleted again) loses no data:
        # the overwrite only sets it back. Said, not refused.
        moved = moved_sequences(known.record, current)
        return Judgement(Verdict.UNCHANGED, known, note=f"sequence(s) {', '.join(moved)} moved since, with no row "
                                                        "changed: the overwrite sets them back" if moved else "")
    return Judgement(Verdict.FORCED if force else Verdict.DIVERGED, known, found)


def _server(record: dict[str, Any]) -> str:
    server = record.get("server") or {}
    text = record.get("where", "?")
    return f"{text}, system {server['system_identifier']}" if server.get("system_identifier") else text
