"""`sync.list`: the dumps in the bucket, newest first, with what each holds."""

from __future__ import annotations

from devops import aws
from devops.config import Settings
from devops.console import Console
from devops.sync import render
from devops.sync.preflight import store_of
from devops.sync.report import DumpList, Listed
from devops.sync.store import utcnow


def list_dumps(settings: Settings, console: Console, wide: bool = False) -> DumpList:
    render.banner(console, "SYNC DUMPS", None, aws.target_label(settings))
    store = store_of(settings, console)
    now = utcnow()
    entries = []
    for item in store.dumps():
        m = item["manifest"]
        entries.append(Listed(
            item["key"], item["size"], int((now - item["modified"]).total_seconds()),
            m.get("source", {}).get("url", "?"), m.get("reason", "?"),
            {name: t["rows"] for name, t in m.get("tables", {}).items()}, m.get("sha256", ""), item["committed"]))
    report = DumpList(store.bucket, entries)
    render.dumps(console, report, wide)
    return report
