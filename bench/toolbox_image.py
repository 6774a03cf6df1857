"""The toolbox image: its size and what each layer adds, the container's start-up cost, cold and warm runs.

    python bench/toolbox_image.py [--runs 10] [--cold]

- size: the runtime image against its base, and each layer of the Dockerfile's toolbox stage;
- start-up: `./toolbox/inv --list` (a container) against the host-native `inv --list`, medians of --runs;
- cold/warm: with --cold, the runtime image built from nothing (`docker build --no-cache`, the first run
  of a new machine), then the first `./toolbox/inv --list` after it and a warm one.

Needs a Docker engine, the base images (toolbox/base-images) and the host's .venv (scripts/bootstrap).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tabulate import tabulate  # noqa: E402

from devops import toolbox  # noqa: E402

HOST_INV = REPO / ".venv" / "bin" / "inv"


def docker(*args: str) -> str:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=True).stdout


def timed(command: list[str], env: dict[str, str] | None = None) -> float:
    started = time.perf_counter()
    subprocess.run(command, cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - started


def mb(size: int) -> str:
    return f"{size / 1e6:.0f} MB"


def sizes(tag: str, base: str) -> None:
    image, base_size = int(docker("image", "inspect", "--format", "{{.Size}}", tag)), \
        int(docker("image", "inspect", "--format", "{{.Size}}", base))
    print(f"\nRuntime image {tag}: {mb(image)}; base {base}: {mb(base_size)}; "
          f"added over the base: {mb(image - base_size)} (target: at most 450 MB)\n")
    rows = []
    base_layers = len(docker("history", "-q", base).split())
    lines = docker("history", "--no-trunc", "--format", "{{.Size}}\t{{.CreatedBy}}", "--human=false", tag).splitlines()
    for line in reversed(lines[: len(lines) - base_layers]):
        size, created_by = line.split("\t", 1)
        if int(size) == 0:
            continue
        step = created_by.replace("/bin/sh -c #(nop) ", "").replace("/bin/sh -c ", "RUN ")
        step = step.split("RUN ", 1)[-1] if "|" in step.split(" ", 1)[0] else step
        rows.append([mb(int(size)), " ".join(step.split())[:90]])
    print(tabulate(rows, headers=["adds", "layer (Dockerfile step)"], tablefmt="github"))


def startup(runs: int) -> None:
    host_env = {**os.environ, "INVOKE_DEVOPS_TOOLBOX": "host"}
    shim = [str(REPO / "toolbox" / "inv"), "--list"]
    timed(shim)  # the image exists and its layers are in the page cache
    container = [timed(shim) for _ in range(runs)]
    native = [timed([str(HOST_INV), "--list"], host_env) for _ in range(runs)]
    version = [timed([str(REPO / "toolbox" / "inv"), "--version"]) for _ in range(runs)]
    rows = [["./toolbox/inv --list (container)", *stats(container)],
            ["./toolbox/inv --version (container)", *stats(version)],
            ["inv --list (host-native)", *stats(native)],
            ["container start-up cost (median difference)",
             f"{statistics.median(container) - statistics.median(native):.2f} s", "", ""]]
    print(f"\nStart-up, {runs} runs each:\n")
    print(tabulate(rows, headers=["command", "median", "min", "max"], tablefmt="github"))


def stats(values: list[float]) -> list[str]:
    return [f"{statistics.median(values):.2f} s", f"{min(values):.2f} s", f"{max(values):.2f} s"]


def cold() -> None:
    """The runtime image built with none of its layers cached, as toolbox/inv builds it on a new machine."""
    tag = toolbox.image("toolbox")
    subprocess.run(["docker", "rmi", "-f", tag], capture_output=True)
    subprocess.run(["docker", "image", "prune", "-f"], capture_output=True)  # its intermediate layers
    started = time.perf_counter()
    subprocess.run(["sh", str(REPO / "toolbox" / "inv"), "toolbox.build"], stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, check=True)
    build = time.perf_counter() - started
    first = timed([str(REPO / "toolbox" / "inv"), "--list"])
    warm = timed([str(REPO / "toolbox" / "inv"), "--list"])
    print("\nCold and warm:\n")
    print(tabulate([["runtime image built from nothing (docker build --no-cache)", f"{build:.0f} s"],
                    ["first ./toolbox/inv --list after it", f"{first:.2f} s"],
                    ["warm ./toolbox/inv --list", f"{warm:.2f} s"]],
                   headers=["run", "time"], tablefmt="github"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--cold", action="store_true", help="also rebuild the runtime image with no cache")
    args = parser.parse_args()
    tag = toolbox.image("toolbox")
    base = next(line.split("=", 1)[1] for line in (REPO / toolbox.DOCKERFILE).read_text().splitlines()
                if line.startswith("ARG BASE_IMAGE="))
    if args.cold:
        cold()
    sizes(tag, base)
    startup(args.runs)


if __name__ == "__main__":
    main()
