"""The child processes of one operation (pg_dump, pg_restore, psql) and the streams between them."""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import subprocess
import tempfile
from typing import IO, Any, Iterable, Iterator

from devops import runlog
from devops.errors import DevopsError
from devops.masking import mask
from devops.postgres import Endpoint

CHUNK = 1024 * 1024
# The pipes between the tools and this process hold a chunk (Linux's default is 64 KB): each read and write
# then moves up to 1 MB, with a sixteenth of the system calls and process switches.
PIPE_SIZE = CHUNK


class PipelineError(DevopsError):
    """A dump or restore stopped: the processes' own words, masked."""


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
        return read_file(self._entry(proc)[1]).decode(errors="replace")

    def stderr_tail(self, proc: subprocess.Popen[bytes], size: int = 4096) -> bytes:
        """The end of a running process's stderr so far."""
        return read_file(self._entry(proc)[1], last=size)

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
            runlog.section(f"{name} (exit {proc.returncode}) stderr",
                           read_file(err).decode(errors="replace") or "(empty)")
            for stream in (proc.stdin, proc.stdout):
                if stream:
                    with contextlib.suppress(OSError):
                        stream.close()
            err.close()
        self.procs.clear()


def read_file(handle: IO[bytes] | None, last: int | None = None) -> bytes:
    """A file's content (its ``last`` bytes), read at an offset: no seek under a running writer."""
    if handle is None:
        return b""
    with contextlib.suppress(OSError, ValueError):
        end = os.fstat(handle.fileno()).st_size
        start = max(end - last, 0) if last else 0
        return os.pread(handle.fileno(), end - start, start)
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


def pump(source: Iterable[bytes], sinks: list[Any]) -> None:
    """Copy a stream of chunks to every sink (each has ``write``); at its end, tell the sinks that take no
    more (``end_input``: a Restore) at once."""
    for chunk in source:
        for sink in sinks:
            sink.write(chunk)
    for sink in sinks:
        if hasattr(sink, "end_input"):
            sink.end_input()
