"""The toolbox: the pinned image (toolbox/Dockerfile) the tasks run in, and how a host gets them there.

toolbox/inv, a POSIX sh script, is the one way into the toolbox: it picks the image, builds it when
missing, and runs the task in a container with the terminal contract docs/toolbox.md describes (stdin, pipes,
signals, exit codes). A host with only Docker runs it directly; a plain ``inv`` on a host with Python execs
it with its own argument list (``reenter``, called at the start of the project's Executor.execute(): after
Invoke has parsed the command line, so ``inv --list``/``--help`` stay native and fast), unless the
``devops.toolbox`` setting is ``host`` (INVOKE_DEVOPS_TOOLBOX=host): the switch the host-native test run sets.

What is left here is what the shim cannot do: the docker SDK client that ``--on ecs`` builds and pushes its
image with (devops/remote.py), and the task bodies that run inside the image.
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any, NoReturn

from invoke import Executor

from devops import hints
from devops.config import REPO_ROOT
from devops.errors import DevopsError
from devops.masking import first_line, last_line

MARKER = "DEVOPS_TOOLBOX"
MODES = ("container", "host")
SHIM = REPO_ROOT / "toolbox" / "inv"
DOCKERFILE = "toolbox/Dockerfile"
TARGETS = ("toolbox", "dev")


class ToolboxError(DevopsError):
    pass


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


def reenter(executor: Executor, tasks: tuple[Any, ...]) -> None:
    """The hook at the start of an Executor's execute(): on a host (devops.toolbox = container), this whole
    invocation becomes toolbox/inv's, with the same arguments; inside the image, or with devops.toolbox =
    host, return and let the tasks run here."""
    # The devops defaults and INVOKE_DEVOPS_* variables (Invoke maps a variable only onto a known key): the
    # tasks read them from this config wherever they run.
    executor.config.load_collection(executor.collection.configuration())
    executor.config.load_shell_env()
    if inside():
        return
    try:
        if mode(executor.config) == "host":
            return
    except DevopsError as exc:
        print(f"[ERROR] {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    print("[INFO] running in the toolbox image; INVOKE_DEVOPS_TOOLBOX=host keeps tasks on this host",
          file=sys.stderr, flush=True)
    exec_shim(sys.argv[1:])


def exec_shim(args: list[str]) -> NoReturn:
    """Become ``toolbox/inv ARGS``: its stdin, output, signals and exit code are this process's."""
    # The user typed `inv`: the hints the task prints say so (the shim would name itself).
    os.environ.setdefault(hints.INV_ENV, "inv")
    sys.stdout.flush()
    sys.stderr.flush()
    os.execvp("sh", ["sh", str(SHIM), *args])


def image(target: str = "toolbox") -> str:
    """The toolbox image's tag for ``target``, built first when missing. Inside that image: the tag
    toolbox/inv started it from (DEVOPS_TOOLBOX_IMAGE); elsewhere toolbox/inv says (``toolbox.image``)."""
    if target not in TARGETS:
        raise ToolboxError(f"unknown toolbox target {target!r}: use one of {', '.join(TARGETS)}")
    if inside() == target and os.environ.get("DEVOPS_TOOLBOX_IMAGE"):
        return os.environ["DEVOPS_TOOLBOX_IMAGE"]
    try:
        found = subprocess.run(["sh", str(SHIM), "toolbox.image", *(["--dev"] if target == "dev" else [])],
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    except OSError as exc:
        raise ToolboxError(f"could not run toolbox/inv: {exc}") from None
    tag = found.stdout.strip()
    if found.returncode != 0 or not tag:
        raise ToolboxError(last_line(found.stderr).removeprefix("[ERROR] ")
                           or f"toolbox/inv toolbox.image exited {found.returncode}")
    return tag


def client(hint: str = "start Docker") -> Any:
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


# --------------------------------------------------------------------------------------------------
# Task bodies


def run_shell(dev: bool) -> None:
    """An interactive shell in the image (inside it already: a shell right here)."""
    if inside():
        os.execvp("bash", ["bash"])
    exec_shim(["toolbox.shell", *(["--dev"] if dev else [])])


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
