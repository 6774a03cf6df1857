"""Steps 3 and 4: the target read once and judged (the divergence guard), and the plan's report built from
that reading, the source's counts and the job. Nothing here writes."""

from __future__ import annotations

import dataclasses
from concurrent.futures import ThreadPoolExecutor

from devops import aws
from devops.console import Console
from devops.sync.database import Database, version_text
from devops.sync.decisions import content_hash, downgrade, locks_needed, plan_warnings
from devops.sync.dumps import State, probe
from devops.sync.guard import Judgement, judge
from devops.sync.jobs import Job, Options
from devops.sync.preflight import Environment
from devops.sync.report import Copy, Locks, PlanRow, Report, TargetState, Versions
from devops.sync.sources import Source, SourceCounts, side_of
from devops.sync.store import dump_key, utcnow


@dataclasses.dataclass
class Plan:
    """What the plan read and showed: the report, the target's state, the guard's judgement of it, and what
    the source holds."""

    report: Report
    state: State
    judgement: Judgement
    source_counts: SourceCounts


def read_target(env: Environment, target: Database, force: bool, pool: ThreadPoolExecutor,
                console: Console | None = None) -> tuple[State, Judgement]:
    """The divergence guard's verdict on the target: its one probe, against the newest record of it (read
    from S3 while the probe runs)."""
    known = pool.submit(env.store.latest_fingerprint, target.side)
    state = probe(env, target, console)
    state.kept_depending = target.kept_depending()
    return state, judge(known.result(), state.fingerprint, target.label, force)


def read(env: Environment, console: Console, source: Source, target: Database, options: Options) -> \
        tuple[State, Judgement, SourceCounts]:
    """The target probed and judged while the source counts its rows: the plan's one read of each."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        counting = pool.submit(source.counts)
        state, judgement = read_target(env, target, options.force, pool, console)
        return state, judgement, counting.result()


def plan_report(env: Environment, job: Job, source: Source, target: Database, counts: SourceCounts,
                state: State, judgement: Judgement, options: Options) -> Report:
    """The report as the plan shows it (the keys are a forecast, not looked up: they are named under the lock)."""
    when = utcnow()
    target_rows = {name: t.rows for name, t in state.tables.items()}
    rows_now = sum(target_rows.values())
    counted = [rows for rows in counts.rows.values() if rows is not None]
    rows_after = sum(counted) if len(counted) == len(counts.rows) else None
    majors = downgrade(source.version, target.version)
    report = Report(
        operation=job.operation, dry_run=options.dry_run, target=aws.target_label(env.settings),
        sides={"target": side_of(target)},
        plan={name: PlanRow(counts.rows.get(name), target_rows.get(name))
              for name in sorted(set(counts.rows) | set(target_rows))},
        target_state=TargetState(len(state.tables), rows_now, content_hash(state.fingerprint), rows_after),
        warnings=plan_warnings(target.label, rows_now, rows_after, source.dump_of, target.side),
        left_alone=target.left_alone.as_record() if target.left_alone else None,
        divergence=judgement.divergence(),
        versions=Versions(version_text(source.version) if source.version else None, target.version_text,
                          majors is not None),
        safety_copy=Copy(env.store.url(dump_key(target.side, when))),
        locks=Locks(locks_needed(state.objects, counts.objects), target.lock_table.capacity,
                    target.lock_table.max_locks, target.lock_table.slots),
    )
    return dataclasses.replace(report, **source.plan_fields(target, when))
