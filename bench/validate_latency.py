"""Validation latency: `inv validate` against the seeds' dev-validation.sh, same sandbox, both modes.

The seeds' script is taken from the seeds' plan (Task 4) at run time and run as written, from a temporary
checkout-like folder whose terraform/ links to this repository's, with the AWS CLI from its own venv
(--awscli-bin, default /tmp/awscli-venv/bin; create it with `python3 -m venv /tmp/awscli-venv &&
/tmp/awscli-venv/bin/pip install awscli`) on PATH for the script only. Each method gets one untimed warm-up
per mode, then --runs timed runs, alternating; medians and the ratio are printed.
Targets: inv validate < 1.5 s in pilot light, and >= 5x faster than the seeds' script.

    export TF_CLI_CONFIG_FILE=/tmp/tfcli/cli.tfrc   # only where Terraform is offline
    .venv/bin/python bench/validate_latency.py --seeds-plan PATH/implementation-plan.md [--runs 5] [--sandbox-dir /tmp/bench-validate] [--reuse] [--keep]
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tabulate import tabulate  # noqa: E402

from devops.config import Settings  # noqa: E402
from devops.console import Console  # noqa: E402
from devops.sandbox import Sandbox  # noqa: E402

PILOT_TARGET = 1.5
RATIO_TARGET = 5.0


def seeds_script(plan: Path) -> str:
    """The bash block of the plan's "Task 4: Create dev-validation.sh Script" section."""
    text = plan.read_text()
    section = text[text.index("## Task 4: Create dev-validation.sh"):]
    section = section[:section.index("\n## Task 5")]
    return re.search(r"```bash\n(#!/bin/bash.*?)```", section, re.S).group(1)


def environment(sandbox: Sandbox, settings: Settings) -> dict[str, str]:
    env = sandbox.environment()
    env["INVOKE_DEVOPS_SANDBOX_DIR"] = str(settings.sandbox_dir)
    env["NO_COLOR"] = "1"
    env["INVOKE_DEVOPS_TOOLBOX"] = "host"  # the host-native task, against the host's sandbox
    return env


def timed(command: list[str], env: dict[str, str], cwd: Path) -> tuple[float, int]:
    start = time.perf_counter()
    result = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    return time.perf_counter() - start, result.returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds-plan", type=Path, required=True,
                        help="the seeds' implementation-plan.md, whose Task 4 holds dev-validation.sh")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--sandbox-dir", default="/tmp/bench-validate/sandbox")
    parser.add_argument("--awscli-bin", default="/tmp/awscli-venv/bin")
    parser.add_argument("--reuse", action="store_true", help="use a sandbox already up in --sandbox-dir")
    parser.add_argument("--keep", action="store_true", help="leave the sandbox up")
    args = parser.parse_args()
    if not Path(args.awscli_bin, "aws").exists():
        sys.exit(f"no aws in {args.awscli_bin}: python3 -m venv /tmp/awscli-venv && "
                 "/tmp/awscli-venv/bin/pip install awscli")

    settings = Settings.load({"sandbox_dir": args.sandbox_dir}, environ={})
    Path(args.sandbox_dir).parent.mkdir(parents=True, exist_ok=True)
    Path(args.sandbox_dir).parent.chmod(0o755)
    sandbox = Sandbox(settings, Console())
    if not (args.reuse and sandbox.is_up()):
        sandbox.up()
    env = environment(sandbox, settings)
    # AWS CLI v1 reads its region from AWS_DEFAULT_REGION (or ~/.aws/config), not AWS_REGION.
    seeds_env = {**env, "PATH": f"{args.awscli_bin}:{env['PATH']}", "PROJECT_NAME": settings.project_name,
                 "AWS_DEFAULT_REGION": settings.region}

    with tempfile.TemporaryDirectory(prefix="seeds-validation-") as tmp:
        checkout = Path(tmp)
        (checkout / "scripts").mkdir()
        script = checkout / "scripts" / "dev-validation.sh"
        script.write_text(seeds_script(args.seeds_plan))
        script.chmod(0o755)
        (checkout / "terraform").symlink_to(ROOT / "terraform")
        # AWS CLI v1 ignores AWS_ENDPOINT_URL for some services (rds goes to https://rds.amazonaws.com/),
        # so the script's `aws` is a wrapper adding --endpoint-url; the script itself runs unchanged.
        (checkout / "bin").mkdir()
        wrapper = checkout / "bin" / "aws"
        wrapper.write_text(f'#!/bin/sh\nexec {Path(args.awscli_bin, "aws")} "$@" --endpoint-url "$AWS_ENDPOINT_URL"\n')
        wrapper.chmod(0o755)
        seeds_env["PATH"] = f"{checkout / 'bin'}:{seeds_env['PATH']}"
        methods = {"inv validate": ([sys.executable, "-m", "invoke", "validate"], env, ROOT),
                   "seeds dev-validation.sh": (["bash", str(script)], seeds_env, checkout)}
        rows, medians = [], {}
        try:
            for mode, activated in (("pilot light", False), ("active", True)):
                if activated:
                    print("Applying dev_activated=true (about a minute)...", flush=True)
                    sandbox.terraform().apply(variables={"dev_activated": True})
                for name, (command, menv, cwd) in methods.items():
                    timed(command, menv, cwd)  # warm-up: file caches, Terraform's plugin cache
                times: dict[str, list[float]] = {name: [] for name in methods}
                codes: dict[str, set[int]] = {name: set() for name in methods}
                for _ in range(args.runs):
                    for name, (command, menv, cwd) in methods.items():
                        seconds, code = timed(command, menv, cwd)
                        times[name].append(seconds)
                        codes[name].add(code)
                for name in methods:
                    medians[(mode, name)] = statistics.median(times[name])
                    rows.append([mode, name, f"{medians[(mode, name)]:.2f}", f"{min(times[name]):.2f}",
                                 f"{max(times[name]):.2f}", ",".join(map(str, sorted(codes[name])))])
                ratio = medians[(mode, "seeds dev-validation.sh")] / medians[(mode, "inv validate")]
                rows.append([mode, "ratio seeds / inv", f"{ratio:.1f}x", "", "", ""])
        finally:
            # Back to pilot light, whatever happened, so a kept (or reused) sandbox is as it was.
            sandbox.terraform().apply(variables={"dev_activated": False})
            if not args.keep:
                sandbox.down(quiet=True)

    print()
    print(f"{args.runs} runs per method and mode (median, min, max seconds; exit codes seen)")
    print(tabulate(rows, headers=["mode", "method", "median", "min", "max", "exit"], disable_numparse=True))
    pilot = medians[("pilot light", "inv validate")]
    ratios = [medians[(m, "seeds dev-validation.sh")] / medians[(m, "inv validate")] for m in ("pilot light", "active")]
    print()
    print(f"inv validate in pilot light: {pilot:.2f}s (target < {PILOT_TARGET}s): "
          f"{'met' if pilot < PILOT_TARGET else 'NOT met'}")
    print(f"seeds / inv: {min(ratios):.1f}x at worst (target >= {RATIO_TARGET:.0f}x): "
          f"{'met' if min(ratios) >= RATIO_TARGET else 'NOT met'}")


if __name__ == "__main__":
    main()
