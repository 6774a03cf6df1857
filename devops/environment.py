"""`inv activate` / `inv deactivate`: switch the dev environment between pilot light and active.

An operation runs as Invoke calls that devops.cli.OperationExecutor chains (tasks.py declares them):

    plan step     checks, `terraform plan -out`, the plan view, the confirmation      (`plan` below)
    sync          `sync.neon-to-rds` / `sync.rds-to-neon`, only with --sync-data      (a pre-task)
    the task      `terraform apply` of exactly the saved plan                          (`apply` below)
    validate      the health check of the new mode                                     (a post-task)

So the user confirms once, before anything changes, and a failed sync stops the run before Terraform.
The plan step's result, a Planned, reaches the apply step through the executor (in the apply step's
context), never through a file or a global: a plan file left on disk by an earlier run is never applied.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from devops import aws, hints
from devops.config import Settings
from devops.console import Console
from devops.errors import DevopsError
from devops.modes import ACTIVE, MODE_PHRASES, PILOT, mode_of
from devops.sync import render
from devops.terraform import ApplyProgress, PlanProgress, Terraform

RUNNERS = ("local", "ecs")


def runner(settings: Settings, on: str | None) -> str:
    """Where a task runs: --on, else the devops.runner setting."""
    choice = (on or settings.runner or "local").strip()
    if choice not in RUNNERS:
        raise DevopsError(f"invalid runner {choice!r}: use --on local or --on ecs (devops.runner)")
    return choice


# Always-on resource types: a plan that deletes or replaces one is refused, whatever the HCL says
# (prevent_destroy guards them too, but only where someone remembered to write it).
ALWAYS_ON_TYPES = frozenset({
    "aws_vpc", "aws_subnet", "aws_db_instance", "aws_db_subnet_group", "aws_s3_bucket", "aws_ecr_repository",
})


@dataclasses.dataclass(frozen=True)
class Operation:
    name: str            # the task: activate / deactivate
    mode: str            # the mode it leads to
    sync_task: str       # the sync that --sync-data runs first
    sync_label: str
    title: str

    @property
    def activated(self) -> bool:
        return self.mode == ACTIVE

    @property
    def heading(self) -> str:
        """The title of the task's opening banner, as a sync's ("SYNC: NEON -> RDS")."""
        before = PILOT if self.activated else ACTIVE
        return f"{self.name.upper()}: {MODE_PHRASES[before].upper()} -> {MODE_PHRASES[self.mode].upper()}"


ACTIVATE = Operation("activate", ACTIVE, "sync.neon-to-rds", "Neon -> RDS", "ACTIVATION PLAN")
DEACTIVATE = Operation("deactivate", PILOT, "sync.rds-to-neon", "RDS -> Neon", "DEACTIVATION PLAN")


@dataclasses.dataclass(frozen=True)
class Flags:
    sync_data: bool = False
    dry_run: bool = False
    yes: bool = False
    on: str | None = None  # where the sync pre-task and the closing validate run (--on; devops.runner)


@dataclasses.dataclass(frozen=True)
class ResourceChange:
    """One resource a saved plan changes: its address, its type and Terraform's actions on it."""

    address: str
    type: str
    actions: tuple[str, ...]

    @property
    def action(self) -> str:
        """create / destroy / replace / update, as the plan view groups them."""
        if "delete" in self.actions and "create" in self.actions:
            return "replace"
        if "delete" in self.actions:
            return "destroy"
        return "create" if "create" in self.actions else "update"


@dataclasses.dataclass
class Planned:
    """What the plan step decided; the executor skips the rest of the operation when ``proceed`` is False,
    and otherwise hands it to the apply step. ``confirmed``: the user confirmed (or --yes) this saved plan
    in this run; only then may it be applied."""
    operation: Operation
    proceed: bool
    plan_dir: Path | None = None
    changes: tuple[ResourceChange, ...] = ()
    confirmed: bool = False

    @property
    def plan_file(self) -> Path | None:
        return self.plan_dir / "operation.tfplan" if self.plan_dir else None

    def discard(self) -> None:
        """Remove the saved plan: it can be applied no more."""
        if self.plan_dir is not None:
            shutil.rmtree(self.plan_dir, ignore_errors=True)
        self.plan_dir = None
        self.confirmed = False


def plan(settings: Settings, console: Console, operation: Operation, flags: Flags) -> Planned:
    """Checks, the Terraform plan saved to a file, the plan view and the confirmation. Changes nothing."""
    flags = dataclasses.replace(flags, on=runner(settings, flags.on))
    identity = aws.identity(settings)
    render.banner(console, operation.heading, None, aws.target_label(settings, identity["account"]), flags.dry_run)
    terraform = Terraform(settings)
    outputs = terraform.outputs()
    if not outputs:
        raise DevopsError("Terraform state is empty: create the pilot-light core first "
                          "(terraform -chdir=terraform/environments/dev apply), then retry")
    current = mode_of(outputs)
    console.info(f"Current mode: {MODE_PHRASES[current]}")
    if current == operation.mode:
        console.passed(f"Dev is already {MODE_PHRASES[current]}: nothing to change"
                       + (" (no data synced either)" if flags.sync_data else ""))
        return Planned(operation, proceed=False)
    if operation.activated:  # the original bash scripts' RDS check: the services need the database
        aws.require_rds_available(settings, outputs.get("db_instance_identifier") or settings.rds_instance_id)

    planned = Planned(operation, proceed=True, plan_dir=Path(tempfile.mkdtemp(prefix="devops-plan-")))
    try:
        # Decide (the changes, the policy), then show, then ask.
        planned.changes = _saved_plan(settings, console, terraform, operation, planned.plan_file)
        refuse_always_on_destroy(planned.changes)
        show_plan(console, operation, current, planned.changes, flags)
        if flags.dry_run:
            console.info("Dry run: the plan above was not applied")
        else:
            console.confirm(operation.name, flags.yes)
            planned.confirmed = True
    except BaseException:
        planned.discard()
        raise
    if flags.dry_run:
        planned.discard()
    return planned


def _saved_plan(settings: Settings, console: Console, terraform: Terraform, operation: Operation,
                plan_file: Path) -> tuple[ResourceChange, ...]:
    """`terraform plan -out` for the operation's mode, and the changes the saved plan makes."""
    console.info(f"terraform plan -var dev_activated={str(operation.activated).lower()} ...")
    with PlanProgress(console, settings.progress_interval) as progress:
        terraform.plan(variables={"dev_activated": operation.activated}, out=plan_file, progress=progress)
    return plan_changes(json.loads(terraform.run("show", "-json", str(plan_file)).stdout))


def apply(settings: Settings, console: Console, operation: Operation, planned: Planned | None, dry_run: bool) -> None:
    """Apply exactly the plan the plan step of this run showed and the user confirmed: ``planned``, its
    result, which the executor hands over (devops.cli.planned_of); None when the task ran without it."""
    if dry_run:
        return
    if planned is None or not planned.confirmed or planned.operation != operation or planned.plan_file is None:
        raise DevopsError(f"{operation.name} has no confirmed plan in this run: run it as "
                          f"`{hints.inv(operation.name)}` from "
                          "the project (its invoke.yaml sets tasks.executor_class, which runs the plan step first)")
    try:
        console.info(f"terraform apply (the saved plan: {_counts(planned.changes)}) ...")
        progress = ApplyProgress(console)
        Terraform(settings).apply(plan_file=planned.plan_file, progress=progress)
    finally:
        planned.discard()
    console.info(f"terraform apply: {progress.summary()}")
    console.passed(f"Dev is now {MODE_PHRASES[operation.mode]}")


def plan_changes(plan_json: dict[str, Any]) -> tuple[ResourceChange, ...]:
    """The resources a saved plan changes, from `terraform show -json` (no-ops and reads left out)."""
    changes = []
    for entry in plan_json.get("resource_changes", []):
        actions = tuple(entry.get("change", {}).get("actions", ()))
        if entry.get("mode") == "managed" and actions not in ((), ("no-op",), ("read",)):
            changes.append(ResourceChange(entry["address"], entry["type"], actions))
    return tuple(changes)


def refuse_always_on_destroy(changes: tuple[ResourceChange, ...]) -> None:
    doomed = [c.address for c in changes if c.type in ALWAYS_ON_TYPES and "delete" in c.actions]
    if doomed:
        raise DevopsError(f"the plan would destroy always-on resources ({', '.join(doomed)}): refusing to apply; "
                          "fix the Terraform code or state so that only active-mode resources change")


def show_plan(console: Console, operation: Operation, current: str, changes: tuple[ResourceChange, ...],
              flags: Flags) -> None:
    console.banner(operation.title)
    console.fields([("Mode", f"{MODE_PHRASES[current]} -> {MODE_PHRASES[operation.mode]}"),
                    ("Terraform", _counts(changes))])
    for action, heading in (("create", "CREATED"), ("replace", "REPLACED"), ("update", "UPDATED"),
                            ("destroy", "DESTROYED")):
        by_type = Counter(c.type for c in changes if c.action == action)
        if by_type:
            console.line()
            console.line(f"  Resources to be {heading}:")
            console.table(sorted(by_type.items()), headers=("type", "count"))
    console.line()
    if any(c.type == "aws_db_parameter_group" for c in changes):
        # Static parameters (max_locks_per_transaction): RDS marks the instance pending-reboot, not applied.
        console.warn("The RDS parameter group changes: its static parameters (max_locks_per_transaction) apply "
                     "at the instance's next reboot (aws rds reboot-db-instance --db-instance-identifier "
                     "<project>-dev-db)")
    if flags.sync_data:
        where = ", in an ECS task in the VPC" if flags.on == "ecs" else ""
        what = (f"{operation.sync_label} before Terraform ({operation.sync_task}{where}"
                + (", dry run)" if flags.dry_run else ")"))
    else:
        what = "none (--sync-data not given)"
    console.fields([("Data sync", what)])
    console.line()


def _counts(changes: tuple[ResourceChange, ...]) -> str:
    counts = Counter(c.action for c in changes)
    return ", ".join(f"{counts[a]} to {a}" for a in ("create", "replace", "update", "destroy") if counts[a]) or "no changes"
