"""Step 7, the safety copy: the data about to be overwritten is in S3 before anything is written.

Whether to dump the target is decided from data (decisions.reusable_dump: the newest record of the target
holds exactly what it holds now, so that dump already is the safety copy); this module carries the choice
out: it looks at the target again when a confirmation waited, then points at that dump or dumps the target.
"""

from __future__ import annotations

import dataclasses

from devops.console import Console
from devops.sync import render
from devops.sync.database import Database
from devops.sync.decisions import must_look_again, reusable_dump
from devops.sync.dumps import dump, manifest, probe
from devops.sync.guard import judge
from devops.sync.plan import Plan
from devops.sync.preflight import Environment
from devops.sync.processes import Processes
from devops.sync.report import Copy


def look_again(env: Environment, console: Console, target: Database, plan: Plan, asked: bool, force: bool) -> Plan:
    """The plan as it stands when the safety copy is decided. When the confirmation asked (it may have waited
    for minutes) and the verdict or the reuse of a dump depends on what the plan read, the target is checked
    for writes since (one query), and read and judged again when it was written to."""
    if not must_look_again(plan.judgement, plan.state.fingerprint, asked) or plan.state.still_current(target):
        return plan
    console.info(f"{target.label} may have been written to since the plan: reading it again...")
    state = probe(env, target, console)
    judgement = judge(plan.judgement.known, state.fingerprint, target.label, force)
    return Plan(dataclasses.replace(plan.report, divergence=judgement.divergence()), state, judgement,
                plan.source_counts)


def keep_target(env: Environment, console: Console, target: Database, plan: Plan, key: str,
                reason: tuple[str, str], processes: Processes) -> Copy:
    """The target's safety copy, and where it is: the dump that already holds it (when it is still in the
    bucket), else a new dump of the target to ``key`` with its manifest (``reason``: its direction, why)."""
    known = reusable_dump(plan.judgement, plan.state.fingerprint)
    if known is not None and env.store.exists(known.key):
        render.safety_copy_reused(console, target.label, env.store.url(known.key))
        return Copy(env.store.url(known.key), known.manifest.get("size", 0), known.manifest.get("sha256", ""),
                    reused=True)
    console.info(f"Safety copy of {target.label} -> {env.store.url(key)}")
    result = dump(env, target, key, processes)
    env.store.put_manifest(key, manifest(env, target, result, *reason))
    return Copy(env.store.url(key), result.size, result.sha256, reused=False)
