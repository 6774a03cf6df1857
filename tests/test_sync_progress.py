"""The sync's progress on a dataset that takes several progress intervals to move (24 MB of random bytes,
its upload slowed by the fault proxy): [INFO] lines without a terminal, one updating line on a
pseudo-terminal, and --json's stdout still one object."""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess

from devops.config import REPO_ROOT
from tests.helpers import INV, assert_no_secret, inv

PROGRESS = re.compile(r"Dump \+ restore: \d+(\.\d)? [KMG]?B of ~\d+(\.\d)? [KMG]?B \(\d+%\), \d+(\.\d)? [KMG]?B/s, "
                      r"tables \d+/4(, ETA \S+)?")
CLOSING = re.compile(r"^\[INFO\] Dump \+ restore: \d+\.\d MB in \d+\.\d s \(\d+(\.\d)? [KMG]?B/s\), "
                     r"all 4 tables sent$", re.MULTILINE)


def slow_env(sandbox_env: dict, proxy) -> dict:
    proxy.key_prefix, proxy.part_delay = "neon-dumps/", 1.0  # 3 parts of 8 MB: at least 3 s of dump
    return {**sandbox_env, "AWS_ENDPOINT_URL": proxy.url, "INVOKE_DEVOPS_PROGRESS_INTERVAL": "0.5"}


def test_without_a_terminal_progress_is_an_info_line_every_interval_and_json_stays_one_object(
        sandbox, sandbox_env, big, proxy):
    result = inv(slow_env(sandbox_env, proxy), "sync.neon-to-rds", "--yes", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["status"] == "ok"  # the whole of stdout is the one report
    lines = [line for line in result.stderr.splitlines() if PROGRESS.fullmatch(line.removeprefix("[INFO] "))]
    assert len(lines) >= 3 and all(line.startswith("[INFO] ") for line in lines), result.stderr
    assert "\r" not in result.stderr
    assert CLOSING.search(result.stderr), result.stderr
    assert_no_secret(result, sandbox_env)


def test_on_a_terminal_progress_is_one_line_updated_in_place(sandbox, sandbox_env, big, proxy):
    main, child = pty.openpty()
    process = subprocess.Popen([*INV, "sync.neon-to-rds", "--yes"], env={**slow_env(sandbox_env, proxy), "NO_COLOR": "1"},
                               cwd=REPO_ROOT, stdin=subprocess.DEVNULL, stdout=child, stderr=child)
    os.close(child)
    output = b""
    while True:
        try:
            data = os.read(main, 65536)
        except OSError:  # EIO: the task and its children closed the terminal
            break
        if not data:
            break
        output += data
    os.close(main)
    assert process.wait(timeout=300) == 0, output.decode(errors="replace")
    text = output.decode(errors="replace")
    redraws = re.findall(r"\r\x1b\[K(" + PROGRESS.pattern + ")", text)
    assert len(redraws) >= 3, text
    assert not any(PROGRESS.fullmatch(line.removeprefix("[INFO] ")) for line in text.split("\r\n")), \
        "a progress line was printed as a line of its own on a terminal"
    assert CLOSING.search(text.replace("\r\n", "\n").replace("\r\x1b[K", "\n")), text
    assert "SYNC COMPLETE" in text


def test_the_guards_read_and_the_verification_show_progress(sandbox_env, big):
    """Both read every table of a database (48 MB here, on the second sync also in RDS): the verification's
    progress is tables done out of the total, the guard's read (one statement) its time."""
    env = {**sandbox_env, "INVOKE_DEVOPS_PROGRESS_INTERVAL": "0.05"}
    assert inv(env, "sync.neon-to-rds", "--yes").returncode == 0
    result = inv(env, "sync.neon-to-rds", "--yes")
    assert result.returncode == 0, result.stderr
    counts = re.findall(r"^\[INFO\] Verifying RDS: (\d+)/(\d+) tables, \d+s$", result.stdout, re.MULTILINE)
    assert counts, f"no progress line for the verification:\n{result.stdout}"
    assert all(0 <= int(done) <= int(total) and int(total) >= 4 for done, total in counts)
    # The guard's read is one statement (one round trip): its progress is the time it takes.
    assert re.search(r"^\[INFO\] Reading RDS: \d+s$", result.stdout, re.MULTILINE), result.stdout


def test_a_restore_shows_its_progress_too(sandbox_env, big):
    """sync.restore of a 48 MB dump: bytes against the dump's recorded size, then the closing line."""
    env = {**sandbox_env, "INVOKE_DEVOPS_PROGRESS_INTERVAL": "0.05"}
    report = json.loads(inv(env, "sync.neon-to-rds", "--yes", "--json").stdout)
    key = report["dump"]["url"].split("/", 3)[3]
    result = inv(env, "sync.restore", "--key", key, "--to", "rds", "--yes")
    assert result.returncode == 0, result.stderr
    assert re.search(r"^\[INFO\] Restore: \d+(\.\d)? [KMG]?B of ~\d+\.\d MB \(\d+%\)", result.stdout, re.MULTILINE), \
        result.stdout
    assert re.search(r"^\[INFO\] Restore: \d+\.\d MB in \d+\.\d s .*, all 4 tables sent$", result.stdout,
                     re.MULTILINE), result.stdout
