"""`inv validate`: the credentials, the Terraform state and every check of the mode at once, each with its own
timeout, printed in the registry's fixed order (credentials and state first), then the summary of the original
bash script (dev-validation.sh).

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

from devops import aws, credentials
from devops.config import Settings
from devops.console import Console
from devops.errors import DevopsError
from devops.modes import ACTIVE, PILOT
from devops.terraform import Terraform
from devops.validate.checks import CLIENT_CONFIG, REGISTRY, Check, Context, checks_for, early_checks
from devops.validate.report import CheckResult, CheckStatus, Finding, ValidationReport

# Clients the pilot-light checks need, created ahead of them: the RDS connection's first (its path is the
# longest), EC2's last (its model is the slowest to load).
WARM_SERVICES = ("rds", "secretsmanager", "ecr", "ec2")


@dataclasses.dataclass(frozen=True)
class Options:
    verbose: bool = False
    strict: bool = False
    drift: bool = False


def run_validate(settings: Settings, console: Console, options: Options) -> ValidationReport:
    """Run the validation; the report holds the exit code (1 on any FAIL, or WARN with strict)."""
    console.banner("DEV ENVIRONMENT VALIDATION", f"Region: {settings.region}", f"Target: {aws.target_label(settings)}")
    started = time.monotonic()
    ctx = Context(settings, {}, PILOT, aws.Clients(settings, CLIENT_CONFIG), options.drift)
    # Enough threads for every check twice (a check started on outputs that changed runs again).
    pool = ThreadPoolExecutor(max_workers=2 * len(REGISTRY) + 3, thread_name_prefix="validate")
    try:
        report = _run(console, options, ctx, pool)
    finally:
        # Never wait for a check past its timeout: its thread ends when its own socket timeouts fire.
        pool.shutdown(wait=False, cancel_futures=True)
    report.seconds = round(time.monotonic() - started, 2)
    return report


def _run(console: Console, options: Options, ctx: Context, pool: ThreadPoolExecutor) -> ValidationReport:
    settings, results = ctx.settings, []
    # Before any request: every answer about an unknown region would be an error of its own (or, from an
    # emulator that ignores the region for some services, a PASS that means nothing).
    problem = aws.region_problem(settings)
    if problem:
        results.append(_show(console, options, CheckResult("AWS region", Finding(CheckStatus.FAIL, problem), 0.0)))
        return _finish(console, options, PILOT, results)
    # The identity once, before the checks' threads: an MFA prompt or an SSO exchange happens here, and a
    # failure is one line, not one per check.
    try:
        credentials.identity(settings)
    except DevopsError as exc:
        results.append(_show(console, options, CheckResult("AWS credentials", Finding(CheckStatus.FAIL, str(exc)),
                                                           0.0)))
        return _finish(console, options, PILOT, results)
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
        failed = Finding(CheckStatus.FAIL, error)
        results.append(_show(console, options, CheckResult("AWS credentials", failed, seconds)))
        return _finish(console, options, PILOT, results)
    valid = Finding(CheckStatus.PASS, f"AWS credentials valid (account {identity['account']})", identity["arn"])
    results.append(_show(console, options, CheckResult("AWS credentials", valid, seconds)))
    (outputs, error), seconds = state.result()
    if error or not outputs:
        message = f"Cannot read Terraform state: {error or 'no outputs (apply terraform/environments/dev first)'}"
        results.append(_show(console, options, CheckResult("Terraform state", Finding(CheckStatus.FAIL, message),
                                                           seconds)))
        return _finish(console, options, PILOT, results)
    ctx = ctx.with_outputs(outputs)
    text = "Dev infrastructure is activated (full mode)" if ctx.mode == ACTIVE else \
        "Dev infrastructure is in Pilot Light mode"
    results.append(_show(console, options, CheckResult("Terraform state", Finding(CheckStatus.PASS, text), seconds)))
    checks = checks_for(ctx.mode, options.drift)
    for check in checks:
        if check.name not in futures or (check.needs_outputs and outputs != last):
            futures[check.name] = _submit(pool, check, ctx)
    for check in checks:
        results.append(_show(console, options, _collect(check, *futures[check.name])))
    return _finish(console, options, ctx.mode, results)


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


def _collect(check: Check, future: Future, submitted: float) -> CheckResult:
    # Checks run together, so each one's timeout counts from its own start, not from when the checks
    # printed before it were done.
    try:
        (found, error), seconds = future.result(timeout=max(check.timeout - (time.monotonic() - submitted), 0.01))
    except FutureTimeout:
        late = Finding(CheckStatus.FAIL, f"{check.name}: no answer within {check.timeout:.0f}s")
        return CheckResult(check.name, late, check.timeout)
    if error:
        return CheckResult(check.name, Finding(CheckStatus.FAIL, f"{check.name}: {error}"), seconds)
    return CheckResult(check.name, found, seconds)


def _show(console: Console, options: Options, result: CheckResult) -> CheckResult:
    show = {CheckStatus.PASS: console.passed, CheckStatus.WARN: console.warn, CheckStatus.FAIL: console.fail}
    show[result.finding.status](result.finding.message)
    if options.verbose:
        detail = f"{result.finding.detail}; " if result.finding.detail else ""
        console.line(f"       {detail}{result.seconds:.2f}s")
    return result


def _finish(console: Console, options: Options, mode: str, results: list[CheckResult]) -> ValidationReport:
    report = ValidationReport.of(mode, results, strict=options.strict)
    summary = report.summary
    console.banner("VALIDATION SUMMARY")
    # Spaced exactly as the original bash script prints them.
    console.line(f"  Mode:      {summary.mode}")
    console.line(f"  Passed:   {summary.passed}")
    console.line(f"  Warnings: {summary.warnings}")
    console.line(f"  Failed:   {summary.failed}")
    console.line()
    console.line(summary.result)
    return report
