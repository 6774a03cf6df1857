"""The restore's SQL script on its way from pg_restore to psql, as text: where each archive entry begins (so
that a psql error names the entry that failed), its statements joined into batches, its opening settings
fitted to the target, its closing COMMIT held back, and psql's first error read from its stderr."""

from __future__ import annotations

import re
from typing import Iterator

from devops.masking import mask
from devops.sync.processes import CHUNK, PipelineError

ENTRY_HEADER = re.compile(rb"-- (?:Data for )?Name: (.*?); Type: (.*?); Schema: (.*?); Owner:")
HEADER_SET = re.compile(rb"^SET ([a-z_]+) = [^\n]*;\n", re.M)
MARKER = re.compile(rb"^devops-entry (\d+)$", re.M)
HEADER_STATEMENT = re.compile(rb"^((?:SET |SELECT pg_catalog\.set_config\()[^\n]*);\n", re.M)
# pg_restore --single-transaction's own BEGIN (at the top) and COMMIT (at the end, before the closing
# comments): the transaction is the prelude's, and COMMIT is withheld until the verification passed.
HEADER_BEGIN = re.compile(rb"^BEGIN;\n", re.M)
SCRIPT_END = re.compile(rb"(?:^|\n)COMMIT;\n(?:\s*(?:--[^\n]*|\\unrestrict [^\n]*)?\n)*\s*\Z")
PSQL_ERROR = re.compile(r"^psql:[^\n]*?:(\d+): (?:ERROR|FATAL):\s+(.*)$", re.M)
# The lines psql prints after an error's: the server's DETAIL and HINT.
PSQL_MORE = re.compile(r"^(DETAIL|HINT):\s+(.*)$", re.M)
TAIL = 4096


class Script:
    """The SQL on its way to psql: counts its lines and remembers where each archive entry begins (the
    '-- Name: ...; Type: ...; Schema: ...' comment pg_restore writes before it, and the statement's first
    line), so that the line number in a psql error names the entry that failed."""

    def __init__(self) -> None:
        self.lines = 0
        self.entries: list[tuple[int, str, str]] = []  # (line, "VIEW app.big_orders", first statement line)
        self._carry = b""  # the last, unfinished line (with the newline before it): a header may straddle chunks

    def feed(self, chunk: bytes) -> None:
        buf = self._carry + chunk
        line = self.lines - (1 if self._carry else 0)  # newlines before buf
        counted = 0
        start = 0
        while (found := buf.find(b"\n-- ", start)) != -1:
            end = buf.find(b"\n", found + 1)
            if end == -1:
                break
            header = ENTRY_HEADER.match(buf, found + 1, end)
            if header:
                line += buf.count(b"\n", counted, found + 1)
                counted = found + 1
                name, kind, schema = (part.decode(errors="replace") for part in header.groups())
                self.entries.append((line + 1, f"{kind} {name if schema == '-' else schema + '.' + name}",
                                     statement_after(buf, end)))
            start = end
        self.lines += chunk.count(b"\n")
        last = buf.rfind(b"\n")
        self._carry = buf[last:] if last != -1 and len(buf) - last < 4096 else b""

    def entry_at(self, line: int) -> tuple[str, str] | None:
        """The archive entry whose SQL holds ``line`` (1-based): (what, its statement's first line)."""
        found = None
        for start, what, statement in self.entries:
            if start > line:
                break
            found = (what, statement)
        return found


def statement_after(buf: bytes, end: int) -> str:
    """The first line of SQL after an entry's header comment, shortened; empty when not in this chunk."""
    position = end + 1
    while position < len(buf):
        stop = buf.find(b"\n", position)
        if stop == -1:
            return ""
        text = buf[position:stop].decode(errors="replace").strip()
        if text and not text.startswith("--"):
            return text if len(text) <= 100 else text[:97] + "..."
        position = stop + 1
    return ""


def psql_error(stderr: str) -> tuple[int, str] | None:
    """psql's first error: (its line in the script, the server's message, masked). The server's DETAIL and
    HINT say why and what to do (e.g. "You might need to increase max_locks_per_transaction"): they stay,
    on the same line. None when psql reported no error of the server's."""
    error = PSQL_ERROR.search(stderr)
    if not error:
        return None
    message = error.group(2).strip()
    more = [f"{kind}: {text.strip()}" for kind, text in PSQL_MORE.findall(stderr[error.end():].split("\npsql:", 1)[0])]
    return int(error.group(1)), mask(f"{message} ({'; '.join(more)})" if more else message)


def without_unknown_settings(chunks: Iterator[bytes], settings: set[str], batched: bool) -> Iterator[bytes]:
    """The script's opening SETs, less those the target's major does not have (``settings``: pg_restore 17
    writes ``SET transaction_timeout = 0;``, which a server before 17 refuses), and less its BEGIN; the rest
    passes untouched."""
    head: bytes | None = b""
    for chunk in chunks:
        if head is None:
            yield chunk
            continue
        head += chunk
        first_entry = head.find(b"\n-- Name: ")
        if first_entry == -1 and len(head) < CHUNK:
            continue
        cut = first_entry if first_entry != -1 else len(head)
        yield _header(head[:cut], settings, batched)
        yield head[cut:]
        head = None
    if head:
        yield _header(head, settings, batched)


def _header(head: bytes, settings: set[str], batched: bool) -> bytes:
    head = HEADER_BEGIN.sub(b"", head, count=1)
    head = HEADER_SET.sub(lambda m: m.group(0) if m.group(1).decode() in settings else b"", head)
    # Its settings, one line each, go in one batch with the first entry (in_batches).
    return HEADER_STATEMENT.sub(rb"\1\\;\n", head) if batched else head


def in_batches(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """pg_restore's script with its statements sent in batches (Batches): one round trip for many statements."""
    batches = Batches()
    for chunk in chunks:
        yield batches.feed(chunk)
    yield batches.end()


class Batches:
    """pg_restore's script with its statements sent in batches: psql sends each statement as a query of its
    own and waits for its answer (a round trip each: 20-80 ms from a laptop, thousands for a schema of a few
    hundred tables). Where one archive entry ends and the next (not a table's data) begins, the ending
    statement's ``;`` becomes psql's ``\\;``, which joins the next statement to the same query; a batch goes
    when a statement ends with a plain ``;``: before a table's data (COPY goes alone) and at the end. Only
    that ``;`` is touched (the last thing before an entry's header comment), never one inside a body.

    Each entry joined so is preceded by ``SELECT 'devops-entry N'`` (N: its place among the entries, as
    Script counts them): psql prints the results of every statement of a batch (15 and later), so the last
    marker it printed before an error names the entry that failed (its line number names the batch's last).
    """

    def __init__(self) -> None:
        # A statement's last line, then blank and "--" lines: held until a header decides.
        self.pending: list[bytes] = []
        self.entry = 0
        self.buf = b""
        self.in_data = False  # inside a COPY's rows: passed on as they are, without looking at each line

    def feed(self, chunk: bytes) -> bytes:
        """The script so far, less what must wait for the next chunk to be decided."""
        self.buf += chunk
        out: list[bytes] = []
        position = 0
        while True:
            if self.in_data:
                position = self._rows(out, position)
                if self.in_data:
                    break
                continue
            newline = self.buf.find(b"\n", position)
            if newline == -1:
                break
            self._line(self.buf[position:newline + 1], out)
            position = newline + 1
        self.buf = self.buf[position:]
        return b"".join(out)

    def end(self) -> bytes:
        return b"".join(self.pending) + self.buf

    def _rows(self, out: list[bytes], position: int) -> int:
        """A COPY's rows up to its closing ``\\.``, or all but what may hold the start of it."""
        end = self.buf.find(b"\n\\.\n", max(position - 1, 0))
        if end == -1:
            keep = max(position, len(self.buf) - 3)
            out.append(self.buf[position:keep])
            return keep
        out.append(self.buf[position:end + 4])
        self.in_data = False
        return end + 4

    def _line(self, line: bytes, out: list[bytes]) -> None:
        if ENTRY_HEADER.match(line):
            if not line.startswith(b"-- Data for Name: "):
                marker = b"SELECT 'devops-entry %d'\\;" % self.entry
                if self.pending:  # the statement before it ends the previous entry: joined to this batch
                    last = self.pending[0][:-2]
                    self.pending[0] = (last if last.endswith(b"\\") else last + b"\\") + b"; " + marker + b"\n"
                else:  # after a table's rows: the batch starts here
                    self.pending.insert(0, marker + b"\n")
            self.entry += 1
            out += self.pending
            self.pending = []
            out.append(line)
        elif self.pending and line.strip() in (b"", b"--"):
            self.pending.append(line)
        else:
            out += self.pending
            self.pending = []
            if line.startswith(b"COPY ") and line.endswith(b" FROM stdin;\n"):
                out.append(line)
                self.in_data = True
            elif line.endswith(b";\n"):
                self.pending = [line]
            else:
                out.append(line)


def without_final_commit(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """The script less its closing COMMIT (pg_restore --single-transaction's), which is always in its last
    few lines: the stream is passed on with its last TAIL bytes held back until the end."""
    held = b""
    for chunk in chunks:
        held += chunk
        if len(held) > 2 * TAIL:
            yield held[:-TAIL]
            held = held[-TAIL:]
    end = SCRIPT_END.search(held)
    if not end:
        raise PipelineError("pg_restore's script did not end with its COMMIT: nothing was committed")
    yield held[:end.start()] + b"\n"
