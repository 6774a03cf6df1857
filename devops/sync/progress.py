"""The dump + restore's progress: bytes moved against an estimate from the source's size, the rate, the
tables restored out of the total (from the target's pg_stat_progress_copy), and an ETA.

``transfer`` gives a sink for dumps.dump (it sees every chunk of the dump; sync.restore feeds it the
dump read from S3) and watches the target while the block runs. Progress is never what the sync depends
on: any error here only leaves a figure out.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Iterator

from devops.console import Console
from devops.postgres import Endpoint
from devops.progress import Transfer

# COPY FROM running in the target's database now (PostgreSQL 14+): one row per table being restored.
COPYING_QUERY = "SELECT relid FROM pg_stat_progress_copy WHERE datname = current_database() AND command = 'COPY FROM'"
POLL_SECONDS = 0.5


@contextlib.contextmanager
def transfer(console: Console, label: str, estimate: int, target: Endpoint, tables: int,
             interval: float) -> Iterator[Transfer]:
    """``estimate``: the bytes expected (Database.size for a dump; a recorded dump's size for a restore)."""
    progress = Transfer(console, label, estimate, tables, interval)
    stop = threading.Event()
    watcher = threading.Thread(target=_watch_copies, args=(target, progress, stop), daemon=True,
                               name="progress-copy")
    with progress:
        watcher.start()
        try:
            yield progress
        finally:
            stop.set()
            watcher.join()


def _watch_copies(target: Endpoint, progress: Transfer, stop: threading.Event) -> None:
    """Tables done: those whose COPY was seen running on the target and has ended since. (A table small
    enough to be copied between two polls is counted when the restore ends.)"""
    try:
        conn = target.connect()
    except Exception:  # noqa: BLE001
        return
    try:
        conn.autocommit = True
        seen: set[int] = set()
        with conn.cursor() as cur:
            while not stop.wait(POLL_SECONDS):
                cur.execute(COPYING_QUERY)
                running = {row[0] for row in cur.fetchall()}
                seen |= running
                progress.tables_done = min(len(seen - running), progress.tables_total)
    except Exception:  # noqa: BLE001 - an older server (no pg_stat_progress_copy) or a lost connection
        pass
    finally:
        conn.close()
