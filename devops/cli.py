"""Glue between Invoke and the engines: errors as one clear line, and the executor that runs operations."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import inspect
import os
import signal
import sys
import time
import traceback
from typing import Any, Callable

from invoke import Call, Context, Executor, Task
from invoke.exceptions import Exit

from devops import runlog, terminal, toolbox
from devops.config import Settings
from devops.console import Console
from devops.environment import Operation, Planned
from devops.errors import DevopsError
from devops.masking import mask


# The exit code of an unexpected exception (a bug), apart from an expected failure's 1 and Ctrl-C's 130
# (EX_SOFTWARE in sysexits.h: "an internal software error has been detected").
BUG_EXIT = 70


def handled(func: Callable[..., Any]) -> Callable[..., Any]:
    """The catch-all around a task, in the style of pre-commit's error_handler. Every run writes a log
    (devops.runlog); then:

    - an expected failure (DevopsError): its one masked ``[ERROR]`` line, ending with the log's path; exit 1
      (or the error's own code);
    - Ctrl-C: ``[ERROR] interrupted``; exit 130; SIGTERM, SIGHUP: ``[ERROR] interrupted by SIGTERM``, exit
      128 + the signal's number (devops.terminal);
    - a reader that closed our output (``| head``): no word, exit 141;
    - anything else is a bug: one line naming it and the log's path, exit BUG_EXIT, the masked traceback
      in the log (and on stderr too with INVOKE_DEVOPS_DEBUG=1).

    Invoke reads the wrapped function's signature (through functools.wraps), so flags stay the same.
    """

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        terminal.install()
        with _run_log(args[0] if args else None, func.__name__) as log:
            try:
                try:
                    return func(*args, **kwargs)
                finally:
                    terminal.ending()
            except DevopsError as exc:
                if signum := terminal.interrupted_by():
                    # A child that the same Ctrl-C stopped (the whole process group gets it) failed first.
                    runlog.section("failure after the interrupt", mask(exc))
                    _interrupted(signum, kwargs, log)
                _fail(f"{mask(exc)}{_where(log)}", kwargs, log, {**exc.details, "error": mask(exc)})
                raise Exit(code=exc.exit_code) from None
            except terminal.OutputClosed:
                _output_closed(log)
            except terminal.Interrupted as exc:
                _interrupted(exc.signum, kwargs, log)
            except KeyboardInterrupt:
                _interrupted(signal.SIGINT, kwargs, log)
            except Exit:
                raise
            except Exception as exc:  # noqa: BLE001 - the catch-all: a bug, reported as one line
                if isinstance(exc, BrokenPipeError) and terminal.output_gone():
                    _output_closed(log)  # our reader went (on the host: `inv ... | head`), not a child's pipe
                trace = mask("".join(traceback.format_exception(exc)))
                runlog.section("traceback", trace)
                first = mask(str(exc)).strip().splitlines()
                what = f"{type(exc).__name__}: {first[0]}" if first else type(exc).__name__
                where = f"the traceback is in {log.shown()}" if log else "no run log could be written"
                line = f"unexpected error (a bug, please report it): {what}; {where}"
                _fail(line, kwargs, log, {"error": line})
                if os.environ.get("INVOKE_DEVOPS_DEBUG") == "1":
                    sys.stderr.write(trace)
                raise Exit(code=BUG_EXIT) from None

    return wrapper


def _interrupted(signum: int, kwargs: dict[str, Any], log: runlog.RunLog | None) -> None:
    """Ctrl-C: ``interrupted``, exit 130; SIGTERM, SIGHUP: ``interrupted by SIGTERM``, 128 + the number."""
    what = "interrupted" if signum == signal.SIGINT else f"interrupted by {signal.Signals(signum).name}"
    _fail(f"{what}{_where(log)}", kwargs, log, {"error": what})
    raise Exit(code=128 + signum) from None


def _output_closed(log: runlog.RunLog | None) -> None:
    """The reader has gone (``| head``): nothing can reach it, so the task ends without a word; the run log
    says why. Exit 141, as a process that SIGPIPE ended."""
    runlog.section("ended", "the reader of the task's output closed it (exit 141)")
    terminal.silence_output()
    raise Exit(code=terminal.SIGPIPE_EXIT) from None


def _fail(line: str, kwargs: dict[str, Any], log: runlog.RunLog | None, details: dict[str, Any]) -> None:
    Console(json_mode=True).error(line)
    if kwargs.get("json"):
        Console(json_mode=True).emit({"status": "error", **details, **({"log": log.shown()} if log else {})})


def _where(log: runlog.RunLog | None) -> str:
    return f" (log: {log.shown()})" if log else ""


def _run_log(context: Any, name: str) -> Any:
    """The run log of this task (or the one its invocation already opened: OperationExecutor's)."""
    settings = _settings(context)
    if settings is None:
        return contextlib.nullcontext(runlog.current())
    return runlog.session(settings.log_dir, name.replace("_", "-"), settings.log_keep)


def _settings(config_source: Any) -> Settings | None:
    """Settings from an Invoke Context or Config; None when there is none or it is invalid (the task's
    own Settings.from_context then reports what is wrong)."""
    config = getattr(config_source, "config", config_source)
    try:
        return Settings.load(config.get("devops", {})) if config is not None else None
    except (DevopsError, AttributeError):
        return None


def stderr_console() -> Console:
    """A console whose human lines go to stderr (for tasks whose stdout is data, like sandbox.env)."""
    return Console(json_mode=True, err=sys.stderr)


# --------------------------------------------------------------------------------------------------
# Operations: activate / deactivate as a chain of Invoke calls


class OperationTask(Task):
    """A task that applies an operation (activate, deactivate); OperationExecutor runs its other steps.

    ``plan`` is the body of its plan step (checks, plan view, confirmation; returns environment.Planned),
    ``post`` the task that checks the result. Its body reads the plan step's Planned with ``planned_of(c)``.
    """

    def __init__(self, body: Callable[..., Any], *, operation: Operation, plan: Callable[..., Any], post: str,
                 **kwargs: Any):
        super().__init__(body, **kwargs)
        self.operation = operation
        self.plan_step = Task(plan)
        self.post_task = post


class OperationContext(Context):
    """The context of an operation's apply step: Invoke's, plus what the plan step of this run returned.

    Not a flag (Invoke makes every parameter of a task a CLI flag) and not config (shared by every call of the
    invocation): only the executor sets it, from the plan step's return value, so a plan file left on disk
    by an earlier run never reaches an apply step.
    """

    def __init__(self, *args: Any, planned: Planned | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._set(_planned=planned)  # _set: a plain attribute, not a config key (invoke.config.DataProxy)

    @property
    def planned(self) -> Planned | None:
        return self._planned


def planned_of(context: Any) -> Planned | None:
    """The Planned the plan step of this run handed to this apply step; None when the task was called
    otherwise (directly, or by an executor other than OperationExecutor)."""
    return context.planned if isinstance(context, OperationContext) else None


class Step(Call):
    """A call the executor added for an operation: its plan step, its sync pre-task, itself, its post-task.

    ``planned``: on the apply step, what the plan step returned (OperationExecutor sets it); its context
    carries it to the task's body (Invoke's hook for a call's own data: Call.make_context).
    """

    def __init__(self, task: Task, role: str, operation: Call, **kwargs: Any):
        super().__init__(task, **kwargs)
        self.role = role
        self.operation = operation
        self.planned: Planned | None = None

    @property
    def label(self) -> str:
        return f"{self.called_as} (plan)" if self.role == "plan" else str(self.called_as)

    def make_context(self, config: Any, core_parse_result: Any) -> Context:
        if self.role != "apply":
            return super().make_context(config, core_parse_result=core_parse_result)
        return OperationContext(config=config, remainder=core_parse_result.remainder, planned=self.planned)


@dataclasses.dataclass
class StepResult:
    label: str
    operation: Call | None
    seconds: float
    status: str  # ok / failed


class OperationExecutor(Executor):
    """Invoke's executor, plus the steps of activate/deactivate that a static ``pre=[...]`` cannot express.

    Invoke's pre-tasks are fixed at definition time and never see the parent's flags (by design: invoke
    issues #135, #261, #730), but `--sync-data` must choose a pre-task and `--dry-run` must reach it. So the
    executor, which sees every parsed call, expands an OperationTask call into

        its plan step -> the sync task (only with --sync-data; same --dry-run) -> the task -> post-task (not in a dry run)

    A sync task runs once per `inv` invocation, even when it is also named on the command line
    (`inv sync.neon-to-rds activate --sync-data`): the first call wins. The plan step's result (a Planned)
    goes to the apply step of the same operation, in its context (OperationContext); when the plan step
    finds nothing to do (already in that mode), the rest of that operation is skipped. A saved plan that was
    not applied (a failed sync) is removed at the end. Each step is timed, and an operation ends with a
    summary of its steps. It is registered for `inv` by the project's invoke.yaml (tasks.executor_class),
    the hook Invoke documents for this.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.results: list[StepResult] = []
        self.done: list[Call] = []  # operations whose plan step found nothing to do

    def execute(self, *tasks: Any) -> dict[Task, Any]:
        toolbox.reenter(self, tasks)  # on a host, the whole invocation re-runs in the toolbox image
        calls = self.plan_calls(*tasks)
        # One run log for the whole invocation: activate's plan, sync, apply and validate share it.
        names = dict.fromkeys(str(getattr(c, "operation", c).called_as or c.task.name) for c in calls)
        with _run_log(self.config, "+".join(names)):
            return self.run_calls(calls)

    def plan_calls(self, *tasks: Any) -> list[Call]:
        """The calls an invocation runs, in order: operations expanded, pre/post-tasks added, deduplicated."""
        calls: list[Call] = []
        for call in self.normalize(tasks):
            calls += self.expand_operation(call) if isinstance(call.task, OperationTask) else self.expand_calls([call])
        try:
            dedupe = self.config.tasks.dedupe
        except AttributeError:
            dedupe = True
        return self.dedupe(calls) if dedupe else calls

    def expand_operation(self, call: Call) -> list[Call]:
        task: OperationTask = call.task
        flags = call.kwargs
        steps: list[Call] = [Step(task.plan_step, "plan", call, called_as=call.called_as, kwargs=dict(flags))]
        if flags.get("sync_data"):
            # yes=True: the plan step's confirmation covered the sync (it names it), and it refuses without one.
            # on: --on ecs runs the sync in the VPC (Terraform, the plan and apply steps, stays here).
            steps.append(self._step(task.operation.sync_task, "sync", call, dry_run=bool(flags.get("dry_run")), yes=True,
                                    on=flags.get("on")))
        steps += self.expand_calls([Step(task, "apply", call, called_as=call.called_as, kwargs=dict(flags))])
        if not flags.get("dry_run"):
            steps.append(self._step(task.post_task, "post", call, on=flags.get("on")))
        return steps

    def _step(self, name: str, role: str, operation: Call, **overrides: Any) -> Step:
        task = self.collection[name]
        return Step(task, role, operation, called_as=name, kwargs={**_defaults(task), **overrides})

    def dedupe(self, calls: list[Call]) -> list[Call]:
        sync_tasks = {self.collection[c.task.operation.sync_task] for c in calls if isinstance(c.task, OperationTask)}
        seen: set[Task] = set()
        kept = []
        for call in calls:
            if call.task in sync_tasks:
                if call.task in seen:
                    continue
                seen.add(call.task)
            kept.append(call)
        return super().dedupe(kept)

    def run_calls(self, calls: list[Call]) -> dict[Task, Any]:
        """Executor.execute's loop, with timing, and skipping what an operation's plan step says is not needed."""
        results: dict[Task, Any] = {}
        try:
            for call in calls:
                operation = getattr(call, "operation", None)
                if operation is not None and any(operation is d for d in self.done):
                    continue
                self.config.load_collection(self.collection.configuration(call.called_as))
                self.config.load_shell_env()
                context = call.make_context(self.config, core_parse_result=self.core)
                started = time.monotonic()
                status = "failed"
                try:
                    result = call.task(context, *call.args, **call.kwargs)
                    status = "ok"
                finally:
                    label = call.label if isinstance(call, Step) else str(call.called_as or call.task.name)
                    self.results.append(StepResult(label, operation, time.monotonic() - started, status))
                if isinstance(call, Step) and call.role == "plan" and isinstance(result, Planned):
                    self.hand_over(calls, call, result)
                if call.autoprint and not isinstance(call, Step):
                    print(result)
                results[call.task] = result
        finally:
            for call in calls:  # a plan not applied (its sync failed) goes with this run
                if isinstance(call, Step) and call.planned is not None:
                    call.planned.discard()
            self.summarize(calls)
        return results

    def hand_over(self, calls: list[Call], plan_step: Step, planned: Planned) -> None:
        """The plan step's result to its operation's apply step; or, when it found nothing to do, the rest of
        the operation skipped."""
        if not planned.proceed:
            self.done.append(plan_step.operation)
            return
        for call in calls:
            if isinstance(call, Step) and call.role == "apply" and call.operation is plan_step.operation:
                call.planned = planned

    def summarize(self, calls: list[Call]) -> None:
        """Each operation's steps with their durations and the total (also when a step failed)."""
        operations = [c for c in calls if isinstance(c, Step) and c.role == "apply"]
        for operation in {id(s.operation): s.operation for s in operations}.values():
            ran = [r for r in self.results if r.operation is operation]
            if not ran:
                continue
            planned = [c for c in calls if isinstance(c, Step) and c.operation is operation]
            rows = [(r.label, r.status, f"{r.seconds:.1f}") for r in ran]
            rest = "skipped" if any(operation is d for d in self.done) else "not run"
            rows += [(c.label, rest, "") for c in planned[len(ran):]]
            rows.append(("total", "", f"{sum(r.seconds for r in ran):.1f}"))
            console = Console()
            console.line()
            console.line(f"{operation.called_as}: steps")
            console.table(rows, headers=("step", "status", "seconds"))


def _defaults(task: Task) -> dict[str, Any]:
    """A task's flags at their defaults, as Invoke's parser would pass them (so equal calls compare equal)."""
    parameters = list(inspect.signature(task.body).parameters.values())[1:]  # after the context
    return {p.name: p.default for p in parameters if p.default is not inspect.Parameter.empty}
