"""How the sync tasks' reports look: the engine (devops/sync/engine.py) builds each report as data, and
everything a person reads about it is printed here, from that data alone. So a report computed elsewhere
(an ECS task's `--dry-run --json`) is shown and confirmed locally exactly as a local one.

    banner       the task's opening banner
    plan         sync.neon-to-rds / sync.rds-to-neon's plan, sync.restore's plan
    confirm      the one question before overwriting a database
    finish       the closing summary: tables, dumps, phases, verdict
    dumps        sync.list's table
"""

from __future__ import annotations

import datetime
from typing import Any

from devops.console import Console, age, cell
from devops.errors import DevopsError
from devops.progress import size


def banner(console: Console, title: str, when: datetime.datetime | None, target: str, dry_run: bool = False) -> None:
    """The task's opening banner: what it does, when, and against what (the sandbox, or an AWS account)."""
    console.banner(title, *([when.strftime("%Y-%m-%dT%H-%M-%S")] if when else []), f"Target: {target}")
    if dry_run:
        console.banner("DRY RUN - No changes will be made")


def side(label: str, url: str, where: str, version: str) -> dict[str, str]:
    """One database as a report names it: "Neon", its masked URL, host/database, its PostgreSQL version."""
    return {"label": label, "url": url, "where": where, "version": version}


def sync_plan(console: Console, report: dict[str, Any]) -> None:
    src, tgt = report["sides"]["source"], report["sides"]["target"]
    console.banner("SYNC PLAN")
    console.fields([
        ("Source", f"{src['label']} ({src['url']}, PostgreSQL {src['version']})"),
        ("Target", f"{tgt['label']} ({tgt['url']}, PostgreSQL {tgt['version']})"),
        ("S3 Dump", report["dump"]),
        ("Safety copy", f"{report['safety_copy']} (or an earlier dump, if it holds the target's data)"),
        ("Tools", ", ".join(f"{tool} {version}" for tool, version in report["tools"].items())),
        *_downgrade(report),
    ])
    console.line()
    _rows(console, report["plan"], f"{src['label']} rows", f"{tgt['label']} rows")
    console.fields([(f"{src['label']} rows", sum(r["source_rows"] or 0 for r in report["plan"].values())),
                    (f"{tgt['label']} rows", f"{report['target_state']['rows']} (will be replaced)")])
    console.line()


def restore_plan(console: Console, report: dict[str, Any]) -> None:
    tgt, dump = report["sides"]["target"], report["restored_dump"]
    console.banner("RESTORE PLAN")
    console.fields([("Dump", f"{dump['url']} ({dump['reason']}, {dump['created']})"),
                    ("Target", f"{tgt['label']} ({tgt['url']}, PostgreSQL {tgt['version']})"),
                    ("Safety copy", report["safety_copy"]),
                    *_downgrade(report)])
    console.line()
    _rows(console, report["plan"], "dump rows", f"{tgt['label']} rows")


def _rows(console: Console, plan: dict[str, dict[str, Any]], source: str, target: str) -> None:
    console.table([[name, cell(rows["source_rows"]),
                    cell(rows["target_rows"]) + (" (will be replaced)" if rows["target_rows"] is not None else "")]
                   for name, rows in sorted(plan.items())],
                  headers=["table", source, target])
    console.line()


def _downgrade(report: dict[str, Any]) -> list[tuple[str, str]]:
    """The plan's 'Versions: PostgreSQL 17 -> 15: a downgrade ...' field, on a downgrade only."""
    versions = report.get("versions") or {}
    if not versions.get("downgrade"):
        return []
    newer, older = (versions[key].split(".")[0] for key in ("source", "target"))
    return [("Versions", f"PostgreSQL {newer} -> {older}: a downgrade (an object using what {older} lacks fails "
                         "the restore, which then changes nothing)")]


def confirm(console: Console, report: dict[str, Any], yes: bool) -> bool:
    """Ask before overwriting the report's target, unless --yes; True when it asked (and so may have waited)."""
    tgt, state = report["sides"]["target"], report["target_state"]
    what = f"{tgt['label']} at {tgt['where']} ({state['tables']} tables, {state['rows']} rows)"
    return console.confirm(f"overwrite {what}", yes, warning=f"This replaces everything in {what}.")


def refused_by_plan(report: dict[str, Any], rerun: str) -> DevopsError | None:
    """A dry run's report whose divergence verdict a real run would refuse: the refusal, with the fix."""
    if (report.get("divergence") or {}).get("verdict") != "diverged":
        return None
    label = report["sides"]["target"]["label"]
    changed = ", ".join(report["divergence"].get("changed_tables") or ["its schema"])
    return DevopsError(f"refused: {label} was written to since its last recorded sync ({changed}) and those "
                       f"writes would be lost; nothing was changed. Sync the other way first, or run {rerun} --force")


def finish(console: Console, report: dict[str, Any]) -> None:
    tables, ok = report["tables"], report["status"] == "ok"
    tgt = report["sides"]["target"]
    operation = report["operation"].upper()
    console.banner(f"{operation} COMPLETE" if ok else f"{operation} ROLLED BACK: THE RESTORED DATA DIFFERED")
    dumps = [(name, report[name]) for name in ("dump", "safety_copy") if isinstance(report.get(name), dict)]
    console.fields([
        ("Target", f"{tgt['label']} ({tgt['where']})"),
        ("Tables", f"{len(tables)} ({sum(r['match'] for r in tables)} match)"),
        ("Rows", sum(r["target_rows"] or 0 for r in tables)),
        *[(name.replace("_", " ").capitalize(), f"{info['url']} ({size(info['size'])})") for name, info in dumps],
    ])
    console.line()
    console.table([[r["table"], cell(r["source_rows"]), cell(r["target_rows"]), "yes" if r["match"] else "NO"]
                   for r in tables], headers=["table", "source rows", "target rows", "match"])
    console.line()
    console.table([[name, f"{seconds:.1f}s"] for name, seconds in report["seconds"].items()],
                  headers=["phase", "time"])
    console.line()
    for entry in report["left_out"]:
        console.info(f"Left out on purpose (not allowed on a managed service): {entry}")
    for name in report["sequence_mismatches"]:
        console.fail(f"Sequence {name} differs between source and target")
    if ok:
        console.passed(f"Row counts and checksums match (checked before COMMIT) - {report['operation']} successful!")
    else:
        console.fail(f"Verification failed: {sum(not r['match'] for r in tables)} table(s) and "
                     f"{len(report['sequence_mismatches'])} sequence(s) differ; {tgt['label']} was left as it was "
                     "(the restore was rolled back)")


def dumps(console: Console, report: dict[str, Any]) -> None:
    entries = report["dumps"]
    if not entries:
        console.info(f"No dumps in s3://{report['bucket']}")
    # A dump of a sync or restore that did not commit: the target was left as it was (or it is running now).
    console.table([[e["key"], size(e["size"]), age(e["age_seconds"]), e["source"],
                    e["reason"] if e["committed"] else f"{e['reason']} (did not commit)",
                    ", ".join(f"{n.removeprefix('public.')}={r}" for n, r in e["tables"].items()),
                    e["sha256"][:12]] for e in entries],
                  headers=["key", "size", "age", "source", "reason", "rows", "sha256"])
