"""devops/inv.py: the toolbox's `inv`, which ends without Python's teardown, keeps Invoke's exit codes and
delivers all its output."""

from __future__ import annotations

import subprocess
import sys

from devops.config import REPO_ROOT
from devops.inv import exit_code


def inv(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "devops.inv", *args], cwd=REPO_ROOT, capture_output=True,
                          text=True, stdin=subprocess.DEVNULL, timeout=60)


def test_exit_codes_are_pythons():
    assert [exit_code(None), exit_code(0), exit_code(3)] == [0, 0, 3]
    assert exit_code("a message") == 1


def test_output_and_codes_arrive_as_invokes():
    listed = inv("--list")
    assert listed.returncode == 0 and "sync.neon-to-rds" in listed.stdout and listed.stdout.endswith("\n")
    assert listed.stdout.splitlines()[0] == "Available tasks:"
    unknown = inv("no-such-task")
    assert unknown.returncode == 1 and "No idea what 'no-such-task' is!" in unknown.stderr
    helped = inv("--help", "validate")
    assert helped.returncode == 0 and helped.stdout.startswith("Usage: inv")  # named inv, not devops/inv.py


def test_a_reader_that_goes_early_ends_it_quietly_with_141():
    reader = subprocess.Popen([sys.executable, "-m", "devops.inv", "--list"], cwd=REPO_ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE)
    reader.stdout.close()  # gone before anything was read
    stderr = reader.stderr.read().decode()
    assert reader.wait(timeout=60) == 141 and "Traceback" not in stderr, stderr
