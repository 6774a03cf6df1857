"""Helpers for the sandbox's processes and ports."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
import urllib.request
from typing import Any, Callable

from devops.errors import DevopsError
from devops.sandbox.postgres import HOST


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def port_open(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=1):
        return True
    return False


def pid_namespace() -> str:
    """This process's PID namespace ("pid:[4026531836]"; "" where /proc does not say): the host's, or one
    container's. A PID names a process only in the namespace that gave it."""
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""


def elsewhere(state: dict[str, Any]) -> bool:
    """Whether the sandbox ``state`` describes was started in another PID namespace than this process runs in
    (on the host, asked from the toolbox's sandbox container, or the reverse): its PIDs mean nothing here."""
    return state.get("pid_namespace", pid_namespace()) != pid_namespace()


def runs(state: dict[str, Any], pid: int | None, port: int) -> bool:
    """Whether a process the sandbox started still runs and listens on ``port``. Its PID says so in the
    namespace that started it; from another one, where that PID is another process or none, its port alone."""
    if elsewhere(state):
        return port_open(port)
    return pid_alive(pid) and port_open(port)


def pid_alive(pid: int | None) -> bool:
    """True while the process runs (a zombie, exited but not yet reaped by its parent, counts as gone)."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError):
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[-1].split()[0] != "Z"
    return True


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise DevopsError(f"{what} did not come up within {timeout:.0f}s")
        time.sleep(0.1)


def http_ok(url: str) -> bool:
    """True when ``url`` answers 200 within a second."""
    try:
        with urllib.request.urlopen(url, timeout=1) as reply:
            return reply.status == 200
    except OSError:
        return False


def terminate_group(pid: int, timeout: float = 10) -> None:
    """Stop the process group ``pid`` leads (a started component and its children): SIGTERM, then SIGKILL
    after ``timeout`` seconds."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while pid_alive(pid) and time.monotonic() < deadline:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            time.sleep(0.1)
        if pid_alive(pid):
            os.killpg(pid, signal.SIGKILL)
