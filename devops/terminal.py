"""How a task ends when its terminal says so: the signals a terminal or a CI runner sends, and a reader that
has gone (``inv sync.list | head -1``).

- SIGINT (Ctrl-C) stays Python's KeyboardInterrupt; SIGTERM and SIGHUP raise ``Interrupted``, a
  KeyboardInterrupt too, so that every cleanup written for Ctrl-C (a restore rolled back, the sync's lock
  released, a multipart upload aborted) runs for them as well. Exit 128 + the signal's number.
- A reader that closed stdout or stderr early: ``OutputClosed``, a quiet exit 141 (128 + SIGPIPE), as a
  shell expects of a process killed by SIGPIPE. On the host Python sees it as a BrokenPipeError on stdout
  (``output_gone`` tells it from a broken pipe to a child process, which stays an error). In the toolbox the
  task's stdout is the engine's pipe, which never breaks: toolbox/inv sends SIGPIPE and leaves a note
  (/tmp/devops-output-closed-TOKEN) saying that this SIGPIPE is about the task's output.
"""

from __future__ import annotations

import os
import select
import signal
import sys
from typing import Any

# 128 + the signal's number: the exit code a shell reports for a process that a signal ended.
SIGPIPE_EXIT = 128 + signal.SIGPIPE


class Interrupted(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised where the task is, like Ctrl-C's KeyboardInterrupt."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.exit_code = 128 + signum


class OutputClosed(KeyboardInterrupt):
    """The task's reader has gone: end quietly (no line could reach anyone), exit 141."""


_interrupted = False


def install() -> None:
    """The handlers, once per process (each task's wrapper calls it)."""
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _on_signal)
    # Python ignores SIGPIPE (a write then fails with EPIPE); this handler only acts on toolbox/inv's note.
    signal.signal(signal.SIGPIPE, _on_sigpipe)


def _on_signal(signum: int, frame: Any) -> None:
    global _interrupted
    _interrupted = True
    raise KeyboardInterrupt if signum == signal.SIGINT else Interrupted(signum)


def _on_sigpipe(signum: int, frame: Any) -> None:
    token = os.environ.get("DEVOPS_TOOLBOX_TOKEN", "")
    # After an interrupt the task is already ending: its cleanup must not be cut short (Ctrl-C on
    # `inv ... | tee log` ends tee too, and the task's next line finds no reader).
    if token and not _interrupted and os.path.exists(f"/tmp/devops-output-closed-{token}"):
        raise OutputClosed


def output_gone() -> bool:
    """Whether the reader of stdout or stderr has gone (a pipe whose read end is closed polls as an error)."""
    poller = select.poll()
    for fd in (1, 2):
        poller.register(fd, select.POLLOUT)
    try:
        return any(event & select.POLLERR for _, event in poller.poll(0))
    except OSError:
        return False


def silence_output() -> None:
    """Point stdout and stderr at /dev/null: the interpreter's last flush finds no broken pipe to complain of."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    for fd in (1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass


def quiet_broken_pipe() -> None:
    """Outside a task too (``inv --list | head -3``: Invoke's own output), a reader that has gone ends the
    program quietly with 141, as it ends any Unix tool; every other uncaught error keeps Python's report."""
    previous = sys.excepthook

    def hook(kind: type[BaseException], value: BaseException, trace: Any) -> None:
        if issubclass(kind, BrokenPipeError) and output_gone():
            silence_output()
            os._exit(SIGPIPE_EXIT)
        previous(kind, value, trace)

    sys.excepthook = hook
