"""The evidence of every run: the run log (mode 0600, masked, every tool's output), the catch-all handler
(expected failure 1, Ctrl-C 130, a bug its own code with the traceback in the log), and Terraform's progress.

The tasks run as real `inv` subprocesses; an unexpected exception is injected through a sitecustomize
module on PYTHONPATH that replaces one engine function, so the handler under test is the real one.
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
import time
from pathlib import Path

from devops import runlog
from devops.cli import BUG_EXIT
from devops.config import REPO_ROOT
from devops.console import Console
from devops.masking import register_secret
from devops.terraform import ApplyProgress
from tests.helpers import INV, assert_private, log_of, without_log

def error_lines(result: subprocess.CompletedProcess) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("[ERROR]")]


# --------------------------------------------------------------------------------------------------
# The run log itself


def test_a_run_log_is_private_masked_and_only_the_newest_are_kept(tmp_path):
    register_secret("s3cr3t-value-123")
    paths = []
    for number in range(4):
        with runlog.session(tmp_path / "logs", f"task{number}", keep=3) as log:
            with runlog.session(tmp_path / "logs", "nested", keep=3) as inner:
                assert inner is log  # one log per run: a nested task (activate's steps) writes into it
            Console().info("connecting to postgresql://app:s3cr3t-value-123@db.example/app")
            runlog.section("pg_restore (exit 1) stderr", "error: password=hunter22 was refused")
            paths.append(log.path)
            time.sleep(0.01)
    assert runlog.current() is None
    assert sorted(p.name for p in (tmp_path / "logs").iterdir()) == sorted(p.name for p in paths[1:])
    text = paths[-1].read_text()
    assert "[INFO] connecting to postgresql://****:****@db.example/app" in text
    assert "--- pg_restore (exit 1) stderr ---\nerror: password=**** was refused" in text
    assert "s3cr3t-value-123" not in text and "hunter22" not in text
    assert_private(paths[-1])
    assert stat.S_IMODE((tmp_path / "logs").stat().st_mode) == 0o700


def test_apply_progress_names_each_resource_and_the_slowest():
    lines: list[str] = []

    class Capture:
        def write(self, text):
            lines.append(text.rstrip("\n"))

        def flush(self):
            pass

    progress = ApplyProgress(Console(out=Capture()))

    def hook(kind, address, action, seconds=None):
        progress({"type": kind, "hook": {"resource": {"addr": address}, "action": action,
                                         **({"elapsed_seconds": seconds} if seconds is not None else {})}})

    hook("apply_start", "aws_lb.main[0]", "create")
    for seconds in (10, 20, 30, 40):
        hook("apply_progress", "aws_lb.main[0]", "create", seconds)
    hook("apply_complete", "aws_ecs_cluster.main[0]", "create", 2)
    hook("apply_complete", "aws_lb.main[0]", "create", 62)
    hook("apply_complete", "aws_cloudfront_distribution.main[0]", "delete", 45)
    hook("apply_errored", "aws_ecs_service.this[\"backend\"]", "create", 12)
    assert lines == ["[INFO] aws_lb.main[0]: still creating after 30 s",
                     "[INFO] aws_ecs_cluster.main[0]: created (2 s)",
                     "[INFO] aws_lb.main[0]: created (62 s)",
                     "[INFO] aws_cloudfront_distribution.main[0]: destroyed (45 s)",
                     "[FAIL] aws_ecs_service.this[\"backend\"]: creating failed after 12 s"]
    assert re.fullmatch(r"3 resources in \d+\.\d s; slowest: aws_lb\.main\[0\] \(62 s\), "
                        r"aws_cloudfront_distribution\.main\[0\] \(45 s\), aws_ecs_cluster\.main\[0\] \(2 s\)",
                        progress.summary())


# --------------------------------------------------------------------------------------------------
# The catch-all handler, through a real `inv`

INJECTION = """
import os
from devops.sync import listing

def injected(*args, **kwargs):
    kind = os.environ["DEVOPS_TEST_INJECT"]
    if kind == "interrupt":
        raise KeyboardInterrupt
    raise ZeroDivisionError("injected bug near postgresql://app:inj3cted-pass@db.example/app")

listing.list_dumps = injected
"""


def run_injected(tmp_path: Path, kind: str, **extra: str) -> subprocess.CompletedProcess:
    (tmp_path / "inject").mkdir(exist_ok=True)
    (tmp_path / "inject" / "sitecustomize.py").write_text(INJECTION)
    env = {**os.environ, "PYTHONPATH": f"{tmp_path / 'inject'}{os.pathsep}{REPO_ROOT}", "DEVOPS_TEST_INJECT": kind,
           "INVOKE_DEVOPS_LOG_DIR": str(tmp_path / "logs"), **extra}
    env.pop("INVOKE_DEVOPS_DEBUG", None)
    env.update(extra)
    return subprocess.run([*INV, "sync.list"], env=env, capture_output=True, text=True, cwd=REPO_ROOT,
                          stdin=subprocess.DEVNULL, timeout=120)


def test_an_unexpected_exception_is_one_line_a_code_of_its_own_and_a_masked_traceback_in_the_log(tmp_path):
    result = run_injected(tmp_path, "bug")
    assert result.returncode == BUG_EXIT == 70, result.stderr
    assert "Traceback" not in result.stderr and "inj3cted-pass" not in result.stdout + result.stderr
    errors = error_lines(result)
    assert len(errors) == 1, result.stderr
    assert errors[0].startswith("[ERROR] unexpected error (a bug, please report it): ZeroDivisionError: injected bug "
                                "near postgresql://****:****@db.example/app; the traceback is in ")
    log = log_of(errors[0])
    assert log.parent == tmp_path / "logs" and re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d-\d\d-\d\d-sync\.list\.log", log.name)
    assert_private(log)
    text = log.read_text()
    assert "--- traceback ---\nTraceback (most recent call last):" in text
    assert "ZeroDivisionError: injected bug near postgresql://****:****@db.example/app" in text
    assert "inj3cted-pass" not in text


def test_debug_prints_the_masked_traceback_too(tmp_path):
    result = run_injected(tmp_path, "bug", INVOKE_DEVOPS_DEBUG="1")
    assert result.returncode == BUG_EXIT
    assert "Traceback (most recent call last):" in result.stderr and "in injected" in result.stderr
    assert "inj3cted-pass" not in result.stderr


def test_ctrl_c_exits_130_with_one_line(tmp_path):
    result = run_injected(tmp_path, "interrupt")
    assert result.returncode == 130, result.stderr
    assert [without_log(line) for line in error_lines(result)] == ["[ERROR] interrupted"]
    assert "Traceback" not in result.stderr
    assert_private(log_of(error_lines(result)[0]))


def test_an_expected_failure_exits_1_with_its_line_and_its_log(tmp_path):
    env = {**os.environ, "INVOKE_DEVOPS_LOG_DIR": str(tmp_path / "logs"),
           "INVOKE_DEVOPS_SANDBOX_DIR": str(tmp_path / "nothing")}
    result = subprocess.run([*INV, "sandbox.env"], env=env, capture_output=True, text=True, cwd=REPO_ROOT,
                            stdin=subprocess.DEVNULL, timeout=120)
    assert result.returncode == 1
    errors = error_lines(result)
    assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr
    log = log_of(errors[0])
    assert log.parent == tmp_path / "logs" and log.name.endswith("-sandbox.env.log")  # named as it was called
    assert without_log(errors[0]) in log.read_text()
    assert_private(log)
