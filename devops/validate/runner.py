"""`inv validate`: the credentials, the Terraform state and every check of the mode at once, each with its own
timeout, printed in the registry's fixed order (credentials and state first), then the seeds' summary.

    sts get-caller-identity  |  terraform output -json (a HEAD while the state is unchanged)  |  the checks
    the checks:  one thread each; those that need outputs start with the outputs read last time and run
                 again if the state now holds others; a check past its timeout is a FAIL line
"""

from __future__ import annotations

import dataclasses
import time
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from devops import aws
from devops.config import Settings
from devops.console import Console
from devops.errors import DevopsError
from devops.masking import mask
from devops.modes import ACTIVE, PILOT
from devops.terraform import Terraform
from devops.validate.checks import (CLIENT_CONFIG, FAIL, PASS, REGISTRY, WARN, Check, Context, Result, checks_for,
                                   early_checks)

MODE_LABELS = {ACTIVE: "Full (activated)", PILOT: "Pilot Light"}
# Clients the pilot-light checks need, created ahead of them: the RDS connection's first (its path is the
# longest), EC2's last (its model is the slowest to load).
WARM_SERVICES = ("rds", "secretsmanager", "ecr", "ec2")


@dataclasses.dataclass
class Outcome:
    name: str
    result: Result
    seconds: float


@dataclasses.dataclass(frozen=True)
class Options:
    verbose: bool = False
    strict: bool = False
    drift: bool = False


def run_validate(settings: Settings, console: Console, options: Options) -> tuple[dict[str, Any], int]:
    """Run the validation; returns the report and the exit code (1 on any FAIL, or WARN with strict)."""
    console.banner("DEV ENVIRONMENT VALIDATION", f"Region: {settings.region}", f"Target: {aws.target_label(settings)}")
    started = time.monotonic()
    ctx = Context(settings, {}, PILOT, aws.Clients(settings, CLIENT_CONFIG), options.drift)
    # Enough threads for every check twice (a check started on outputs that changed runs again).
    pool = ThreadPoolExecutor(max_workers=2 * len(REGISTRY) + 3, thread_name_prefix="validate")
    try:
        report, code = _run(console, options, ctx, pool)
    finally:
        # Never wait for a check past its timeout: its thread ends when its own socket timeouts fire.
        pool.shutdown(wait=False, cancel_futures=True)
    report["seconds"] = round(time.monotonic() - started, 2)
    return report, code


def _run(console: Console, options: Options, ctx: Context, pool: ThreadPoolExecutor) -> tuple[dict[str, Any], int]:
    settings, outcomes = ctx.settings, []
    terraform = Terraform(settings)
    ident = pool.submit(_timed, lambda: aws.identity(settings, ctx.client("sts")))
    # The outputs come from a cache while the state's ETag is unchanged (one HEAD; else Terraform runs).
    state = pool.submit(_timed, lambda: terraform.outputs(s3=ctx.client("s3")))
    pool.submit(lambda: [ctx.client(service) for service in WARM_SERVICES])
    # Every check starts now, not after the credentials and the state have answered (their round trips would
    # come first on every path): the checks that need no output, and those of the mode the outputs read
    # last time give, with those outputs. The state rarely changes between two runs; when it has, those
    # checks run again below with the outputs it holds.
    futures = {check.name: _submit(pool, check, ctx) for check in early_checks(options.drift)}
    last = terraform.last_outputs()
    if last:
        guessed = ctx.with_outputs(last)
        for check in checks_for(guessed.mode, options.drift):
            if check.name not in futures:
                futures[check.name] = _submit(pool, check, guessed)
    (identity, error), seconds = ident.result()
    if error:
        outcomes.append(_show(console, options, Outcome("AWS credentials", Result(FAIL, error), seconds)))
        return _finish(console, options, PILOT, outcomes)
    outcomes.append(_show(console, options, Outcome(
        "AWS credentials", Result(PASS, f"AWS credentials valid (account {identity['account']})", identity["arn"]),
        seconds)))
    (outputs, error), seconds = state.result()
    if error or not outputs:
        message = f"Cannot read Terraform state: {error or 'no outputs (apply terraform/environments/dev first)'}"
        outcomes.append(_show(console, options, Outcome("Terraform state", Result(FAIL, message), seconds)))
        return _finish(console, options, PILOT, outcomes)
    ctx = ctx.with_outputs(outputs)
    text = "Dev infrastructure is activated (full mode)" if ctx.mode == ACTIVE else \
        "Dev infrastructure is in Pilot Light mode"
    outcomes.append(_show(console, options, Outcome("Terraform state", Result(PASS, text), seconds)))
    checks = checks_for(ctx.mode, options.drift)
    for check in checks:
        if check.name not in futures or (check.needs_outputs and outputs != last):
            futures[check.name] = _submit(pool, check, ctx)
    for check in checks:
        outcomes.append(_show(console, options, _collect(check, *futures[check.name])))
    return _finish(console, options, ctx.mode, outcomes)


def _submit(pool: ThreadPoolExecutor, check: Check, ctx: Context) -> tuple[Future, float]:
    return pool.submit(_timed, lambda: check.func(ctx)), time.monotonic()


def _timed(func: Any) -> tuple[tuple[Any, str | None], float]:
    """(value, None) or (None, one-line error), and the seconds it took. Never raises."""
    start = time.monotonic()
    try:
        value, error = func(), None
    except DevopsError as exc:
        value, error = None, str(exc)
    except Exception as exc:  # noqa: BLE001 - a check that breaks is a FAIL line, not a traceback
        value, error = None, f"{type(exc).__name__}: {aws.describe(exc)}"
    return (value, error), round(time.monotonic() - start, 2)


def _collect(check: Check, future: Future, submitted: float) -> Outcome:
    # Checks run together, so each one's timeout counts from its own start, not from when the checks
    # printed before it were done.
    try:
        (result, error), seconds = future.result(timeout=max(check.timeout - (time.monotonic() - submitted), 0.01))
    except FutureTimeout:
        return Outcome(check.name, Result(FAIL, f"{check.name}: no answer within {check.timeout:.0f}s"),
                       check.timeout)
    if error:
        return Outcome(check.name, Result(FAIL, f"{check.name}: {error}"), seconds)
    return Outcome(check.name, result, seconds)


def _show(console: Console, options: Options, outcome: Outcome) -> Outcome:
    status, message = outcome.result.status, outcome.result.message
    {PASS: console.passed, WARN: console.warn, FAIL: console.fail}[status](message)
    if options.verbose:
        detail = f"{outcome.result.detail}; " if outcome.result.detail else ""
        console.line(f"       {detail}{outcome.seconds:.2f}s")
    return outcome


def _finish(console: Console, options: Options, mode: str, outcomes: list[Outcome]) -> tuple[dict[str, Any], int]:
    counts = {status: sum(1 for o in outcomes if o.result.status == status) for status in (PASS, WARN, FAIL)}
    console.banner("VALIDATION SUMMARY")
    # Spaced exactly as the seeds' script prints them.
    console.line(f"  Mode:      {MODE_LABELS[mode]}")
    console.line(f"  Passed:   {counts[PASS]}")
    console.line(f"  Warnings: {counts[WARN]}")
    console.line(f"  Failed:   {counts[FAIL]}")
    console.line()
    if counts[FAIL]:
        sentence = "Dev environment has failures - investigate before using"
    elif counts[WARN]:
        sentence = "Dev environment has warnings - review before activation"
    else:
        sentence = ("Dev environment is healthy and fully activated" if mode == ACTIVE
                    else "Dev Pilot Light components are healthy")
    console.line(sentence)
    code = 1 if counts[FAIL] or (options.strict and counts[WARN]) else 0
    report = {
        "mode": mode,
        "checks": [{"name": o.name, "status": o.result.status, "message": mask(o.result.message),
                    "detail": mask(o.result.detail), "seconds": o.seconds} for o in outcomes],
        "summary": {"mode": MODE_LABELS[mode], "passed": counts[PASS], "warnings": counts[WARN],
                    "failed": counts[FAIL], "result": sentence},
        "status": "fail" if counts[FAIL] else ("warn" if counts[WARN] else "pass"),
        "exit_code": code,
    }
    return report, code
