"""Glue between Invoke tasks and the engines: settings, console, and errors as one clear line."""

from __future__ import annotations

import functools
import sys
from typing import Any, Callable

from invoke.exceptions import Exit

from devops.console import Console, mask
from devops.errors import DevopsError


def handled(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn an expected failure into one masked ``[ERROR]`` line on stderr and a non-zero exit.

    Invoke reads the wrapped function's signature (through functools.wraps), so flags stay the same.
    """

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except DevopsError as exc:
            Console(json_mode=True).error(mask(exc))
            if kwargs.get("json"):
                Console(json_mode=True).emit({"status": "error", **exc.details, "error": str(exc)})
            raise Exit(code=exc.exit_code) from None
        except KeyboardInterrupt:
            Console(json_mode=True).error("interrupted")
            raise Exit(code=130) from None

    return wrapper


def stderr_console() -> Console:
    """A console whose human lines go to stderr (for tasks whose stdout is data, like sandbox.env)."""
    return Console(json_mode=True, err=sys.stderr)
