"""The sandbox.* tasks' bodies and their settings (tasks.py names them)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from devops import hints
from devops.config import REPO_ROOT, Settings
from devops.console import Console
from devops.sandbox.postgres import HOST
from devops.sandbox.stand_ins import Sandbox

# The settings `sandbox.env` points at files in the sandbox's folder: its CA.
SANDBOX_FILE_SETTINGS = ("neon_ca_file", "rds_ca_file")


def task_settings(context: Any) -> Settings:
    """The settings of a sandbox.* task, from its Invoke context: Settings.from_context's, except that a CA file
    in the sandbox's folder is left out, whether it exists or not. It is the sandbox's own CA, which
    `sandbox.env` exports and `sandbox.down` removes with the folder, and no sandbox task reads it: a shell that
    ran ``eval "$(inv sandbox.env)"`` starts, stops and shows the sandbox whether the folder is there or not.
    A CA file anywhere else is checked as for every task."""
    config = dict(context.config.get("devops", {}))
    folder = Settings.load({**config, **dict.fromkeys(SANDBOX_FILE_SETTINGS, "")}).sandbox_dir
    own = {name: "" for name in SANDBOX_FILE_SETTINGS if _inside(config.get(name), folder)}
    return Settings.load({**config, **own})


def _inside(value: Any, folder: Path) -> bool:
    """Whether the path setting ``value`` (relative to the repository, as Settings reads it) is in ``folder``."""
    text = str(value or "").strip()
    if not text:
        return False
    path = Path(os.path.normpath(REPO_ROOT / Path(text).expanduser()))
    return path.is_relative_to(os.path.normpath(folder))


def _banner(console: Console, title: str, settings: Settings) -> None:
    console.banner(title, f"Target: sandbox (local stand-ins in {settings.sandbox_dir})")


def run_up(settings: Settings, console: Console) -> None:
    _banner(console, "SANDBOX UP", settings)
    sandbox = Sandbox(settings, console)
    sandbox.up()
    _show_status(sandbox, console)
    console.line()
    # --tunnel: RDS is private, and the tunnel it models is what lets a sync from this shell reach it.
    console.info(f'Point your shell at it:  eval "$({hints.inv("sandbox.env --tunnel")})"')
    console.info(f"Then, for example:       {hints.inv('sync.neon-to-rds --dry-run')}")


def run_down(settings: Settings, console: Console) -> None:
    _banner(console, "SANDBOX DOWN", settings)
    Sandbox(settings, console).down()


def run_status(settings: Settings, console: Console) -> bool:
    """Print the status; True when every component runs."""
    sandbox = Sandbox(settings, console)
    rows = sandbox.status()
    up = sandbox.is_up()
    if console.json_mode:
        console.emit({"sandbox_dir": str(settings.sandbox_dir), "up": up, "components": rows})
        return up
    _banner(console, "SANDBOX STATUS", settings)
    if not rows:
        console.warn(f"No sandbox in {settings.sandbox_dir}: start it with `{hints.inv('sandbox.up')}`")
        return False
    _show_status(sandbox, console)
    return up


def _show_status(sandbox: Sandbox, console: Console) -> None:
    rows = sandbox.status()
    console.table([[r["component"], r["address"], "up" if r["running"] else "DOWN", r["detail"]] for r in rows],
                  headers=["component", "address", "state", "detail"])
    state = sandbox.load_state()
    if state.get("rds_endpoint"):
        console.line()
        console.info(f"Emulated RDS endpoint {state['rds_endpoint']} is private, as on AWS: run tasks that need "
                     f"it with --on ecs, or through the tunnel `{hints.inv('sandbox.env --tunnel')}` models "
                     f"(devops.rds_address = {HOST}:{state['network']['routes']['rds']})")
