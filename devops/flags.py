"""A task family's flags, declared once (in the style of nox's options): each task of the family gets them as
its Invoke parameters and its --help from the one declaration, and its body receives them as a dict, which
is what the engines' options and the command line `--on ecs` runs (devops/remote.py) are made from.

    SYNC = FlagSet(Flag("dry_run", "Show the plan ..."), Flag("on", "Where to run ...", takes_value=True))

    @task(help=SYNC.help())
    @handled
    @SYNC
    def neon_to_rds(c, **flags): ...        # Invoke sees neon_to_rds(c, dry_run=False, on=None)

A new flag of a family is one Flag here and its use in the engine.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any, Callable


@dataclasses.dataclass(frozen=True)
class Flag:
    name: str  # the parameter's name (dry_run); the option is --dry-run
    help: str
    takes_value: bool = False  # --on ecs; otherwise a switch

    @property
    def option(self) -> str:
        return self.name.replace("_", "-")


class FlagSet:
    def __init__(self, *flags: Flag):
        self.flags = flags

    def help(self, **overrides: str) -> dict[str, str]:
        """Invoke's help= for a task of the family: every flag's, with some replaced or added (by option name,
        dashes as underscores: sync_data="...")."""
        return {**{flag.option: flag.help for flag in self.flags},
                **{name.replace("_", "-"): text for name, text in overrides.items()}}

    def __call__(self, body: Callable[..., Any]) -> Callable[..., Any]:
        """Declare the family's flags as ``body``'s keyword parameters (Invoke reads a task's signature); the
        body takes them as ``**flags``."""
        own = [p for p in inspect.signature(body).parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
        flags = [inspect.Parameter(flag.name, inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                   default=None if flag.takes_value else False) for flag in self.flags]
        body.__signature__ = inspect.Signature([*own, *flags])  # type: ignore[attr-defined]
        return body
