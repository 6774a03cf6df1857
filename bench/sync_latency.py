"""Sync latency: `inv sync.neon-to-rds` at the round-trip times users have, beside the pipe and the bash script.

Side by side with the direct pipe and the original bash script, with the round trips and connections each makes.

The sandbox's network (devops/sandbox/network.py) sits between the tasks and the stand-ins of Neon, RDS and
AWS; this bench sets its round-trip time to each of --rtts in turn (20-80 ms from a
laptop) and, for each dataset (--datasets: the sandbox's sample data; "big", 300 tables in 6 schemas with
1,000+ indexes, triggers and partitions, tests/dbtools.py), times --runs rounds of:

    toolbox  ./toolbox/inv sync.neon-to-rds --yes --json   (the user's path: the toolbox container, TLS
             verified against the sandbox's CA; the second sync of two, as a user's next one is)
    pipe     pg_dump -Fc | pg_restore --clean --if-exists   (the same client tools, the same network and TLS)
    bash     the original bash script this project replaces, scripts/sync-neon-to-rds.sh, taken at run time
             from the plan document that holds it (Task 2, --bash-plan; outside this repository) and run as
             written, from a folder laid out as that script's checkout: its `aws sts`, four
             `terraform output`, `aws secretsmanager` + jq, psql counts, pg_dump to a file, `aws s3 cp`,
             pg_restore --clean --if-exists, and a psql count after; RDS reached as a task reaches it
             (the endpoint's name verified, the tunnel's address: PGHOSTADDR, and its port: a `terraform`
             in front of the real one answers `output -raw database_port` with it)

and, at each RTT, `./toolbox/inv validate` (pilot light). Beside each time, the round trips and connections
the network counted per side (a count is the same on every run). Targets: the sync within 1.3x the pipe at
60 ms, at most half the bash script's time; validate under 2 s at 60 ms.

Run it in the dev image, as bench/sync_throughput.py (its docstring has the docker run line):

    python bench/sync_latency.py --bash-plan PATH/implementation-plan.md [--rtts 0,20,60] [--runs 3]
        [--datasets sample,big] [--reuse] [--keep]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import unquote, urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import boto3  # noqa: E402
from tabulate import tabulate  # noqa: E402

import sync_throughput as throughput  # noqa: E402
from validate_latency import bash_script  # noqa: E402
from devops.config import Settings  # noqa: E402
from devops.console import Console  # noqa: E402
from devops.sandbox import SAMPLE_DATA, Sandbox  # noqa: E402
from devops.sandbox.provider_mirror import use_provider_mirror  # noqa: E402
from tests import dbtools  # noqa: E402

METHODS = ("toolbox", "pipe", "bash")
LABELS = {"toolbox": "sync through the toolbox (./toolbox/inv)", "pipe": throughput.LABELS["pipe"],
          "bash": "the bash script scripts/sync-neon-to-rds.sh"}
# The bash script counts the rows of `projects` (the sample data's); the big schema gets one too.
DATASETS = {"sample": SAMPLE_DATA.read_text(),
            "big": dbtools.big_schema(seed=1) + "\nCREATE TABLE public.projects (id int PRIMARY KEY);\n"
                   "INSERT INTO public.projects SELECT generate_series(1, 10);\n"}
SIDES = ("neon", "rds", "aws")
log = throughput.log


def tool_env(env: dict[str, str], state: dict, side: str) -> dict[str, str]:
    """The libpq environment for ``side`` through the sandbox's network, verified against its CA, as a task's."""
    url = urlsplit(env["NEON_DATABASE_URL"] if side == "neon" else env["SANDBOX_RDS_URL"])
    if side == "neon":
        where = {"PGHOST": url.hostname, "PGPORT": str(url.port)}
    else:
        address, port = env["INVOKE_DEVOPS_RDS_ADDRESS"].split(":")
        where = {"PGHOST": state["rds_endpoint"], "PGHOSTADDR": address, "PGPORT": port}
    return {**where, "PGUSER": unquote(url.username or ""), "PGPASSWORD": unquote(url.password or ""),
            "PGDATABASE": url.path.lstrip("/"), "PGSSLMODE": "verify-full", "PGSSLROOTCERT": state["ca"]}


def bash_setup(plan: Path, env: dict[str, str], state: dict, workdir: str) -> dict[str, str]:
    """A folder laid out as the bash script's checkout (scripts/, terraform -> this one's), and the script's
    environment: the sandbox's, with RDS reached through the tunnel and both sides verified."""
    root = Path(workdir) / "bash-checkout"
    (root / "scripts").mkdir(parents=True)
    (root / "bin").mkdir()
    script = root / "scripts" / "sync-neon-to-rds.sh"
    script.write_text(bash_script(plan, "sync-neon-to-rds.sh"))
    script.chmod(0o755)
    (root / "terraform").symlink_to(ROOT / "terraform")
    real = shutil.which("terraform")
    shim = root / "bin" / "terraform"
    shim.write_text(f'#!/bin/sh\n[ "$*" = "output -raw database_port" ] && exec echo "$BASH_RDS_PORT"\n'
                    f'exec {real} "$@"\n')
    shim.chmod(0o755)
    address, port = env["INVOKE_DEVOPS_RDS_ADDRESS"].split(":")
    return {**env, "PATH": f"{root / 'bin'}:{os.environ['PATH']}", "BASH_RDS_PORT": port, "PGHOSTADDR": address,
            "PGSSLMODE": "verify-full", "PGSSLROOTCERT": state["ca"], "BASH_SCRIPT": str(script)}


def run_bash_script(bash_env: dict[str, str], log_path: Path) -> dict:
    with open(log_path, "ab") as out:
        code = subprocess.run(["bash", bash_env["BASH_SCRIPT"]], env=bash_env, stdout=out, stderr=out,
                              stdin=subprocess.DEVNULL).returncode
    if code != 0:
        raise RuntimeError(f"the bash script failed (exit {code}): see {log_path}")
    return {}


def load(env: dict[str, str], dataset: str) -> None:
    """Neon holds the dataset (rebuilt), RDS the same after an untimed sync (a user's next sync)."""
    dbtools.reset(env["NEON_DATABASE_URL"])
    dbtools.execute(env["NEON_DATABASE_URL"], DATASETS[dataset])


def timed(network, run) -> dict:
    network.reset()
    started = time.monotonic()
    result = run() or {}
    seconds = time.monotonic() - started
    counts = network.counts()
    return {**result, "seconds": seconds, "round_trips": {s: counts[s].round_trips for s in SIDES},
            "connections": {s: counts[s].connections for s in SIDES}}


def validate(env: dict[str, str], log_path: Path) -> dict:
    with open(log_path, "ab") as err:
        code = subprocess.run(["sh", str(ROOT / "toolbox" / "inv"), "validate"], cwd=ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=err).returncode
    if code != 0:
        raise RuntimeError(f"inv validate failed (exit {code}): see {log_path}")
    return {}


def counts_text(results: list[dict], key: str) -> str:
    first = results[0][key]
    return " / ".join(str(first[s]) for s in SIDES)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bash-plan", type=Path, required=True,
                        help="the plan document (implementation-plan.md) whose Task 2 holds sync-neon-to-rds.sh")
    parser.add_argument("--rtts", default="0,20,60", help="round-trip times in ms, comma-separated")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--datasets", default="sample,big")
    parser.add_argument("--sandbox-dir", default=str(ROOT / ".toolbox-tmp" / "bench-sandbox"))
    parser.add_argument("--reuse", action="store_true", help="use the sandbox already up")
    parser.add_argument("--keep", action="store_true", help="leave the sandbox up at the end")
    args = parser.parse_args()
    rtts = [float(x) for x in args.rtts.split(",")]
    sandbox_dir = Path(args.sandbox_dir).resolve()
    use_provider_mirror(Path(f"{sandbox_dir}-tfcli"))
    box = Sandbox(Settings.load({"sandbox_dir": str(sandbox_dir)}), Console(json_mode=True, err=sys.stderr))
    if box.is_up() and not args.reuse:
        log(f"A sandbox is already up in {sandbox_dir}: pass --reuse to use it, or take it down")
        return 2
    if why := throughput.toolbox_unavailable(sandbox_dir):
        log(f"The sync runs through the toolbox, which cannot run here: {why}")
        return 2
    try:
        if not box.is_up():
            log(f"Starting the sandbox in {sandbox_dir} (about 100 s)...")
            box.up()
        env = {k: v for k, v in box.environment(tunnel=True).items() if k != "INVOKE_DEVOPS_TOOLBOX"}
        state = box.load_state()
        network = box.network()
        neon, rds = tool_env(env, state, "neon"), tool_env(env, state, "rds")
        s3 = boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], region_name=env["AWS_DEFAULT_REGION"],
                          aws_access_key_id=env["AWS_ACCESS_KEY_ID"], aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"])
        bucket = Settings.load({}).bucket_name
        log_path = sandbox_dir / "bench-latency.log"
        rows, ratios = [], []
        with tempfile.TemporaryDirectory(prefix="bench-bash-") as workdir:
            bash_env = bash_setup(args.bash_plan, env, state, workdir)
            for dataset in [d for d in args.datasets.split(",") if d]:  # "": validate only
                load(env, dataset)
                for rtt in rtts:
                    network.set_rtt(0)
                    throughput.run_sync(env, log_path, toolbox=True)  # untimed: RDS holds the data, recorded
                    network.set_rtt(rtt)
                    results: dict[str, list[dict]] = {m: [] for m in METHODS}
                    for round_ in range(1, args.runs + 1):
                        shift = (round_ - 1) % len(METHODS)
                        for method in METHODS[shift:] + METHODS[:shift]:
                            throughput.empty_bucket(s3, bucket)
                            run = {"toolbox": lambda: throughput.run_sync(env, log_path, toolbox=True),
                                   "pipe": lambda: throughput.run_pipe(neon, rds),
                                   "bash": lambda: run_bash_script(bash_env, log_path)}[method]
                            results[method].append(timed(network, run))
                            if method != "toolbox":  # RDS restored outside the sync: its record no longer holds
                                network.set_rtt(0)
                                throughput.run_sync(env, log_path, toolbox=True)
                                network.set_rtt(rtt)
                            log(f"{dataset} {rtt:g} ms round {round_}: {method} {results[method][-1]['seconds']:.1f}s")
                    med = {m: statistics.median(r["seconds"] for r in results[m]) for m in METHODS}
                    for method in METHODS:
                        rows.append([dataset, f"{rtt:g}", LABELS[method], f"{med[method]:.1f}",
                                     " ".join(f"{r['seconds']:.1f}" for r in results[method]),
                                     counts_text(results[method], "round_trips"),
                                     counts_text(results[method], "connections")])
                    ratios.append([dataset, f"{rtt:g}", f"{med['toolbox'] / med['pipe']:.2f}x",
                                   f"{med['toolbox'] / med['bash']:.2f}x"])
        validations = []
        for rtt in rtts:
            network.set_rtt(rtt)
            validate(env, log_path)  # warm-up
            runs = [timed(network, lambda: validate(env, log_path)) for _ in range(args.runs)]
            validations.append([f"{rtt:g}", f"{statistics.median(r['seconds'] for r in runs):.2f}",
                                " ".join(f"{r['seconds']:.2f}" for r in runs), counts_text(runs, "round_trips"),
                                counts_text(runs, "connections")])
        network.set_rtt(0)
        print(f"\n{args.runs} round(s) per RTT, each method in turn; round trips and connections per side "
              f"(Neon / RDS / AWS), as the network counted them on the first run.\n")
        print(tabulate(rows, headers=["dataset", "RTT ms", "method", "median s", "runs", "round trips N/R/A",
                                      "connections N/R/A"]))
        print()
        print(tabulate(ratios, headers=["dataset", "RTT ms", "sync / pipe (target <= 1.3x at 60)",
                                        "sync / bash (target <= 0.5x)"]))
        print()
        print(tabulate(validations, headers=["RTT ms", "inv validate median s (target < 2 at 60)", "runs",
                                             "round trips N/R/A", "connections N/R/A"]))
        return 0
    finally:
        if not args.keep:
            log("Taking the sandbox down")
            box.down(quiet=True)


if __name__ == "__main__":
    sys.exit(main())
