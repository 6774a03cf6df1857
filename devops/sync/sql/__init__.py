"""The sync's SQL that is long enough to read as SQL, one file per statement, beside this loader.

A file starts with comment lines saying what it does and which slots (``{name}``) it has; ``load`` leaves
that header out and fills the slots, each by plain replacement (SQL has braces of its own).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

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
