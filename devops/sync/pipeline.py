"""The processes that move a database: pg_dump into S3, and an S3 or pg_dump stream into a target.

Restore is atomic. pg_restore turns the archive into SQL (``-f -``); psql runs it inside one transaction
that this module opens (BEGIN in the prelude) and closes with COMMIT only after the dump, pg_restore and
psql have all succeeded. Any failure, Ctrl-C included, ends psql without COMMIT, and the server rolls the
whole restore back: the target stays exactly as it was. (psql's --single-transaction would COMMIT at the
end of input even when pg_dump died halfway, so it is not used.)

Entries that cannot apply on a managed service are left out on purpose, by filtering the archive's table
of contents, and named in the report; any other error fails the restore.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
from dataclasses import dataclass, field
from typing import IO, Any, Iterable, Iterator

from devops import runlog
from devops.console import mask
from devops.errors import DevopsError
from devops.postgres import Endpoint

CHUNK = 1024 * 1024
TOOLS = ("pg_dump", "pg_restore", "psql")
# TOC entries a managed service (RDS, Neon) refuses to a non-superuser: left out on purpose.
MANAGED_SERVICE_EXCLUSIONS = (
    re.compile(r" COMMENT - EXTENSION "),
    re.compile(r" EVENT TRIGGER "),
    re.compile(r" PUBLICATION( TABLE| TABLES IN SCHEMA)? "),
    re.compile(r" SUBSCRIPTION "),
)
# Drops every user relation and schema of the target (not those of extensions), so that the restore is a
# full replace: tables that exist only in the target do not survive it. Runs inside the restore's
# transaction.
PRELUDE = r"""
BEGIN;
SET LOCAL client_min_messages = warning;
DO $devops$
DECLARE
    obj record;
BEGIN
    FOR obj IN
        SELECT n.nspname FROM pg_namespace n
        WHERE n.nspname NOT IN ('public', 'pg_catalog', 'information_schema')
          AND n.nspname NOT LIKE 'pg\_%'
          AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_namespace'::regclass
                          AND d.objid = n.oid AND d.deptype = 'e')
          AND NOT EXISTS (SELECT 1 FROM pg_extension e WHERE e.extnamespace = n.oid)
    LOOP
        EXECUTE format('DROP SCHEMA %I CASCADE', obj.nspname);
    END LOOP;
    FOR obj IN
        SELECT c.oid::regclass AS rel, c.relkind FROM pg_class c
        WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
          AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                          AND d.objid = c.oid AND d.deptype IN ('e', 'a', 'i'))
    LOOP
        BEGIN
            EXECUTE format('DROP %s IF EXISTS %s CASCADE',
                CASE obj.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW'
                    WHEN 'S' THEN 'SEQUENCE' WHEN 'f' THEN 'FOREIGN TABLE' ELSE 'TABLE' END, obj.rel);
        EXCEPTION WHEN undefined_table OR undefined_object THEN
            NULL;  -- already gone with an earlier CASCADE
        END;
    END LOOP;
END
$devops$;
"""


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
                                "(postgresql-client-17) or run the tasks in the toolbox (./toolbox/inv)")
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
        return proc

    def error_of(self, proc: subprocess.Popen[bytes]) -> str:
        """The meaningful last line of a process's stderr, masked."""
        for name, candidate, err in self.procs:
            if candidate is proc:
                err.seek(0)
                lines = [line.strip() for line in err.read().decode(errors="replace").splitlines() if line.strip()]
                errors = [line for line in lines if "error" in line.lower() or "fatal" in line.lower()]
                return mask((errors or lines or [f"{name} exited with {proc.returncode}"])[0])
        return ""

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
            self._log_stderr(name, proc, err)
            for stream in (proc.stdin, proc.stdout):
                if stream:
                    with contextlib.suppress(OSError):
                        stream.close()
            err.close()
        self.procs.clear()


    @staticmethod
    def _log_stderr(name: str, proc: subprocess.Popen[bytes], err: IO[bytes]) -> None:
        with contextlib.suppress(OSError, ValueError):
            err.seek(0)
            text = err.read().decode(errors="replace")
            runlog.section(f"{name} (exit {proc.returncode}) stderr", text or "(empty)")


def read_chunks(stream: IO[bytes]) -> Iterator[bytes]:
    while chunk := stream.read1(CHUNK) if hasattr(stream, "read1") else stream.read(CHUNK):
        yield chunk


# --------------------------------------------------------------------------------------------------
# Restore


@dataclass
class RestoreResult:
    left_out: list[str] = field(default_factory=list)


class Restore:
    """Feed an archive with ``write``; ``commit`` makes it visible, anything else leaves the target as it was.

    The first bytes (the archive's table of contents) go to ``pg_restore -l`` to find the entries to leave
    out; they are kept in memory (the TOC is small) and replayed into the real restore.
    """

    def __init__(self, target: Endpoint, processes: Processes, workdir: str):
        self.target = target
        self.processes = processes
        self.workdir = workdir
        self.result = RestoreResult()
        self._prefix: list[bytes] = []
        self._probe = processes.start("pg_restore -l", ["pg_restore", "--list"], stdin=subprocess.PIPE)
        self._probe_out: list[bytes] = []
        self._probe_reader = threading.Thread(target=lambda: self._probe_out.append(self._probe.stdout.read()),
                                              daemon=True)
        self._probe_reader.start()
        self._restore: subprocess.Popen[bytes] | None = None
        self._psql: subprocess.Popen[bytes] | None = None
        self._copier: threading.Thread | None = None
        self._copy_error: list[BaseException] = []

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
        kept = []
        for line in listing.splitlines():
            if line and not line.startswith(";") and any(p.search(line) for p in MANAGED_SERVICE_EXCLUSIONS):
                self.result.left_out.append(_describe_entry(line))
                kept.append(";" + line)  # commented out: pg_restore skips it
            else:
                kept.append(line)
        list_file = os.path.join(self.workdir, "restore.list")
        with open(list_file, "w") as handle:
            handle.write("\n".join(kept) + "\n")
        self._restore = self.processes.start(
            "pg_restore",
            ["pg_restore", "--clean", "--if-exists", "--no-owner", "--no-acl", f"--use-list={list_file}",
             "--file=-"],
            stdin=subprocess.PIPE,
        )
        self._psql = self.processes.start(
            "psql", ["psql", "--no-psqlrc", "--quiet", "--set=ON_ERROR_STOP=1", "--file=-"],
            endpoint=self.target, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
        )
        self._psql.stdin.write(PRELUDE.encode())
        self._copier = threading.Thread(target=self._copy_sql, daemon=True, name="restore-sql")
        self._copier.start()
        for chunk in self._prefix:
            self._feed(chunk)
        self._prefix = []

    def _copy_sql(self) -> None:
        """pg_restore's SQL into psql (through here, so that COMMIT is ours to add or withhold)."""
        try:
            for chunk in read_chunks(self._restore.stdout):
                self._psql.stdin.write(chunk)
            self._psql.stdin.flush()
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            self._copy_error.append(exc)
            # Unblock the writer: pg_restore now fails on its next write, and so does ``write``.
            with contextlib.suppress(OSError):
                self._restore.stdout.close()

    def _failure(self) -> PipelineError:
        """The reason the restore stopped, from whichever process failed first."""
        if self._psql is not None and self._psql.poll() not in (None, 0):
            return PipelineError(f"restore into {self.target.label} failed: {self.processes.error_of(self._psql)}")
        if self._restore is not None and self._restore.poll() not in (None, 0):
            return PipelineError(f"pg_restore failed: {self.processes.error_of(self._restore)}")
        return PipelineError(f"restore into {self.target.label} stopped unexpectedly")

    def commit(self) -> RestoreResult:
        """All input written: let pg_restore finish, then COMMIT; any error leaves the target unchanged."""
        if self._restore is None:
            # The whole archive fitted in what pg_restore -l read.
            with contextlib.suppress(BrokenPipeError):
                self._probe.stdin.close()
            self._start_restore()
        with contextlib.suppress(BrokenPipeError):
            self._restore.stdin.close()
        if self._restore.wait() != 0:
            raise self._failure()
        self._copier.join()
        if self._copy_error or self._psql.poll() not in (None, 0):
            raise self._failure()
        try:
            self._psql.stdin.write(b"\nCOMMIT;\n")
            self._psql.stdin.close()
        except BrokenPipeError:
            raise self._failure() from None
        if self._psql.wait() != 0:
            raise self._failure()
        return self.result


def _describe_entry(line: str) -> str:
    """'3383; 0 0 COMMENT - EXTENSION pgcrypto ' -> 'COMMENT ON EXTENSION pgcrypto'."""
    body = line.split(" ", 3)[-1].strip() if ";" in line else line
    body = re.sub(r"\s+\S+$", "", body) if body.count(" ") > 3 else body
    return body.replace("COMMENT - ", "COMMENT ON ").replace(" - ", " ")


def pump(source: Iterable[bytes], sinks: list[Any]) -> None:
    """Copy a stream of chunks to every sink (each has ``write``)."""
    for chunk in source:
        for sink in sinks:
            sink.write(chunk)
