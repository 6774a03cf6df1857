"""Helpers for the sandbox's processes and ports."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
import urllib.request
from typing import Callable

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
