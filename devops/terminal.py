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
- A signal that lands while a finalizer runs (a pipe's buffered writer flushed as it is collected, whose write
  the signal interrupts) raises inside that finalizer, and Python only prints it ("Exception ignored in ...")
  and goes on as if no one had pressed Ctrl-C. ``install``'s unraisable hook sends the signal again, to be
  raised where the task is.
"""

from __future__ import annotations

import _thread
import os
import select
import signal
import sys
import threading
from typing import Any

# 128 + the signal's number: the exit code a shell reports for a process that a signal ended.
SIGPIPE_EXIT = 128 + signal.SIGPIPE


class Interrupted(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised where the task is, like Ctrl-C's KeyboardInterrupt."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class OutputClosed(KeyboardInterrupt):
    """The task's reader has gone: end quietly (no line could reach anyone), exit 141."""


# The signal that interrupted the task (SIGINT, SIGTERM, SIGHUP), or None.
_interrupted: int | None = None
_ending = False
_python_unraisable_hook = sys.unraisablehook


def install() -> None:
    """The handlers, once per process (each task's wrapper calls it)."""
    global _python_unraisable_hook, _ending
    _ending = False
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _on_signal)
    # Python ignores SIGPIPE (a write then fails with EPIPE); this handler only acts on toolbox/inv's note.
    signal.signal(signal.SIGPIPE, _on_sigpipe)
    if sys.unraisablehook is not _unraisable:
        _python_unraisable_hook, sys.unraisablehook = sys.unraisablehook, _unraisable


def interrupted_by() -> int | None:
    """The signal that interrupted this task, if one did (what a failure right after it owes to it)."""
    return _interrupted


def ending() -> None:
    """The task is saying how it ended, its cleanup done: a signal now (a second Ctrl-C, or one sent again
    after a finalizer swallowed it) has nothing left to stop, and would only turn the last line into a
    traceback."""
    global _ending
    _ending = True


def _on_signal(signum: int, frame: Any) -> None:
    global _interrupted
    _interrupted = _interrupted or signum
    if not _ending:
        raise KeyboardInterrupt if signum == signal.SIGINT else Interrupted(signum)


def _unraisable(unraisable: Any) -> None:
    """An interrupt that a finalizer swallowed is sent again to the main thread. Not from this hook, which
    would raise it right here (and be ignored again), but from a thread of its own, which needs the GIL that
    the main thread holds until this hook and the finalizer have returned."""
    signum = signal.SIGPIPE if isinstance(unraisable.exc_value, OutputClosed) else _interrupted
    if isinstance(unraisable.exc_value, KeyboardInterrupt) and signum is not None:
        _thread.start_new_thread(signal.pthread_kill, (threading.main_thread().ident, signum))
        return
    _python_unraisable_hook(unraisable)


def _on_sigpipe(signum: int, frame: Any) -> None:
    token = os.environ.get("DEVOPS_TOOLBOX_TOKEN", "")
    # After an interrupt the task is already ending: its cleanup must not be cut short (Ctrl-C on
    # `inv ... | tee log` ends tee too, and the task's next line finds no reader).
    if token and not (_interrupted or _ending) and os.path.exists(f"/tmp/devops-output-closed-{token}"):
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
