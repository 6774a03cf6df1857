"""The atomic restore: an archive fed in chunks, restored into the target inside one transaction, verified
and committed, or rolled back.

pg_restore turns the archive into SQL (``-f -``); psql runs it inside one transaction that this module opens
(BEGIN in the prelude, which first empties the target) and closes with COMMIT only after the dump, pg_restore
and psql have all succeeded and the restored tables and sequences matched the source's (VERIFY, in the same
transaction). Any failure, Ctrl-C included, ends psql without COMMIT, and the server rolls the whole restore
back: the target stays exactly as it was. (psql's --single-transaction would COMMIT at the end of input even
when pg_dump died halfway, so it is not used; pg_restore's is, with its BEGIN and COMMIT taken out of the
script: script.py.) A psql error is named by the archive entry it fell in.

Entries that cannot apply on a managed service are left out on purpose, by filtering the archive's table
of contents (restore_list), and named in the report; any other error fails the restore.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from devops.masking import mask
from devops.sync import sql
from devops.sync.database import Database
from devops.sync.decisions import connection_lost, room_ran_out
from devops.sync.processes import PipelineError, Processes, read_chunks, read_file
from devops.sync.scope import LeftAlone
from devops.sync.script import (MARKER, TAIL, Script, in_batches, psql_error, without_final_commit,
                                without_unknown_settings)
from devops.threads import in_background

# TOC entries a managed service (RDS, Neon) refuses to a non-superuser: left out on purpose.
MANAGED_SERVICE_EXCLUSIONS = (
    re.compile(r" COMMENT - EXTENSION "),
    re.compile(r" EVENT TRIGGER "),
    re.compile(r" PUBLICATION( TABLE| TABLES IN SCHEMA)? "),
    re.compile(r" SUBSCRIPTION "),
)
TOC_SCHEMA = re.compile(r"^\d+; \d+ \d+ SCHEMA - (.+) \S*$")
TOC_EXTENSION = re.compile(r"^\d+; \d+ \d+ (?:COMMENT - )?EXTENSION (?:- )?(\S+)")
# The full replace's prelude (sql/prelude.sql): BEGIN, then everything of the target's own dropped inside
# the restore's transaction; the schemas it keeps (sql/kept_schemas.sql) keep their CREATE SCHEMA out of the
# restore too.
KEPT_SCHEMAS = sql.load("kept_schemas", own_schemas=sql.OWN_SCHEMAS)
PRELUDE = sql.load("prelude", own_schemas=sql.OWN_SCHEMAS, kept_schemas=KEPT_SCHEMAS) + "\n"
PRELUDE_LINES = PRELUDE.count("\n")  # a psql error at or before this line came from the prelude

RESTORED = "devops-restored"
# After the restore's last statement: says it ran them all, and how many locks the transaction holds (every
# object it dropped and created: what the lock table must have room for, decisions.locks_needed).
RESTORED_MARKER = (f"\nDO $devops$ BEGIN RAISE WARNING '{RESTORED} %', "
                   "(SELECT count(*) FROM pg_locks WHERE pid = pg_backend_pid()); END $devops$;\n").encode()
RESTORED_LOCKS = re.compile(rb"devops-restored (\d+)")
VERIFIED = re.compile(rb"devops-verified (\d+)/(\d+)")
VERIFY_PROGRESS = "        RAISE WARNING 'devops-verified %/%', done, total;  -- read from psql's stderr"
# The verification's last word: the restored schema's hash (sql/schema_hash.sql), for the target's record.
SCHEMA = re.compile(r"devops-schema ([0-9a-f]{32})")
PRIVILEGE_ERROR = re.compile(r"must be owner of|permission denied", re.I)


@dataclass
class RestoreResult:
    left_out: list[str] = field(default_factory=list)
    locks: int | None = None  # the heavyweight locks the restore's transaction held before the verification
    schema: str = ""  # the restored schema's hash (sql/schema_hash.sql), from the verification


class VerificationFailed(PipelineError):
    """The restored tables or sequences differ from the archive's record: the restore was rolled back.
    ``found`` is what the target held inside the restore's transaction (tables: rows and checksum)."""

    def __init__(self, message: str, found: dict[str, Any]):
        super().__init__(message)
        self.found = found


def restore_list(listing: str, kept_schemas: set[str], left_alone: LeftAlone = LeftAlone()) -> \
        tuple[list[str], list[str]]:
    """The archive's table of contents (pg_restore -l) as the restore's --use-list: (its lines, the entries
    left out on purpose, described). An entry commented out (a leading ';') is skipped by pg_restore. What the
    operation leaves alone is not restored: an extension's entries here, a schema's CREATE SCHEMA here and its
    contents by pg_restore's --exclude-schema (Restore), for a dump made before it was left alone."""
    lines, left_out = [], []
    for line in listing.splitlines():
        schema = TOC_SCHEMA.match(line)
        extension = TOC_EXTENSION.match(line)
        if line and not line.startswith(";") and any(p.search(line) for p in MANAGED_SERVICE_EXCLUSIONS):
            left_out.append(describe_entry(line))
            lines.append(";" + line)
        elif schema and schema.group(1) in kept_schemas | set(left_alone.schemas):
            lines.append(";" + line)  # the target keeps this schema (public, it holds an extension, left alone)
        elif extension and extension.group(1) in left_alone.extensions:
            lines.append(";" + line)
        else:
            lines.append(line)
    return lines, left_out


def describe_entry(line: str) -> str:
    """'3383; 0 0 COMMENT - EXTENSION pgcrypto ' -> 'COMMENT ON EXTENSION pgcrypto'."""
    body = line.split(" ", 3)[-1].strip() if ";" in line else line
    body = re.sub(r"\s+\S+$", "", body) if body.count(" ") > 3 else body
    return body.replace("COMMENT - ", "COMMENT ON ").replace(" - ", " ")


def verification_sql(expected: dict[str, Any], left_alone: LeftAlone = LeftAlone()) -> str:
    """VERIFY with ``expected`` as a jsonb literal (dollar-quoted with a tag no JSON text contains)."""
    literal = json.dumps({"tables": expected["tables"], "sequences": expected["sequences"]}, sort_keys=True)
    tag = "$devops_expected$"
    assert tag not in literal
    # The literal last: a table's name in it may read like a slot.
    return sql.load("verify", settings=sql.SETTINGS, parallel_defaults=sql.PARALLEL_DEFAULTS,
                    count_tables=sql.count_tables(progress=VERIFY_PROGRESS), sequences=sql.SEQUENCES,
                    schema_hash=sql.SCHEMA_HASH, **left_alone.slots(),
                    expected=f"{tag}{literal}{tag}::jsonb")


class Restore:
    """Feed an archive with ``write``; ``commit`` verifies and makes it visible, anything else leaves the
    target as it was.

    The first bytes (the archive's table of contents) go to ``pg_restore -l`` to find the entries to leave
    out; they are kept in memory (the TOC is small) and replayed into the real restore. ``hint`` is added to
    the error when an archive entry fails (the flow's advice, e.g. on a downgrade between majors).
    """

    def __init__(self, target: Database, processes: Processes, workdir: str, hint: str = "", batched: bool = True):
        self.target = target
        self.processes = processes
        self.workdir = workdir
        self.hint = hint
        # Statements in batches (script.in_batches): psql 15 and later print every result of a batch, which
        # names the entry that failed.
        self.batched = batched
        self.result = RestoreResult()
        self.script = Script()
        self._prefix: list[bytes] = []
        self._probe = processes.start("pg_restore -l", ["pg_restore", "--list"], stdin=subprocess.PIPE)
        self._probe_out: list[bytes] = []
        self._probe_reader = threading.Thread(target=lambda: self._probe_out.append(self._probe.stdout.read()),
                                              daemon=True)
        self._probe_reader.start()
        self._restore: subprocess.Popen[bytes] | None = None
        self._copier: threading.Thread | None = None
        self._copy_error: list[BaseException] = []
        # psql logs in and runs the prelude (the target emptied, inside the restore's transaction) now, while
        # pg_dump reads its catalogs: its login's and the prelude's round trips are off the restore's path.
        # Its stdout: the markers in_batches adds (one line each), for naming the entry that failed.
        self._psql_out = tempfile.TemporaryFile(dir=self.workdir)
        self._psql = self.processes.start(
            "psql", ["psql", "--no-psqlrc", "--quiet", "--set=ON_ERROR_STOP=1", "--tuples-only", "--no-align",
                     "--file=-"],
            endpoint=self.target.endpoint, stdin=subprocess.PIPE, stdout=self._psql_out,
        )
        self._send(target.left_alone.fill(PRELUDE).encode())
        with contextlib.suppress(BrokenPipeError):  # psql gone already: the first write after says why
            self._psql.stdin.flush()
        # What the restore needs of the target once the table of contents has come, read now likewise.
        self._target_settings = in_background(target.settings_and_kept_schemas, KEPT_SCHEMAS)

    # ---- input ---------------------------------------------------------------------------------------------

    def write(self, chunk: bytes) -> None:
        if self._restore is None:
            self._prefix.append(chunk)
            try:
                self._probe.stdin.write(chunk)
                self._probe.stdin.flush()
                return
            except BrokenPipeError:
                pass  # pg_restore -l has read the whole table of contents and exited
            self._start_restore()
            return
        self._feed(chunk)

    def _feed(self, chunk: bytes) -> None:
        try:
            self._restore.stdin.write(chunk)
        except BrokenPipeError:
            raise self._failure() from None

    def _start_restore(self) -> None:
        self._probe_reader.join()
        if self._probe.wait() != 0:
            raise PipelineError(f"the dump is not a valid archive: {self.processes.error_of(self._probe)}")
        listing = (self._probe_out[0] if self._probe_out else b"").decode(errors="replace")
        settings, kept_schemas = self._target_settings.result()
        lines, self.result.left_out = restore_list(listing, kept_schemas, self.target.left_alone)
        list_file = os.path.join(self.workdir, "restore.list")
        with open(list_file, "w") as handle:
            handle.write("\n".join(lines) + "\n")
        # No --clean: the prelude has already emptied the target, whatever it held. --single-transaction:
        # otherwise pg_restore wraps large objects in a BEGIN/COMMIT of its own, whose COMMIT would end the
        # prelude's transaction halfway; its opening BEGIN and closing COMMIT are taken out on the way.
        self._restore = self.processes.start(
            "pg_restore",
            ["pg_restore", "--no-owner", "--no-acl", "--single-transaction", f"--use-list={list_file}", "--file=-",
             *(f"--exclude-schema={name}" for name in self.target.left_alone.schemas)],
            stdin=subprocess.PIPE,
        )
        self._copier = threading.Thread(target=self._copy_sql, args=(settings,), daemon=True, name="restore-sql")
        self._copier.start()
        for chunk in self._prefix:
            self._feed(chunk)
        self._prefix = []

    def _send(self, sql_text: bytes) -> None:
        self.script.feed(sql_text)
        self._psql.stdin.write(sql_text)

    def _copy_sql(self, settings: set[str]) -> None:
        """pg_restore's SQL into psql (through here, so that COMMIT is ours to add or withhold)."""
        try:
            script = without_unknown_settings(read_chunks(self._restore.stdout), settings, self.batched)
            for chunk in without_final_commit(in_batches(script) if self.batched else script):
                self._send(chunk)
            self._psql.stdin.flush()
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            self._copy_error.append(exc)
            # Unblock the writer: pg_restore now fails on its next write, and so does ``write``.
            with contextlib.suppress(OSError):
                self._restore.stdout.close()

    def end_input(self) -> None:
        """The whole archive written: pg_restore ends its script, and psql runs the last statements, while the
        source finishes what follows its stream (a dump's upload completing). Nothing is committed."""
        if self._restore is None:
            # The whole archive fitted in what pg_restore -l read.
            with contextlib.suppress(BrokenPipeError):
                self._probe.stdin.close()
            self._start_restore()
        with contextlib.suppress(BrokenPipeError):
            self._restore.stdin.close()

    # ---- verify and commit ---------------------------------------------------------------------------------

    def commit(self, expected: dict[str, Any], verifying: Callable[[], None] = lambda: None) -> RestoreResult:
        """All input written: let pg_restore finish, check the restored tables and sequences against
        ``expected`` ({"tables": {name: {"rows", "checksum"}}, "sequences": {name: last_value}}) inside the
        transaction, then COMMIT; any error or difference leaves the target unchanged. ``verifying`` is called
        when the restore went through and the verification starts."""
        self.end_input()
        if self._restore.wait() != 0:
            raise self._failure()
        self._copier.join()
        if self._copy_error or self._psql.poll() not in (None, 0):
            raise self._failure()
        try:
            # One query (psql's \\; joins them): a marker that the restore's statements all ran (with the locks
            # its transaction holds), the verification, and COMMIT, which runs only if the verification raised
            # nothing.
            verification = verification_sql(expected, self.target.left_alone).encode()
            self._send(RESTORED_MARKER.rstrip().removesuffix(b";") + b"\\;\n"
                       + verification.rstrip().removesuffix(b";") + b"\\;\nCOMMIT;\n")
            self._psql.stdin.close()
        except BrokenPipeError:
            raise self._failure() from None
        # The verification is announced once the marker came (not after a restore that failed on a statement).
        while not (restored := RESTORED_LOCKS.search(self.processes.stderr_tail(self._psql))):
            if self._psql.poll() is not None:
                # Gone already: the verification's progress lines may have pushed the marker out of the tail
                # (300 tables print ~18 KB of them), so the whole stderr says whether the restore ran to its end.
                if restored := RESTORED_LOCKS.search(self.processes.stderr_of(self._psql).encode()):
                    break
                raise self._failure()
            time.sleep(0.05)
        self.result.locks = int(restored.group(1))
        verifying()
        if self._psql.wait() != 0:
            raise self._failure()
        found = SCHEMA.search(self.processes.stderr_of(self._psql))
        self.result.schema = found.group(1) if found else ""
        return self.result

    def verified_tables(self) -> tuple[int, int] | None:
        """The verification's progress (tables checked, of how many), from psql's warnings; None before."""
        found = VERIFIED.findall(self.processes.stderr_tail(self._psql))
        return (int(found[-1][0]), int(found[-1][1])) if found else None

    # ---- why it stopped ------------------------------------------------------------------------------------

    def _failure(self) -> PipelineError:
        """The reason the restore stopped, from the process that failed first: the server refusing a
        statement ends psql, and pg_restore's broken pipe follows; so psql is asked first (given a moment
        to exit when another process has already died)."""
        others_died = any(proc is not None and proc.poll() not in (None, 0) for proc in (self._restore, self._probe))
        if self._psql.poll() is None and (others_died or self._copy_error):
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._psql.wait(timeout=5)
        if self._psql.poll() not in (None, 0):
            return self._psql_failure()
        if self._restore is not None and self._restore.poll() not in (None, 0):
            return PipelineError(f"pg_restore failed: {self.processes.error_of(self._restore)}")
        if self._copy_error:
            return PipelineError(f"restore into {self.target.label} stopped: {mask(str(self._copy_error[0]))}")
        return PipelineError(f"restore into {self.target.label} stopped unexpectedly")

    def _psql_failure(self) -> PipelineError:
        """psql's first error, named by the archive entry its line falls in; the connection lost (the target
        restarted) and the target's room run out each said in words of their own, with what to do."""
        stderr = self.processes.stderr_of(self._psql)
        # Lost before the verification's last word (SCHEMA), COMMIT was never run: the server rolled back.
        if lost := connection_lost(stderr, self.target.label, committing=bool(SCHEMA.search(stderr))):
            return PipelineError(lost)
        found = psql_error(stderr)
        if found is None:
            return PipelineError(f"restore into {self.target.label} failed: {self.processes.error_of(self._psql)}")
        line, message = found
        if message.startswith("devops-verify "):
            found = json.loads(message.removeprefix("devops-verify "))
            return VerificationFailed(f"the restored data differs from the source; {self.target.label} was "
                                      "left as it was (the restore was rolled back)", found)
        if line <= PRELUDE_LINES:
            # The login role may not drop what another role owns: said only when the server says so.
            owner = " (objects the login role may not drop)" if PRIVILEGE_ERROR.search(message) else ""
            return PipelineError(f"clearing {self.target.label} before the restore failed: {message}{owner}; "
                                 "the restore was rolled back")
        entry = self.script.entry_at(line)
        if entry is not None and not entry[0].startswith("TABLE DATA ") and (marked := self._last_marker()) is not None:
            entry = marked  # in a batch: the line is the batch's last; the marker names the statement's entry
        if ran_out := room_ran_out(message, self.target.label, entry[0] if entry else ""):
            return PipelineError(ran_out)
        if entry is None:
            return PipelineError(f"restore into {self.target.label} failed: {message}")
        what, statement = entry
        at = f"{what} ({statement})" if statement else what
        return PipelineError(f"restore into {self.target.label} failed at {at}: {message}{self.hint}")

    def _last_marker(self) -> tuple[str, str] | None:
        """The entry whose in_batches marker psql printed last, if any."""
        found = MARKER.findall(read_file(self._psql_out, last=TAIL)) if self.batched else []
        index = int(found[-1]) if found else -1
        return self.script.entries[index][1:] if 0 <= index < len(self.script.entries) else None
