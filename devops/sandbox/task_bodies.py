"""The sandbox.* tasks' bodies (tasks.py names them)."""

from __future__ import annotations

from devops.config import Settings
from devops.console import Console
from devops.sandbox.postgres import HOST
from devops.sandbox.stand_ins import Sandbox


def _banner(console: Console, title: str, settings: Settings) -> None:
    console.banner(title, f"Target: sandbox (local stand-ins in {settings.sandbox_dir})")


def run_up(settings: Settings, console: Console) -> None:
    _banner(console, "SANDBOX UP", settings)
    sandbox = Sandbox(settings, console)
    sandbox.up()
    _show_status(sandbox, console)
    console.line()
    console.info('Point your shell at it:  eval "$(inv sandbox.env)"')
    console.info('Then, for example:       psql "$SANDBOX_RDS_URL" -c "select 1"')


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
        console.warn(f"No sandbox in {settings.sandbox_dir}: start it with `inv sandbox.up`")
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
                     f"it with --on ecs, or through the tunnel `inv sandbox.env --tunnel` models "
                     f"(devops.rds_address = {HOST}:{state['network']['routes']['rds']})")
