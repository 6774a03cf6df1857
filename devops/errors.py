"""The one exception type for expected failures: bad input, a missing tool, an unreachable service.

Its message is a single line saying what is wrong and what to do; the task layer prints it and exits
non-zero without a traceback. Anything else that escapes is a bug and keeps its traceback. ``details``
go into the task's --json object (a refused sync's plan and verdict, for instance).
"""

from typing import Any


class DevopsError(Exception):
    def __init__(self, message: str, exit_code: int = 1, details: dict[str, Any] | None = None):
        super().__init__(message)
        self.exit_code = exit_code
        self.details = details or {}
