"""Invoke tasks: names, flags and help only. Every body hands over to devops.*.

    inv --list                 every task with its one-line help
    inv --help sandbox.up      the flags of one task
"""

from invoke import Collection, task
from invoke.exceptions import Exit

from devops import sandbox as sandbox_engine
from devops.cli import handled, stderr_console
from devops.config import CONFIG_DEFAULTS, Settings
from devops.console import Console


@task
@handled
def sandbox_up(c):
    """Start the local stand-ins: PostgreSQL for Neon and RDS, the AWS emulator, Terraform applied."""
    sandbox_engine.run_up(Settings.from_context(c), Console())


@task
@handled
def sandbox_down(c):
    """Stop everything the sandbox started and remove its data."""
    sandbox_engine.run_down(Settings.from_context(c), Console())


@task(help={"json": "Print one JSON object instead of the table."})
@handled
def sandbox_status(c, json=False):
    """Show what the sandbox runs and where."""
    if not sandbox_engine.run_status(Settings.from_context(c), Console(json_mode=json)):
        raise Exit(code=1)


@task
@handled
def sandbox_env(c):
    """Print `export` lines that point every task at the sandbox: eval "$(inv sandbox.env)"."""
    for line in sandbox_engine.Sandbox(Settings.from_context(c), stderr_console()).env_lines():
        print(line)


sandbox = Collection("sandbox")
sandbox.add_task(sandbox_up, "up")
sandbox.add_task(sandbox_down, "down")
sandbox.add_task(sandbox_status, "status")
sandbox.add_task(sandbox_env, "env")

ns = Collection(sandbox)
ns.configure({"devops": dict(CONFIG_DEFAULTS)})
