"""The dev environment's two modes, and how a Terraform state says which one it is in."""

from __future__ import annotations

from typing import Any

ACTIVE = "active"
PILOT = "pilot-light"
BOTH = (PILOT, ACTIVE)


def mode_of(outputs: dict[str, Any]) -> str:
    """The mode Terraform's outputs describe: `dev_activated` true is active, anything else pilot light."""
    return ACTIVE if outputs.get("dev_activated") else PILOT
