"""`inv` as the toolbox runs it (``python -m devops.inv ARGS``): Invoke's program, ended without Python's teardown.

A task leaves botocore's clients and models, psycopg2 and the rest in memory; when the interpreter exits it
frees them one object at a time: about 0.25 s a task, for a process that is ending anyway. So once Invoke's
program has returned (or exited with its code), the exit handlers run (atexit: logging, temporary files),
the standard streams are flushed, and the process ends at once with that code. Threads still running (a
validate check past its timeout) end with it, as they would not under Python's own exit, which waits.

Anything else (Ctrl-C's KeyboardInterrupt, an error) takes Python's usual way out, untouched.
"""

from __future__ import annotations

import atexit
import os
import sys

from invoke.main import program

from devops.terminal import SIGPIPE_EXIT, silence_output


def exit_code(value: object) -> int:
    """The code Python gives a SystemExit(value): None is 0, an int itself, anything else 1 (printed)."""
    if value is None:
        return 0
    if isinstance(value, int):
        return value
    print(value, file=sys.stderr)
    return 1


def main() -> None:
    sys.argv[0] = "inv"  # Invoke names itself after argv[0] in its help and errors
    try:
        program.run()
        code = 0
    except SystemExit as exc:
        code = exit_code(exc.code)
    atexit._run_exitfuncs()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BrokenPipeError:  # the reader has gone: quietly, as any Unix tool (the terminal contract)
        silence_output()
        code = SIGPIPE_EXIT
    except ValueError:  # a stream already closed: nothing left to flush
        pass
    os._exit(code)


if __name__ == "__main__":
    main()
