"""`inv` as the toolbox runs it (``python -m devops.inv ARGS``): Invoke's program, ended without Python's teardown.

A task leaves botocore's clients and models, psycopg2 and the rest in memory; when the interpreter exits it
frees them one object at a time: about 0.25 s a task, for a process that is ending anyway. So once Invoke's
program has returned (or exited with its code), the exit handlers run (atexit: logging, temporary files),
the standard streams are flushed, and the process ends at once with that code. Threads still running (a
validate check past its timeout) end with it, as they would not under Python's own exit, which waits.

Anything else (Ctrl-C's KeyboardInterrupt, an error) takes Python's usual way out, untouched. A mistyped
command line is one [ERROR] line that names the flag or task and the nearest one there is (Program).
"""

from __future__ import annotations

import atexit
import difflib
import os
import re
import sys
import textwrap
from typing import Any, Sequence

import invoke
from invoke.exceptions import Exit, ParseError
from invoke.main import program as invoke_program
from invoke.terminals import pty_size

from devops import hints
from devops.terminal import SIGPIPE_EXIT, silence_output

UNKNOWN = re.compile(r"No idea what '(.*)' is!")
MISSING = re.compile(r"'(.*)' did not receive required positional arguments: (.*)")


class Program(invoke.Program):
    """Invoke's program; its command-line errors said as every error here is: one [ERROR] line, exit 1."""

    def print_columns(self, tuples: Sequence[tuple[str, str | None]]) -> None:
        """Invoke's columns of names and help, wrapped on spaces only: an S3 key in an example stays whole."""
        name_width = max(len(name) for name, _ in tuples)
        indent = self.leading_indent
        wrapper = textwrap.TextWrapper(width=max(pty_size()[0] - name_width - len(indent) - self.col_padding - 1, 20),
                                       break_on_hyphens=False, break_long_words=False)
        for name, text in tuples:
            spec = f"{indent}{name:<{name_width}}{' ' * self.col_padding}"
            chunks = wrapper.wrap(text or "")
            print(spec + chunks[0] if chunks else spec.rstrip())
            for chunk in chunks[1:]:
                print(" " * len(spec) + chunk)
        print("")

    def parse_tasks(self) -> None:
        try:
            super().parse_tasks()
        except ParseError as exc:
            raise Exit(f"[ERROR] {explain(str(exc), exc.context, list(self.collection.task_names))}", code=1) \
                from None


def explain(message: str, context: Any, tasks: list[str]) -> str:
    """Invoke's parse error as what to type instead: the nearest flag of the task or the nearest task, and a
    missing argument named as the flag that gives it."""
    if unknown := UNKNOWN.fullmatch(message):
        token = unknown.group(1)
        if token.startswith("-") and context is not None:
            flags = [name for name in context.flag_names() if name.startswith("--")]
            return (f"{context.name} has no flag {token}{_nearest(token, flags)} "
                    f"(`{hints.inv('--help ' + context.name)}` lists its flags)")
        return f"no task named {token}{_nearest(token, tasks)} (`{hints.inv('--list')}` lists them)"
    if missing := MISSING.fullmatch(message):
        task = missing.group(1)
        flags = " and ".join(f"--{name.replace('_', '-')}" for name in re.findall(r"'([^']+)'", missing.group(2)))
        return f"{task} needs {flags} (`{hints.inv('--help ' + task)}` says what each takes)"
    return message


def _nearest(token: str, names: list[str]) -> str:
    found = difflib.get_close_matches(token, names, n=1, cutoff=0.6)
    return f": did you mean {found[0]}?" if found else ""


program = Program(name=invoke_program.name, binary=invoke_program.binary,
                  binary_names=invoke_program.binary_names, version=invoke_program.version)


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
