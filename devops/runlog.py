"""The run log: a task's whole output, masked, in ``<log_dir>/<timestamp>-<task>.log`` (mode 0600).

Everything the console prints goes there, and so does what the terminal never shows: every tool's full
output (Terraform, pg_dump, pg_restore, psql stderr) and the traceback of an unexpected error. A failure's
[ERROR] line names the file, so that it can be read, or attached to a ticket, after the task exits.
One log is open per process at a time (``current``); code anywhere writes to it with ``write``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import re
import threading
from pathlib import Path
from typing import Iterator

from devops.masking import mask

_current: "RunLog | None" = None


class RunLog:
    def __init__(self, path: Path):
        self.path = path
        # Created with mode 0600 from the start: it never exists readable by others, even for an instant.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
        self._file = os.fdopen(fd, "w", encoding="utf-8", errors="replace")
        self._lock = threading.Lock()  # tools' output, progress and the console write from several threads

    def write(self, text: str) -> None:
        with self._lock:
            if not self._file.closed:
                self._file.write(mask(text).rstrip("\n") + "\n")
                self._file.flush()

    def close(self) -> None:
        with self._lock:
            self._file.close()

    def shown(self) -> str:
        """The path as a failure line shows it: relative to the working directory when under it."""
        with contextlib.suppress(ValueError):
            return str(self.path.relative_to(Path.cwd()))
        return str(self.path)


def current() -> RunLog | None:
    return _current


def write(text: str) -> None:
    """Into the open run log, if any (masked there)."""
    if _current is not None:
        _current.write(text)


def section(title: str, text: str) -> None:
    """A tool's output under a header line, e.g. ``--- pg_restore (exit 1) ---``."""
    if _current is not None:
        _current.write(f"--- {title} ---\n{text.rstrip()}\n--- end of {title} ---")


@contextlib.contextmanager
def session(directory: Path, task: str, keep: int) -> Iterator[RunLog | None]:
    """Open a run log for ``task`` (unless one is open already: activate's steps share one), keep the newest
    ``keep`` logs of the folder. A folder that cannot be written gives no log rather than a failed task."""
    global _current
    if _current is not None:
        yield _current
        return
    try:
        log = _create(directory, task)
    except OSError:
        yield None
        return
    _prune(directory, keep)
    _current = log
    try:
        yield log
    finally:
        _current = None
        log.close()


def _create(directory: Path, task: str) -> RunLog:
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    stamp = dt.datetime.now().strftime("%Y-%m-%dT%H-%M-%S")
    name = re.sub(r"[^A-Za-z0-9.+_-]", "_", task) or "task"
    for attempt in range(1, 100):
        path = directory / f"{stamp}-{name}{'' if attempt == 1 else f'-{attempt}'}.log"
        try:
            return RunLog(path)
        except FileExistsError:
            continue
    raise OSError(f"no free log name in {directory}")


def _prune(directory: Path, keep: int) -> None:
    logs = sorted(directory.glob("*.log"), key=lambda p: (p.stat().st_mtime, p.name))
    for old in logs[: max(len(logs) - max(keep, 1), 0)]:
        with contextlib.suppress(OSError):
            old.unlink()
