"""Sync throughput: `inv sync.neon-to-rds` as users run it, against the direct pipe, side by side.

Builds a dataset of at least --size-mb in the sandbox's Neon stand-in (customers, orders, order_items
with jsonb, indexes and foreign keys; attachments with incompressible bytea), puts the previous copy on
the RDS stand-in with one untimed sync, then times --runs rounds, each running in turn:

    toolbox  ./toolbox/inv sync.neon-to-rds --yes --json   (the user's path: a docker exec into the
             checkout's warm toolbox container, the image's client tools; needs a Docker engine and the
             sandbox under the repository)
    image    inv sync.neon-to-rds --yes --json, run by this bench's Python directly (no container start:
             in the dev image, the same tools; with its CPU broken down)
    baseline the same as image, from another checkout (--baseline DIR: an earlier commit, for a before and
             after measured side by side)
    pipe     pg_dump -Fc -Z0 | pg_restore --clean --if-exists   (the limit: no S3, no checks; the same
             client tools as the sync)
    bash     the original bash script's flow, which this project replaces: pg_dump -Fc to a file, upload
             it to S3, pg_restore --clean --if-exists from the file

Before each method the target is vacuumed and both servers checkpointed (untimed), and each round starts
with the next method. The bench prints medians, the ratios of medians measured in this run, the sync's
phases, the CPU seconds each process spent (the client's tools, each server, the S3 emulator) and the
peak memory of the inv process (VmHWM, polled from /proc; the toolbox container's is visible when the
bench shares the host's PID namespace, `docker run --pid host`). Targets: sync <= 1.5x pipe, bash >= 3x
sync, inv peak RSS < 150 MB.

Run it in the dev image, which has the toolbox's client tools (the host's pg_dump may be older than the
stand-ins' PostgreSQL, 18 by default), with the engine's socket for the toolbox row; a machine with extra CA
certificates or a provider mirror mounts them at the same paths (the toolbox row's shim names the image by its
CAs):

    # from the repository's root
    docker run --rm --network host --pid host -u 0 -v "$PWD:$PWD" -w "$PWD" \
        -v /var/run/docker.sock:/var/run/docker.sock -e TF_PROVIDER_MIRROR -e DEVOPS_TOOLBOX_CA \
        [-v "$DEVOPS_TOOLBOX_CA:$DEVOPS_TOOLBOX_CA:ro"] [-v "$TF_PROVIDER_MIRROR:$TF_PROVIDER_MIRROR:ro"] \
        devops-toolbox:<hash>-dev \
        python bench/sync_throughput.py [--size-mb 800] [--runs 3] [--methods toolbox,image,pipe,bash]
                                        [--baseline DIR] [--sandbox-dir .toolbox-tmp/bench-sandbox] [--reuse] [--keep]

--reuse uses a sandbox already up in --sandbox-dir (and its dataset when big enough); --keep leaves it up.
TF_PROVIDER_MIRROR names a local provider mirror where Terraform is offline.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Iterator
from urllib.parse import unquote, urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psycopg2  # noqa: E402
from tabulate import tabulate  # noqa: E402

from devops.config import Settings  # noqa: E402
from devops.console import Console  # noqa: E402
from devops.sandbox import Sandbox  # noqa: E402
from devops.sandbox.provider_mirror import use_provider_mirror  # noqa: E402

METHODS = ("toolbox", "image", "baseline", "pipe", "bash")
SYNCS = ("toolbox", "image", "baseline")
LABELS = {"toolbox": "sync through the toolbox (./toolbox/inv)", "image": "sync, inv run directly (no container start)",
          "baseline": "sync, inv run directly from --baseline's checkout",
          "pipe": "direct pipe pg_dump -Fc -Z0 | pg_restore", "bash": "the bash script's flow (file, upload, restore)"}
TICK = os.sysconf("SC_CLK_TCK")
BENCH_TABLES = ("customers", "orders", "order_items", "attachments")
SCHEMA = """
CREATE EXTENSION IF NOT EXISTS pgcrypto;
DROP TABLE IF EXISTS attachments, order_items, orders, customers CASCADE;
CREATE TABLE customers (id bigint PRIMARY KEY, name text NOT NULL, email text NOT NULL UNIQUE,
                        profile jsonb NOT NULL, created_at timestamptz NOT NULL);
INSERT INTO customers SELECT g, 'Customer ' || g, 'customer' || g || '@example.com',
    jsonb_build_object('tier', (ARRAY['free', 'pro', 'team'])[1 + mod(g, 3)], 'score', round((random() * 1000)::numeric, 2),
                       'tags', jsonb_build_array(md5(g::text), md5(random()::text)),
                       'address', jsonb_build_object('city', 'City ' || mod(g, 997), 'zip', lpad(mod(g, 99991)::text, 5, '0'))),
    timestamptz '2024-01-01' + g * interval '1 minute'
  FROM generate_series(1, %(customers)s::bigint) g;
CREATE TABLE orders (id bigint PRIMARY KEY, customer_id bigint NOT NULL REFERENCES customers, status text NOT NULL,
                     total numeric(12, 2) NOT NULL, placed_at timestamptz NOT NULL, meta jsonb NOT NULL);
INSERT INTO orders SELECT g, 1 + mod(g * 7919, %(customers)s), (ARRAY['new', 'paid', 'shipped', 'refunded'])[1 + mod(g, 4)],
    round((random() * 500)::numeric, 2), timestamptz '2024-01-01' + g * interval '17 seconds',
    jsonb_build_object('channel', (ARRAY['web', 'app', 'phone'])[1 + mod(g, 3)], 'note', md5(random()::text),
                       'coupon', CASE WHEN mod(g, 5) = 0 THEN md5(g::text) END)
  FROM generate_series(1, %(orders)s::bigint) g;
CREATE INDEX orders_customer_idx ON orders (customer_id);
CREATE INDEX orders_placed_idx ON orders (placed_at);
CREATE TABLE order_items (order_id bigint NOT NULL REFERENCES orders ON DELETE CASCADE, line int NOT NULL,
                          sku text NOT NULL, quantity int NOT NULL, price numeric(10, 2) NOT NULL,
                          PRIMARY KEY (order_id, line));
INSERT INTO order_items SELECT o, l, 'SKU-' || lpad(mod(o * l, 50000)::text, 6, '0'), 1 + mod(o + l, 5),
    round((random() * 100)::numeric, 2)
  FROM generate_series(1, %(orders)s::bigint) o, generate_series(1, 3) l;
CREATE INDEX order_items_sku_idx ON order_items (sku);
CREATE TABLE attachments (id bigserial PRIMARY KEY, order_id bigint NOT NULL REFERENCES orders,
                          filename text NOT NULL, content bytea NOT NULL);
CREATE INDEX attachments_order_idx ON attachments (order_id);
-- What application databases hold besides tables: a view, a materialized view over it, a function.
CREATE FUNCTION order_value(o orders) RETURNS numeric LANGUAGE sql IMMUTABLE AS 'SELECT o.total';
CREATE VIEW paid_orders AS SELECT o.*, order_value(o) AS value FROM orders o WHERE status = 'paid';
CREATE MATERIALIZED VIEW revenue_by_channel AS
    SELECT meta->>'channel' AS channel, count(*) AS orders, sum(value) AS revenue FROM paid_orders GROUP BY 1;
"""
# 8 KiB of random bytes per row (gen_random_bytes gives at most 1024 per call): stored uncompressed in TOAST.
ATTACHMENTS = ("INSERT INTO attachments (order_id, filename, content) SELECT 1 + mod(g * 31, %(orders)s), "
               "'file-' || g || '.bin', " + " || ".join(["gen_random_bytes(1024)"] * 8)
               + " FROM generate_series(%(start)s::bigint, %(stop)s) g")
ATTACHMENT_BATCH = 5000  # ~40 MB


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def libpq_env(url: str) -> dict[str, str]:
    """PG* variables for a URL: the tools get the password through their environment, never argv."""
    u = urlsplit(url)
    return {"PGHOST": u.hostname or "", "PGPORT": str(u.port or 5432), "PGUSER": unquote(u.username or ""),
            "PGPASSWORD": unquote(u.password or ""), "PGDATABASE": u.path.lstrip("/")}


def connect(url: str):
    e = libpq_env(url)
    conn = psycopg2.connect(host=e["PGHOST"], port=e["PGPORT"], user=e["PGUSER"], password=e["PGPASSWORD"],
                            dbname=e["PGDATABASE"])
    conn.autocommit = True
    return conn


# --------------------------------------------------------------------------------------------------
# Dataset


def db_size_mb(cur) -> float:
    cur.execute("SELECT pg_database_size(current_database())")
    return cur.fetchone()[0] / 2**20


def build_dataset(neon_url: str, size_mb: int, reuse: bool) -> None:
    conn = connect(neon_url)
    conn.autocommit = True  # one statement at a time (VACUUM included); `with conn` would open a transaction
    with conn.cursor() as cur:
        cur.execute("SELECT to_regclass('attachments') IS NOT NULL")
        if reuse and cur.fetchone()[0] and db_size_mb(cur) >= size_mb:
            log(f"Reusing the dataset in Neon ({db_size_mb(cur):.0f} MB)")
            return
        started = time.monotonic()
        customers, orders = size_mb * 100, size_mb * 500
        log(f"Building the dataset: {customers} customers, {orders} orders, {3 * orders} order items...")
        cur.execute(SCHEMA, {"customers": customers, "orders": orders})
        start = 1
        while db_size_mb(cur) < size_mb:
            cur.execute(ATTACHMENTS, {"orders": orders, "start": start, "stop": start + ATTACHMENT_BATCH - 1})
            start += ATTACHMENT_BATCH
        cur.execute("DROP EXTENSION pgcrypto")  # only needed to generate; keeps the dump free of it
        cur.execute("VACUUM ANALYZE")
        log(f"Dataset built in {time.monotonic() - started:.0f}s: {db_size_mb(cur):.0f} MB")
    conn.close()


def describe_dataset(neon_url: str) -> tuple[float, dict[str, int], str]:
    conn = connect(neon_url)
    with conn.cursor() as cur:
        counts = {}
        for table in BENCH_TABLES:
            cur.execute(f"SELECT count(*) FROM {table}")
            counts[table] = cur.fetchone()[0]
        cur.execute("SHOW server_version")
        version = cur.fetchone()[0]
        size = db_size_mb(cur)
    conn.close()
    return size, counts, version


# --------------------------------------------------------------------------------------------------
# The methods: each returns {"seconds": total, "phases": {...}, ...}


def rss_kb(pid: int, field: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def proc_stat(pid: int) -> list[str]:
    """The fields of /proc/PID/stat after the command name (ppid is [1], utime [11] ... cstime [14])."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return []


def descendants(root: int) -> list[int]:
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (fields := proc_stat(int(entry))):
            parents[int(entry)] = int(fields[1])
    found, frontier = [root], [root]
    while frontier:
        frontier = [pid for pid, ppid in parents.items() if ppid in frontier]
        found += frontier
    return found


def tree_cpu(root: int) -> float:
    """CPU seconds of a process tree: every live process's own, plus what its reaped children spent (a
    server's exited backends are in the postmaster's cutime)."""
    total = 0
    for pid in descendants(root):
        fields = proc_stat(pid)
        if fields:
            total += sum(int(f) for f in fields[11:13]) + (sum(int(f) for f in fields[13:15]) if pid == root else 0)
    return total / TICK


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class Meter:
    """CPU seconds of the sandbox's processes (each PostgreSQL server, the S3 emulator) and of this bench's
    children (the client tools, the inv process and its tools), over one method's run."""

    def __init__(self, roots: dict[str, int]):
        self.roots = roots

    @contextlib.contextmanager
    def __call__(self, result: dict) -> Iterator[None]:
        before = {name: tree_cpu(pid) for name, pid in self.roots.items()}
        client = children_cpu()
        yield
        result["cpu"] = {"client": children_cpu() - client,
                         **{name: tree_cpu(pid) - before[name] for name, pid in self.roots.items()}}


def sandbox_roots(sandbox_dir: Path) -> dict[str, int]:
    """The postmasters' and the emulator's pids (seen from here: the bench runs where the sandbox runs)."""
    state = json.loads((sandbox_dir / "state.json").read_text())
    roots = {"moto": int(state["emulator"]["pid"])}
    for side in ("neon", "rds"):
        roots[f"{side} server"] = int((sandbox_dir / side / "data" / "postmaster.pid").read_text().split()[0])
    return roots


def inv_processes(root: Path) -> list[int]:
    """The Python processes running the sync task in ``root`` (this bench's child, or the toolbox container's
    when its PIDs are visible): their cwd is the repository."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                argv = handle.read().split(b"\0")
            if b"python" in argv[0] and b"sync.neon-to-rds" in argv and os.readlink(f"/proc/{entry}/cwd") == str(root):
                found.append(int(entry))
        except OSError:
            pass
    return found


def run_sync(env: dict[str, str], log_path: Path, toolbox: bool, checkout: Path = ROOT) -> dict:
    """The Invoke task (through ./toolbox/inv, or run directly in ``checkout``), with the peak RSS (VmHWM) of
    its inv process."""
    command = (["sh", str(ROOT / "toolbox" / "inv")] if toolbox else [sys.executable, "-m", "invoke"])
    started = time.monotonic()
    with open(log_path, "ab") as err:
        proc = subprocess.Popen([*command, "sync.neon-to-rds", "--yes", "--json"], cwd=checkout, env=env,
                                stdout=subprocess.PIPE, stderr=err)
        peak, done = {"kb": 0}, threading.Event()

        def watch() -> None:
            while not done.is_set():
                peak["kb"] = max([peak["kb"], *(rss_kb(pid, "VmHWM") for pid in inv_processes(checkout))])
                time.sleep(0.1)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        out = proc.communicate()[0]
        done.set()
        watcher.join()
    seconds = time.monotonic() - started
    try:
        report = json.loads(out)
    except json.JSONDecodeError:
        report = {"status": "no JSON on stdout"}
    if proc.returncode != 0 or report.get("status") != "ok":
        tail = " | ".join(log_path.read_text(errors="replace").strip().splitlines()[-5:])
        raise RuntimeError(f"sync failed (exit {proc.returncode}, status {report.get('status')}): {tail}")
    return {"seconds": seconds, "phases": report["seconds"], "dump_mb": report["dump"]["size"] / 2**20,
            "verdict": report["divergence"]["verdict"], "safety_reused": report["safety_copy"]["reused"],
            "rss_mb": peak["kb"] / 1024 or None}


def check(proc: subprocess.Popen, name: str, err) -> None:
    if proc.wait() != 0:
        err.seek(0)
        tail = err.read().decode(errors="replace").strip().splitlines()[-3:]
        raise RuntimeError(f"{name} failed (exit {proc.returncode}): {' | '.join(tail)}")


def run_pipe(neon: dict[str, str], rds: dict[str, str]) -> dict:
    started = time.monotonic()
    with tempfile.TemporaryFile() as dump_err, tempfile.TemporaryFile() as restore_err:
        dump = subprocess.Popen(["pg_dump", "-Fc", "-Z0", "--no-owner", "--no-acl"], env={**os.environ, **neon},
                                stdout=subprocess.PIPE, stderr=dump_err)
        restore = subprocess.Popen(["pg_restore", "--clean", "--if-exists", "--no-owner", "--no-acl",
                                    "-d", rds["PGDATABASE"]], env={**os.environ, **rds}, stdin=dump.stdout,
                                   stderr=restore_err)
        dump.stdout.close()
        check(restore, "pg_restore", restore_err)
        check(dump, "pg_dump", dump_err)
    return {"seconds": time.monotonic() - started}


def run_bash(neon: dict[str, str], rds: dict[str, str], s3, bucket: str, workdir: str) -> dict:
    """As scripts/sync-neon-to-rds.sh did it: dump to a file, `aws s3 cp` it, restore from the file."""
    path, phases = os.path.join(workdir, "bash.dump"), {}
    started = time.monotonic()
    with tempfile.TemporaryFile() as err:
        check(subprocess.Popen(["pg_dump", "--format=custom", "--no-owner", "--no-acl", f"--file={path}"],
                               env={**os.environ, **neon}, stderr=err), "pg_dump", err)
    phases["dump"] = time.monotonic() - started
    s3.upload_file(path, bucket, "bench/bash.dump")  # aws s3 cp: 8 MB parts, 10 threads
    phases["upload"] = time.monotonic() - started - phases["dump"]
    with tempfile.TemporaryFile() as err:
        check(subprocess.Popen(["pg_restore", "--clean", "--if-exists", "--no-owner", "--no-acl",
                                "-d", rds["PGDATABASE"], path], env={**os.environ, **rds}, stderr=err),
              "pg_restore", err)
    phases["restore"] = time.monotonic() - started - phases["dump"] - phases["upload"]
    size = os.path.getsize(path) / 2**20
    os.unlink(path)
    return {"seconds": time.monotonic() - started, "phases": phases, "dump_mb": size}


def empty_bucket(s3, bucket: str) -> None:
    """Drop the dumps of earlier runs so the emulator does not grow (not timed), except the newest Neon
    dump and its manifest: RDS holds exactly that dump's data, which the sync's safety copy relies on
    (a user's bucket keeps its dumps for 30 days)."""
    keys = [o["Key"] for prefix in ("neon-dumps/", "rds-dumps/", "bench/")
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
            for o in page.get("Contents", [])]
    newest = max((k for k in keys if k.startswith("neon-dumps/") and k.endswith(".manifest.json")), default=None)
    keep = newest[: -len(".manifest.json")] if newest else None
    doomed = [{"Key": k} for k in keys if not (keep and k.startswith(keep))]
    for start in range(0, len(doomed), 1000):
        s3.delete_objects(Bucket=bucket, Delete={"Objects": doomed[start:start + 1000]})


def settle(sandbox_dir: Path, rds_url: str) -> None:
    """The same start for every method (not timed): the target vacuumed and analyzed, as a database that has
    been in use is (else the method after a restore pays for its hint bits and the autovacuum it starts),
    both servers checkpointed and the page cache written back (else it pays for the previous one's writes)."""
    conn = connect(rds_url)
    with conn.cursor() as cur:
        cur.execute("VACUUM (ANALYZE)")
    conn.close()
    state = json.loads((sandbox_dir / "state.json").read_text())
    for side in ("neon", "rds"):
        conn = psycopg2.connect(host="127.0.0.1", port=state[side]["port"], user="postgres", dbname="postgres",
                                password=state[side]["superuser_password"])
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("CHECKPOINT")
        conn.close()
    os.sync()


def toolbox_unavailable(sandbox_dir: Path) -> str | None:
    """Why the toolbox row cannot run here, or None."""
    if shutil.which("docker") is None or subprocess.run(["docker", "version"], capture_output=True).returncode != 0:
        return "no Docker engine reachable (mount its socket: -v /var/run/docker.sock:/var/run/docker.sock)"
    if not sandbox_dir.resolve().is_relative_to(ROOT):
        return f"the sandbox ({sandbox_dir}) is outside the repository, which is all a toolbox container mounts"
    return None


# --------------------------------------------------------------------------------------------------
# Report


def stats_row(name: str, values: list[float], unit: str = "s") -> list:
    return [name, f"{statistics.median(values):.1f}{unit}", f"{min(values):.1f}{unit}", f"{max(values):.1f}{unit}",
            "  ".join(f"{v:.1f}" for v in values)]


def report(results: dict[str, list[dict]], size: float, counts: dict[str, int], version: str, runs: int) -> None:
    methods = [m for m in METHODS if results.get(m)]
    syncs = [m for m in SYNCS if m in methods]
    med = {m: statistics.median(r["seconds"] for r in results[m]) for m in methods}
    print(f"\nDataset {size:.0f} MB in Neon (pg_database_size): "
          + ", ".join(f"{t} {n:,}" for t, n in counts.items())
          + f". PostgreSQL {version}. {runs} timed round(s), each running every method in turn; dump sizes: "
          + ", ".join(f"{m} {statistics.median(r['dump_mb'] for r in results[m]):.0f} MB"
                      for m in methods if "dump_mb" in results[m][0]) + ".\n")
    head = ["median", "min", "max", "runs"]
    print(tabulate([stats_row(LABELS[m], [r["seconds"] for r in results[m]]) for m in methods],
                   headers=["method", *head]))
    print()
    for m in syncs:
        print(f"{m}: divergence verdicts " + ", ".join(r["verdict"] for r in results[m]) + "; safety copy reused: "
              + ", ".join("yes" if r["safety_reused"] else "no" for r in results[m]))
    ratios = []
    if "pipe" in med:
        ratios += [[f"{m} sync / pipe", f"{med[m] / med['pipe']:.2f}x", "<= 1.5x", med[m] / med["pipe"] <= 1.5]
                   for m in syncs]
    if "bash" in med and syncs:
        ratios.append([f"bash / {syncs[0]} sync", f"{med['bash'] / med[syncs[0]]:.2f}x", ">= 3x",
                       med["bash"] / med[syncs[0]] >= 3])
    for m in syncs:
        peaks = [r["rss_mb"] for r in results[m] if r["rss_mb"]]
        ratios.append([f"{m} sync: peak RSS of the inv process", f"{max(peaks):.0f} MB" if peaks else
                       "not visible (run the bench with --pid host)", "< 150 MB", max(peaks) < 150 if peaks else "-"])
    print()
    print(tabulate([[a, b, c, {True: "yes", False: "NO"}.get(d, d)] for a, b, c, d in ratios],
                   headers=["measure (medians of this run)", "value", "target", "met"]))
    print()
    order = ["preflight", "divergence check", "plan", "safety copy", "dump + restore + verify", "total"]
    rows = []
    for m in syncs:
        sync = results[m]
        phases = sorted(sync[0]["phases"], key=lambda p: order.index(p) if p in order else len(order))
        rows += [stats_row(f"{m}: {p}" if p != "total" else f"{m}: total (as the task reports it)",
                           [r["phases"][p] for r in sync]) for p in phases]
        rows.append(stats_row(f"{m}: outside the task's total (start, imports, exit)",
                              [r["seconds"] - r["phases"]["total"] for r in sync]))
    if results.get("bash"):
        rows += [stats_row(f"bash: {p}", [r["phases"][p] for r in results["bash"]])
                 for p in ("dump", "upload", "restore")]
    print(tabulate(rows, headers=["phase", *head]))
    print()
    cpu_rows = []
    for m in methods:
        measured = [r["cpu"] for r in results[m] if "cpu" in r]
        if measured:
            parts = {part: statistics.median(c[part] for c in measured) for part in measured[0]}
            client = "-" if m == "toolbox" else f"{parts['client']:.1f}"  # the container's processes are not ours
            total = sum(v for k, v in parts.items() if k != "client" or m != "toolbox")
            cpu_rows.append([LABELS[m], client, *(f"{parts[k]:.1f}" for k in parts if k != "client"), f"{total:.1f}",
                             f"{med[m]:.1f}"])
    if cpu_rows:
        names = [k for k in results[methods[0]][0]["cpu"] if k != "client"]
        print("CPU seconds per run (medians; 'client' = the bench's children: the inv process and its pg_dump, "
              "pg_restore and psql, or the pipe's tools):")
        print(tabulate(cpu_rows, headers=["method", "client", *names, "total CPU", "wall"]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=800)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated, of " + ", ".join(METHODS))
    parser.add_argument("--baseline", help="another checkout (an earlier commit) whose sync runs as one more "
                        "method, for a before/after measured side by side")
    parser.add_argument("--sandbox-dir", default=str(ROOT / ".toolbox-tmp" / "bench-sandbox"))
    parser.add_argument("--reuse", action="store_true", help="use the sandbox (and dataset) already up")
    parser.add_argument("--keep", action="store_true", help="leave the sandbox up at the end")
    args = parser.parse_args()
    methods = [m for m in METHODS if m in args.methods.split(",") and (m != "baseline" or args.baseline)]
    sandbox_dir = Path(args.sandbox_dir).resolve()

    # Where Terraform is offline: a CLI config naming the provider mirror (TF_PROVIDER_MIRROR), outside the
    # sandbox's directory (which the sandbox re-creates).
    use_provider_mirror(Path(f"{sandbox_dir}-tfcli"))
    box = Sandbox(Settings.load({"sandbox_dir": str(sandbox_dir)}), Console(json_mode=True, err=sys.stderr))
    if box.is_up() and not args.reuse:
        log(f"A sandbox is already up in {sandbox_dir}: pass --reuse to use it, or take it down")
        return 2
    if "toolbox" in methods and (why := toolbox_unavailable(sandbox_dir)):
        log(f"Leaving out the toolbox row: {why}")
        methods.remove("toolbox")
    try:
        if not box.is_up():
            log(f"Starting the sandbox in {sandbox_dir} (about 100 s)...")
            box.up()
        env = box.environment(tunnel=True)  # RDS through the tunnel that sandbox.env --tunnel models
        env["INVOKE_DEVOPS_TOOLBOX"] = "host"  # `image`: the task in this process's environment, not re-launched
        toolbox_env = {k: v for k, v in env.items() if k != "INVOKE_DEVOPS_TOOLBOX"}
        # An earlier commit refuses settings it does not know yet (INVOKE_DEVOPS_<KEY>): those are left out.
        known = (Path(args.baseline) / "devops" / "config.py").read_text() if args.baseline else ""
        baseline_env = {k: v for k, v in env.items()
                        if not k.startswith("INVOKE_DEVOPS_") or f'"{k.removeprefix("INVOKE_DEVOPS_").lower()}"' in known}
        # The pipe and the bash flow reach both servers as the sync does: through the sandbox's network (RDS at
        # the tunnel's address), over TLS.
        neon, rds = libpq_env(env["NEON_DATABASE_URL"]), libpq_env(env["SANDBOX_RDS_URL"])
        rds["PGHOST"], rds["PGPORT"] = env["INVOKE_DEVOPS_RDS_ADDRESS"].split(":")
        s3, bucket = box.client("s3"), Settings.load({}).bucket_name
        meter = Meter(sandbox_roots(sandbox_dir))
        build_dataset(env["NEON_DATABASE_URL"], args.size_mb, args.reuse)
        size, counts, version = describe_dataset(env["NEON_DATABASE_URL"])
        log_path = sandbox_dir / "bench-sync.log"
        warm = "toolbox" if "toolbox" in methods else "image"
        log(f"Warm-up sync (untimed, {warm}): puts the previous copy on RDS; task logs in {log_path}")
        run_sync(toolbox_env if warm == "toolbox" else env, log_path, warm == "toolbox")
        results: dict[str, list[dict]] = {m: [] for m in methods}
        with tempfile.TemporaryDirectory(prefix="bench-bash-") as workdir:
            for round_ in range(1, args.runs + 1):
                # Each round starts with another method, so that no method always follows the same one.
                shift = (round_ - 1) % len(methods)
                for method in methods[shift:] + methods[:shift]:
                    empty_bucket(s3, bucket)
                    settle(sandbox_dir, env["SANDBOX_RDS_URL"])
                    measured: dict = {}
                    with meter(measured):
                        result = (run_sync(toolbox_env if method == "toolbox" else baseline_env if method == "baseline"
                                           else env, log_path, method == "toolbox",
                                           Path(args.baseline).resolve() if method == "baseline" else ROOT)
                                  if method in SYNCS else run_pipe(neon, rds) if method == "pipe"
                                  else run_bash(neon, rds, s3, bucket, workdir))
                    results[method].append({**result, **measured})
                    log(f"round {round_}/{args.runs} {method}: {result['seconds']:.1f}s")
        report(results, size, counts, version, args.runs)
        return 0
    finally:
        if not args.keep:
            log("Taking the sandbox down")
            box.down(quiet=True)


if __name__ == "__main__":
    sys.exit(main())
