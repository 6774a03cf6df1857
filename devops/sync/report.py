"""The reports of sync.neon-to-rds / sync.rds-to-neon / sync.restore and of sync.list, as types.

The flow (devops/sync/flow.py) fills a Report; render.py prints it; ``to_json`` is what `--json` prints and
what an ECS task sends back, and ``from_json`` is how devops/remote.py reads it again. A planned dump is
its URL; a written one (Copy with a size) its URL, size and sha256.
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from typing import Any, TypeVar


class Status(enum.StrEnum):
    OK = "ok"                # verified and committed
    MISMATCH = "mismatch"    # the verification found a difference: rolled back
    DRY_RUN = "dry-run"      # the plan only
    REFUSED = "refused"      # the divergence guard stopped it before anything was written


class Verdict(enum.StrEnum):
    """The divergence guard's verdict on a target (devops/sync/guard.py)."""
    FIRST_SYNC = "first-sync"  # no record of this database: nothing to compare with
    UNCHANGED = "unchanged"    # it holds what its newest record says
    DIVERGED = "diverged"      # written to since: refused without --force
    FORCED = "forced"          # written to since, and --force


@dataclasses.dataclass
class Side:
    """One database as a report names it: "Neon", its masked URL, host/database, its PostgreSQL version."""
    label: str
    url: str
    where: str
    version: str


@dataclasses.dataclass
class PlanRow:
    source_rows: int | None
    target_rows: int | None


@dataclasses.dataclass
class TargetState:
    """The target as the plan saw it: counts for the confirmation, and the content hash --expect-target checks;
    ``rows_after``: the rows it holds once replaced (the source's, as counted or recorded)."""
    tables: int
    rows: int
    fingerprint: str
    rows_after: int | None = None


@dataclasses.dataclass
class Versions:
    source: str | None
    target: str
    downgrade: bool


@dataclasses.dataclass
class Locks:
    """The restore's transaction against the target's lock table: the locks it needs (an estimate from both
    sides' objects, decisions.locks_needed), the table's size, and, after the restore, how many it held."""
    needed: int
    capacity: int
    max_locks: int
    slots: int
    held: int | None = None


@dataclasses.dataclass
class Storage:
    """RDS's room for the replace, as the plan checked it (decisions.rds_room): about how many bytes the replace
    writes until COMMIT (the new data and its WAL, beside the old data: an estimate), how many are free and how
    that is known, and how far storage autoscaling may grow the instance (``room``: free plus that growth); or,
    in ``not_checked``, why it was not checked."""
    needed: int = 0
    free: int | None = None
    room: int | None = None
    measured: str = ""  # how ``free`` is known: CloudWatch's FreeStorageSpace, or allocated less the databases
    allocated_gib: int | None = None
    max_allocated_gib: int | None = None  # storage autoscaling's ceiling (MaxAllocatedStorage); None: off
    not_checked: str | None = None


@dataclasses.dataclass
class Change:
    """One thing written on a target since its newest record: a table, or "(schema)"."""
    table: str
    kind: str  # changed / new table / table dropped / definitions changed
    recorded_rows: int | None
    rows: int | None
    rows_added: int = 0
    rows_removed: int = 0
    content_changed: bool = False


@dataclasses.dataclass
class LastRecorded:
    recorded: str | None
    where: str | None
    reason: str | None
    record: str
    dump: str


@dataclasses.dataclass
class Divergence:
    verdict: Verdict
    changed_tables: list[str] = dataclasses.field(default_factory=list)
    changes: list[Change] = dataclasses.field(default_factory=list)
    last_recorded: LastRecorded | None = None
    note: str = ""


@dataclasses.dataclass
class Copy:
    """A dump in S3: planned (its URL), or written (size, sha256; ``reused``: an earlier dump already held it)."""
    url: str
    size: int | None = None
    sha256: str | None = None
    reused: bool | None = None


@dataclasses.dataclass
class TableResult:
    table: str
    source_rows: int | None
    target_rows: int | None
    match: bool


@dataclasses.dataclass
class RestoredDump:
    url: str
    reason: str
    created: str
    side: str | None = None  # the database it is a dump of: neon / rds


@dataclasses.dataclass
class Report:
    """A sync's or a restore's report: the plan, then (unless a dry run or a refusal) the outcome."""
    operation: str  # sync / restore
    dry_run: bool
    target: str  # the AWS account or the sandbox
    sides: dict[str, Side]  # "source" (a sync) and "target"
    plan: dict[str, PlanRow]
    target_state: TargetState
    divergence: Divergence
    versions: Versions
    safety_copy: Copy
    locks: Locks | None = None
    storage: Storage | None = None  # RDS's room for the replace (a target RDS only)
    # What the plan would destroy beyond the ordinary (decisions.plan_warnings): said in the plan and the question.
    warnings: list[str] | None = None
    # What the operation leaves alone on both sides (scope.py: {"schemas": [...], "extensions": [...]}).
    left_alone: dict[str, list[str]] | None = None
    # A sync's
    direction: str | None = None
    source: str | None = None
    destination: str | None = None
    tools: dict[str, str] | None = None
    dump: Copy | None = None
    # A restore's
    key: str | None = None
    to: str | None = None
    restored_dump: RestoredDump | None = None
    # The outcome
    status: Status | None = None
    committed: bool | None = None
    tables: list[TableResult] | None = None
    sequence_mismatches: list[str] | None = None
    left_out: list[str] | None = None
    seconds: dict[str, float] | None = None

    def to_json(self) -> dict[str, Any]:
        return to_json(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Report":
        return from_json(cls, data)


@dataclasses.dataclass
class Listed:
    """One dump in sync.list: ``committed`` is False for a sync or restore that did not commit."""
    key: str
    size: int
    age_seconds: int
    source: str
    reason: str
    tables: dict[str, int]
    sha256: str
    committed: bool


@dataclasses.dataclass
class DumpList:
    bucket: str
    dumps: list[Listed]

    def to_json(self) -> dict[str, Any]:
        return to_json(self)


# ---- JSON ----------------------------------------------------------------------------------------------


def to_json(value: Any) -> Any:
    """Dataclasses as objects, less their optional fields that are unset (a sync's report has no "key"); a
    planned Copy as its URL."""
    if isinstance(value, Copy) and value.size is None:
        return value.url
    if dataclasses.is_dataclass(value):
        return {f.name: to_json(getattr(value, f.name)) for f in dataclasses.fields(value)
                if not (getattr(value, f.name) is None and f.default is None)}
    if isinstance(value, dict):
        return {key: to_json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [to_json(item) for item in value]
    return value


T = TypeVar("T")


def from_json(kind: type[T], data: Any) -> T:
    """The inverse of to_json, led by the dataclasses' type hints."""
    return _convert(kind, data)


def _convert(kind: Any, data: Any) -> Any:
    if data is None:
        return None
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        return _convert(next(a for a in args if a is not type(None)), data)
    if origin is list:
        return [_convert(args[0], item) for item in data]
    if origin is dict:
        return {key: _convert(args[1], item) for key, item in data.items()}
    if kind is Copy and isinstance(data, str):
        return Copy(data)
    if dataclasses.is_dataclass(kind):
        hints = typing.get_type_hints(kind)
        return kind(**{f.name: _convert(hints[f.name], data[f.name]) for f in dataclasses.fields(kind)
                       if f.name in data})
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        return kind(data)
    return data
