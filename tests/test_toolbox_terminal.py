"""The terminal contract of both ways into the toolbox (docs/toolbox.md, "The toolbox and your terminal"):
`./toolbox/inv TASK` and a plain `inv TASK` (which execs the shim), against the real engine, with the tasks in
the checkout's warm container talking to the sandbox's servers. Then the newcomer's path: what the shim
prints (hints, errors, help, plans, listings), typed as a user types it, and its hints run as printed.

Signals go as a terminal and a CI runner send them: to the whole process group of a foreground job (the shim,
or `inv`, and `tee`), with SIGINT at its default. A clean clone (no CA certificate anywhere in it) runs the
shim, as almost every user's does.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import uuid

import pytest

from devops import toolbox
from devops.config import REPO_ROOT
from tests import dbtools
from tests.conftest import SCRATCH
from tests.helpers import assert_no_secret, without_log
from tests.test_sync_faults import assert_broken_mid_upload, assert_failed_cleanly
from tests.test_toolbox import _sandbox_container, _shim_result

SHIM = REPO_ROOT / "toolbox" / "inv"
WAYS = {"shim": ["sh", str(SHIM)], "inv": [sys.executable, "-m", "invoke"]}
# The line a plain `inv` prints before it execs the shim.
REENTRY = "[INFO] running in the toolbox image"


def _host(env: dict[str, str]) -> dict[str, str]:
    """``env`` as a host's: not inside the toolbox, and a plain `inv` goes into it (devops.toolbox default)."""
    return {k: v for k, v in env.items() if k not in (toolbox.MARKER, "INVOKE_DEVOPS_TOOLBOX", "DEVOPS_TOOLBOX_IMAGE")}


def _foreground(command: list[str], **options) -> subprocess.Popen:
    """As a terminal starts a foreground job: a process group of its own, SIGINT at its default."""
    return subprocess.Popen(command, cwd=REPO_ROOT, process_group=0,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL), **options)


def _stderr_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip() and not line.startswith(REENTRY)]


@pytest.fixture
def clone(engine):
    """A `git clone` of this repository: what a new user has (no toolbox/certs/*.crt, nothing copied in)."""
    SCRATCH.mkdir(exist_ok=True)
    path = SCRATCH / f"clone-{uuid.uuid4().hex[:8]}"
    subprocess.run(["git", "clone", "-q", str(REPO_ROOT), str(path)], check=True, capture_output=True)
    yield path
    subprocess.run(["sh", str(path / "toolbox" / "inv"), "toolbox.stop"], capture_output=True)
    subprocess.run(["rm", "-rf", str(path)])


def test_a_clean_clone_runs_the_shim(engine, clone, tmp_path):
    """The README's first command on a fresh clone: the shim hashes what the image is built from, with the CA
    certificates of DEVOPS_TOOLBOX_CA (CI's proxy) or none at all (most users), and runs the task."""
    assert not list((clone / "toolbox").glob("certs/*.crt"))
    shim = ["sh", str(clone / "toolbox" / "inv")]
    env = _host(dict(os.environ))
    no_ca = {k: v for k, v in env.items() if k != "DEVOPS_TOOLBOX_CA"}
    # Without a CA the image differs only by its certificates; it is not built here (this machine reaches the
    # package registries only through its inspecting proxy): the runtime image stands in under its tag.
    no_ca_tag = _shim_result(tmp_path, "toolbox.image", shim=clone / "toolbox" / "inv",
                             DEVOPS_TOOLBOX_CA="").stdout.strip()
    extra_tag = ""
    if no_ca_tag != toolbox.image("toolbox"):
        extra_tag = no_ca_tag
        subprocess.run([engine, "tag", toolbox.image("toolbox"), extra_tag], check=True)
    try:
        for environment in (env, no_ca):
            version = subprocess.run([*shim, "--version"], env=environment, stdin=subprocess.DEVNULL,
                                     capture_output=True, text=True, timeout=300)
            assert version.returncode == 0 and version.stdout.startswith("Invoke "), version.stderr
            listed = subprocess.run([*shim, "--list"], env=environment, stdin=subprocess.DEVNULL,
                                    capture_output=True, text=True, timeout=300)
            assert listed.returncode == 0 and "sync.neon-to-rds" in listed.stdout, listed.stderr
    finally:
        if extra_tag:
            subprocess.run([*shim, "toolbox.stop"], env=no_ca, capture_output=True)
            subprocess.run([engine, "rmi", extra_tag], capture_output=True)


@pytest.mark.parametrize("way", WAYS)
def test_stdin_reaches_the_task(engine, sandbox, sandbox_env, neon_secret, ops, way):
    """`printenv NEON_DATABASE_URL | inv secrets.set-neon-url`, both ways: the URL on stdin (then EOF) is the
    one stored."""
    neon_secret.put_secret_value(SecretId=ops["neon_url_secret_arn"], SecretString="postgresql://before@x/db")
    url = sandbox_env["NEON_DATABASE_URL"]
    result = subprocess.run([*WAYS[way], "secrets.set-neon-url"], env=_host(sandbox_env), cwd=REPO_ROOT,
                            input=url, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert neon_secret.get_secret_value(SecretId=ops["neon_url_secret_arn"])["SecretString"] == url
    assert_no_secret(result, sandbox_env)


@pytest.mark.parametrize("way", WAYS)
@pytest.mark.parametrize("reader, lines, codes", [("true", 0, {141}), ("head -1", 1, {0, 141})])
def test_a_reader_that_closes_early_ends_the_task_quietly(engine, sandbox, sandbox_env, way, reader, lines, codes):
    """`inv sync.list | head -1`: no traceback, no [ERROR]. A reader gone before the task writes (`true`) ends
    it as SIGPIPE ends a process (141); `head -1` may still have been reading when a short listing arrived
    whole, and then the task ends as it would have (0), as `printf 'a\\nb\\n' | head -1` does."""
    command = f"{' '.join(WAYS[way])} sync.list | {reader}; exit ${{PIPESTATUS[0]}}"
    result = subprocess.run(["bash", "-c", command], env=_host(sandbox_env), cwd=REPO_ROOT,
                            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300)
    assert result.returncode in codes, result.stdout + result.stderr
    assert len(result.stdout.splitlines()) == lines
    assert _stderr_lines(result.stderr) == [], result.stderr


@pytest.mark.parametrize("way", WAYS)
def test_a_reader_that_closes_early_on_invokes_own_output(engine, way):
    """`inv --list | head -1` (a plain inv prints the list itself): no traceback either."""
    env = _host(dict(os.environ))
    result = subprocess.run(["bash", "-c", f"{' '.join(WAYS[way])} --list | head -1; exit ${{PIPESTATUS[0]}}"],
                            env=env, cwd=REPO_ROOT, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode in (0, 141) and result.stdout == "Available tasks:\n", result.stderr
    assert "Traceback" not in result.stderr and "Error" not in result.stderr, result.stderr


@pytest.mark.parametrize("way", WAYS)
@pytest.mark.parametrize("signum, code, message", [(signal.SIGINT, 130, "interrupted"),
                                                   (signal.SIGTERM, 143, "interrupted by SIGTERM")])
def test_a_signal_to_the_process_group_mid_restore(engine, sandbox, sandbox_env, sandbox_settings, big, rds, proxy,
                                                   tmp_path, way, signum, code, message):
    """Ctrl-C (SIGINT) or a CI runner's SIGTERM to `inv sync.neon-to-rds --yes | tee sync.log`'s process group
    while the restore runs: tee dies with it; the task rolls back, releases its lock, aborts its upload, its
    [ERROR] line reaches the terminal, and the exit code says which signal."""
    proxy.key_prefix, proxy.part_delay = "neon-dumps/", 1.0
    before = dbtools.snapshot(rds)
    stderr = open(tmp_path / "stderr", "w+")  # the terminal: stderr is not piped
    task = _foreground([*WAYS[way], "sync.neon-to-rds", "--yes"], env=_host({**sandbox_env, "AWS_ENDPOINT_URL": proxy.url}),
                       stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr, text=True)
    tee = subprocess.Popen(["tee", str(tmp_path / "sync.log")], stdin=task.stdout, stdout=subprocess.DEVNULL,
                           process_group=task.pid)
    task.stdout.close()
    try:
        deadline = time.monotonic() + 120
        while proxy.parts_done < 1 and task.poll() is None:
            assert time.monotonic() < deadline, "no part of the dump was uploaded"
            time.sleep(0.05)
        os.killpg(task.pid, signum)
        task.wait(timeout=120)
        tee.wait(timeout=10)
    finally:
        task.kill()
        tee.kill()
    assert tee.returncode == -signum  # tee went with the signal, as in a terminal
    stderr.seek(0)
    result = subprocess.CompletedProcess(task.args, task.returncode, (tmp_path / "sync.log").read_text(),
                                         "\n".join(_stderr_lines(stderr.read())))
    assert "SYNC" in result.stdout  # what it printed before the signal, through tee
    assert_broken_mid_upload(sandbox, sandbox_settings, proxy)
    assert_failed_cleanly(result, sandbox, sandbox_env, sandbox_settings, before, rds, message, code=code)


@pytest.mark.parametrize("way", WAYS)
def test_ctrl_c_through_a_terminal(engine, way):
    """Under a terminal (script(1) gives one) the docker client, in a session of its own, still owns the
    keyboard: Ctrl-C is a keystroke that the task's terminal in the container turns into SIGINT."""
    process = subprocess.Popen(["script", "-qec", " ".join([*WAYS[way], "toolbox.shell"]), "/dev/null"],
                               cwd=REPO_ROOT, env=_host(dict(os.environ)), stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    seen = b""
    try:
        # The marker is computed, so that the terminal's echo of the typed line does not count.
        process.stdin.write(b"trap 'echo caught-$((6*7)); exit 130' INT; echo ready-$((6*7)); sleep 60 & wait\n")
        process.stdin.flush()
        deadline = time.monotonic() + 120
        while b"ready-42" not in seen:
            assert time.monotonic() < deadline and process.poll() is None, seen
            seen += os.read(process.stdout.fileno(), 4096)
        process.stdin.write(b"\x03")
        process.stdin.flush()
        rest, _ = process.communicate(timeout=60)
    finally:
        process.kill()
    assert b"caught-42" in seen + rest, seen + rest
    assert process.returncode == 130


# --------------------------------------------------------------------------------------------------
# The newcomer's path: what the shim prints, run as the user runs it (`./toolbox/inv` from the checkout)


def _typed(*args: str, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess:
    """``./toolbox/inv ARGS`` typed in the checkout: the shim's $0, which its hints name, is ./toolbox/inv."""
    return subprocess.run(["./toolbox/inv", *args], cwd=REPO_ROOT, env=env, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=timeout)


def _one_error(result: subprocess.CompletedProcess) -> str:
    """The one line an expected failure prints (without the run log's path it may end with)."""
    assert result.returncode == 1 and result.stdout == "", result.stdout + result.stderr
    [line] = _stderr_lines(result.stderr)
    return without_log(line)


def test_the_hints_of_sandbox_up_run_as_printed(engine, sandbox, sandbox_settings):
    """`./toolbox/inv sandbox.up` on the session's sandbox (up already, started in another process namespace
    than the shim's sandbox container: it is found up, not started again) ends with the lines to type next;
    they name the shim as typed, and, run in a shell as printed, reach the sandbox's private RDS."""
    keeper = _sandbox_container(REPO_ROOT)
    kept = subprocess.run([engine, "inspect", keeper], capture_output=True).returncode == 0
    env = {**_host(dict(os.environ)), "INVOKE_DEVOPS_SANDBOX_DIR": str(sandbox_settings.sandbox_dir)}
    started = sandbox.load_state()
    try:
        up = _typed("sandbox.up", env=env)
        assert up.returncode == 0, up.stdout + up.stderr
        assert f"[INFO] Sandbox already up in {sandbox_settings.sandbox_dir}" in up.stdout
        hints = dict(re.findall(r"^\[INFO\] (Point your shell at it|Then, for example): +(.+)$", up.stdout, re.M))
        assert hints == {"Point your shell at it": 'eval "$(./toolbox/inv sandbox.env --tunnel)"',
                         "Then, for example": "./toolbox/inv sync.neon-to-rds --dry-run"}, up.stdout
        shell = subprocess.run(["sh", "-c", " && ".join(hints.values())], cwd=REPO_ROOT, env=env,
                               stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300)
        assert shell.returncode == 0, shell.stdout[-2000:] + shell.stderr[-2000:]
        assert "Dry run complete." in shell.stdout
        assert_no_secret(shell, sandbox.environment(tunnel=True))
    finally:
        if not kept:
            subprocess.run([engine, "rm", "-f", keeper], capture_output=True)
    assert sandbox.load_state() == started and sandbox.is_up()


def test_a_mistyped_command_line_through_the_shim(engine):
    """One [ERROR] line naming what to type instead, with the shim's own name; help wraps on spaces only."""
    env = _host(dict(os.environ))
    assert _one_error(_typed("sync.neon-to-rds", "--dryrun", env=env)) == (
        "[ERROR] sync.neon-to-rds has no flag --dryrun: did you mean --dry-run? "
        "(`./toolbox/inv --help sync.neon-to-rds` lists its flags)")
    assert _one_error(_typed("sync.restore", "--key", "rds-dumps/x.dump", env=env)) == (
        "[ERROR] sync.restore needs --to (`./toolbox/inv --help sync.restore` says what each takes)")
    helped = _typed("--help", "sync.restore", env=env)
    assert helped.returncode == 0, helped.stderr
    assert "rds-dumps/2026-01-29T15-45-00.dump" in helped.stdout
    assert max(len(line) for line in helped.stdout.splitlines()) <= 80, helped.stdout


def test_a_sync_through_the_shim_from_its_plan_to_its_dumps(engine, sandbox, sandbox_env, databases, rds):
    """One sync, and what surrounds it, through the shim: --expect-target refuses a value of the wrong form
    before anything is read; the dry run's fingerprint runs the real sync; sync.list fits 80 columns and
    --wide says why each dump exists; a restore plan of RDS's (empty) safety copy to Neon warns twice."""
    databases(neon="rich", rds="keep_me")
    dbtools.execute(rds, "DELETE FROM keep_me")  # RDS's safety copy then holds no rows
    env = _host(sandbox_env)
    before = dbtools.snapshot(rds)
    assert _one_error(_typed("sync.neon-to-rds", "--yes", "--expect-target", "/nonexistent", env=env)) == (
        "[ERROR] --expect-target takes the plan's target fingerprint (16 hex digits, the plan's \"Target "
        "fingerprint\") or a file holding the plan's `--dry-run --json` report; '/nonexistent' is neither")
    assert dbtools.snapshot(rds) == before

    planned = _typed("sync.neon-to-rds", "--dry-run", env=env)
    assert planned.returncode == 0, planned.stdout + planned.stderr
    [fingerprint] = re.findall(r"^  Target fingerprint: +([0-9a-f]{16}) ", planned.stdout, re.M)
    synced = _typed("sync.neon-to-rds", "--yes", "--expect-target", fingerprint, env=env)
    assert synced.returncode == 0, synced.stdout[-2000:] + synced.stderr[-2000:]

    listed = _typed("sync.list", env=env)
    assert listed.returncode == 0, listed.stderr
    assert max(len(line) for line in listed.stdout.splitlines()) <= 80, listed.stdout
    wide = _typed("sync.list", "--wide", env=env)
    assert wide.returncode == 0, wide.stderr
    [safety_copy] = re.findall(r"^  (rds-dumps/\S+\.dump) .* safety copy of RDS before neon-to-rds ", wide.stdout,
                               re.M)
    assert re.search(r"^  neon-dumps/\S+\.dump .* sync neon-to-rds ", wide.stdout, re.M), wide.stdout

    restore = _typed("sync.restore", "--key", safety_copy, "--to", "neon", "--dry-run", env=env)
    assert restore.returncode == 0, restore.stdout + restore.stderr
    warnings = [line for line in restore.stdout.splitlines() if line.startswith("[WARN]")]
    assert any(line.startswith("[WARN] This dump is of RDS, not of Neon: ") for line in warnings), warnings
    assert any(line.startswith("[WARN] Neon would be left empty: ") for line in warnings), warnings
    for result in (planned, synced, listed, wide, restore):
        assert_no_secret(result, sandbox_env)
