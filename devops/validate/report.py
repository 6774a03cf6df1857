"""The report of `inv validate`, as types.

A check returns a Finding; the runner names and times it (a CheckResult) and gathers them in a
ValidationReport, whose summary is the original bash script's (dev-validation.sh): the mode as it names it,
the counts, one sentence. ``to_json`` is what `--json` prints and what an ECS task sends back (its statuses
as the lines print them: "PASS", "WARN", "FAIL"; the report's own in lower case: "pass", "warn", "fail").
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Any

from devops.masking import mask
from devops.modes import ACTIVE, SUMMARY_MODE_LABELS


class CheckStatus(enum.StrEnum):
    PASS = "PASS"
    WARN = "WARN"  # works, but worth a look: --strict makes it fail the run
    FAIL = "FAIL"


@dataclasses.dataclass
class Finding:
    """What a check found: its status, one line, and a detail that --verbose adds."""
    status: CheckStatus
    message: str
    detail: str = ""


@dataclasses.dataclass
class CheckResult:
    """One line of the report: the check's name, what it found, and how long it took."""
    name: str
    finding: Finding
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "status": self.finding.status.value, "message": mask(self.finding.message),
                "detail": mask(self.finding.detail), "seconds": self.seconds}


@dataclasses.dataclass
class Summary:
    """The original bash script's summary block: its mode label, the counts, its closing sentence."""
    mode: str
    passed: int
    warnings: int
    failed: int
    result: str

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class ValidationReport:
    mode: str  # modes.ACTIVE / modes.PILOT
    checks: list[CheckResult]
    summary: Summary
    exit_code: int  # 1 on a FAIL, or on a WARN with --strict
    seconds: float = 0.0

    @classmethod
    def of(cls, mode: str, checks: list[CheckResult], strict: bool) -> "ValidationReport":
        counts = {status: sum(1 for c in checks if c.finding.status == status) for status in CheckStatus}
        if counts[CheckStatus.FAIL]:
            sentence = "Dev environment has failures - investigate before using"
        elif counts[CheckStatus.WARN]:
            sentence = "Dev environment has warnings - review before activation"
        else:
            sentence = ("Dev environment is healthy and fully activated" if mode == ACTIVE
                        else "Dev Pilot Light components are healthy")
        summary = Summary(SUMMARY_MODE_LABELS[mode], counts[CheckStatus.PASS], counts[CheckStatus.WARN],
                          counts[CheckStatus.FAIL], sentence)
        code = 1 if summary.failed or (strict and summary.warnings) else 0
        return cls(mode, checks, summary, code)

    @property
    def status(self) -> CheckStatus:
        """The worst status of the checks."""
        found = {c.finding.status for c in self.checks}
        return next((s for s in (CheckStatus.FAIL, CheckStatus.WARN) if s in found), CheckStatus.PASS)

    def to_json(self) -> dict[str, Any]:
        return {"mode": self.mode, "checks": [c.to_json() for c in self.checks], "summary": self.summary.to_json(),
                "status": self.status.value.lower(), "exit_code": self.exit_code, "seconds": self.seconds}
