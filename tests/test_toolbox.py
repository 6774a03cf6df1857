"""The toolbox: the sh shim (toolbox/inv), the host-side re-run through the docker SDK, and the reason the
image exists (pg_dump 18 against a PostgreSQL 18 server, which an older host pg_dump refuses).

Tests that need a Docker engine run wherever one is reachable. In the dev image (`./toolbox/inv test`, CI)
the host's engine socket is mounted and the repository sits at its host path, so a container started from
here mounts the same folders; there a missing engine is a failure, not a skip. Scratch folders live under
the repository (.toolbox-tmp) for the same reason: /tmp of the dev container is not the host's.
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from devops import toolbox
from devops.config import REPO_ROOT
from devops.errors import DevopsError
from devops.sandbox import free_port
from tests.shim import SHIM, bin_dir, shim_env
from devops.sync.tools import ToolError, ToolVersions, check_tools_match_servers


# --------------------------------------------------------------------------------------------------
# Pure logic, and the shim against a stand-in docker that records what it is asked


LOCKS = {"requirements.txt": "requirements.lock", "requirements-dev.txt": "requirements-dev.lock",
         "requirements-checkov.txt": "requirements-checkov.lock"}


def _pins(requirements: Path) -> dict[str, str]:
    """name -> version of a requirements file's `name==version` lines, following `-r` includes."""
    pins = {}
    for line in requirements.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line.startswith("-r "):
            pins.update(_pins(requirements.parent / line[3:].strip()))
        elif "==" in line:
            name, version = line.split("==")
            name = re.sub(r"\[.*\]", "", name)  # moto[server]: the lock names the package without extras
            pins[re.sub(r"[-_.]+", "-", name).lower()] = version.strip()
    return pins


def _locked(lock: Path) -> dict[str, tuple[str, int]]:
    """name -> (version, number of hashes) of a lock file made by scripts/lock."""
    entries, name = {}, None
    for line in lock.read_text().splitlines():
        if match := re.match(r"^([A-Za-z0-9._-]+)==(\S+)", line):
            name = match[1].lower()
            entries[name] = (match[2], 0)
        elif name and re.match(r"^\s+--hash=sha256:[0-9a-f]{64}", line):
            entries[name] = (entries[name][0], entries[name][1] + 1)
    return entries


@pytest.mark.parametrize("requirements", sorted(LOCKS))
def test_the_lock_pins_every_requirement_with_hashes(requirements):
    locked = _locked(REPO_ROOT / LOCKS[requirements])
    assert locked and all(count for _, count in locked.values()), f"{LOCKS[requirements]}: an entry without a hash"
    stale = {name: version for name, version in _pins(REPO_ROOT / requirements).items()
             if locked.get(name, ("missing",))[0] != version}
    assert not stale, f"{LOCKS[requirements]} does not pin {stale} as {requirements} does: run scripts/lock"


def test_the_dev_lock_keeps_the_runtime_versions():
    runtime, dev = _locked(REPO_ROOT / "requirements.lock"), _locked(REPO_ROOT / "requirements-dev.lock")
    assert {name: dev.get(name, ("missing",))[0] for name in runtime} == {n: v for n, (v, _) in runtime.items()}


def test_the_image_installs_only_the_locks_and_with_hashes():
    dockerfile = (REPO_ROOT / "toolbox" / "Dockerfile").read_text().replace("\\\n", " ")
    installs = [found.strip() for found in re.findall(r"pip install ([^&\n]*)", dockerfile)]
    assert sorted(installs) == sorted(f"--require-hashes -r /opt/devops/{lock}" for lock in LOCKS.values())
    built_from = _built_from()
    for lock in LOCKS.values():
        assert f"COPY {lock} /opt/devops/{lock}" in dockerfile
        assert lock in built_from
    # Everything the Dockerfile copies from its context is in the context (and so in the tag's hash).
    copied = re.findall(r"^COPY (?!--from)(?:--\S+ )*(\S+) ", dockerfile, re.M)
    assert {name for name in copied if not name.startswith("toolbox/certs")} <= set(built_from), copied


def _built_from() -> list[str]:
    """The files the image's tag hashes (the shim's BUILT_FROM)."""
    return re.search(r'^BUILT_FROM="([^"]*)"', SHIM.read_text().replace("\\\n", " "), re.M).group(1).split()


def _copy_built_from(destination: Path) -> Path:
    """The files the image's tag hashes, and the shim, in a folder of their own."""
    for name in ("toolbox/inv", *_built_from()):
        (destination / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO_ROOT / name, destination / name)
    return destination


def test_the_tag_follows_the_locks_and_the_ca_certificates(tmp_path):
    """The tag is a hash of what the image is built from: a changed lock or CA certificate gives a new tag,
    and no CA at all (most users) gives a tag too; a CA setting that names nothing is one clear line."""
    copy = _copy_built_from(tmp_path / "repo")
    (tmp_path / "ca").mkdir()
    (tmp_path / "ca" / "proxy.crt").write_text("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")

    def tag(**extra: str) -> str:
        found = _shim_result(tmp_path, "toolbox.image", shim=copy / "toolbox" / "inv", **{"DEVOPS_TOOLBOX_CA": "", **extra})
        assert found.returncode == 0, found.stderr
        return found.stdout.strip()

    no_ca = tag()
    assert re.fullmatch(r"devops-toolbox:[0-9a-f]{12}", no_ca)
    with_ca = tag(DEVOPS_TOOLBOX_CA=str(tmp_path / "ca"))
    assert with_ca != no_ca and tag(DEVOPS_TOOLBOX_CA=str(tmp_path / "ca" / "proxy.crt")) == with_ca
    (tmp_path / "ca" / "proxy.crt").write_text("-----BEGIN CERTIFICATE-----\nBBBB\n-----END CERTIFICATE-----\n")
    assert tag(DEVOPS_TOOLBOX_CA=str(tmp_path / "ca")) not in (with_ca, no_ca)
    with open(copy / "requirements-dev.lock", "a") as lock:
        lock.write("# changed\n")
    assert tag() != no_ca
    for setting, message in ((tmp_path / "nowhere", "no such file or folder"), (tmp_path / "repo" / "devops-none",
                                                                                  "no such file or folder")):
        refused = _shim_result(tmp_path, "toolbox.image", shim=copy / "toolbox" / "inv", DEVOPS_TOOLBOX_CA=str(setting))
        assert refused.returncode == 1 and refused.stderr.splitlines() == [
            f"[ERROR] DEVOPS_TOOLBOX_CA={setting}: {message} (name a PEM file, or a folder of *.crt/*.pem)"]
    (tmp_path / "empty").mkdir()
    refused = _shim_result(tmp_path, "toolbox.image", shim=copy / "toolbox" / "inv", DEVOPS_TOOLBOX_CA=str(tmp_path / "empty"))
    assert refused.returncode == 1 and refused.stderr.splitlines() == [
        f"[ERROR] DEVOPS_TOOLBOX_CA={tmp_path / 'empty'} holds no *.crt or *.pem file"]


def test_an_unknown_toolbox_mode_is_one_clear_error():
    class Config:
        devops = {"toolbox": "laptop"}

    with pytest.raises(DevopsError, match="use container or host"):
        toolbox.mode(Config())


# A stand-in docker: images exist; a warm container (`run -d --rm --name`) starts and is running from then
# on; a task (`run`, `exec`) exits 7.
FAKE_DOCKER = """#!/bin/sh
echo "$*" >> "$FAKE_DOCKER_LOG"
case "$1" in
    image) exit 0 ;;
    inspect) [ -e "$FAKE_DOCKER_LOG.warm" ] && case "$*" in *devops-toolbox-*) echo true ;; esac; exit 0 ;;
    run) case "$*" in *" -d --rm --name "*) : > "$FAKE_DOCKER_LOG.warm"; exit 0 ;; esac; exit 7 ;;
    exec) exit 7 ;;
esac
"""


def _shim_result(tmp_path: Path, *args: str, shim: Path = SHIM, fake: str = FAKE_DOCKER,
                 **extra: str) -> subprocess.CompletedProcess:
    """The shim run against a stand-in docker (``fake``), which logs each call to tmp_path/calls.log."""
    docker = tmp_path / "docker"
    if not docker.exists():
        docker.write_text(fake)
        docker.chmod(0o755)
        bin_dir(tmp_path / "bin", str(docker))
    log = tmp_path / "calls.log"
    log.write_text("")
    return subprocess.run(["sh", str(shim), *args], env=shim_env(str(tmp_path / "bin"), FAKE_DOCKER_LOG=str(log),
                                                                 **extra),
                          stdin=subprocess.DEVNULL, capture_output=True, text=True)


def _shim_calls(tmp_path: Path, *args: str, **extra: str) -> list[str]:
    """What the shim asks a stand-in docker (FAKE_DOCKER) for ``args``."""
    _shim_result(tmp_path, *args, **extra)
    return (tmp_path / "calls.log").read_text().splitlines()


def _tag(tmp_path: Path, target: str = "toolbox", **extra: str) -> str:
    """The image tag the shim uses (toolbox.image, against the stand-in docker: nothing is built)."""
    found = _shim_result(tmp_path, "toolbox.image", *(["--dev"] if target == "dev" else []), **extra)
    assert found.returncode == 0, found.stderr
    return found.stdout.strip()


def _image_run(calls: list[str]) -> str:
    """The line that runs the task: a container started for it, or an exec into the warm container."""
    return next(line for line in calls if line.startswith(("run ", "exec ")) and " -d --rm --name " not in line)


def _runs_in(line: str, tag: str) -> bool:
    """Whether a `docker run` line runs the task in image ``tag``."""
    return f" {tag} sh -c " in line


def test_shim_passes_names_not_values_and_returns_the_exit_code(tmp_path):
    secret = "s3cr3t-pw"
    (tmp_path / "home" / ".aws").mkdir(parents=True)
    home = dict(HOME=str(tmp_path / "home"))
    result = _shim_result(tmp_path, "sync.neon-to-rds", "--dry-run", **home,
                          NEON_DATABASE_URL=f"postgresql://owner:{secret}@example/db", AWS_PROFILE="dev",
                          AWS_CA_BUNDLE="/host/only.pem", INVOKE_DEVOPS_PROJECT_NAME="acme")
    assert result.returncode == 7, result.stderr
    log = (tmp_path / "calls.log").read_text()
    calls = log.splitlines()
    assert secret not in log
    # The warm container: created once, with the mounts and no environment; the task is exec'd into it.
    created = [line for line in calls if line.startswith("run ")]
    executed = [line for line in calls if line.startswith("exec ")]
    assert len(created) == 1 and len(executed) == 1, calls
    tag = _tag(tmp_path, **home)
    name = re.search(r"--name (\S+) ", created[0]).group(1)
    assert name.startswith("devops-toolbox-") and f" {tag} sh -c " in created[0]
    assert " -e " not in created[0]
    assert f"--user {os.getuid()}:{os.getgid()}" in created[0]
    assert f"-v {REPO_ROOT}:{REPO_ROOT} -w {REPO_ROOT}" in created[0]
    assert "--network host" in created[0]
    assert f"-v {tmp_path}/home/.aws:/home/toolbox/.aws:ro" in created[0]
    # inv that ends without Python's teardown (devops/inv.py)
    assert executed[0].split()[-5:] == ["python", "-m", "devops.inv", "sync.neon-to-rds", "--dry-run"]
    assert f" {name} sh -c " in executed[0]
    for variable in ("NEON_DATABASE_URL", "AWS_PROFILE", "INVOKE_DEVOPS_PROJECT_NAME"):
        assert f"-e {variable} " in executed[0]
    assert f"-e DEVOPS_TOOLBOX_IMAGE={tag} " in executed[0]
    assert "AWS_CA_BUNDLE" not in executed[0]
    assert " -t " not in f" {executed[0]} "  # stdin is not a terminal: no TTY
    # Another HOME (another ~/.aws mount): another warm container.
    (tmp_path / "home2" / ".aws").mkdir(parents=True)
    again = [line for line in _shim_calls(tmp_path, "validate", HOME=str(tmp_path / "home2")) if line.startswith("exec ")]
    assert f" {name} sh -c " not in again[0]


def test_shim_mounts_the_aws_credential_caches_writable_and_config_files_where_they_are(tmp_path):
    """~/.aws stays read-only but for the caches botocore and `aws sso login` write (created when missing, as
    the caller); AWS_CONFIG_FILE and AWS_SHARED_CREDENTIALS_FILE reach the container at their own paths."""
    home = tmp_path / "home"
    (home / ".aws").mkdir(parents=True)
    config = tmp_path / "elsewhere" / "config"
    config.parent.mkdir()
    config.write_text("[profile dev]\n")
    calls = _shim_calls(tmp_path, "validate", HOME=str(home), AWS_CONFIG_FILE=str(config),
                        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "no-such-file"))
    created = next(line for line in calls if line.startswith("run "))
    executed = next(line for line in calls if line.startswith("exec "))
    assert f"-v {home}/.aws:/home/toolbox/.aws:ro" in created
    for cache in ("sso/cache", "cli/cache"):
        assert (home / ".aws" / cache).is_dir()
        assert f"-v {home}/.aws/{cache}:/home/toolbox/.aws/{cache} " in created
    assert f"-v {config}:{config}:ro" in created
    assert "no-such-file:" not in created  # a missing file is not mounted (docker would make it a folder)
    assert "-e AWS_CONFIG_FILE " in executed and "-e AWS_SHARED_CREDENTIALS_FILE " in executed


def test_shim_uses_the_dev_image_for_the_tests(tmp_path):
    line = _image_run(_shim_calls(tmp_path, "test"))
    assert line.startswith("run ") and _runs_in(line, _tag(tmp_path, "dev")) and line.endswith(" inv test"), line


KEEPER_DOCKER = """#!/bin/sh
echo "$*" >> "$FAKE_DOCKER_LOG"
case "$1" in
    image) exit 0 ;;
    inspect) [ -e "$FAKE_DOCKER_LOG.keeper" ] && echo true; exit 0 ;;
    run) case "$*" in *" -d --name "*) : > "$FAKE_DOCKER_LOG.keeper" ;; esac; exit 0 ;;
esac
"""


def test_shim_keeps_secrets_out_of_the_sandbox_containers_configuration(tmp_path):
    """The long-lived container gets no environment (docker inspect would show it while it lives); the
    task's exec into it gets the variables, by name."""
    result = _shim_result(tmp_path, "sandbox.up", fake=KEEPER_DOCKER,
                          NEON_DATABASE_URL="postgresql://owner:pw@example/db", AWS_SECRET_ACCESS_KEY="very-secret")
    assert result.returncode == 0, result.stderr
    calls = (tmp_path / "calls.log").read_text().splitlines()
    created = [line for line in calls if line.startswith("run ") and " -d --name " in line]
    executed = [line for line in calls if line.startswith("exec ")]
    assert len(created) == 1 and len(executed) == 1, calls
    assert " -e " not in created[0] and "pw" not in created[0]
    assert "-e NEON_DATABASE_URL" in executed[0] and "-e AWS_SECRET_ACCESS_KEY" in executed[0]


def test_shim_mounts_a_ca_file_of_ones_own_wherever_it_is_on_the_host(tmp_path):
    """neon_ca_file / rds_ca_file may name a file outside the checkout: the container gets it at its path,
    once, read-only; the warm container is another one for other files (its mounts are fixed at creation)."""
    ca, other = tmp_path / "corp-ca.pem", tmp_path / "other-ca.pem"
    ca.write_text("pem"), other.write_text("pem")
    calls = _shim_calls(tmp_path, "sync.neon-to-rds", INVOKE_DEVOPS_NEON_CA_FILE=str(ca),
                        INVOKE_DEVOPS_RDS_CA_FILE=str(ca))
    created = [line for line in calls if line.startswith("run ") and " -d --rm --name " in line]
    assert len(created) == 1 and created[0].count(f"-v {ca}:{ca}:ro") == 1, calls
    warm = created[0].split(" -d --rm --name ")[1].split()[0]
    calls = _shim_calls(tmp_path, "sync.neon-to-rds", INVOKE_DEVOPS_RDS_CA_FILE=str(other))
    asked = [line for line in calls if line.startswith("inspect --format")]
    assert asked and warm not in asked[0], calls


# FAKE_DOCKER, which also records the DEVOPS_INV a task's exec or run gets (docker reads `-e NAME` from here).
HINT_DOCKER = FAKE_DOCKER.replace('echo "$*" >> "$FAKE_DOCKER_LOG"', 'echo "$*" >> "$FAKE_DOCKER_LOG"\n'
                                  'echo "DEVOPS_INV=$DEVOPS_INV" >> "$FAKE_DOCKER_LOG"')


def test_the_task_is_told_how_the_user_ran_it(tmp_path):
    """The commands a task prints name what the user typed (devops/hints.py): the shim as typed ($0), a
    DEVOPS_INV already set, or `inv` for a plain inv on a host, which execs the shim."""
    def told(*command: str, **extra: str) -> str:
        _shim_result(tmp_path, "--version", fake=HINT_DOCKER)  # the stand-in docker and its PATH, once
        log = tmp_path / "calls.log"
        log.write_text("")
        subprocess.run(command, cwd=REPO_ROOT, stdin=subprocess.DEVNULL, capture_output=True,
                       env=shim_env(str(tmp_path / "bin"), FAKE_DOCKER_LOG=str(log), **extra))
        lines = log.read_text().splitlines()
        task = next(i for i, line in enumerate(lines) if line.startswith("exec ") and "-e DEVOPS_INV " in line)
        return lines[task + 1].removeprefix("DEVOPS_INV=")

    assert told("./toolbox/inv", "sync.list") == "./toolbox/inv"
    assert told("sh", str(SHIM), "sync.list") == str(SHIM)
    assert told("./toolbox/inv", "sync.list", DEVOPS_INV="my-inv") == "my-inv"
    assert told(sys.executable, "-m", "invoke", "sync.list") == "inv"


def test_shim_picks_the_image_from_task_names_only(tmp_path):
    runtime, dev = _tag(tmp_path), _tag(tmp_path, "dev")
    # An option's value that looks like a task name picks nothing (nor a sandbox container).
    for args in (["sync.restore", "--key", "test", "--to", "rds"], ["sync.restore", "-t", "rds", "-k", "sandbox.up"],
                 ["-c", "demo", "validate"]):
        calls = _shim_calls(tmp_path, *args)
        line = _image_run(calls)
        assert line.startswith("exec ") and f" python -m devops.inv {args[0]}" in line, calls
        assert not any(_sandbox_container(REPO_ROOT) in line for line in calls), calls
    line = _image_run(_shim_calls(tmp_path, "test", "--pytest-args", "-k validate"))
    assert _runs_in(line, dev) and line.endswith(" inv test --pytest-args -k validate"), line
    # --dev, wherever it is, for the toolbox tasks.
    for args in (["toolbox.shell", "--dev"], ["--dev", "toolbox.shell"], ["toolbox.shell", "-d"]):
        line = _image_run(_shim_calls(tmp_path, *args))
        assert _runs_in(line, dev) and line.endswith(" bash"), (args, line)
    assert _runs_in(_image_run(_shim_calls(tmp_path, "toolbox.shell")), runtime)
    # Help about a toolbox task is Invoke's (in the container), not the task.
    assert _image_run(_shim_calls(tmp_path, "--help", "toolbox.build")).endswith(" devops.inv --help toolbox.build")


def test_the_shims_value_options_are_the_tasks():
    """The shim skips the values of these options; they must be exactly the tasks' non-boolean ones."""
    from tasks import ns

    def value_options(collection) -> set[str]:
        found = {f"--{n}" if len(n) > 1 else f"-{n}" for task in collection.tasks.values()
                 for arg in task.get_arguments() if arg.kind is not bool for n in arg.names}
        return found.union(*(value_options(sub) for sub in collection.collections.values()))

    listed = re.search(r'^TASK_VALUE_OPTIONS="([^"]*)"', SHIM.read_text(), re.M).group(1).split()
    assert set(listed) == value_options(ns)


def test_shim_mounts_the_engine_docker_host_names(tmp_path):
    engine_socket = socket.socket(socket.AF_UNIX)
    engine_socket.bind(str(tmp_path / "engine.sock"))
    try:
        run = _image_run(_shim_calls(tmp_path, "test", DOCKER_HOST=f"unix://{tmp_path}/engine.sock"))
        assert f"-v {tmp_path}/engine.sock:/var/run/docker.sock" in run, run
        assert f"--group-add {os.stat(tmp_path / 'engine.sock').st_gid}" in run
    finally:
        engine_socket.close()
    # An engine over TCP: the dev container (on the host's network) is told where it is.
    run = _image_run(_shim_calls(tmp_path, "test", DOCKER_HOST="tcp://127.0.0.1:2375"))
    assert "-e DOCKER_HOST" in run


def test_a_container_with_the_engine_gets_the_ca_certificates_at_their_path(tmp_path):
    """The tests (and --on ecs) compute the image's tag inside their container: they need the same CA files."""
    (tmp_path / "ca").mkdir()
    (tmp_path / "ca" / "proxy.crt").write_text("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    ca = dict(DEVOPS_TOOLBOX_CA=str(tmp_path / "ca"))
    run = _image_run(_shim_calls(tmp_path, "test", **ca))
    assert f"-e DEVOPS_TOOLBOX_CA -v {tmp_path}/ca:{tmp_path}/ca:ro" in run, run
    assert "DEVOPS_TOOLBOX_CA" not in _image_run(_shim_calls(tmp_path, "validate", **ca))


def test_a_task_run_on_ecs_gets_the_engine(tmp_path):
    """--on ecs builds and pushes the task image through the engine: the runtime container gets its socket
    then, and only then (a task's value that merely reads 'ecs' does not count)."""
    engine_socket = socket.socket(socket.AF_UNIX)
    engine_socket.bind(str(tmp_path / "engine.sock"))
    try:
        host = {"DOCKER_HOST": f"unix://{tmp_path}/engine.sock"}
        mount = f"-v {tmp_path}/engine.sock:/var/run/docker.sock"
        for args in (["sync.neon-to-rds", "--on", "ecs", "--yes"], ["validate", "--on=ecs"], ["validate", "-o", "ecs"]):
            assert mount in _image_run(_shim_calls(tmp_path, *args, **host)), args
        assert mount in _image_run(_shim_calls(tmp_path, "validate", INVOKE_DEVOPS_RUNNER="ecs", **host))
        for args in (["validate"], ["sync.restore", "--key", "ecs", "--to", "rds"], ["validate", "--on", "local"]):
            assert mount not in _image_run(_shim_calls(tmp_path, *args, **host)), args
    finally:
        engine_socket.close()


def test_shim_without_docker_says_so_in_one_line(tmp_path):
    env = shim_env(bin_dir(tmp_path / "bin", None))
    result = subprocess.run(["sh", str(SHIM), "validate"], env=env, capture_output=True, text=True)
    assert result.returncode == 1
    assert result.stderr.splitlines() == ["[ERROR] docker not found on PATH: install Docker (the toolbox needs nothing else)"]


def test_shim_with_no_docker_engine_says_so_in_one_line(tmp_path):
    docker = shutil.which("docker")
    if not docker:
        pytest.skip("no docker CLI on this machine")
    env = shim_env(bin_dir(tmp_path / "bin", docker), DOCKER_HOST=f"unix://{tmp_path}/no-engine.sock")
    result = subprocess.run(["sh", str(SHIM), "validate"], env=env, capture_output=True, text=True)
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("[ERROR] no Docker engine reachable"), result.stderr
    assert "Traceback" not in result.stderr


def test_host_inv_with_no_docker_engine_says_so_in_one_line(tmp_path):
    """A plain `inv` execs the shim: the same one line, after the note on how to stay on the host."""
    env = {k: v for k, v in os.environ.items() if k not in (toolbox.MARKER, "INVOKE_DEVOPS_TOOLBOX")}
    env["DOCKER_HOST"] = f"unix://{tmp_path}/no-engine.sock"
    result = subprocess.run([sys.executable, "-m", "invoke", "validate"], cwd=REPO_ROOT, env=env,
                            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    info, *errors = result.stderr.splitlines()
    assert "INVOKE_DEVOPS_TOOLBOX=host" in info
    assert len(errors) == 1 and errors[0].startswith("[ERROR] no Docker engine reachable"), result.stderr


# --------------------------------------------------------------------------------------------------
# Against the real engine


def test_shim_runs_with_only_docker_and_core_utilities(docker_only_path):
    assert shutil.which("python3", path=docker_only_path) is None
    result = subprocess.run(["sh", str(SHIM), "--version"], env=shim_env(docker_only_path),
                            stdin=subprocess.DEVNULL, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Invoke ")


def test_shim_passes_the_exit_code_through(docker_only_path):
    shell = subprocess.run(["sh", str(SHIM), "toolbox.shell"], env=shim_env(docker_only_path),
                           input="exit 42\n", capture_output=True, text=True)
    assert shell.returncode == 42, shell.stderr
    unknown = subprocess.run(["sh", str(SHIM), "no-such-task"], env=shim_env(docker_only_path),
                             stdin=subprocess.DEVNULL, capture_output=True, text=True)
    assert unknown.returncode == 1 and "no-such-task" in unknown.stderr


def _copy_repo(scratch: Path) -> Path:
    """A checkout of its own: its own sandbox folder and sandbox container, nothing shared with this one."""
    repo = scratch / "repo"
    shutil.copytree(REPO_ROOT, repo, ignore=shutil.ignore_patterns(".git", ".venv", ".sandbox", ".toolbox-tmp",
                                                                  "__pycache__", ".pytest_cache"))
    return repo


def test_files_written_in_the_container_belong_to_the_caller(docker_only_path, scratch):
    # A copy of the repository owned by an unprivileged caller, who may use the engine (the docker group).
    repo = _copy_repo(scratch)
    if os.getuid() == 0:
        uid = gid = 4321  # as root: hand the copy to an unprivileged caller, and run the shim as that caller
        for path in [repo, *repo.rglob("*")]:
            os.lchown(path, uid, gid)
        socket_gid = os.stat("/var/run/docker.sock").st_gid
        as_caller = [shutil.which("setpriv"), f"--reuid={uid}", f"--regid={gid}", f"--groups={socket_gid}"]
    else:
        uid, gid, as_caller = os.getuid(), os.getgid(), []
    result = subprocess.run([*as_caller, "sh", str(repo / "toolbox" / "inv"), "toolbox.shell"],
                            env=shim_env(docker_only_path, HOME=str(repo)),
                            input="touch made-in-the-container && id -u\n", capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(uid)
    made = (repo / "made-in-the-container").stat()
    assert (made.st_uid, made.st_gid) == (uid, gid)
    # A task (exec'd into the warm container) leaves no bytecode in the checkout.
    def shim(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*as_caller, "sh", str(repo / "toolbox" / "inv"), *args],
                              env=shim_env(docker_only_path, HOME=str(repo)), stdin=subprocess.DEVNULL,
                              capture_output=True, text=True)
    try:
        listing = shim("--list")
        assert listing.returncode == 0 and "validate" in listing.stdout, listing.stderr
        assert not list(repo.rglob("__pycache__"))
    finally:
        shim("toolbox.stop")


def _foreground(command: list[str], **options) -> subprocess.Popen:
    """``command`` as a terminal starts a foreground job: a process group of its own, SIGINT at its default
    (a shell starts a background job, as this test may be, with SIGINT ignored)."""
    return subprocess.Popen(command, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL), **options)


def test_ctrl_c_reaches_the_task(docker_only_path):
    script = "trap 'echo interrupted; exit 130' INT\necho ready\nsleep 60 & wait\n"
    process = _foreground(["sh", str(SHIM), "toolbox.shell"], env=shim_env(docker_only_path),
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        process.stdin.write(script)
        process.stdin.close()
        assert process.stdout.readline().strip() == "ready"
        time.sleep(0.5)
        os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C sends: the whole foreground process group
        process.wait(timeout=30)
        out, err = process.stdout.read(), process.stderr.read()
    finally:
        process.kill()
    assert "interrupted" in out, err
    assert process.returncode == 130


def test_the_warm_container_is_reused_holds_no_secret_and_is_replaced_with_the_image(engine, docker_only_path, scratch):
    """Tasks of the runtime image are exec'd into one warm container per checkout: the same one run after run,
    with no secret in its configuration; a changed image gets a new one; Ctrl-C reaches a task in it; and
    toolbox.stop removes the checkout's warm containers."""
    repo = _copy_repo(scratch)
    shim = ["sh", str(repo / "toolbox" / "inv")]
    env = shim_env(docker_only_path, AWS_SECRET_ACCESS_KEY="very-secret-key")
    label = f"label=devops.toolbox.checkout={repo}"

    def warm_ids() -> list[str]:
        return subprocess.run([engine, "ps", "-q", "--no-trunc", "--filter", label], capture_output=True,
                              text=True).stdout.split()

    def inv(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*shim, *args], env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=120)

    extra_tag = ""
    try:
        assert inv("--version").returncode == 0
        first = warm_ids()
        assert inv("--version").returncode == 0
        assert len(first) == 1 and warm_ids() == first
        inspected = subprocess.run([engine, "inspect", first[0]], capture_output=True, text=True).stdout
        assert "very-secret-key" not in inspected and "AWS_SECRET_ACCESS_KEY" not in inspected
        # Ctrl-C without a terminal: secrets.set-neon-url waits on stdin; SIGINT reaches it in the container.
        process = _foreground([*shim, "secrets.set-neon-url"], env=env, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            time.sleep(5)
            os.killpg(process.pid, signal.SIGINT)
            process.wait(timeout=60)
            err = process.stderr.read()
        finally:
            process.kill()
        assert process.returncode == 130 and "[ERROR] interrupted" in err, err
        # A changed image (here: a changed lock file, the image tagged under its new hash): a new container.
        (repo / "requirements-checkov.txt").write_text((repo / "requirements-checkov.txt").read_text() + "# changed\n")
        (scratch / "stand-in").mkdir()
        extra_tag = _shim_result(scratch / "stand-in", "toolbox.image", shim=repo / "toolbox" / "inv").stdout.strip()
        subprocess.run([engine, "tag", toolbox.image("toolbox"), extra_tag], check=True)
        assert inv("--version").returncode == 0
        images = {subprocess.run([engine, "inspect", "--format", "{{.Config.Image}}", cid], capture_output=True,
                                 text=True).stdout.strip() for cid in warm_ids()}
        assert extra_tag in images and len(warm_ids()) == 2
    finally:
        stop = inv("toolbox.stop")
        if extra_tag:
            subprocess.run([engine, "rmi", extra_tag], capture_output=True)
    assert stop.returncode == 0, stop.stderr
    assert subprocess.run([engine, "ps", "-aq", "--filter", label], capture_output=True, text=True).stdout == ""


def test_host_inv_reruns_the_task_in_the_toolbox(engine, scratch):
    """`inv TASK` on a host with Python: the same command line, in the dev image, through the docker SDK."""
    env = {k: v for k, v in os.environ.items() if k not in (toolbox.MARKER, "INVOKE_DEVOPS_TOOLBOX")}
    env["INVOKE_DEVOPS_SANDBOX_DIR"] = str(scratch / "sandbox")
    result = subprocess.run([sys.executable, "-m", "invoke", "sandbox.status", "--json"], cwd=REPO_ROOT, env=env,
                            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300)
    assert "[INFO] running in the toolbox image" in result.stderr
    assert result.returncode == 1, result.stderr  # no sandbox there: status exits 1, through the container
    assert '"up": false' in result.stdout and str(scratch / "sandbox") in result.stdout
    # The documented switch keeps it on this host.
    env["INVOKE_DEVOPS_TOOLBOX"] = "host"
    native = subprocess.run([sys.executable, "-m", "invoke", "sandbox.status", "--json"], cwd=REPO_ROOT, env=env,
                            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    assert "running in the toolbox image" not in native.stderr
    assert native.returncode == 1 and '"up": false' in native.stdout


def _exports(text: str) -> dict[str, str | None]:
    """`inv sandbox.env`'s lines as a dict (None: unset)."""
    values: dict[str, str | None] = {}
    for line in text.splitlines():
        words = shlex.split(line)
        if words[0] == "export":
            name, _, value = words[1].partition("=")
            values[name] = value
        elif words[0] == "unset":
            values[words[1]] = None
    return values


def _sandbox_container(repo: Path) -> str:
    """The name toolbox/inv and devops.toolbox.sandbox_container give a checkout's sandbox container."""
    return "devops-sandbox-" + hashlib.sha256(f"{repo}\n".encode()).hexdigest()[:12]


def test_sandbox_container_name_matches_the_shim(tmp_path):
    """The name the shim asks docker about for sandbox.up is the one the SDK path uses."""
    asked = [line.split()[-1] for line in _shim_calls(tmp_path, "sandbox.up") if line.startswith("inspect ")]
    assert asked and set(asked) == {_sandbox_container(REPO_ROOT)}


def test_the_sandbox_outlives_each_command_on_a_docker_only_host(engine, docker_only_path, scratch):
    """sandbox.up leaves its servers in the checkout's sandbox container; later commands, each in a fresh
    container, find them: the Docker-only user's workflow, through the shim."""
    repo = _copy_repo(scratch)
    shim = ["sh", str(repo / "toolbox" / "inv")]
    env = shim_env(docker_only_path)
    keeper = _sandbox_container(repo)

    def inv(*args: str, extra: dict | None = None) -> subprocess.CompletedProcess:
        run_env = {**env, **{k: v for k, v in (extra or {}).items() if v is not None}}
        return subprocess.run([*shim, *args], env=run_env, stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, timeout=600)

    try:
        up = inv("sandbox.up")
        assert up.returncode == 0, up.stdout[-2000:] + up.stderr[-2000:]
        assert subprocess.run([engine, "inspect", "--format", "{{.State.Running}}", keeper], capture_output=True,
                              text=True).stdout.strip() == "true"
        assert inv("sandbox.status").returncode == 0
        exported = inv("sandbox.env")
        assert exported.returncode == 0, exported.stderr
        validate = inv("validate", extra=_exports(exported.stdout))
        assert validate.returncode == 0, validate.stdout[-2000:] + validate.stderr[-2000:]
        assert "[PASS]" in validate.stdout and "pilot light" in validate.stdout.lower()
    finally:
        down = inv("sandbox.down")
    assert down.returncode == 0, down.stderr
    assert subprocess.run([engine, "inspect", keeper], capture_output=True).returncode != 0
    assert not (repo / ".sandbox").exists()


def test_a_failed_sandbox_up_leaves_no_sandbox_container(engine, scratch):
    """Through the docker SDK (the host's inv): sandbox.up in the checkout's sandbox container; it fails (no
    PostgreSQL where the setting points), exits 1, and the container goes with it."""
    repo = _copy_repo(scratch)
    env = {k: v for k, v in os.environ.items() if k not in (toolbox.MARKER, "INVOKE_DEVOPS_TOOLBOX")}
    env["INVOKE_DEVOPS_SANDBOX_PG_BIN"] = "/nonexistent/bin"
    result = subprocess.run([sys.executable, "-m", "invoke", "sandbox.up"], cwd=repo, env=env,
                            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1
    assert "no initdb in /nonexistent/bin" in result.stdout + result.stderr
    keeper = _sandbox_container(repo)
    assert subprocess.run([engine, "inspect", keeper], capture_output=True).returncode != 0


# --------------------------------------------------------------------------------------------------
# Why the toolbox exists: Neon creates projects on PostgreSQL 18, newer than most hosts' pg_dump


@pytest.fixture
def postgres18(engine):
    """A PostgreSQL 18 server from the dev image on 127.0.0.1 (trust auth on loopback: no password)."""
    port = free_port()
    name = f"devops-test-pg18-{uuid.uuid4().hex[:8]}"
    bin_dir = "/usr/lib/postgresql/18/bin"
    script = (f"{bin_dir}/initdb -D /tmp/pg -U postgres --auth=trust >/dev/null && exec {bin_dir}/postgres "
              f"-D /tmp/pg -c listen_addresses=127.0.0.1 -c unix_socket_directories= -p {port}")
    subprocess.run([engine, "run", "-d", "--rm", "--network", "host", "--name", name, toolbox.image("dev"),
                    "sh", "-c", script], check=True, capture_output=True)
    try:
        deadline = time.monotonic() + 60
        while subprocess.run([engine, "exec", name, f"{bin_dir}/pg_isready", "-h", "127.0.0.1", "-p", str(port)],
                             capture_output=True).returncode != 0:
            assert time.monotonic() < deadline, "PostgreSQL 18 did not start"
            time.sleep(0.3)
        yield port
    finally:
        subprocess.run([engine, "rm", "-f", name], capture_output=True)


def _host_pg_dump(engine: str) -> list[str] | None:
    """How to run this host's own pg_dump: directly, or (from the dev container) in the host's root
    filesystem through a container that chroots into it."""
    if toolbox.inside():
        prefix = [engine, "run", "--rm", "--network", "host", "--user", "0", "-v", "/:/host:ro",
                  "--entrypoint", "chroot", toolbox.image("toolbox"), "/host"]
        found = subprocess.run([*prefix, "sh", "-c", "command -v pg_dump"], capture_output=True, text=True)
        return [*prefix, "pg_dump"] if found.returncode == 0 else None
    binary = shutil.which("pg_dump")
    return [binary] if binary else None


def test_an_older_host_pg_dump_refuses_postgres_18_and_the_toolbox_succeeds(engine, postgres18):
    host_pg_dump = _host_pg_dump(engine)
    version_out = subprocess.run([*host_pg_dump, "--version"], capture_output=True, text=True).stdout \
        if host_pg_dump else ""
    found = re.search(r"(\d+)\.(\d+)", version_out)
    if not found or int(found.group(1)) >= 18:
        pytest.skip(f"this host has no pg_dump older than 18 to show the refusal ({version_out.strip() or 'none'})")
    host_version = found.group(0)
    target = ["-h", "127.0.0.1", "-p", str(postgres18), "-U", "postgres", "-Fc", "postgres"]

    refused = subprocess.run([*host_pg_dump, *target], capture_output=True, text=True)
    assert refused.returncode != 0
    assert "server version mismatch" in refused.stderr
    # The tasks say it before trying, in one line that names the way out.
    with pytest.raises(ToolError, match=rf"pg_dump {host_version} is older than the Neon server "
                                            r"\(PostgreSQL 18\).*toolbox"):
        check_tools_match_servers(ToolVersions({"pg_dump": host_version, "pg_restore": host_version,
                                                "psql": host_version}), {"Neon": 180000})

    in_toolbox = subprocess.run([engine, "run", "--rm", "--network", "host", toolbox.image("toolbox"),
                                 "pg_dump", *target], capture_output=True)  # an archive: bytes
    assert in_toolbox.returncode == 0 and in_toolbox.stdout.startswith(b"PGDMP"), in_toolbox.stderr
    version = subprocess.run([engine, "run", "--rm", toolbox.image("toolbox"), "pg_dump", "--version"],
                             capture_output=True, text=True).stdout
    assert re.search(r"\) 18\.\d+", version), version


def test_the_dev_image_has_the_server_majors_neon_and_rds_run(engine):
    """In the container there are servers of every major Neon and RDS run (14 to 18: the stand-ins and
    tests/test_sync_majors.py start them), and the client tools on PATH are 18's."""
    script = ("from devops.sandbox import find_pg_bin, server_major; "
              "print(*[server_major(find_pg_bin(m)) for m in ('14', '15', '16', '17', '18')])")
    result = subprocess.run([engine, "run", "--rm", "-v", f"{REPO_ROOT}:{REPO_ROOT}:ro", "-w", str(REPO_ROOT),
                             toolbox.image("dev"), "sh", "-c", f'python -c "{script}" && pg_restore --version'],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    majors, tools = result.stdout.splitlines()
    assert majors == "14 15 16 17 18"
    assert re.search(r"\) 18\.\d+", tools), tools


def test_image_labels_carry_the_pinned_versions(engine):
    labels = subprocess.run([engine, "image", "inspect", "--format", "{{json .Config.Labels}}",
                             toolbox.image("toolbox")], capture_output=True, text=True, check=True).stdout
    dockerfile = (REPO_ROOT / "toolbox" / "Dockerfile").read_text()
    for arg, label in (("TERRAFORM_VERSION", "terraform"), ("AWSCLI_VERSION", "awscli"),
                       ("POSTGRES_MAJOR", "postgresql-client")):
        pinned = re.search(rf"^ARG {arg}=(\S+)", dockerfile, re.M).group(1)
        assert f'"devops.toolbox.{label}":"{pinned}"' in labels


def test_terraform_in_the_image_matches_the_machine(engine):
    """The image copies Terraform from hashicorp/terraform:<TERRAFORM_VERSION>; it is the version pinned."""
    pinned = re.search(r"^ARG TERRAFORM_VERSION=(\S+)", (REPO_ROOT / "toolbox" / "Dockerfile").read_text(),
                       re.M).group(1)
    out = subprocess.run([engine, "run", "--rm", toolbox.image("toolbox"), "terraform", "version"],
                         capture_output=True, text=True).stdout
    assert out.startswith(f"Terraform v{pinned}")


@pytest.mark.parametrize("how", ["shim", "sdk"])
def test_a_terminal_gets_a_tty_and_the_exit_code(engine, how):
    """Under a terminal (script(1) gives one) the task gets a TTY, through the shim and the host's inv alike."""
    command = f"sh {SHIM} toolbox.shell" if how == "shim" else f"{sys.executable} -m invoke toolbox.shell"
    env = {k: v for k, v in os.environ.items() if k not in (toolbox.MARKER, "INVOKE_DEVOPS_TOOLBOX")}
    typed = "sleep 2; echo in-$DEVOPS_TOOLBOX; tty; exit 4\n"
    result = subprocess.run(["script", "-qec", command, "/dev/null"], cwd=REPO_ROOT, env=env, input=typed,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 4, result.stdout + result.stderr
    assert "in-toolbox" in result.stdout
    assert re.search(r"^/dev/pts/\d+\r?$", result.stdout, re.M), result.stdout
