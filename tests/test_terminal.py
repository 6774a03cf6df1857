"""devops/terminal.py: an interrupt reaches the task wherever it lands, a finalizer included."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from devops.config import REPO_ROOT

# A finalizer that the signal interrupts: Python runs the handler inside __del__, where its exception is
# "ignored" (printed, and the program goes on) unless devops.terminal sends it again.
SWALLOWED = """
import os, signal, time
from devops import terminal

class Collected:
    def __del__(self):
        os.kill(os.getpid(), signal.SIGINT)  # the handler runs here, inside the finalizer

terminal.install()
"""


def run(script: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(script)], cwd=REPO_ROOT, capture_output=True,
                          text=True, stdin=subprocess.DEVNULL, timeout=60)


def test_an_interrupt_that_a_finalizer_swallowed_reaches_the_task():
    result = run(SWALLOWED + textwrap.dedent("""
        try:
            Collected()
            time.sleep(10)
            print("went on as if no one had pressed Ctrl-C")
        except KeyboardInterrupt:
            print("interrupted")
    """))
    assert result.stdout == "interrupted\n", result.stdout + result.stderr
    assert "Exception ignored" not in result.stderr, result.stderr


def test_a_failure_that_follows_the_interrupt_is_reported_as_the_interrupt():
    # As in the sandbox's ECS task: Ctrl-C reaches the process group, pg_restore dies of it, and the task's own
    # KeyboardInterrupt was swallowed by a finalizer, so the child's failure comes first.
    result = run(SWALLOWED + textwrap.dedent("""
        from invoke import Context
        from invoke.exceptions import Exit
        from devops.cli import handled
        from devops.errors import DevopsError

        @handled
        def task(context):
            Collected()
            raise DevopsError("the dump is not a valid archive: pg_restore -l was stopped by SIGINT")

        try:
            task(None)
        except Exit as exit:
            time.sleep(0.5)  # the signal sent again lands after the report: nothing more is said
            print("exit", exit.code)
    """))
    assert result.returncode == 0, result.stderr
    assert result.stdout == "exit 130\n", result.stdout + result.stderr
    assert result.stderr.startswith("[ERROR] interrupted") and "pg_restore" not in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and "Exception ignored" not in result.stderr, result.stderr
