"""The processes that move a database: pg_dump into S3, and an S3 or pg_dump stream into a target.

Restore is atomic. pg_restore turns the archive into SQL (``-f -``); psql runs it inside one transaction
that this module opens (BEGIN in the prelude, which first empties the target) and closes with COMMIT only
after the dump, pg_restore and psql have all succeeded and the restored tables and sequences matched the
source's (VERIFY, in the same transaction). Any failure, Ctrl-C included, ends psql without COMMIT, and the
server rolls the whole restore back: the target stays exactly as it was. (psql's --single-transaction
would COMMIT at the end of input even when pg_dump died halfway, so it is not used; pg_restore's is, with
its BEGIN and COMMIT taken out of the script.) A psql error is named by the archive entry it fell in.

Entries that cannot apply on a managed service are left out on purpose, by filtering the archive's table
of contents, and named in the report; any other error fails the restore.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import IO, Any, Callable, Iterable, Iterator

from devops import runlog
from devops.errors import DevopsError
from devops.masking import mask
from devops.postgres import Endpoint
from devops.sync import sql
from devops.sync.database import Database
from devops.threads import in_background

CHUNK = 1024 * 1024
# The pipes between the tools and this process hold a chunk (Linux's default is 64 KB): each read and write
# then moves up to 1 MB, with a sixteenth of the system calls and process switches.
PIPE_SIZE = CHUNK
TOOLS = ("pg_dump", "pg_restore", "psql")
# TOC entries a managed service (RDS, Neon) refuses to a non-superuser: left out on purpose.
MANAGED_SERVICE_EXCLUSIONS = (
    re.compile(r" COMMENT - EXTENSION "),
    re.compile(r" EVENT TRIGGER "),
    re.compile(r" PUBLICATION( TABLE| TABLES IN SCHEMA)? "),
    re.compile(r" SUBSCRIPTION "),
)
# The full replace's prelude (sql/prelude.sql): BEGIN, then everything of the target's own dropped inside
# the restore's transaction; the schemas it keeps (sql/kept_schemas.sql) keep their CREATE SCHEMA out of the
# restore too.
KEPT_SCHEMAS = sql.load("kept_schemas", own_schemas=sql.OWN_SCHEMAS)
PRELUDE = sql.load("prelude", own_schemas=sql.OWN_SCHEMAS, kept_schemas=KEPT_SCHEMAS) + "\n"
PRELUDE_LINES = PRELUDE.count("\n")  # a psql error at or before this line came from the prelude


class PipelineError(DevopsError):
    pass


# --------------------------------------------------------------------------------------------------
# Tools


@dataclass(frozen=True)
class ToolVersions:
    versions: dict[str, str]

    def major(self, tool: str) -> int:
        return int(self.versions[tool].split(".")[0])


def tool_versions(path: str | None = None) -> ToolVersions:
    """pg_dump, pg_restore and psql versions; one clear error when one is missing."""
    versions = {}
    for tool in TOOLS:
        binary = shutil.which(tool, path=path)
        if binary is None:
            raise PipelineError(f"{tool} not found on PATH: install the PostgreSQL client tools "
                                "(postgresql-client-18) or run the tasks in the toolbox (./toolbox/inv)")
        out = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout
        found = re.search(r"(\d+)(?:\.(\d+))?", out)
        versions[tool] = found.group(0) if found else "0"
    return ToolVersions(versions)


def check_tools_match_servers(tools: ToolVersions, servers: dict[str, int]) -> None:
    """pg_dump/pg_restore must be of a major version at least each server's."""
    for label, version_num in servers.items():
        server_major = version_num // 10000
        for tool in ("pg_dump", "pg_restore"):
            if tools.major(tool) < server_major:
                raise PipelineError(
                    f"{tool} {tools.versions[tool]} is older than the {label} server (PostgreSQL {server_major}): "
                    f"install postgresql-client-{server_major} or newer, or run the task in the toolbox (./toolbox/inv)"
                )


def dump_args(compression: str, snapshot: str | None = None) -> list[str]:
    args = ["pg_dump", "--format=custom", "--no-owner", "--no-acl", f"--compress={compression}"]
    if snapshot:
        args.append(f"--snapshot={snapshot}")
    return args


def compression_for(tools: ToolVersions, setting: str = "auto") -> str:
    """pg_dump's --compress value. "auto": zstd level 1 where pg_dump has it (16+), which roughly halves
    the bytes sent to S3 at little CPU; none before that, because gzip (the only older choice) costs
    several times the dump itself (measured in bench/sync_throughput.py)."""
    if setting != "auto":
        return setting
    return "zstd:1" if tools.major("pg_dump") >= 16 else "0"


# --------------------------------------------------------------------------------------------------
# Processes


class Processes:
    """Child processes of one operation: each gets the endpoint's libpq environment (so no password is in
    argv) and a temporary file for stderr. ``close`` kills whatever is still running and copies each one's
    whole stderr into the run log (masked there)."""

    def __init__(self) -> None:
        self.procs: list[tuple[str, subprocess.Popen[bytes], IO[bytes]]] = []

    def start(self, name: str, args: list[str], endpoint: Endpoint | None = None, stdin: Any = None,
              stdout: Any = subprocess.PIPE) -> subprocess.Popen[bytes]:
        env = {**os.environ, **(endpoint.libpq_env() if endpoint else {})}
        err = tempfile.TemporaryFile()
        proc = subprocess.Popen(args, stdin=stdin, stdout=stdout, stderr=err, env=env)
        self.procs.append((name, proc, err))
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                # Linux only; refused above /proc/sys/fs/pipe-max-size: the default size then stays.
                with contextlib.suppress(AttributeError, OSError):
                    fcntl.fcntl(stream.fileno(), fcntl.F_SETPIPE_SZ, PIPE_SIZE)
        return proc

    def _entry(self, proc: subprocess.Popen[bytes]) -> tuple[str, IO[bytes] | None]:
        """A process's name and stderr file."""
        return next(((name, err) for name, candidate, err in self.procs if candidate is proc), ("process", None))

    def stderr_of(self, proc: subprocess.Popen[bytes]) -> str:
        return _read(self._entry(proc)[1]).decode(errors="replace")

    def stderr_tail(self, proc: subprocess.Popen[bytes], size: int = 4096) -> bytes:
        """The end of a running process's stderr so far."""
        return _read(self._entry(proc)[1], last=size)

    def error_of(self, proc: subprocess.Popen[bytes]) -> str:
        """The meaningful first error line of a process's stderr, masked; or how it ended."""
        name = self._entry(proc)[0]
        lines = [line.strip() for line in self.stderr_of(proc).splitlines() if line.strip()]
        errors = [line for line in lines if "error" in line.lower() or "fatal" in line.lower()]
        return mask((errors or lines or [ended(name, proc.returncode)])[0])

    def close(self) -> None:
        for name, proc, err in self.procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            runlog.section(f"{name} (exit {proc.returncode}) stderr", _read(err).decode(errors="replace") or "(empty)")
            for stream in (proc.stdin, proc.stdout):
                if stream:
                    with contextlib.suppress(OSError):
                        stream.close()
            err.close()
        self.procs.clear()



def _read(err: IO[bytes] | None, last: int | None = None) -> bytes:
    """A stderr file's content (its ``last`` bytes), read at an offset: no seek under a running writer."""
    if err is None:
        return b""
    with contextlib.suppress(OSError, ValueError):
        end = os.fstat(err.fileno()).st_size
        start = max(end - last, 0) if last else 0
        return os.pread(err.fileno(), end - start, start)
    return b""


def ended(name: str, returncode: int | None) -> str:
    """'pg_restore was stopped by SIGPIPE' rather than 'exited with -13'."""
    if returncode is not None and returncode < 0:
        with contextlib.suppress(ValueError):
            return f"{name} was stopped by {signal.Signals(-returncode).name}"
    return f"{name} exited with {returncode}"


def read_chunks(stream: IO[bytes]) -> Iterator[bytes]:
    while chunk := stream.read1(CHUNK) if hasattr(stream, "read1") else stream.read(CHUNK):
        yield chunk


# --------------------------------------------------------------------------------------------------
# Restore


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
PSQL_ERROR = re.compile(r"^psql:[^\n]*?:(\d+): (?:ERROR|FATAL):\s+(.*)$", re.M)
# The lines psql prints after an error's: the server's DETAIL and HINT.
PSQL_MORE = re.compile(r"^(DETAIL|HINT):\s+(.*)$", re.M)
PRIVILEGE_ERROR = re.compile(r"must be owner of|permission denied", re.I)
ENTRY_HEADER = re.compile(rb"-- (?:Data for )?Name: (.*?); Type: (.*?); Schema: (.*?); Owner:")
HEADER_SET = re.compile(rb"^SET ([a-z_]+) = [^\n]*;\n", re.M)
MARKER = re.compile(rb"^devops-entry (\d+)$", re.M)
HEADER_STATEMENT = re.compile(rb"^((?:SET |SELECT pg_catalog\.set_config\()[^\n]*);\n", re.M)
# pg_restore --single-transaction's own BEGIN (at the top) and COMMIT (at the end, before the closing
# comments): the transaction is the prelude's, and COMMIT is withheld until the verification passed.
HEADER_BEGIN = re.compile(rb"^BEGIN;\n", re.M)
SCRIPT_END = re.compile(rb"(?:^|\n)COMMIT;\n(?:\s*(?:--[^\n]*|\\unrestrict [^\n]*)?\n)*\s*\Z")
TAIL = 4096


class Script:
    """The SQL on its way to psql: counts its lines and remembers where each archive entry begins (the
    '-- Name: ...; Type: ...; Schema: ...' comment pg_restore writes before it, and the statement's first
    line), so that the line number in a psql error names the entry that failed."""

    def __init__(self) -> None:
        self.lines = 0
        self.entries: list[tuple[int, str, str]] = []  # (line, "VIEW app.big_orders", first statement line)
        self._carry = b""  # the last, unfinished line (with the newline before it): a header may straddle chunks

    def feed(self, chunk: bytes) -> None:
        buf = self._carry + chunk
        line = self.lines - (1 if self._carry else 0)  # newlines before buf
        counted = 0
        start = 0
        while (found := buf.find(b"\n-- ", start)) != -1:
            end = buf.find(b"\n", found + 1)
            if end == -1:
                break
            header = ENTRY_HEADER.match(buf, found + 1, end)
            if header:
                line += buf.count(b"\n", counted, found + 1)
                counted = found + 1
                name, kind, schema = (part.decode(errors="replace") for part in header.groups())
                self.entries.append((line + 1, f"{kind} {name if schema == '-' else schema + '.' + name}",
                                     _statement_after(buf, end)))
            start = end
        self.lines += chunk.count(b"\n")
        last = buf.rfind(b"\n")
        self._carry = buf[last:] if last != -1 and len(buf) - last < 4096 else b""

    def entry_at(self, line: int) -> tuple[str, str] | None:
        """The archive entry whose SQL holds ``line`` (1-based): (what, its statement's first line)."""
        found = None
        for start, what, statement in self.entries:
            if start > line:
                break
            found = (what, statement)
        return found


def _statement_after(buf: bytes, end: int) -> str:
    """The first line of SQL after an entry's header comment, shortened; empty when not in this chunk."""
    position = end + 1
    while position < len(buf):
        stop = buf.find(b"\n", position)
        if stop == -1:
            return ""
        text = buf[position:stop].decode(errors="replace").strip()
        if text and not text.startswith("--"):
            return text if len(text) <= 100 else text[:97] + "..."
        position = stop + 1
    return ""


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
        # Statements in batches (in_batches): psql 15 and later print every result of a batch, which names
        # the entry that failed.
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
        self._settings: set[str] = set()
        # psql logs in and runs the prelude (the target emptied, inside the restore's transaction) now, while
        # pg_dump reads its catalogs: its login's and the prelude's round trips are off the restore's path.
        # Its stdout: the markers in_batches adds (one line each), for naming the entry that failed.
        self._psql_out = tempfile.TemporaryFile(dir=self.workdir)
        self._psql = self.processes.start(
            "psql", ["psql", "--no-psqlrc", "--quiet", "--set=ON_ERROR_STOP=1", "--tuples-only", "--no-align",
                     "--file=-"],
            endpoint=self.target.endpoint, stdin=subprocess.PIPE, stdout=self._psql_out,
        )
        self._send(PRELUDE.encode())
        with contextlib.suppress(BrokenPipeError):  # psql gone already: the first write after says why
            self._psql.stdin.flush()
        # What the restore needs of the target once the table of contents has come, read now likewise.
        self._target_settings = in_background(target.settings_and_kept_schemas, KEPT_SCHEMAS)

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
        self._settings, kept_schemas = self._target_settings.result()
        kept = []
        for line in listing.splitlines():
            schema = re.match(r"^\d+; \d+ \d+ SCHEMA - (.+) \S*$", line)
            if line and not line.startswith(";") and any(p.search(line) for p in MANAGED_SERVICE_EXCLUSIONS):
                self.result.left_out.append(_describe_entry(line))
                kept.append(";" + line)  # commented out: pg_restore skips it
            elif schema and schema.group(1) in kept_schemas:
                kept.append(";" + line)  # the target keeps this schema (public, or it holds an extension)
            else:
                kept.append(line)
        list_file = os.path.join(self.workdir, "restore.list")
        with open(list_file, "w") as handle:
            handle.write("\n".join(kept) + "\n")
        # No --clean: the prelude has already emptied the target, whatever it held. --single-transaction:
        # otherwise pg_restore wraps large objects in a BEGIN/COMMIT of its own, whose COMMIT would end the
        # prelude's transaction halfway; its opening BEGIN and closing COMMIT are taken out on the way.
        self._restore = self.processes.start(
            "pg_restore",
            ["pg_restore", "--no-owner", "--no-acl", "--single-transaction", f"--use-list={list_file}", "--file=-"],
            stdin=subprocess.PIPE,
        )
        self._copier = threading.Thread(target=self._copy_sql, daemon=True, name="restore-sql")
        self._copier.start()
        for chunk in self._prefix:
            self._feed(chunk)
        self._prefix = []

    def _send(self, sql: bytes) -> None:
        self.script.feed(sql)
        self._psql.stdin.write(sql)

    def _copy_sql(self) -> None:
        """pg_restore's SQL into psql (through here, so that COMMIT is ours to add or withhold)."""
        try:
            chunks = read_chunks(self._restore.stdout)
            script = self._without_unknown_settings(chunks)
            for chunk in _without_final_commit(in_batches(script) if self.batched else script):
                self._send(chunk)
            self._psql.stdin.flush()
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            self._copy_error.append(exc)
            # Unblock the writer: pg_restore now fails on its next write, and so does ``write``.
            with contextlib.suppress(OSError):
                self._restore.stdout.close()

    def _without_unknown_settings(self, chunks: Iterator[bytes]) -> Iterator[bytes]:
        """The script's opening SETs, less those the target's major does not have (pg_restore 17 writes
        ``SET transaction_timeout = 0;``, which a server before 17 refuses), and less its BEGIN; the rest
        passes untouched."""
        head = b""
        for chunk in chunks:
            if head is None:
                yield chunk
                continue
            head += chunk
            first_entry = head.find(b"\n-- Name: ")
            if first_entry == -1 and len(head) < CHUNK:
                continue
            cut = first_entry if first_entry != -1 else len(head)
            yield self._header(head[:cut])
            yield head[cut:]
            head = None
        if head:
            yield self._header(head)

    def _header(self, head: bytes) -> bytes:
        head = HEADER_BEGIN.sub(b"", head, count=1)
        head = HEADER_SET.sub(lambda m: m.group(0) if m.group(1).decode() in self._settings else b"", head)
        # Its settings, one line each, go in one batch with the first entry (in_batches).
        return HEADER_STATEMENT.sub(rb"\1\\;\n", head) if self.batched else head

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
        """psql's first error, named by the archive entry its line falls in."""
        found = psql_error(self.processes.stderr_of(self._psql))
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
        if entry is None:
            return PipelineError(f"restore into {self.target.label} failed: {message}")
        what, statement = entry
        at = f"{what} ({statement})" if statement else what
        return PipelineError(f"restore into {self.target.label} failed at {at}: {message}{self.hint}")

    def _last_marker(self) -> tuple[str, str] | None:
        """The entry whose in_batches marker psql printed last, if any."""
        found = MARKER.findall(_read(self._psql_out, last=TAIL)) if self.batched else []
        index = int(found[-1]) if found else -1
        return self.script.entries[index][1:] if 0 <= index < len(self.script.entries) else None

    def verified_tables(self) -> tuple[int, int] | None:
        """The verification's progress (tables checked, of how many), from psql's warnings; None before."""
        found = VERIFIED.findall(self.processes.stderr_tail(self._psql))
        return (int(found[-1][0]), int(found[-1][1])) if found else None

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
            self._send(RESTORED_MARKER.rstrip().removesuffix(b";") + b"\\;\n"
                       + verification_sql(expected).encode().rstrip().removesuffix(b";") + b"\\;\nCOMMIT;\n")
            self._psql.stdin.close()
        except BrokenPipeError:
            raise self._failure() from None
        # The verification is announced once the marker came (not after a restore that failed on a statement).
        while not (restored := RESTORED_LOCKS.search(self.processes.stderr_tail(self._psql))):
            if self._psql.poll() is not None:
                raise self._failure()
            time.sleep(0.05)
        self.result.locks = int(restored.group(1))
        verifying()
        if self._psql.wait() != 0:
            raise self._failure()
        found = SCHEMA.search(self.processes.stderr_of(self._psql))
        self.result.schema = found.group(1) if found else ""
        return self.result


def psql_error(stderr: str) -> tuple[int, str] | None:
    """psql's first error: (its line in the script, the server's message, masked). The server's DETAIL and
    HINT say why and what to do (e.g. "You might need to increase max_locks_per_transaction"): they stay,
    on the same line. None when psql reported no error of the server's."""
    error = PSQL_ERROR.search(stderr)
    if not error:
        return None
    message = error.group(2).strip()
    more = [f"{kind}: {text.strip()}" for kind, text in PSQL_MORE.findall(stderr[error.end():].split("\npsql:", 1)[0])]
    return int(error.group(1)), mask(f"{message} ({'; '.join(more)})" if more else message)


def in_batches(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """pg_restore's script with its statements sent in batches: psql sends each statement as a query of its
    own and waits for its answer (a round trip each: 20-80 ms from a laptop, thousands for a schema of a few
    hundred tables). Where one archive entry ends and the next (not a table's data) begins, the ending
    statement's ``;`` becomes psql's ``\\;``, which joins the next statement to the same query; a batch goes
    when a statement ends with a plain ``;``: before a table's data (COPY goes alone) and at the end. Only
    that ``;`` is touched (the last thing before an entry's header comment), never one inside a body.

    Each entry joined so is preceded by ``SELECT 'devops-entry N'`` (N: its place among the entries, as
    Script counts them): psql prints the results of every statement of a batch (15 and later), so the last
    marker it printed before an error names the entry that failed (its line number names the batch's last).
    """
    pending: list[bytes] = []  # a statement's last line, then blank and "--" lines: held until a header decides
    entry = 0
    buf = b""
    in_data = False  # inside a COPY's rows: passed on as they are, without looking at each line
    for chunk in chunks:
        buf += chunk
        out: list[bytes] = []
        position = 0
        while True:
            if in_data:
                end = buf.find(b"\n\\.\n", max(position - 1, 0))
                if end == -1:  # the rows go on: all but what may hold the start of "\n\\.\n"
                    keep = max(position, len(buf) - 3)
                    out.append(buf[position:keep])
                    position = keep
                    break
                out.append(buf[position:end + 4])
                position, in_data = end + 4, False
                continue
            newline = buf.find(b"\n", position)
            if newline == -1:
                break
            line = buf[position:newline + 1]
            position = newline + 1
            if ENTRY_HEADER.match(line):
                if not line.startswith(b"-- Data for Name: "):
                    marker = b"SELECT 'devops-entry %d'\\;" % entry
                    if pending:  # the statement before it ends the previous entry: joined to this batch
                        last = pending[0][:-2]
                        pending[0] = (last if last.endswith(b"\\") else last + b"\\") + b"; " + marker + b"\n"
                    else:  # after a table's rows: the batch starts here
                        pending.insert(0, marker + b"\n")
                entry += 1
                out += pending
                pending = []
                out.append(line)
            elif pending and line.strip() in (b"", b"--"):
                pending.append(line)
            else:
                out += pending
                pending = []
                if line.startswith(b"COPY ") and line.endswith(b" FROM stdin;\n"):
                    out.append(line)
                    in_data = True
                elif line.endswith(b";\n"):
                    pending = [line]
                else:
                    out.append(line)
        buf = buf[position:]
        yield b"".join(out)
    yield b"".join(pending) + buf


def _without_final_commit(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """The script less its closing COMMIT (pg_restore --single-transaction's), which is always in its last
    few lines: the stream is passed on with its last TAIL bytes held back until the end."""
    held = b""
    for chunk in chunks:
        held += chunk
        if len(held) > 2 * TAIL:
            yield held[:-TAIL]
            held = held[-TAIL:]
    end = SCRIPT_END.search(held)
    if not end:
        raise PipelineError("pg_restore's script did not end with its COMMIT: nothing was committed")
    yield held[:end.start()] + b"\n"


def verification_sql(expected: dict[str, Any]) -> str:
    """VERIFY with ``expected`` as a jsonb literal (dollar-quoted with a tag no JSON text contains)."""
    literal = json.dumps({"tables": expected["tables"], "sequences": expected["sequences"]}, sort_keys=True)
    tag = "$devops_expected$"
    assert tag not in literal
    # The literal last: a table's name in it may read like a slot.
    return sql.load("verify", settings=sql.SETTINGS, parallel_defaults=sql.PARALLEL_DEFAULTS,
                    count_tables=sql.count_tables(progress=VERIFY_PROGRESS), sequences=sql.SEQUENCES,
                    schema_hash=sql.SCHEMA_HASH,
                    expected=f"{tag}{literal}{tag}::jsonb")


def _describe_entry(line: str) -> str:
    """'3383; 0 0 COMMENT - EXTENSION pgcrypto ' -> 'COMMENT ON EXTENSION pgcrypto'."""
    body = line.split(" ", 3)[-1].strip() if ";" in line else line
    body = re.sub(r"\s+\S+$", "", body) if body.count(" ") > 3 else body
    return body.replace("COMMENT - ", "COMMENT ON ").replace(" - ", " ")


def pump(source: Iterable[bytes], sinks: list[Any]) -> None:
    """Copy a stream of chunks to every sink (each has ``write``); at its end, tell the sinks that take no
    more (``end_input``: a Restore) at once."""
    for chunk in source:
        for sink in sinks:
            sink.write(chunk)
    for sink in sinks:
        if hasattr(sink, "end_input"):
            sink.end_input()
