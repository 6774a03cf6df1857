"""The sync's flow: one full-replace copy of a database over another, through S3, read top to bottom in
``run_steps``.

A sync and a restore are the same steps with a different source (sources.py): a database that pg_dump reads,
or an earlier dump in S3, checked against its manifest. The steps (docs/sync.md):

     1. preflight       identity, Terraform outputs, endpoints, tools, versions, bucket   (preflight.py)
     2. source check    a restore: the dump's sha256 against its manifest                  (sources.py)
     3. divergence      the target read once (rows, checksums, sequences, schema), judged against the
                        newest record of it (guard.py); the source counts its rows meanwhile (plan.py)
     4. plan            the report so far, shown (plan.py, render.py); --dry-run stops here, a diverged
                        target or a lock table too small is refused here, before anything is written
     5. confirm         the one question (unless --yes)
     6. lock            the bucket's sync lock; the keys named under it                    (store.py)
     7. safety copy     the target in S3 first: an earlier dump that holds it, or a new dump (safety.py)
     8. transfer        the source streamed into an atomic restore of the target (and, for a sync, to S3),
                        verified inside the restore's transaction before COMMIT            (restore.py, dumps.py)
     9. report          the summary (render.finish); the Report is also what --json prints
    10. record          the dump's manifest (uploaded once, also when the restore failed), with what the
                        target holds now when it committed; a restore: a record of that   (sources.py)

Where a change goes: a new step is a call here (its work in a module of its own when it is more than a few
lines); a new decision is a function of data in decisions.py; a new line or table a person reads goes to
render.py; a new field of the report to report.py; a new query of a database to database.py; a new setting
to devops/config.py, read here through ``env.settings``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import tempfile
import time
from typing import Iterator

from devops import aws
from devops.config import Settings
from devops.console import RULE, Console
from devops.errors import DevopsError
from devops.masking import first_line
from devops.sync import render
from devops.sync.database import Database
from devops.sync.decisions import (Outcome, after_plan, compare, downgrade, downgrade_hint, rds_room,
                                   too_many_locks, unexpected_target, what_target_lacks)
from devops.sync.dumps import Verified, commit_verified, fingerprint
from devops.sync.jobs import Job, Options
from devops.sync.plan import Plan, plan_report, read
from devops.sync.preflight import Environment, prepare
from devops.sync.processes import Processes
from devops.sync.progress import transfer
from devops.sync.report import Copy, Report, Status, Verdict
from devops.sync.restore import Restore
from devops.sync.safety import keep_target, look_again
from devops.sync.scope import LeftAlone
from devops.sync.sources import Source, SourceCounts, Streamed, source_for
from devops.sync.storage import rds_storage
from devops.sync.store import dump_key, utcnow
from devops.threads import in_background


class Phases:
    """Wall-clock seconds per phase, in order."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._started = time.monotonic()

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        start = time.monotonic()
        try:
            yield
        finally:
            self.seconds[name] = round(time.monotonic() - start, 2)

    def total(self) -> float:
        return round(time.monotonic() - self._started, 2)


def run(settings: Settings, console: Console, job: Job, options: Options) -> Report:
    """A sync or a restore; returns the report (also printed).

    Any failure up to the restore's COMMIT raises (the target unchanged); a difference found by the
    verification is the report's status "mismatch".
    """
    phases = Phases()
    render.banner(console, job.title, utcnow(), aws.target_label(settings), options.dry_run)
    with phases("preflight"):                                                             # 1. preflight
        console.info("Checking prerequisites...")
        env = prepare(settings, console, job.sides)
    try:
        return run_steps(env, console, job, options, phases)
    finally:
        env.close()


def run_steps(env: Environment, console: Console, job: Job, options: Options, phases: Phases) -> Report:
    """Steps 2 to 10, on what the preflight resolved."""
    target, source = env.databases[job.target], source_for(job, env)
    left_alone = LeftAlone.of_run(env.settings, dataclasses.asdict(options)) | source.left_alone
    for db in env.databases.values():
        db.left_alone = left_alone
    plan = plan_step(env, console, job, source, target, options, phases)                  # 2-4
    if plan.report.status == Status.DRY_RUN:
        return plan.report
    asked = render.confirm(console, plan.report, options.yes)                              # 5. confirm
    return write_steps(env, console, job, source, target, options, phases, plan, asked)   # 6-10


def plan_step(env: Environment, console: Console, job: Job, source: Source, target: Database, options: Options,
              phases: Phases) -> Plan:
    """Steps 2 to 4: the plan, shown; its status DRY_RUN when that was all that was asked; a refusal raised
    before anything is written."""
    if source.check_phase:
        with phases(source.check_phase):                                                  # 2. source check
            source.check(console)
    storage = in_background(rds_storage, env, target)  # RDS's free storage (CloudWatch), beside the reads
    with phases("divergence check"):                                                      # 3. divergence
        state, judgement, counts = read(env, console, source, target, options)
    report = plan_report(env, job, source, target, counts, state, judgement, options)    # 4. plan
    if target.side == "rds":
        report.storage = rds_room(counts.needs, target.offers, storage.result())
    if options.expect_target:
        render.plan_confirmed(console, report, options.expect_target)
    else:
        render.plan(console, report)
    refusal = unexpected_target(options.expect_target, state.fingerprint, target.label)
    if refusal:
        raise refusal
    render.divergence(console, report, judgement.divergence())
    # What the target cannot take, all at once: its lock table, what it lacks.
    unfit = [refusal for refusal in (too_many_locks(report.locks.needed, target.lock_table, target.label),
                                     what_target_lacks(counts.needs, target.offers, target.label, report.storage),
                                     target.left_alone.crossing_refusal(counts.needs.of, counts.needs.on_left_alone,
                                                                        target.label, state.kept_depending)) if refusal]
    console.line(RULE)
    outcome = after_plan(judgement.verdict, options.dry_run, fits=not unfit)
    if outcome == Outcome.DRY_RUN:
        render.dry_run_complete(console, report, unfit)
        report.status, report.seconds = Status.DRY_RUN, phases.seconds
    elif outcome != Outcome.PROCEED:
        refused = dataclasses.replace(report, status=Status.REFUSED, seconds=phases.seconds)
        if outcome == Outcome.REFUSE:
            raise render.refusal(refused)
        raise DevopsError(" ".join(unfit), details=refused.to_json())
    return Plan(report, state, judgement, counts)


def write_steps(env: Environment, console: Console, job: Job, source: Source, target: Database, options: Options,
                phases: Phases, plan: Plan, asked: bool) -> Report:
    """Steps 6 to 10: under the lock, the safety copy, the transfer, the report and the record."""
    with env.store.lock(job.purpose, options.break_lock) as lock, \
            tempfile.TemporaryDirectory(prefix=f"devops-{job.operation}-") as workdir:   # 6. lock
        if lock.broken:
            render.broken_lock(console, lock.broken)
        # The keys name the second that orders the records (store.latest_fingerprint): chosen now that the
        # lock is held, so that their order is the order the operations held it in. The plan's were a forecast.
        when = env.store.free_time(job.sides, utcnow())
        safety_key, source_key = dump_key(target.side, when), source.dump_key(when)
        report = plan.report
        report.safety_copy = Copy(env.store.url(safety_key))
        report.dump = Copy(env.store.url(source_key)) if source_key else None
        processes = Processes()
        try:
            with phases("safety copy"):                                                   # 7. safety copy
                plan = look_again(env, console, target, plan, asked, options.force)
                report = refuse_if_diverged(console, plan)
                report.safety_copy = keep_target(env, console, target, plan, safety_key,
                                                 job.safety_reason(target.label), processes)
            with phases(source.transfer_phase):                                           # 8. transfer
                source.announce(console, target, source_key)
                streamed, verified = transfer_verified(env, console, source, target, plan.source_counts,
                                                       processes, workdir, source_key, when)
        finally:
            processes.close()
        report = finish(report, phases, streamed, verified)                               # 9. report
        restored = fingerprint(target, verified.tables, verified.sequences, verified.schema) \
            if report.status == Status.OK else None
        # The record goes up while the lock is released and the summary printed (a round trip each).
        recording = in_background(source.record, target, streamed, restored, when)       # 10. record
    render.finish(console, report)
    recording.result()
    return report


def refuse_if_diverged(console: Console, plan: Plan) -> Report:
    """The plan's report, unless the target, read again, was written to since its last record: a refusal."""
    if plan.judgement.verdict == Verdict.DIVERGED:
        render.divergence(console, plan.report, plan.report.divergence)
        raise render.refusal(dataclasses.replace(plan.report, status=Status.REFUSED))
    return plan.report


def transfer_verified(env: Environment, console: Console, source: Source, target: Database, counts: SourceCounts,
                      processes: Processes, workdir: str, key: str | None,
                      when: dt.datetime) -> tuple[Streamed, Verified]:
    """The source streamed into an atomic restore of the target, verified before COMMIT: (what the source
    said the target must hold, what the check found). A dump that ended stays a rollback point when the
    restore then fails: its record goes up on the way out."""
    restore = Restore(target, processes, workdir,
                      hint=downgrade_hint(downgrade(source.version, target.version), target.label),
                      batched=env.tools.major("psql") >= 15)
    with transfer(console, source.transfer_title, counts.size, target.endpoint, len(counts.rows),
                  env.settings.progress_interval) as progress:
        streamed = source.stream(processes, (restore, progress), key, counts.needs)
    try:
        return streamed, commit_verified(restore, streamed.tables, streamed.sequences, console,
                                         env.settings.progress_interval)
    except BaseException:
        keep_record(console, source, target, streamed, when)
        raise


def keep_record(console: Console, source: Source, target: Database, streamed: Streamed, when: dt.datetime) -> None:
    """The record of a transfer that failed (the dump's manifest, if the dump ended), on the way out: a
    failure to write it is a warning, never in place of the failure that is on its way."""
    try:
        source.record(target, streamed, None, when)
    except Exception as exc:  # noqa: BLE001
        console.warn(f"the dump's manifest could not be written ({first_line(exc)}): the dump is kept, without it")


def finish(report: Report, phases: Phases, streamed: Streamed, verified: Verified) -> Report:
    report.status = Status.OK if verified.committed else Status.MISMATCH
    report.committed = verified.committed
    report.tables = compare(streamed.tables, verified.tables)
    report.sequence_mismatches = verified.sequence_mismatches
    report.left_out = verified.left_out
    report.locks.held = verified.locks
    report.seconds = {**phases.seconds, "total": phases.total()}
    if streamed.written is not None:
        report.dump = streamed.written
    return report
