"""Progress of long work: a line every few seconds without a terminal, one line updated in place on one.

Used by Terraform's plan and apply (devops/terraform.py) and by the sync's dump + restore (Transfer below).
Progress goes to the console's human stream, so never to stdout in --json mode; the periodic lines also go
to the run log (an in-place line does not: it would be hundreds of lines there).
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable

from devops.console import Console
from devops.masking import mask


class Ticker:
    """Calls ``tick`` every ``interval`` seconds in a background thread, while the ``with`` block runs."""

    def __init__(self, interval: float, tick: Callable[[], None]):
        self.interval = interval
        self.tick = tick
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="progress")

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.tick()
            except Exception:  # noqa: BLE001 - progress must never break the work it reports on
                pass

    def __enter__(self) -> "Ticker":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()


def is_terminal(console: Console) -> bool:
    isatty = getattr(console.human_stream, "isatty", None)
    return bool(isatty and isatty())


def redraw(console: Console, text: str = "") -> None:
    """Replace the terminal's current line with ``text`` (masked); an empty text just clears it."""
    console.human_stream.write("\r\033[K" + mask(text))
    console.human_stream.flush()


def size(count: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if count < 1024 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return str(count)


def duration(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


class Transfer:
    """Bytes moved through a stream (a sink: ``write(chunk)``) against an estimate, the rate, tables done
    out of the total, and an ETA. On a terminal one line is redrawn in place (at most twice a second);
    otherwise an [INFO] line goes out every ``interval`` seconds. ``tables_done`` is set from outside (a
    poller of the target's pg_stat_progress_copy, see devops/sync/progress.py)."""

    def __init__(self, console: Console, label: str, estimate: int, tables_total: int, interval: float):
        self.console = console
        self.label = label
        self.estimate = max(estimate, 1)
        self.tables_total = tables_total
        self.tables_done = 0
        self.moved = 0
        self.interval = interval
        self.terminal = is_terminal(console)
        self._started = time.monotonic()
        self._drawn = 0.0
        self._ticker = Ticker(interval, self.report) if not self.terminal else None

    def __enter__(self) -> "Transfer":
        if self._ticker:
            self._ticker.__enter__()
        return self

    def __exit__(self, kind: Any, *exc: Any) -> None:
        if self._ticker:
            self._ticker.__exit__()
        if self.terminal and self._drawn:
            redraw(self.console)  # the closing line below replaces the updating one
        if kind is None:
            # The whole stream went through: every table's data is sent (the restore's last statements and the
            # verification follow, with lines of their own).
            elapsed = max(time.monotonic() - self._started, 1e-6)
            self.console.info(f"{self.label}: {size(self.moved)} in {elapsed:.1f} s ({size(self.moved / elapsed)}/s), "
                              f"all {self.tables_total} tables sent")

    def write(self, chunk: bytes) -> None:
        self.moved += len(chunk)
        if self.terminal and time.monotonic() - self._drawn >= 0.5:
            self._drawn = time.monotonic()
            redraw(self.console, self.line())

    def report(self) -> None:
        """The periodic line (no terminal)."""
        self.console.info(self.line())

    def line(self) -> str:
        elapsed = max(time.monotonic() - self._started, 1e-6)
        rate = self.moved / elapsed
        # The estimate is the source's table sizes; the dump can be smaller (no indexes) or larger: the
        # percentage stops at 99 until the end, and the ETA is only shown while there is one.
        percent = min(int(self.moved * 100 / self.estimate), 99)
        remaining = (self.estimate - self.moved) / rate if rate > 0 and self.moved < self.estimate else None
        eta = f", ETA {duration(remaining)}" if remaining is not None else ""
        return (f"{self.label}: {size(self.moved)} of ~{size(self.estimate)} ({percent}%), {size(rate)}/s, "
                f"tables {self.tables_done}/{self.tables_total}{eta}")


class Steps:
    """Work counted in tables (the verification before COMMIT): 'label: N/M tables, elapsed' every
    ``interval`` seconds without a terminal, one line redrawn in place on one. ``done``/``total`` are set
    with ``update``, or read from ``poll`` on each tick; work that is one statement (the guard's read of a
    database) shows 'label: elapsed'. Nothing is printed for
    work shorter than an interval (without a terminal), and no console means no progress at all."""

    def __init__(self, console: Console | None, label: str, interval: float,
                 poll: Callable[[], tuple[int, int] | None] | None = None):
        self.console = console
        self.label = label
        self.poll = poll
        self.done = self.total = 0
        self.terminal = bool(console) and is_terminal(console)
        self._started = time.monotonic()
        self._drawn = False
        self._ticker = Ticker(0.5 if self.terminal else interval, self._tick) if console else None

    def __enter__(self) -> "Steps":
        if self._ticker:
            self._ticker.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._ticker:
            self._ticker.__exit__()
        if self._drawn:
            redraw(self.console)

    def update(self, done: int, total: int) -> None:
        self.done, self.total = done, total

    def _tick(self) -> None:
        if self.poll and (counted := self.poll()):
            self.update(*counted)
        if not self.total and self.poll:  # the count of tables is not known yet: "0/0 tables" would say nothing
            return
        counted = f"{self.done}/{self.total} tables, " if self.total else ""
        line = f"{self.label}: {counted}{duration(time.monotonic() - self._started)}"
        if self.terminal:
            self._drawn = True
            redraw(self.console, line)
        else:
            self.console.info(line)
