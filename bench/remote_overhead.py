"""The overhead of `--on ecs` over a local run, on the sandbox: `inv sync.neon-to-rds --yes` with and without it.

Starts a sandbox (or --reuse one), puts the Neon stand-in's URL in the Neon URL's secret, then:

    first   one `--on ecs` run with no task image anywhere (the local image and the ECR entry removed first):
            the image built and "pushed"
    rounds  --runs rounds, each a local run and an `--on ecs` run (image already in ECR)

Each run's stdout lines are timed as they arrive: the image step (until "Image ... pushed"/"already in ECR"),
the task's start to its first log line (from "Running ... as ECS task" to the next line), and the total.

    # from the repository's root, in the dev image (a Docker engine reachable)
    python bench/remote_overhead.py [--runs 3] [--sandbox-dir /tmp/bench-remote] [--reuse] [--keep]

In the sandbox the "push" is a local tag and ECR's put_image (moto has no registry): the push to a real ECR
adds the upload of the image's layers (about 0.5 GB on the first push; only changed layers later).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import docker  # noqa: E402
from tabulate import tabulate  # noqa: E402

from devops import remote  # noqa: E402
from devops.config import Settings  # noqa: E402
from devops.console import Console  # noqa: E402
from devops.sandbox import Sandbox  # noqa: E402


def timed_run(env: dict, *args: str) -> dict:
    started = time.monotonic()
    process = subprocess.Popen([sys.executable, "-m", "invoke", "sync.neon-to-rds", "--yes", *args], env=env,
                               cwd=ROOT, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL)
    marks: dict = {}
    waiting_first = False
    for line in process.stdout:
        now = time.monotonic() - started
        if line.startswith("[INFO] Image "):
            marks["image"] = now
        elif " as ECS task " in line:
            marks["running"], waiting_first = now, True
        elif waiting_first:
            marks["first_line"], waiting_first = now, False
    process.wait()
    if process.returncode:
        raise SystemExit(f"the run failed (exit {process.returncode}): {args}")
    marks["total"] = time.monotonic() - started
    return marks


def forget_image(box: Sandbox, ops: dict) -> None:
    engine = docker.from_env()
    tag = remote.image_tag()
    for name in (f"devops-toolbox:{tag}", f"{ops['repository_url']}:{tag}"):
        try:
            engine.images.remove(name, noprune=False)
        except docker.errors.ImageNotFound:
            pass
    box.client("ecr").batch_delete_image(repositoryName=ops["repository_name"], imageIds=[{"imageTag": tag}])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--sandbox-dir", default=str(Path(tempfile.gettempdir()) / "bench-remote"))
    parser.add_argument("--reuse", action="store_true")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    settings = Settings.load({"sandbox_dir": args.sandbox_dir}, environ={})
    box = Sandbox(settings, Console())
    if not (args.reuse and box.is_up()):
        Path(args.sandbox_dir).parent.mkdir(parents=True, exist_ok=True)
        box.up()
    try:
        env = {**box.environment(tunnel=True), "INVOKE_DEVOPS_SANDBOX_DIR": args.sandbox_dir, "INVOKE_DEVOPS_TOOLBOX": "host"}
        ops = box.terraform().outputs()["operations"]
        box.client("secretsmanager").put_secret_value(SecretId=ops["neon_url_secret_arn"],
                                                      SecretString=env["NEON_DATABASE_URL"])
        forget_image(box, ops)
        first = timed_run(env, "--on", "ecs")
        local, ecs = [], []
        for _ in range(args.runs):
            local.append(timed_run(env))
            ecs.append(timed_run(env, "--on", "ecs"))
        med = lambda runs, key: statistics.median(r[key] for r in runs)  # noqa: E731
        rows = [
            ["local run, total", "", f"{med(local, 'total'):.1f} s"],
            ["--on ecs, image step (outputs, build, push)", f"{first['image']:.1f} s", f"{med(ecs, 'image'):.1f} s"],
            ["--on ecs, task start to first log line", f"{first['first_line'] - first['running']:.1f} s",
             f"{statistics.median(r['first_line'] - r['running'] for r in ecs):.1f} s"],
            ["--on ecs, total", f"{first['total']:.1f} s", f"{med(ecs, 'total'):.1f} s"],
            ["--on ecs overhead over local", f"{first['total'] - med(local, 'total'):.1f} s",
             f"{med(ecs, 'total') - med(local, 'total'):.1f} s"],
        ]
        print(tabulate(rows, headers=["measure", "first run (image pushed)", f"later runs (median of {args.runs})"]))
    finally:
        if not args.keep:
            box.down(quiet=True)


if __name__ == "__main__":
    main()
