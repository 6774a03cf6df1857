"""The toolbox: the sh shim (toolbox/inv), the host-side re-run through the docker SDK, and the reason the
image exists (pg_dump 17 against a PostgreSQL 17 server, which an older host pg_dump refuses).

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
from tests.conftest import PROVIDER_MIRRORS
from devops.sync.pipeline import PipelineError, ToolVersions, check_tools_match_servers

SHIM = REPO_ROOT / "toolbox" / "inv"
SCRATCH = REPO_ROOT / ".toolbox-tmp"
# What toolbox/inv runs with besides docker: a host with only Docker and core utilities.
CORE_UTILITIES = ("sh", "dirname", "id", "sha256sum", "sort", "cut", "env", "grep", "stat", "tail", "cat",
                  "sleep")


@pytest.fixture
def scratch():
    SCRATCH.mkdir(exist_ok=True)
    path = SCRATCH / uuid.uuid4().hex[:8]
    path.mkdir()
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _bin_dir(path: Path, docker: str | None) -> str:
    """A PATH holding only the core utilities (and docker when given): no python3."""
    path.mkdir()
    for name in CORE_UTILITIES:
        os.symlink(shutil.which(name), path / name)
    if docker:
        os.symlink(docker, path / "docker")
    return str(path)


def _shim_env(bin_dir: str, **extra: str) -> dict[str, str]:
    keep = ("HOME", "DOCKER_HOST", "TF_PROVIDER_MIRROR")
    env = {k: v for k, v in os.environ.items() if k in keep}
    # The machine's provider mirror, for the sandbox's Terraform in the container (toolbox/entrypoint).
    mirror = next((m for m in (env.get("TF_PROVIDER_MIRROR", ""), *PROVIDER_MIRRORS)
                   if m and Path(m, "registry.terraform.io").is_dir()), None)
    if mirror:
        env["TF_PROVIDER_MIRROR"] = mirror
    return {**env, "PATH": bin_dir, **extra}


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
    allowed = (REPO_ROOT / ".dockerignore").read_text().splitlines()
    for lock in LOCKS.values():
        assert f"COPY {lock} /opt/devops/{lock}" in dockerfile
        assert lock in toolbox.HASHED_FILES and f"!{lock}" in allowed


def test_a_changed_lock_changes_the_image_tag(tmp_path):
    for name in (*toolbox.HASHED_FILES, toolbox.CERTS_DIR):
        source, copy = REPO_ROOT / name, tmp_path / name
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(source, copy) if source.is_dir() else shutil.copy(source, copy)
    before = toolbox.content_hash(tmp_path)
    assert before == toolbox.content_hash(REPO_ROOT)
    with open(tmp_path / "requirements-dev.lock", "a") as lock:
        lock.write("# changed\n")
    assert toolbox.content_hash(tmp_path) != before


def test_target_for_picks_the_dev_image_for_the_sandbox_demo_and_tests():
    assert toolbox.target_for(["validate"]) == "toolbox"
    assert toolbox.target_for(["sync.neon-to-rds"]) == "toolbox"
    assert toolbox.target_for(["sandbox.up"]) == "dev"
    assert toolbox.target_for(["demo"]) == "dev"
    assert toolbox.target_for(["test"]) == "dev"


def test_passed_environment_by_prefix_without_host_paths():
    env = {"AWS_PROFILE": "dev", "AWS_CA_BUNDLE": "/host/ca.pem", "INVOKE_DEVOPS_RDS_ADDRESS": "127.0.0.1:1",
           "NEON_DATABASE_URL": "postgresql://u:p@h/db", "TF_DATA_DIR": "/x", "HOME": "/root", "PATH": "/bin"}
    assert toolbox.passed_environment(env) == {
        "AWS_PROFILE": "dev", "INVOKE_DEVOPS_RDS_ADDRESS": "127.0.0.1:1",
        "NEON_DATABASE_URL": "postgresql://u:p@h/db", "TF_DATA_DIR": "/x"}


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


def _warm_name(**extra: str) -> str:
    """The warm container toolbox/inv uses for the runtime image, with the shim's environment."""
    return toolbox.warm_container(toolbox.image_tag("toolbox"), _shim_env("", **extra))


def test_shim_passes_names_not_values_and_returns_the_exit_code(tmp_path):
    fake = tmp_path / "docker"
    fake.write_text(FAKE_DOCKER)
    fake.chmod(0o755)
    log = tmp_path / "calls.log"
    secret = "s3cr3t-pw"
    (tmp_path / "home" / ".aws").mkdir(parents=True)
    env = _shim_env(_bin_dir(tmp_path / "bin", str(fake)), FAKE_DOCKER_LOG=str(log), HOME=str(tmp_path / "home"),
                    NEON_DATABASE_URL=f"postgresql://owner:{secret}@example/db", AWS_PROFILE="dev",
                    AWS_CA_BUNDLE="/host/only.pem", INVOKE_DEVOPS_PROJECT_NAME="acme")
    result = subprocess.run(["sh", str(SHIM), "sync.neon-to-rds", "--dry-run"], env=env, stdin=subprocess.DEVNULL,
                            capture_output=True, text=True)
    assert result.returncode == 7, result.stderr
    calls = log.read_text().splitlines()
    assert secret not in log.read_text()
    # The warm container: created once, with the mounts and no environment; the task is exec'd into it.
    created = [line for line in calls if line.startswith("run ")]
    executed = [line for line in calls if line.startswith("exec ")]
    assert len(created) == 1 and len(executed) == 1, calls
    warm = _warm_name(HOME=str(tmp_path / "home"))
    assert f"--name {warm} " in created[0] and f" {toolbox.image_tag('toolbox')} sh -c " in created[0]
    assert " -e " not in created[0]
    assert f"--user {os.getuid()}:{os.getgid()}" in created[0]
    assert f"-v {REPO_ROOT}:{REPO_ROOT} -w {REPO_ROOT}" in created[0]
    assert "--network host" in created[0]
    assert f"-v {tmp_path}/home/.aws:/home/toolbox/.aws:ro" in created[0]
    assert executed[0].split()[-3:] == ["inv", "sync.neon-to-rds", "--dry-run"]
    assert f" {warm} sh -c " in executed[0]
    for name in ("NEON_DATABASE_URL", "AWS_PROFILE", "INVOKE_DEVOPS_PROJECT_NAME"):
        assert f"-e {name} " in executed[0]
    assert "AWS_CA_BUNDLE" not in executed[0]
    assert " -t " not in f" {executed[0]} "  # stdin is not a terminal: no TTY


def test_shim_uses_the_dev_image_for_the_tests(tmp_path):
    fake = tmp_path / "docker"
    fake.write_text(FAKE_DOCKER)
    fake.chmod(0o755)
    log = tmp_path / "calls.log"
    env = _shim_env(_bin_dir(tmp_path / "bin", str(fake)), FAKE_DOCKER_LOG=str(log))
    subprocess.run(["sh", str(SHIM), "test"], env=env, stdin=subprocess.DEVNULL, capture_output=True)
    assert f"{toolbox.image_tag('dev')} inv test" in log.read_text()


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
    fake = tmp_path / "docker"
    fake.write_text(KEEPER_DOCKER)
    fake.chmod(0o755)
    log = tmp_path / "calls.log"
    env = _shim_env(_bin_dir(tmp_path / "bin", str(fake)), FAKE_DOCKER_LOG=str(log),
                    NEON_DATABASE_URL="postgresql://owner:pw@example/db", AWS_SECRET_ACCESS_KEY="very-secret")
    result = subprocess.run(["sh", str(SHIM), "sandbox.up"], env=env, stdin=subprocess.DEVNULL,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    calls = log.read_text().splitlines()
    created = [line for line in calls if line.startswith("run ") and " -d --name " in line]
    executed = [line for line in calls if line.startswith("exec ")]
    assert len(created) == 1 and len(executed) == 1, calls
    assert " -e " not in created[0] and "pw" not in created[0]
    assert "-e NEON_DATABASE_URL" in executed[0] and "-e AWS_SECRET_ACCESS_KEY" in executed[0]


def _shim_calls(tmp_path: Path, *args: str, **extra: str) -> list[str]:
    """What the shim asks a stand-in docker (FAKE_DOCKER) for ``args``."""
    fake = tmp_path / "docker"
    if not fake.exists():
        fake.write_text(FAKE_DOCKER)
        fake.chmod(0o755)
        _bin_dir(tmp_path / "bin", str(fake))
    log = tmp_path / "calls.log"
    log.write_text("")
    subprocess.run(["sh", str(SHIM), *args], env=_shim_env(str(tmp_path / "bin"), FAKE_DOCKER_LOG=str(log), **extra),
                   stdin=subprocess.DEVNULL, capture_output=True)
    return log.read_text().splitlines()


def _image_run(calls: list[str]) -> str:
    """The line that runs the task: a container started for it, or an exec into the warm container."""
    return next(line for line in calls if line.startswith(("run ", "exec ")) and " -d --rm --name " not in line)


def test_shim_picks_the_image_from_task_names_only(tmp_path):
    runtime, dev = toolbox.image_tag("toolbox"), toolbox.image_tag("dev")
    # An option's value that looks like a task name picks nothing (nor a sandbox container).
    for args in (["sync.restore", "--key", "test", "--to", "rds"], ["sync.restore", "-t", "rds", "-k", "sandbox.up"],
                 ["-c", "demo", "validate"]):
        calls = _shim_calls(tmp_path, *args)
        assert f" {_warm_name()} sh -c " in _image_run(calls) and f" inv {args[0]}" in _image_run(calls), calls
        assert not any(toolbox.sandbox_container() in line for line in calls), calls
    assert f" {dev} inv test --pytest-args -k validate" in _image_run(
        _shim_calls(tmp_path, "test", "--pytest-args", "-k validate"))
    # --dev, wherever it is, for the toolbox tasks.
    for args in (["toolbox.shell", "--dev"], ["--dev", "toolbox.shell"], ["toolbox.shell", "-d"]):
        assert f" {dev} inv " in _image_run(_shim_calls(tmp_path, *args)), args
    assert f" {runtime} inv " in _image_run(_shim_calls(tmp_path, "toolbox.shell"))


def test_the_shims_value_options_are_the_tasks():
    """The shim skips the values of these options; they must be exactly the tasks' non-boolean ones."""
    from tasks import ns

    def value_options(collection) -> set[str]:
        found = {f"--{n}" if len(n) > 1 else f"-{n}" for task in collection.tasks.values()
                 for arg in task.get_arguments() if arg.kind is not bool for n in arg.names}
        return found.union(*(value_options(sub) for sub in collection.collections.values()))

    listed = re.search(r'^TASK_VALUE_OPTIONS="([^"]*)"', SHIM.read_text(), re.M).group(1).split()
    assert set(listed) == value_options(ns)


def test_shim_and_sdk_mount_the_engine_docker_host_names(tmp_path):
    engine_socket = socket.socket(socket.AF_UNIX)
    engine_socket.bind(str(tmp_path / "engine.sock"))
    try:
        run = _image_run(_shim_calls(tmp_path, "test", DOCKER_HOST=f"unix://{tmp_path}/engine.sock"))
        assert f"-v {tmp_path}/engine.sock:/var/run/docker.sock" in run, run
        options = toolbox.container_options("dev", environ={"DOCKER_HOST": f"unix://{tmp_path}/engine.sock"})
        assert options["volumes"][f"{tmp_path}/engine.sock"]["bind"] == "/var/run/docker.sock"
        assert options["group_add"] == [str(os.stat(tmp_path / "engine.sock").st_gid)]
    finally:
        engine_socket.close()
    # An engine over TCP: the dev container (on the host's network) is told where it is.
    run = _image_run(_shim_calls(tmp_path, "test", DOCKER_HOST="tcp://127.0.0.1:2375"))
    assert "-e DOCKER_HOST" in run
    assert toolbox.container_options("dev", environ={"DOCKER_HOST": "tcp://127.0.0.1:2375"})["environment"][
        "DOCKER_HOST"] == "tcp://127.0.0.1:2375"


def test_a_task_run_on_ecs_gets_the_engine_in_the_shim_and_the_sdk(tmp_path):
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
        assert f"{tmp_path}/engine.sock" in toolbox.container_options("toolbox", environ=host, engine=True)["volumes"]
        assert f"{tmp_path}/engine.sock" not in toolbox.container_options("toolbox", environ=host)["volumes"]
    finally:
        engine_socket.close()


def test_shim_without_docker_says_so_in_one_line(tmp_path):
    env = _shim_env(_bin_dir(tmp_path / "bin", None))
    result = subprocess.run(["sh", str(SHIM), "validate"], env=env, capture_output=True, text=True)
    assert result.returncode == 1
    assert result.stderr.splitlines() == ["[ERROR] docker not found on PATH: install Docker (the toolbox needs nothing else)"]


def test_shim_with_no_docker_engine_says_so_in_one_line(tmp_path):
    docker = shutil.which("docker")
    if not docker:
        pytest.skip("no docker CLI on this machine")
    env = _shim_env(_bin_dir(tmp_path / "bin", docker), DOCKER_HOST=f"unix://{tmp_path}/no-engine.sock")
    result = subprocess.run(["sh", str(SHIM), "validate"], env=env, capture_output=True, text=True)
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("[ERROR] no Docker engine reachable"), result.stderr
    assert "Traceback" not in result.stderr


def test_host_inv_with_no_docker_engine_says_so_in_one_line(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in (toolbox.MARKER, "INVOKE_DEVOPS_TOOLBOX")}
    env["DOCKER_HOST"] = f"unix://{tmp_path}/no-engine.sock"
    result = subprocess.run([sys.executable, "-m", "invoke", "validate"], cwd=REPO_ROOT, env=env,
                            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if not line.startswith("[INFO]")]
    assert len(lines) == 1 and lines[0].startswith("[ERROR] no Docker engine reachable"), result.stderr
    assert "INVOKE_DEVOPS_TOOLBOX=host" in lines[0]


# --------------------------------------------------------------------------------------------------
# Against the real engine


def _engine_reachable() -> bool:
    docker = shutil.which("docker")
    return bool(docker) and subprocess.run([docker, "version"], capture_output=True).returncode == 0


@pytest.fixture(scope="module")
def engine():
    if not _engine_reachable():
        if toolbox.inside() == "dev":
            pytest.fail("no Docker engine in the dev container: toolbox/inv mounts /var/run/docker.sock")
        pytest.skip("no Docker engine reachable on this host")
    # Both images, built once when missing (toolbox/inv builds them the same way).
    for target in ("toolbox", "dev"):
        toolbox.ensure_image(target)
    return shutil.which("docker")


@pytest.fixture
def docker_only_path(engine, scratch):
    return _bin_dir(scratch / "bin", engine)


def test_shim_runs_with_only_docker_and_core_utilities(docker_only_path):
    assert shutil.which("python3", path=docker_only_path) is None
    result = subprocess.run(["sh", str(SHIM), "--version"], env=_shim_env(docker_only_path),
                            stdin=subprocess.DEVNULL, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Invoke ")


def test_shim_passes_the_exit_code_through(docker_only_path):
    shell = subprocess.run(["sh", str(SHIM), "toolbox.shell"], env=_shim_env(docker_only_path),
                           input="exit 42\n", capture_output=True, text=True)
    assert shell.returncode == 42, shell.stderr
    unknown = subprocess.run(["sh", str(SHIM), "no-such-task"], env=_shim_env(docker_only_path),
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
                            env=_shim_env(docker_only_path, HOME=str(repo)),
                            input="touch made-in-the-container && id -u\n", capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(uid)
    made = (repo / "made-in-the-container").stat()
    assert (made.st_uid, made.st_gid) == (uid, gid)


def test_ctrl_c_reaches_the_task(docker_only_path):
    script = "trap 'echo interrupted; exit 130' INT\necho ready\nsleep 60 & wait\n"
    process = subprocess.Popen(["sh", str(SHIM), "toolbox.shell"], env=_shim_env(docker_only_path),
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        process.stdin.write(script)
        process.stdin.close()
        assert process.stdout.readline().strip() == "ready"
        time.sleep(0.5)
        process.send_signal(signal.SIGINT)  # what Ctrl-C sends to the shim in a terminal
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
    env = _shim_env(docker_only_path, AWS_SECRET_ACCESS_KEY="very-secret-key")
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
        process = subprocess.Popen([*shim, "secrets.set-neon-url"], env=env, stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            time.sleep(5)
            process.send_signal(signal.SIGINT)
            process.wait(timeout=60)
            err = process.stderr.read()
        finally:
            process.kill()
        assert process.returncode == 130 and "[ERROR] interrupted" in err, err
        # A changed image (here: a changed lock file, the image tagged under its new hash): a new container.
        (repo / "requirements-checkov.txt").write_text((repo / "requirements-checkov.txt").read_text() + "# changed\n")
        extra_tag = toolbox.image_tag("toolbox", repo)
        subprocess.run([engine, "tag", toolbox.image_tag("toolbox"), extra_tag], check=True)
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
    assert "[INFO] running in the toolbox image (dev)" in result.stderr
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
    assert asked and set(asked) == {toolbox.sandbox_container()}


def test_the_sandbox_outlives_each_command_on_a_docker_only_host(engine, docker_only_path, scratch):
    """sandbox.up leaves its servers in the checkout's sandbox container; later commands, each in a fresh
    container, find them: the Docker-only user's workflow, through the shim."""
    repo = _copy_repo(scratch)
    shim = ["sh", str(repo / "toolbox" / "inv")]
    env = _shim_env(docker_only_path)
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
# Why the toolbox exists: the Neon stand-in in the toolbox is PostgreSQL 17


@pytest.fixture
def postgres17(engine):
    """A PostgreSQL 17 server from the dev image on 127.0.0.1 (trust auth on loopback: no password)."""
    port = free_port()
    name = f"devops-test-pg17-{uuid.uuid4().hex[:8]}"
    bin_dir = "/usr/lib/postgresql/17/bin"
    script = (f"{bin_dir}/initdb -D /tmp/pg -U postgres --auth=trust >/dev/null && exec {bin_dir}/postgres "
              f"-D /tmp/pg -c listen_addresses=127.0.0.1 -c unix_socket_directories= -p {port}")
    subprocess.run([engine, "run", "-d", "--rm", "--network", "host", "--name", name, toolbox.image_tag("dev"),
                    "sh", "-c", script], check=True, capture_output=True)
    try:
        deadline = time.monotonic() + 60
        while subprocess.run([engine, "exec", name, f"{bin_dir}/pg_isready", "-h", "127.0.0.1", "-p", str(port)],
                             capture_output=True).returncode != 0:
            assert time.monotonic() < deadline, "PostgreSQL 17 did not start"
            time.sleep(0.3)
        yield port
    finally:
        subprocess.run([engine, "rm", "-f", name], capture_output=True)


def _host_pg_dump(engine: str) -> list[str] | None:
    """How to run this host's own pg_dump: directly, or (from the dev container) in the host's root
    filesystem through a container that chroots into it."""
    if toolbox.inside():
        prefix = [engine, "run", "--rm", "--network", "host", "--user", "0", "-v", "/:/host:ro",
                  "--entrypoint", "chroot", toolbox.image_tag("toolbox"), "/host"]
        found = subprocess.run([*prefix, "sh", "-c", "command -v pg_dump"], capture_output=True, text=True)
        return [*prefix, "pg_dump"] if found.returncode == 0 else None
    binary = shutil.which("pg_dump")
    return [binary] if binary else None


def test_an_older_host_pg_dump_refuses_postgres_17_and_the_toolbox_succeeds(engine, postgres17):
    host_pg_dump = _host_pg_dump(engine)
    version_out = subprocess.run([*host_pg_dump, "--version"], capture_output=True, text=True).stdout \
        if host_pg_dump else ""
    found = re.search(r"(\d+)\.(\d+)", version_out)
    if not found or int(found.group(1)) >= 17:
        pytest.skip(f"this host has no pg_dump older than 17 to show the refusal ({version_out.strip() or 'none'})")
    host_version = found.group(0)
    target = ["-h", "127.0.0.1", "-p", str(postgres17), "-U", "postgres", "-Fc", "postgres"]

    refused = subprocess.run([*host_pg_dump, *target], capture_output=True, text=True)
    assert refused.returncode != 0
    assert "server version mismatch" in refused.stderr
    # The tasks say it before trying, in one line that names the way out.
    with pytest.raises(PipelineError, match=rf"pg_dump {host_version} is older than the Neon server "
                                            r"\(PostgreSQL 17\).*toolbox"):
        check_tools_match_servers(ToolVersions({"pg_dump": host_version, "pg_restore": host_version,
                                                "psql": host_version}), {"Neon": 170000})

    in_toolbox = subprocess.run([engine, "run", "--rm", "--network", "host", toolbox.image_tag("toolbox"),
                                 "pg_dump", *target], capture_output=True, text=True)
    assert in_toolbox.returncode == 0, in_toolbox.stderr
    version = subprocess.run([engine, "run", "--rm", toolbox.image_tag("toolbox"), "pg_dump", "--version"],
                             capture_output=True, text=True).stdout
    assert re.search(r"\) 17\.\d+", version), version


def test_the_dev_image_has_the_server_majors_neon_and_rds_run(engine):
    """In the container the sandbox's stand-ins run PostgreSQL 17 (Neon) and 15 (an older RDS), and the
    client tools on PATH stay 17's."""
    script = ("from devops.sandbox import find_pg_bin, server_major; "
              "print(*[server_major(find_pg_bin(m)) for m in ('17', '15')])")
    result = subprocess.run([engine, "run", "--rm", "-v", f"{REPO_ROOT}:{REPO_ROOT}:ro", "-w", str(REPO_ROOT),
                             toolbox.image_tag("dev"), "sh", "-c", f'python -c "{script}" && pg_restore --version'],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    majors, tools = result.stdout.splitlines()
    assert majors == "17 15"
    assert re.search(r"\) 17\.\d+", tools), tools


def test_image_labels_carry_the_pinned_versions(engine):
    labels = subprocess.run([engine, "image", "inspect", "--format", "{{json .Config.Labels}}",
                             toolbox.image_tag("toolbox")], capture_output=True, text=True, check=True).stdout
    dockerfile = (REPO_ROOT / "toolbox" / "Dockerfile").read_text()
    for arg, label in (("TERRAFORM_VERSION", "terraform"), ("AWSCLI_VERSION", "awscli"),
                       ("POSTGRES_MAJOR", "postgresql-client")):
        pinned = re.search(rf"^ARG {arg}=(\S+)", dockerfile, re.M).group(1)
        assert f'"devops.toolbox.{label}":"{pinned}"' in labels


def test_terraform_in_the_image_matches_the_machine(engine):
    """The image copies Terraform from hashicorp/terraform:<TERRAFORM_VERSION>; it is the version pinned."""
    pinned = re.search(r"^ARG TERRAFORM_VERSION=(\S+)", (REPO_ROOT / "toolbox" / "Dockerfile").read_text(),
                       re.M).group(1)
    out = subprocess.run([engine, "run", "--rm", toolbox.image_tag("toolbox"), "terraform", "version"],
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
