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
    assert unknown.returncode == 1
    assert unknown.stderr == "[ERROR] no task named no-such-task (`inv --list` lists them)\n"
    helped = inv("--help", "validate")
    assert helped.returncode == 0 and helped.stdout.startswith("Usage: inv")  # named inv, not devops/inv.py


def test_a_reader_that_goes_early_ends_it_quietly_with_141():
    reader = subprocess.Popen([sys.executable, "-m", "devops.inv", "--list"], cwd=REPO_ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE)
    reader.stdout.close()  # gone before anything was read
    stderr = reader.stderr.read().decode()
    assert reader.wait(timeout=60) == 141 and "Traceback" not in stderr, stderr


def test_a_mistyped_command_line_is_one_line_naming_what_to_type_instead():
    flag = inv("sync.neon-to-rds", "--dryrun")
    assert flag.returncode == 1 and flag.stdout == ""
    assert flag.stderr == ("[ERROR] sync.neon-to-rds has no flag --dryrun: did you mean --dry-run? "
                           "(`inv --help sync.neon-to-rds` lists its flags)\n")
    task = inv("sync.nein-to-rds")
    assert task.stderr == ("[ERROR] no task named sync.nein-to-rds: did you mean sync.neon-to-rds? "
                           "(`inv --list` lists them)\n")
    missing = inv("sync.restore", "--key", "rds-dumps/2026-01-29T15-45-00.dump")
    assert missing.returncode == 1
    assert missing.stderr == "[ERROR] sync.restore needs --to (`inv --help sync.restore` says what each takes)\n"


def test_hints_name_the_command_as_the_user_ran_it(monkeypatch):
    from devops import hints

    monkeypatch.delenv(hints.INV_ENV, raising=False)
    assert hints.inv("sync.list") == "inv sync.list"
    monkeypatch.setenv(hints.INV_ENV, "./toolbox/inv")
    assert hints.inv("sync.list --wide") == "./toolbox/inv sync.list --wide" and hints.inv() == "./toolbox/inv"


def test_help_wraps_on_spaces_so_an_example_key_stays_whole():
    helped = inv("--help", "sync.restore")  # not a terminal: 80 columns
    assert helped.returncode == 0 and "rds-dumps/2026-01-29T15-45-00.dump" in helped.stdout
    assert max(len(line) for line in helped.stdout.splitlines()) <= 80
