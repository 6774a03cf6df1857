"""What the tasks print: [INFO]/[PASS]/[WARN]/[FAIL] lines and banners as the original bash scripts print
them, and tables.

Every line goes through ``mask`` first, so a connection string or a password that slips into a message
is hidden before it reaches a terminal, a log or a report. Colour only on a terminal and never when
NO_COLOR is set. In JSON mode, human lines go to stderr and ``emit`` writes one JSON object to stdout.
"""

from __future__ import annotations

import json
import os
import re
import sys
from typing import Any, Iterable, Sequence, TextIO

from tabulate import tabulate

from devops import runlog
from devops.errors import DevopsError
from devops.masking import mask

RULE = "=" * 40
# In an ECS task started by `--on ecs`, the report is written as lines of the task's log marked with this
# prefix, each at most REPORT_CHUNK characters (devops/remote.py joins them).
REPORT_LINE_ENV = "DEVOPS_REPORT_LINE"
REPORT_PREFIX = "devops-report: "
REPORT_CHUNK = 8000

_COLOURS = {"PASS": "32", "INFO": "0", "WARN": "33", "FAIL": "31", "ERROR": "31"}


_ANSI = re.compile(r"\033\[[0-9;]*m")


def _plain(text: str) -> str:
    """The text without colour codes (for the run log)."""
    return _ANSI.sub("", text)


def age(seconds: float) -> str:
    """A duration in its largest whole unit: 3d, 5h, 12m, 40s."""
    seconds = max(int(seconds), 0)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def cell(value: int | None) -> str:
    """A table cell for a count that may be unknown."""
    return "-" if value is None else str(value)


def use_colour(stream: TextIO, environ: dict[str, str] | os._Environ = os.environ) -> bool:
    if environ.get("NO_COLOR"):
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


class Console:
    """Output for one task run. ``json_mode`` sends human lines to stderr, keeping stdout for ``emit``."""

    def __init__(self, json_mode: bool = False, out: TextIO | None = None, err: TextIO | None = None):
        self.json_mode = json_mode
        self._stdout = out or sys.stdout
        self._human = (err or sys.stderr) if json_mode else self._stdout
        self._colour = use_colour(self._human)

    @property
    def human_stream(self) -> TextIO:
        """Where the human lines go (stderr in JSON mode): progress writes there too."""
        return self._human

    def _write(self, text: str = "") -> None:
        self._human.write(mask(text) + "\n")
        self._human.flush()
        runlog.write(_plain(text))

    def _status(self, tag: str, message: str) -> None:
        label = f"[{tag}]"
        if self._colour and _COLOURS[tag] != "0":
            label = f"\033[{_COLOURS[tag]}m{label}\033[0m"
        self._write(f"{label} {message}")

    def info(self, message: str) -> None:
        self._status("INFO", message)

    def passed(self, message: str) -> None:
        self._status("PASS", message)

    def warn(self, message: str) -> None:
        self._status("WARN", message)

    def fail(self, message: str) -> None:
        self._status("FAIL", message)

    def error(self, message: str) -> None:
        self._status("ERROR", message)

    def line(self, text: str = "") -> None:
        self._write(text)

    def confirm(self, action: str, yes: bool, warning: str = "") -> bool:
        """Ask before ``action`` (e.g. "activate") unless --yes; True when it asked (and so may have waited).

        Without a terminal to ask on, refuse; any answer but "yes" cancels. Both are one-line errors.
        """
        if yes:
            return False
        if not sys.stdin.isatty():
            raise DevopsError(f"refusing to {action} without confirmation: no terminal to ask on; pass --yes")
        if warning:
            self.warn(warning)
        self.line(f"Type 'yes' to {action}: ")
        if sys.stdin.readline().strip().lower() != "yes":
            raise DevopsError("cancelled: nothing was changed")
        return True

    def banner(self, title: str, *lines: str) -> None:
        """The original bash scripts' banner: a rule, the title and its lines indented by two, a rule."""
        self._write()
        self._write(RULE)
        for text in (title, *lines):
            self._write(f"  {text}")
        self._write(RULE)
        self._write()

    def fields(self, pairs: Iterable[tuple[str, Any]]) -> None:
        """Aligned ``  Name:  value`` lines, as in the original bash scripts' plan and summary blocks."""
        pairs = list(pairs)
        width = max((len(name) for name, _ in pairs), default=0) + 1
        for name, value in pairs:
            self._write(f"  {name + ':':<{width}} {value}")

    def table(self, rows: Sequence[Sequence[Any]], headers: Sequence[str]) -> None:
        text = tabulate(rows, headers=headers, tablefmt="simple", disable_numparse=True)
        for row in text.splitlines():
            self._write(f"  {row}")

    def emit(self, payload: dict[str, Any]) -> None:
        """The JSON report: one object on stdout (masked like every other output). In an ECS task run by
        `--on ecs`, lines marked REPORT_PREFIX, which the runner turns back into the object (devops/remote.py)."""
        if os.environ.get(REPORT_LINE_ENV):
            # Lines of at most 8 KB: Docker splits longer ones (16 KB) into separate log events.
            one = mask(json.dumps(payload, sort_keys=True, default=str, separators=(",", ":")))
            text = "\n".join(REPORT_PREFIX + one[i:i + REPORT_CHUNK] for i in range(0, len(one), REPORT_CHUNK))
        else:
            text = mask(json.dumps(payload, indent=2, sort_keys=True, default=str))
        self._stdout.write(text + "\n")
        self._stdout.flush()
        runlog.write(text)
