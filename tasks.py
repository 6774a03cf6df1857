"""Invoke tasks: names, flags and help only. Every body hands over to devops.*.

    inv --list                 every task with its one-line help
    inv --help sandbox.up      the flags of one task
"""

import importlib

from invoke import Collection, task
from invoke.exceptions import Exit

from devops import environment, hints, terminal
from devops import toolbox as toolbox_engine
from devops.cli import OperationTask, handled, planned_of, stderr_console
from devops.config import CONFIG_DEFAULTS, Settings
from devops.console import Console
from devops.flags import Flag, FlagSet


class _Lazy:
    """A module imported on first use: a task loads only the engines it runs (`inv validate` skips the sync
    engine, the sandbox and the demo: about 0.1 s of imports)."""

    def __init__(self, name):
        self._name = name

    def __getattr__(self, attribute):
        return getattr(importlib.import_module(self._name), attribute)


terminal.quiet_broken_pipe()  # `inv --list | head`: no traceback (tasks handle it in devops.cli.handled)

demo_engine = _Lazy("devops.demo")
login_engine = _Lazy("devops.login")
neon_secret = _Lazy("devops.neon_secret")
remote = _Lazy("devops.remote")
sandbox_engine = _Lazy("devops.sandbox")
sync_flow = _Lazy("devops.sync.flow")
sync_jobs = _Lazy("devops.sync.jobs")
sync_listing = _Lazy("devops.sync.listing")
sync_scope = _Lazy("devops.sync.scope")
validate_engine = _Lazy("devops.validate.runner")


@task
@handled
def sandbox_up(c):
    """Start the local stand-ins: PostgreSQL for Neon and RDS, the AWS emulator, Terraform applied."""
    sandbox_engine.run_up(sandbox_engine.task_settings(c), Console())


@task
@handled
def sandbox_down(c):
    """Stop everything the sandbox started and remove its data."""
    sandbox_engine.run_down(sandbox_engine.task_settings(c), Console())


@task(help={"json": "Print one JSON object instead of the table."})
@handled
def sandbox_status(c, json=False):
    """Show what the sandbox runs and where."""
    if not sandbox_engine.run_status(sandbox_engine.task_settings(c), Console(json_mode=json)):
        raise Exit(code=1)


@task(help={"tunnel": "Also reach the private RDS from here, as through an SSM/SSH tunnel (sets rds_address)."})
@handled
def sandbox_env(c, tunnel=False):
    """Print `export` lines that point every task at the sandbox: eval "$(inv sandbox.env [--tunnel])"."""
    for line in sandbox_engine.Sandbox(sandbox_engine.task_settings(c), stderr_console()).env_lines(tunnel):
        print(line)


SYNC = FlagSet(
    Flag("dry_run", "Show the plan (endpoints, S3 keys, rows per table) and change nothing anywhere."),
    Flag("yes", "Do not ask before overwriting the target (required without a terminal)."),
    Flag("json", "Print one JSON object (the report) on stdout; logs go to stderr."),
    Flag("break_lock", "Remove a sync lock left by a sync that died, then proceed."),
    Flag("force", "Overwrite the target even if it was written to since its last recorded sync (the divergence "
                  "guard refuses otherwise); those writes are kept only in the safety copy."),
    Flag("on", "Where to run: local, or ecs (a one-off ECS Fargate task inside the VPC; default: devops.runner).",
         takes_value=True),
    Flag("expect_target", "Refuse unless the target still holds what a plan showed: the plan's Target fingerprint "
                          "(16 hex digits), or a file holding its --dry-run --json report (--on ecs passes it after "
                          "asking here).", takes_value=True),
    Flag("exclude_schema", "Leave these schemas alone on both sides (comma-separated, e.g. neon_auth): not dumped, "
                           "not replaced, not compared; adds to devops.exclude_schemas.", takes_value=True),
    Flag("exclude_extension", "Leave these extensions alone (e.g. pg_session_jwt, which RDS cannot create); adds to "
                              "devops.exclude_extensions.", takes_value=True),
)


def _remote(c, on, args, flags):
    """True after running the task as an ECS task (--on ecs, devops.runner), False when it runs here."""
    settings = Settings.from_context(c)
    if environment.runner(settings, on) != "ecs":
        return False  # and the runner's imports (docker, the sync's rendering) are not needed
    if "exclude_schema" in flags:  # a sync's: what the settings here leave alone, told to the ECS task
        flags = {**flags, **sync_scope.LeftAlone.of_run(settings, flags).as_flags()}
    code = remote.dispatch(settings, on, args, flags)
    if code:
        raise Exit(code=code)  # the remote said why, in its own [ERROR] line
    return True


def _sync(c, direction, on, **flags):
    # Checked here, before anything is read, and a file's fingerprint read here (not in the ECS task).
    flags["expect_target"] = sync_jobs.expected_fingerprint(flags["expect_target"] or "")
    if _remote(c, on, [f"sync.{direction}"], flags):
        return
    console = Console(json_mode=flags["json"])
    report = sync_flow.run(Settings.from_context(c), console, sync_jobs.Sync(sync_jobs.DIRECTIONS[direction]),
                           sync_jobs.Options.of(flags))
    _report(console, report, flags["json"])


def _report(console, report, json):
    if json:
        console.emit(report.to_json())
    if report.status not in ("ok", "dry-run"):
        raise Exit(code=1)


@task(help=SYNC.help())
@handled
@SYNC
def neon_to_rds(c, **flags):
    """Replace RDS's data with Neon's (through S3, with a safety copy of RDS first)."""
    _sync(c, "neon-to-rds", **flags)


@task(help=SYNC.help())
@handled
@SYNC
def rds_to_neon(c, **flags):
    """Replace Neon's data with RDS's (through S3, with a safety copy of Neon first)."""
    _sync(c, "rds-to-neon", **flags)


@task(name="list", help={"json": SYNC.help()["json"], "wide": "Every detail: source, reason, rows per table, sha256."})
@handled
def list_dumps(c, json=False, wide=False):
    """List the dumps in the bucket, newest first: key, size, age, what (--wide: source, reason, rows, checksum)."""
    console = Console(json_mode=json)
    report = sync_listing.list_dumps(Settings.from_context(c), console, wide)
    if json:
        console.emit(report.to_json())


@task(help=SYNC.help(key=f"The dump's S3 key, as `{hints.inv('sync.list')}` shows it "
                         "(e.g. rds-dumps/2026-01-29T15-45-00.dump).",
                     to="Where to restore it: neon or rds."))
@handled
@SYNC
def restore(c, key, to, **flags):
    """Put an earlier dump back (rollback), after checking its checksum."""
    on = flags.pop("on")
    flags["expect_target"] = sync_jobs.expected_fingerprint(flags["expect_target"] or "")
    if _remote(c, on, ["sync.restore", "--key", key, "--to", to], flags):
        return
    console = Console(json_mode=flags["json"])
    report = sync_flow.run(Settings.from_context(c), console, sync_jobs.RestoreDump(key, to),
                           sync_jobs.Options.of(flags))
    _report(console, report, flags["json"])


@task(help={"verbose": "Show each check's detail and duration.",
            "json": "Print one JSON object (mode, checks, summary) on stdout; the lines go to stderr.",
            "strict": "Exit 1 on a warning too, not only on a failure.",
            "drift": "Also run terraform plan -detailed-exitcode for the current mode; drift is a warning.",
            "on": SYNC.help()["on"]})
@handled
def validate(c, verbose=False, json=False, strict=False, drift=False, on=None):
    """Check the dev environment's health in its current mode (pilot light or active)."""
    if _remote(c, on, ["validate"], dict(verbose=verbose, json=json, strict=strict, drift=drift)):
        return
    console = Console(json_mode=json)
    report = validate_engine.run_validate(Settings.from_context(c), console,
                                          validate_engine.Options(verbose=verbose, strict=strict, drift=drift))
    if json:
        console.emit(report.to_json())
    if report.exit_code:
        raise Exit(code=report.exit_code)


@task
@handled
def login(c):
    """Sign in to AWS as AWS_PROFILE says: SSO's device code, or an assumed role's MFA code; later tasks reuse it."""
    login_engine.run_login(Settings.from_context(c), Console())


OPERATION = FlagSet(
    Flag("sync_data", "Copy the data first, as a pre-task; a failed sync stops before Terraform."),
    Flag("dry_run", "Show the Terraform plan (and the sync's plan with --sync-data); change nothing."),
    Flag("yes", "Do not ask for confirmation (required without a terminal)."),
    Flag("on", "Where the sync pre-task and the closing validate run: local, or ecs (an ECS task in the VPC; "
               "Terraform runs here either way).", takes_value=True),
)


def _operation_help(operation):
    return OPERATION.help(sync_data=f"Copy the data first ({operation.sync_task}), as a pre-task; a failed sync "
                                    "stops before Terraform.")


# The plan steps: not tasks of their own; devops.cli.OperationExecutor runs each before its operation, and
# hands what it returns (environment.Planned) to the operation's body in its context (planned_of(c)).
@handled
@OPERATION
def plan_activate(c, **flags):
    return environment.plan(Settings.from_context(c), Console(), environment.ACTIVATE, environment.Flags(**flags))


@handled
@OPERATION
def plan_deactivate(c, **flags):
    return environment.plan(Settings.from_context(c), Console(), environment.DEACTIVATE, environment.Flags(**flags))


@task(klass=OperationTask, operation=environment.ACTIVATE, plan=plan_activate, post="validate",
      help=_operation_help(environment.ACTIVATE))
@handled
@OPERATION
def activate(c, **flags):
    """Switch dev to active mode (ECS, ALB, CloudFront): plan, confirm, [sync], apply the saved plan, validate."""
    environment.apply(Settings.from_context(c), Console(), environment.ACTIVATE, planned_of(c), flags["dry_run"])


@task(klass=OperationTask, operation=environment.DEACTIVATE, plan=plan_deactivate, post="validate",
      help=_operation_help(environment.DEACTIVATE))
@handled
@OPERATION
def deactivate(c, **flags):
    """Switch dev back to pilot light: plan, confirm, [sync], apply the saved plan (destroys active), validate."""
    environment.apply(Settings.from_context(c), Console(), environment.DEACTIVATE, planned_of(c), flags["dry_run"])


@task
@handled
def set_neon_url(c):
    """Store the Neon URL (read from stdin, never argv) in its Secrets Manager secret, for the tasks in ECS."""
    neon_secret.run_set_neon_url(Settings.from_context(c), Console())


@task(help={"dev": "Also build the dev image (the sandbox's servers, the emulator, the tests)."})
@handled
def toolbox_build(c, dev=False):
    """Build the toolbox image now (tasks build it themselves when it is missing or out of date)."""
    toolbox_engine.exec_shim(["toolbox.build", *(["--dev"] if dev else [])])


@task(help={"dev": "The dev image's tag instead of the runtime one."})
@handled
def toolbox_image(c, dev=False):
    """Print the toolbox image's tag (built first when missing): `docker run --rm $(inv toolbox.image) ...`."""
    print(toolbox_engine.image("dev" if dev else "toolbox"))


@task(help={"dev": "A shell in the dev image (PostgreSQL server, moto, pytest) instead of the runtime one."})
@handled
def toolbox_shell(c, dev=False):
    """An interactive shell inside the toolbox image, with the repository mounted."""
    toolbox_engine.run_shell(dev)


@task
@handled
def toolbox_stop(c):
    """Remove this checkout's warm toolbox containers now (each also goes by itself after 10 idle minutes)."""
    toolbox_engine.exec_shim(["toolbox.stop"])


@task
@handled
def demo(c):
    """The whole story on the sandbox: activate, validate, an edit in RDS, deactivate, the edit in Neon."""
    demo_engine.run_demo(sandbox_engine.task_settings(c), Console())


@task(help={"pytest-args": "Arguments for pytest, in one string (e.g. \"-k sync -x\")."})
@handled
def test(c, pytest_args=""):
    """Run the whole test suite (in the dev image, as `./toolbox/inv test`)."""
    code = toolbox_engine.run_tests(pytest_args)
    if code:
        raise Exit(code=code)


sync = Collection("sync")
sync.add_task(neon_to_rds)
sync.add_task(rds_to_neon)
sync.add_task(list_dumps, "list")
sync.add_task(restore)

sandbox = Collection("sandbox")
sandbox.add_task(sandbox_up, "up")
sandbox.add_task(sandbox_down, "down")
sandbox.add_task(sandbox_status, "status")
sandbox.add_task(sandbox_env, "env")

secrets = Collection("secrets")
secrets.add_task(set_neon_url)

toolbox = Collection("toolbox")
toolbox.add_task(toolbox_build, "build")
toolbox.add_task(toolbox_image, "image")
toolbox.add_task(toolbox_shell, "shell")
toolbox.add_task(toolbox_stop, "stop")

ns = Collection(sandbox, sync, secrets, toolbox, login, activate, deactivate, validate, demo, test)
ns.configure({"devops": dict(CONFIG_DEFAULTS)})
