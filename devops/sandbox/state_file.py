"""The sandbox's record of what it started (state.json in its folder): ports, PIDs, the stand-ins' roles and
throwaway passwords, the CA, Terraform's outputs the tasks need. Every command reads it; the Sandbox writes it
after each component starts, so that a start that fails half-way still knows what to stop."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from devops.files import write_private

STATE_FILE = "state.json"


class StateFile:
    def __init__(self, folder: Path):
        self.folder = folder
        self.path = folder / STATE_FILE

    def load(self) -> dict[str, Any]:
        """The recorded state; {} when there is none (no sandbox, or one being removed)."""
        try:
            return json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}

    def save(self, state: dict[str, Any]) -> None:
        """Replace the record in one rename, so that a reader sees the old state or the new one, never half of
        either. It holds the stand-ins' passwords: readable by its owner only, from its first byte."""
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        write_private(tmp, json.dumps(state, indent=2))
        tmp.replace(self.path)
