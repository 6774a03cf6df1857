"""The toolbox: the pinned image (toolbox/Dockerfile) the tasks run in, and the host side that gets them there.

- Inside the image, DEVOPS_TOOLBOX is set (to its target, "toolbox" or "dev"): tasks run where they are.
- On a host with Python, ``inv TASK`` re-runs the same command line inside the image through the docker
  SDK (``reenter``, called at the start of the project's Executor.execute(): after Invoke has parsed the
  command line, so ``inv --list``/``--help`` stay native and fast), unless the ``devops.toolbox`` setting
  is ``host`` (INVOKE_DEVOPS_TOOLBOX=host): the switch the host-native test run sets.
- toolbox/inv does the same from a host with only Docker; it computes the same tag (content_hash), the
  same sandbox container name, and passes the same mounts and environment (keep the two in step).
- sandbox.* tasks run in a long-lived container per checkout, so that the sandbox's servers outlive the
  command that started them (sandbox_container).
- the other tasks of the runtime image are exec'd into a warm container of the checkout (warm_container):
  no container start per command.

The image is tagged by a hash of the files it is built from, so it is rebuilt exactly when the Dockerfile,
the requirements or the extra CA certificates change.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import select
import signal
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from invoke import Executor
from invoke.exceptions import Exit

from devops.config import REPO_ROOT
from devops.console import first_line, mask
from devops.errors import DevopsError

IMAGE = "devops-toolbox"
MARKER = "DEVOPS_TOOLBOX"
TARGETS = ("toolbox", "dev")
MODES = ("container", "host")
DOCKERFILE = "toolbox/Dockerfile"
# What the image is built from (the build context holds only these; see .dockerignore).
HASHED_FILES = ("requirements-checkov.lock", "requirements-checkov.txt", "requirements-dev.lock", "requirements-dev.txt",
                "requirements.lock", "requirements.txt", "toolbox/Dockerfile", "toolbox/entrypoint")
CERTS_DIR = "toolbox/certs"
# Tasks that need the dev image (a PostgreSQL server, the emulator, pytest), and tasks that manage the
# toolbox itself and so always run on the host.
DEV_TASKS = ("test", "demo", "sandbox.")
HOST_TASKS = ("toolbox.build", "toolbox.shell", "toolbox.stop")
# Passed through by name. Host paths (CA bundle, config files) mean nothing inside the container: the
# image trusts its CA store, and ~/.aws is mounted at the container's home.
PASS_PREFIXES = ("AWS_", "INVOKE_")
PASS_NAMES = ("NEON_DATABASE_URL", "TF_DATA_DIR", "TF_PROVIDER_MIRROR")
PATH_VARIABLES = ("AWS_CA_BUNDLE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE")
HOME = "/home/toolbox"
PLUGIN_VOLUME = "devops-toolbox-terraform"
PLUGIN_DIR = "/var/cache/devops-toolbox"
DOCKER_SOCKET = "/var/run/docker.sock"
# The image's entrypoint script (caller's passwd entry, provider mirror); docker exec does not run it.
ENTRYPOINT = "/usr/local/bin/toolbox-entrypoint"
# The warm container (warm_container): it removes itself after WARM_IDLE seconds with no task running in it
# (toolbox/inv passes the same loop; keep the two in step). Each exec records its PID for Ctrl-C and keeps
# Python's bytecode in the container's /tmp, never in the repository.
WARM_IDLE = 600
WARM_LABEL = "devops.toolbox.checkout"
WARM_LOOP = ("touch /tmp/devops-last-task; while sleep 15; do set -- /proc/[0-9]*; "
             "[ $# -gt 2 ] && touch /tmp/devops-last-task; "
             f"[ $(($(date +%s) - $(stat -c %Y /tmp/devops-last-task))) -lt {WARM_IDLE} ] || exit 0; done")
WARM_EXEC = ('touch /tmp/devops-last-task; echo $$ >"/tmp/devops-task-$0"; export PYTHONPYCACHEPREFIX=/tmp/devops-pycache; '
             'unset PYTHONDONTWRITEBYTECODE; exec "$@"')


class ToolboxError(DevopsError):
    pass


# --------------------------------------------------------------------------------------------------
# Where am I, and where should this run


def inside() -> str:
    """The image target we run in ("toolbox" or "dev"), or "" on a host."""
    return os.environ.get(MARKER, "")


def mode(config: Any) -> str:
    """The devops.toolbox setting: "container" (default) or "host"."""
    try:
        value = str(config.devops.get("toolbox") or "container")
    except AttributeError:
        value = "container"
    if value not in MODES:
        raise ToolboxError(f"invalid devops.toolbox {value!r}: use container or host (INVOKE_DEVOPS_TOOLBOX)")
    return value


def target_for(task_names: Iterable[str]) -> str:
    """The image a set of tasks needs: dev for the sandbox, the demo and the tests; toolbox otherwise."""
    names = list(task_names)
    return "dev" if any(n == p or (p.endswith(".") and n.startswith(p)) for n in names for p in DEV_TASKS) \
        else "toolbox"


def rerun_in_toolbox_if_needed(config: Any, task_names: list[str], argv: list[str],
                               with_engine: bool = False) -> int | None:
    """Run this whole command line (``inv`` + argv) inside the toolbox and return its exit code; None when
    it should run here (inside the image, a toolbox.* task, or devops.toolbox = host). ``with_engine``: the
    task needs the Docker engine (--on ecs builds and pushes the image)."""
    if inside() or any(name in HOST_TASKS for name in task_names) or mode(config) == "host":
        return None
    target = target_for(task_names)
    print(f"[INFO] running in the toolbox image ({target}); INVOKE_DEVOPS_TOOLBOX=host keeps tasks on this host",
          file=sys.stderr, flush=True)
    sandbox_task = next((name for name in task_names if name.startswith("sandbox.")), "")
    return run(["inv", *argv], target, task=sandbox_task, with_engine=with_engine)


def reenter(executor: Executor, tasks: tuple[Any, ...]) -> None:
    """The hook at the start of an Executor's execute(): when this invocation belongs in the toolbox, run
    it there and exit with its code (Invoke's Exit); otherwise return and let the tasks run here."""
    calls = executor.normalize(tasks)
    names = [call.called_as or call.task.name for call in calls]
    # The devops defaults and INVOKE_DEVOPS_* variables (Invoke maps a variable only onto a known key).
    executor.config.load_collection(executor.collection.configuration())
    executor.config.load_shell_env()
    on_ecs = (executor.config.get("devops", {}).get("runner") == "ecs"
              or any((call.kwargs or {}).get("on") == "ecs" for call in calls))
    try:
        code = rerun_in_toolbox_if_needed(executor.config, names, sys.argv[1:], with_engine=on_ecs)
    except DevopsError as exc:
        print(f"[ERROR] {mask(exc)}", file=sys.stderr)
        raise Exit(code=exc.exit_code) from None
    if code is not None:
        raise Exit(code=code)


# --------------------------------------------------------------------------------------------------
# The image


def content_hash(root: Path = REPO_ROOT) -> str:
    """12 hex digits over the files the image is built from; toolbox/inv computes the same in sh:
    ``sha256sum FILES | sha256sum`` (paths relative to the repository, in C-locale order)."""
    certs = sorted(str(p.relative_to(root)) for p in (root / CERTS_DIR).glob("*.crt"))
    lines = "".join(f"{hashlib.sha256((root / name).read_bytes()).hexdigest()}  {name}\n"
                    for name in sorted([*HASHED_FILES, *certs]))
    return hashlib.sha256(lines.encode()).hexdigest()[:12]


def image_tag(target: str, root: Path = REPO_ROOT) -> str:
    if target not in TARGETS:
        raise ToolboxError(f"unknown toolbox target {target!r}: use one of {', '.join(TARGETS)}")
    suffix = "" if target == "toolbox" else f"-{target}"
    return f"{IMAGE}:{content_hash(root)}{suffix}"


def client(hint: str = "start Docker, or run the tasks on this host with INVOKE_DEVOPS_TOOLBOX=host") -> Any:
    """A docker SDK client, or one clear line (ending with ``hint``) when there is no engine to talk to."""
    try:
        import docker
    except ImportError:
        raise ToolboxError("the docker SDK is not installed: pip install -r requirements.txt") from None
    try:
        engine = docker.from_env(version="auto", timeout=600)
        engine.ping()
        return engine
    except Exception as exc:  # docker raises several types here (DockerException, connection errors)
        raise ToolboxError(f"no Docker engine reachable ({first_line(exc)}): {hint}") from None


def ensure_image(target: str, engine: Any = None, rebuild: bool = False, out: Any = None) -> str:
    """The image's tag, built first when it is missing (or always with ``rebuild``)."""
    engine = engine or client()
    tag = image_tag(target)
    if not rebuild:
        with contextlib.suppress(Exception):
            engine.images.get(tag)
            return tag
    build(target, engine, out)
    return tag


def build(target: str, engine: Any = None, out: Any = None) -> str:
    """Build one target from the repository root, streaming Docker's output to ``out`` (stderr)."""
    engine = engine or client()
    out = out or sys.stderr
    tag = image_tag(target)
    print(f"[INFO] building {tag} (target {target}; the first build takes a few minutes)", file=out, flush=True)
    stream = engine.api.build(path=str(REPO_ROOT), dockerfile=DOCKERFILE, target=target, tag=tag,
                              network_mode="host", rm=True, forcerm=True, decode=True)
    for chunk in stream:
        if "error" in chunk:
            raise ToolboxError(f"building {tag} failed: {first_line(chunk['error'])}")
        if chunk.get("stream"):
            out.write(chunk["stream"])
            out.flush()
    return tag


# --------------------------------------------------------------------------------------------------
# Running a command in the image


def passed_environment(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The host variables a container gets (values travel through the API, never in argv)."""
    env = os.environ if environ is None else environ
    return {name: value for name, value in env.items()
            if (name.startswith(PASS_PREFIXES) or name in PASS_NAMES) and name not in PATH_VARIABLES}


def container_options(target: str, environ: Mapping[str, str] | None = None, engine: bool = False) -> dict[str, Any]:
    """Mounts, user, network and environment for a task container (as toolbox/inv passes them). The dev
    container, and one whose task needs the engine (``engine``: --on ecs), get the engine's socket."""
    env = passed_environment(environ)
    volumes: dict[str, dict[str, str]] = {
        # The repository at its own path, so the paths a task prints (and a nested docker run's -v) hold.
        str(REPO_ROOT): {"bind": str(REPO_ROOT), "mode": "rw"},
        PLUGIN_VOLUME: {"bind": PLUGIN_DIR, "mode": "rw"},
    }
    aws_dir = Path((os.environ if environ is None else environ).get("HOME") or Path.home()) / ".aws"
    if aws_dir.is_dir():
        volumes[str(aws_dir)] = {"bind": f"{HOME}/.aws", "mode": "ro"}
    mirror = env.get("TF_PROVIDER_MIRROR", "")
    if mirror and Path(mirror).is_dir():
        volumes[mirror] = {"bind": mirror, "mode": "ro"}
    group_add: list[str] = []
    # The shim tests start containers through the engine this process talks to (DOCKER_HOST's, if set).
    host = (os.environ if environ is None else environ).get("DOCKER_HOST", "")
    with_engine = target == "dev" or engine
    if with_engine and host and not host.startswith("unix://"):
        env["DOCKER_HOST"] = host  # tcp://...: reachable on the host's network
    elif with_engine and Path(host.removeprefix("unix://") or DOCKER_SOCKET).exists():
        socket_path = host.removeprefix("unix://") or DOCKER_SOCKET
        volumes[socket_path] = {"bind": DOCKER_SOCKET, "mode": "rw"}
        group_add.append(str(os.stat(socket_path).st_gid))
    return {"user": f"{os.getuid()}:{os.getgid()}", "working_dir": str(REPO_ROOT), "network_mode": "host",
            "environment": env, "volumes": volumes, "group_add": group_add}


def run(command: list[str], target: str = "toolbox", tty: bool | None = None, task: str = "",
        with_engine: bool = False) -> int:
    """Run ``command`` in a fresh container of the target image (a sandbox task: in the sandbox's
    container, see sandbox_container); its exit code.

    A TTY only when stdin and stdout are terminals; Ctrl-C reaches the task (through the TTY, or as
    SIGINT sent to it; a second one kills it)."""
    engine = client()
    tag = ensure_image(target, engine)
    tty = sys.stdin.isatty() and sys.stdout.isatty() if tty is None else tty
    if task.startswith("sandbox."):
        code = _run_in_sandbox_container(engine, tag, command, tty, task)
        if code is not None:
            return code
    elif target == "toolbox" and not with_engine and command[:1] == ["inv"]:
        return _run_in_warm_container(engine, tag, command, tty)
    container = _create(engine, tag, command, tty, target, with_engine=with_engine)
    try:
        sock = engine.api.attach_socket(container, params={"stdin": int(tty), "stdout": 1, "stderr": 1,
                                                           "stream": 1})
        engine.api.start(container)
        if tty:
            _pump_tty(sock, lambda h, w: engine.api.resize(container, height=h, width=w))
        else:
            _pump_plain(sock, lambda first: engine.api.kill(container, signal="SIGINT" if first else "SIGKILL"))
        return int(engine.api.wait(container)["StatusCode"])
    finally:
        with contextlib.suppress(Exception):
            engine.api.remove_container(container, force=True)


def _create(engine: Any, tag: str, command: list[str], tty: bool, target: str, name: str | None = None,
            with_engine: bool = False) -> str:
    """A task's container; named, the sandbox's: it gets no environment, which docker inspect would show for
    as long as it lives (secrets included): each exec into it brings its own."""
    options = container_options(target, engine=with_engine)
    return engine.api.create_container(
        tag, command=command, tty=tty, stdin_open=tty, user=options["user"], working_dir=options["working_dir"],
        environment=options["environment"] if name is None else {}, name=name,
        volumes=[v["bind"] for v in options["volumes"].values()],
        host_config=engine.api.create_host_config(
            binds=options["volumes"], network_mode=options["network_mode"], group_add=options["group_add"] or None),
    )["Id"]


def sandbox_container() -> str:
    """The long-lived container the sandbox's servers run in (one per checkout; toolbox/inv names it so too).

    The servers must outlive the command that starts them: sandbox.* tasks are exec'd into this container,
    other tasks (on the host's network) reach the servers on 127.0.0.1, and sandbox.down removes it."""
    return "devops-sandbox-" + hashlib.sha256(f"{REPO_ROOT}\n".encode()).hexdigest()[:12]


def _run_in_sandbox_container(engine: Any, tag: str, command: list[str], tty: bool, task: str) -> int | None:
    """Exec the task in the sandbox's container (started by sandbox.up); None when there is none to use."""
    name = sandbox_container()
    running = _running(engine, name)
    if not running and task == "sandbox.up":
        if running is not None:
            engine.api.remove_container(name, force=True)
        engine.api.start(_create(engine, tag, ["sleep", "infinity"], False, "dev", name=name))
        running = True
    if not running:
        return None
    def kill(exec_id: str, first: bool) -> None:
        os.kill(engine.api.exec_inspect(exec_id)["Pid"], signal.SIGINT if first else signal.SIGKILL)

    code = _exec(engine, name, [ENTRYPOINT, *command], tty, container_options("dev"), kill)
    # After sandbox.down, or a sandbox.up that failed (it stopped what it started), nothing runs there.
    if task == "sandbox.down" or (task == "sandbox.up" and code != 0):
        engine.api.remove_container(name, force=True)
    return code


def warm_container(tag: str, environ: Mapping[str, str] | None = None) -> str:
    """The name of the checkout's warm container for ``tag`` (toolbox/inv names it so too). It hashes what is
    fixed at its creation: the image, the caller's UID/GID and the mounts; a changed image gets a new one."""
    options = container_options("toolbox", environ)
    aws_dir = next((host for host, bind in options["volumes"].items() if bind["bind"] == f"{HOME}/.aws"), "")
    mirror = options["environment"].get("TF_PROVIDER_MIRROR", "")
    mirror = mirror if mirror in options["volumes"] else ""
    fixed = [str(REPO_ROOT), tag, options["user"], aws_dir, mirror]
    return "devops-toolbox-" + hashlib.sha256("".join(f"{item}\n" for item in fixed).encode()).hexdigest()[:12]


def _run_in_warm_container(engine: Any, tag: str, command: list[str], tty: bool) -> int:
    """Exec the task in the checkout's warm container, started first when it is not running. Created with
    no environment (docker inspect shows no secret): each exec brings its own."""
    name = warm_container(tag)
    options = container_options("toolbox")
    running = _running(engine, name)
    if not running:
        if running is not None:
            engine.api.remove_container(name, force=True)
        try:
            container = engine.api.create_container(
                tag, command=["sh", "-c", WARM_LOOP], user=options["user"], working_dir=options["working_dir"],
                name=name, labels={WARM_LABEL: str(REPO_ROOT)}, volumes=[v["bind"] for v in options["volumes"].values()],
                host_config=engine.api.create_host_config(binds=options["volumes"], network_mode="host",
                                                          auto_remove=True))["Id"]
            engine.api.start(container)
        except Exception as exc:  # noqa: BLE001 - two first runs at once: the loser uses the winner's
            if not _running(engine, name):
                raise ToolboxError(f"could not start the warm toolbox container {name}: {first_line(exc)}") from None
    token = f"{os.getpid()}-{int(time.time())}"

    def kill(exec_id: str, first: bool) -> None:
        # docker exec forwards no signal: SIGINT to the task's process group, from inside the container.
        signal_name = "INT" if first else "KILL"
        kill_id = engine.api.exec_create(name, ["sh", "-c", f'kill -{signal_name} -$(cat /tmp/devops-task-{token})'],
                                         user=options["user"])["Id"]
        engine.api.exec_start(kill_id)

    return _exec(engine, name, ["sh", "-c", WARM_EXEC, token, ENTRYPOINT, *command], tty, options, kill)


def _running(engine: Any, name: str) -> bool | None:
    """Whether the container ``name`` runs; None when there is no such container."""
    try:
        return engine.api.inspect_container(name)["State"]["Running"]
    except Exception:  # noqa: BLE001 - not found, or gone meanwhile
        return None


def _exec(engine: Any, name: str, command: list[str], tty: bool, options: dict[str, Any],
          kill: Callable[[str, bool], None]) -> int:
    """``command`` exec'd in the running container ``name`` with the task's environment and user, its output
    pumped here; without a terminal, Ctrl-C calls ``kill(exec_id, first)``. Its exit code."""
    exec_id = engine.api.exec_create(name, command, stdin=tty, tty=tty, environment=options["environment"],
                                     workdir=str(REPO_ROOT), user=options["user"])["Id"]
    sock = engine.api.exec_start(exec_id, tty=tty, socket=True)
    if tty:
        _pump_tty(sock, lambda h, w: engine.api.exec_resize(exec_id, height=h, width=w))
    else:
        _pump_plain(sock, lambda first: kill(exec_id, first))
    return int(engine.api.exec_inspect(exec_id)["ExitCode"] or 0)


def stop_warm_containers(engine: Any = None) -> int:
    """Remove the checkout's warm containers now (toolbox.stop); how many there were."""
    engine = engine or client()
    found = engine.api.containers(all=True, filters={"label": f"{WARM_LABEL}={REPO_ROOT}"})
    for container in found:
        engine.api.remove_container(container["Id"], force=True)
    return len(found)


def _pump_plain(sock: Any, kill: Any) -> None:
    from docker.utils.socket import frames_iter

    streams = {1: sys.stdout.buffer, 2: sys.stderr.buffer}
    interrupts = 0
    while True:
        try:
            for stream, data in frames_iter(sock, tty=False):
                target = streams.get(stream, sys.stdout.buffer)
                target.write(data)
                target.flush()
            return
        except KeyboardInterrupt:
            # The task gets the interrupt as it would in a terminal; a second Ctrl-C kills it.
            interrupts += 1
            with contextlib.suppress(Exception):
                kill(interrupts == 1)


def _pump_tty(sock: Any, resize_to: Any) -> None:
    """Shuttle bytes between this terminal (in raw mode: Ctrl-C goes to the container's TTY) and the TTY."""
    import termios
    import tty as ttymod

    raw = sock._sock  # the attach socket under its HTTP response wrapper
    stdin, stdout = sys.stdin.fileno(), sys.stdout.fileno()
    saved = termios.tcgetattr(stdin)

    def resize(*_: Any) -> None:
        with contextlib.suppress(Exception):
            size = os.get_terminal_size(stdout)
            resize_to(size.lines, size.columns)

    previous = signal.signal(signal.SIGWINCH, resize)
    try:
        ttymod.setraw(stdin, termios.TCSANOW)  # keeps what was typed ahead
        resize()
        while True:
            readable, _, _ = select.select([raw, stdin], [], [])
            if raw in readable:
                data = raw.recv(65536)
                if not data:
                    return
                os.write(stdout, data)
            if stdin in readable:
                data = os.read(stdin, 65536)
                if data:
                    raw.sendall(data)
    finally:
        termios.tcsetattr(stdin, termios.TCSADRAIN, saved)
        signal.signal(signal.SIGWINCH, previous)


# --------------------------------------------------------------------------------------------------
# Task bodies


def run_build(dev: bool, out: Any = None) -> None:
    engine = client()
    for target in ("toolbox", "dev") if dev else ("toolbox",):
        tag = build(target, engine, out)
        print(f"[PASS] {tag} built", file=out or sys.stderr)


def run_shell(dev: bool) -> int:
    """An interactive shell in the image (inside it already: a shell right here)."""
    if inside():
        os.execvp("bash", ["bash"])
    return run(["bash"], "dev" if dev else "toolbox")


def run_tests(pytest_args: str = "") -> int:
    """pytest over the whole suite, here (the dev image, or a host run with devops.toolbox = host)."""
    import shlex
    import subprocess

    code = subprocess.run([sys.executable, "-m", "pytest", *shlex.split(pytest_args)], cwd=REPO_ROOT).returncode
    if code == 5:
        # pytest's "no tests collected": this suite always has tests, so that is a failure.
        print("[ERROR] pytest collected no tests", file=sys.stderr)
        return 1
    return code
