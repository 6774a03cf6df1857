"""What a person asks for: a sync in one direction, or the restore of an earlier dump, and the flags the flow
reads. A job says what differs between the two besides the source (sources.py)."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

from devops.errors import DevopsError
from devops.sync.scope import LeftAlone

LABELS = {"neon": "Neon", "rds": "RDS"}
FINGERPRINT = re.compile(r"[0-9a-f]{16}")  # decisions.content_hash


@dataclasses.dataclass(frozen=True)
class Direction:
    source: str
    target: str

    @property
    def name(self) -> str:
        return f"{self.source}-to-{self.target}"

    @property
    def arrow(self) -> str:
        return f"{LABELS[self.source]} -> {LABELS[self.target]}"


DIRECTIONS = {d.name: d for d in (Direction("neon", "rds"), Direction("rds", "neon"))}


@dataclasses.dataclass
class Options:
    dry_run: bool = False
    yes: bool = False
    break_lock: bool = False
    force: bool = False  # overwrite a target written to since its last recorded sync
    expect_target: str = ""  # the confirmed plan's target_state.fingerprint: refuse if the target changed since
    exclude_schema: str = ""  # comma-separated: what this run leaves alone besides the settings' (scope.py)
    exclude_extension: str = ""

    @classmethod
    def of(cls, flags: dict[str, Any]) -> "Options":
        """From the sync tasks' flags (tasks.py: SYNC): those the flow reads, each of the form it takes."""
        options = cls(**{field.name: flags.get(field.name) or field.default for field in dataclasses.fields(cls)})
        options.left_alone  # checked before anything is read
        return dataclasses.replace(options, expect_target=expected_fingerprint(options.expect_target))

    @property
    def left_alone(self) -> LeftAlone:
        return LeftAlone.of(self.exclude_schema, self.exclude_extension, flags=True)


def expected_fingerprint(value: str) -> str:
    """--expect-target's value: the plan's target fingerprint itself, or the one in a file that holds the plan's
    `--dry-run --json` report. Anything else is refused as such, before anything is read."""
    if not value or FINGERPRINT.fullmatch(value):
        return value
    path = Path(value).expanduser()
    if not path.is_file():
        raise DevopsError(f"--expect-target takes the plan's target fingerprint (16 hex digits, the plan's \"Target "
                          f"fingerprint\") or a file holding the plan's `--dry-run --json` report; {value!r} is "
                          "neither")
    try:
        found = json.loads(path.read_text())["target_state"]["fingerprint"]
    except (OSError, ValueError, KeyError, TypeError):
        found = None
    if not isinstance(found, str) or not FINGERPRINT.fullmatch(found):
        raise DevopsError(f"--expect-target {value}: the file is not a plan's `--dry-run --json` report (it has no "
                          "target_state.fingerprint of 16 hex digits)")
    return found


@dataclasses.dataclass(frozen=True)
class Sync:
    direction: Direction
    operation = "sync"

    @property
    def target(self) -> str:
        return self.direction.target

    @property
    def sides(self) -> tuple[str, ...]:
        return (self.direction.source, self.direction.target)

    @property
    def title(self) -> str:
        return f"SYNC: {self.direction.arrow}"

    @property
    def purpose(self) -> str:
        return f"sync {self.direction.name}"

    def safety_reason(self, label: str) -> tuple[str, str]:
        """(the manifest's direction, its reason) for the target's safety copy."""
        return self.direction.name, f"safety copy of {label} before {self.direction.name}"


@dataclasses.dataclass(frozen=True)
class RestoreDump:
    key: str
    to: str
    operation = "restore"

    def __post_init__(self) -> None:
        if self.to not in LABELS:
            raise DevopsError(f"--to must be neon or rds, not {self.to!r}")

    @property
    def target(self) -> str:
        return self.to

    @property
    def sides(self) -> tuple[str, ...]:
        return (self.to,)

    @property
    def title(self) -> str:
        return f"RESTORE: {self.key} -> {LABELS[self.to]}"

    @property
    def purpose(self) -> str:
        return f"restore {self.key} to {self.to}"

    def safety_reason(self, label: str) -> tuple[str, str]:
        return f"restore-to-{self.to}", f"safety copy of {label} before restoring {self.key}"


Job = Sync | RestoreDump
