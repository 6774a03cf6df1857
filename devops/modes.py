"""The dev environment's two modes, how a Terraform state says which one it is in, and how output names them."""

from __future__ import annotations

from typing import Any

ACTIVE = "active"
PILOT = "pilot-light"
BOTH = (PILOT, ACTIVE)

# A mode within activate's and deactivate's sentences: "Current mode: pilot light", "Dev is now active (full mode)".
MODE_PHRASES = {ACTIVE: "active (full mode)", PILOT: "pilot light"}
# A mode in validate's summary (its `Mode:` line and the --json summary), as the original bash script
# (dev-validation.sh) prints it.
SUMMARY_MODE_LABELS = {ACTIVE: "Full (activated)", PILOT: "Pilot Light"}


def mode_of(outputs: dict[str, Any]) -> str:
    """The mode Terraform's outputs describe: `dev_activated` true is active, anything else pilot light."""
    return ACTIVE if outputs.get("dev_activated") else PILOT
