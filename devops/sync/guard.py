"""The divergence guard: never overwrite writes that nobody has synced.

Data moves both ways by full replace (Neon -> RDS on activation, RDS -> Neon on deactivation), so a
write made on the target since the last sync would be silently destroyed by the next one. Every sync,
dump and restore records what a database held (its fingerprint: rows and checksum per table, sequences,
schema hash, and which server it is); before overwriting a target, the engine compares what the target
holds now with the newest of those records. Changed since: the sync stops before anything is written,
unless --force.

This module only judges and explains; the fingerprints and records come from the engine and the store.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from devops.console import Console, age, cell
from devops.errors import DevopsError
from devops.sync.store import Known

FIRST_SYNC, UNCHANGED, DIVERGED, FORCED = "first-sync", "unchanged", "diverged", "forced"


def same_database(recorded: dict[str, Any], current: dict[str, Any]) -> bool:
    """Whether two fingerprints are of the same database.

    The system identifier (set at initdb, kept by the server for life) and the database name decide when
    both records have it: the host does not, since one server is reached under many names (a tunnel through
    rds_address, Neon's pooler and direct hosts). Without it (pg_control_system() not granted, or a record
    older than this guard), host, port and database name decide.
    """
    a, b = recorded.get("server") or {}, current.get("server") or {}
    if a.get("system_identifier") and b.get("system_identifier"):
        return (a["system_identifier"], a.get("database")) == (b["system_identifier"], b.get("database"))
    return recorded.get("where") == current.get("where")


def changes(recorded: dict[str, Any], current: dict[str, Any]) -> list[dict[str, Any]]:
    """What differs between a recorded fingerprint and the current one: one entry per changed table, then
    the schema (DDL that no table's rows show, such as an index or a view).

    Rows are counted, not listed: "added" and "removed" are the net change of the count; a checksum that
    differs at the same count is "content changed".
    """
    found = []
    before, now = recorded.get("tables", {}), current.get("tables", {})
    for name in sorted(set(before) | set(now)):
        old, new = before.get(name), now.get(name)
        if old == new:
            continue
        old_rows, new_rows = (old or {}).get("rows"), (new or {}).get("rows")
        delta = (new_rows or 0) - (old_rows or 0)
        kind = "new table" if old is None else "table dropped" if new is None else "changed"
        found.append({"table": name, "kind": kind, "recorded_rows": old_rows, "rows": new_rows,
                      "rows_added": max(delta, 0), "rows_removed": max(-delta, 0),
                      "content_changed": bool(old and new and old.get("checksum") != new.get("checksum"))})
    # A schema hash taken by another pg_dump version may differ for nothing: compared only by the same one.
    same_tool = recorded.get("pg_dump") in (None, current.get("pg_dump"))
    if same_tool and recorded.get("schema") != current.get("schema"):
        found.append({"table": "(schema)", "kind": "definitions changed", "recorded_rows": None, "rows": None,
                      "rows_added": 0, "rows_removed": 0, "content_changed": False})
    return found


def moved_sequences(recorded: dict[str, Any], current: dict[str, Any]) -> list[str]:
    before, now = recorded.get("sequences", {}), current.get("sequences", {})
    return [name for name in sorted(set(before) | set(now)) if before.get(name) != now.get(name)]


@dataclasses.dataclass
class Verdict:
    verdict: str
    known: Known | None
    changes: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    note: str = ""

    def report(self) -> dict[str, Any]:
        """The JSON form (the report's "divergence")."""
        last = None
        if self.known is not None:
            last = {"recorded": self.known.record.get("recorded"), "where": self.known.record.get("where"),
                    "reason": self.known.manifest.get("reason"), "record": self.known.found_in,
                    "dump": self.known.key}
        return {"verdict": self.verdict,
                "changed_tables": [c["table"] for c in self.changes if not c["table"].startswith("(")],
                "changes": self.changes, "last_recorded": last, "note": self.note}


@dataclasses.dataclass(frozen=True)
class Guard:
    """The guard of one overwrite: the target's label, --force, and the commands to suggest."""

    label: str
    force: bool
    rerun: str  # the same command with --force
    other_way: str | None = None  # the sync that would bring the target's writes to the other side

    def judge(self, known: Known | None, current: dict[str, Any]) -> Verdict:
        if known is None:
            return Verdict(FIRST_SYNC, None, note=f"no earlier sync, dump or restore recorded {self.label}: "
                                                 "nothing to compare with (first sync)")
        if not same_database(known.record, current):
            # What we recorded is of another database (RDS re-created, another Neon branch or project): it
            # says nothing about this one, and refusing would block every sync until someone forced one.
            # Treated as a first sync, with a note; the safety copy still keeps this database's data.
            return Verdict(FIRST_SYNC, known, note=f"the last record of {self.label} is of a different database "
                                                   f"({_server(known.record)}, now {_server(current)}): no record "
                                                   "of this one, treated as a first sync")
        found = changes(known.record, current)
        if not found:
            # A sequence that moved while no row differs (an insert rolled back, or deleted again) loses no
            # data: the overwrite only sets it back. Said, not refused.
            moved = moved_sequences(known.record, current)
            return Verdict(UNCHANGED, known, note=f"sequence(s) {', '.join(moved)} moved since, with no row changed: "
                                                  "the overwrite sets them back" if moved else "")
        return Verdict(FORCED if self.force else DIVERGED, known, found)

    def show(self, console: Console, verdict: Verdict, safety: str) -> None:
        """The verdict as part of the plan: one line, and for a change the table and the choices."""
        if verdict.verdict == FIRST_SYNC:
            console.info(f"Divergence check: {verdict.note}; proceeding as usual")
            return
        since = _since(verdict.known)
        if verdict.verdict == UNCHANGED:
            console.passed(f"Divergence check: {self.label} is unchanged since {since}: nothing on it would be lost")
            if verdict.note:
                console.info(verdict.note[0].upper() + verdict.note[1:])
            return
        report = console.warn if verdict.verdict == FORCED else console.fail
        report(f"Divergence check: {self.label} was written to since {since}. These writes would be lost:")
        console.line()
        console.table([[c["table"], cell(c["recorded_rows"]), cell(c["rows"]), _what(c)] for c in verdict.changes],
                      headers=[f"changed on {self.label}", "rows then", "rows now", "change"])
        console.line()
        if verdict.verdict == FORCED:
            console.warn(f"--force: overwriting {self.label} anyway; these writes will be only in the safety copy "
                         f"({safety})")
            return
        width = max(len(self.rerun), len(self.other_way or "")) + 2
        console.line("  Choices:")
        if self.other_way:
            console.line(f"    {self.other_way:<{width}}first: the other side gets {self.label}'s data, these writes "
                         "included (guarded the same way)")
        console.line(f"    {self.rerun:<{width}}overwrite anyway: the safety copy of {self.label} keeps these writes")

    def refusal(self, verdict: Verdict, details: dict[str, Any]) -> DevopsError:
        first = f"{self.other_way}, or " if self.other_way else ""
        return DevopsError(f"refused: {self.label} was written to since its last recorded sync "
                           f"({len(verdict.changes)} change(s): {', '.join(c['table'] for c in verdict.changes)}) "
                           f"and those writes would be lost; nothing was changed. Run {first}{self.rerun}",
                           details={**details, "status": "refused"})


def _server(record: dict[str, Any]) -> str:
    server = record.get("server") or {}
    text = record.get("where", "?")
    return f"{text}, system {server['system_identifier']}" if server.get("system_identifier") else text


def _since(known: Known | None) -> str:
    if known is None:
        return "?"
    recorded = known.record.get("recorded", "?")
    try:
        ago = age((dt.datetime.now(dt.timezone.utc) - dt.datetime.fromisoformat(recorded)).total_seconds())
        when = f"{recorded[:19].replace('T', ' ')} UTC, {ago} ago"
    except ValueError:
        when = recorded
    return f"{when} ({known.manifest.get('reason', '?')}, {known.found_in})"


def _what(change: dict[str, Any]) -> str:
    if change["kind"] != "changed":
        return change["kind"]
    if change["rows_added"]:
        return f"{change['rows_added']} row(s) added"
    if change["rows_removed"]:
        return f"{change['rows_removed']} row(s) removed"
    return "content changed (same row count)"
