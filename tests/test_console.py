import io
import json

import pytest

from devops.console import Console, cell, use_colour
from devops.errors import DevopsError
from devops.masking import first_line, mask, register_secret
from devops.modes import ACTIVE, PILOT, mode_of
from devops.postgres import make_endpoint
from devops.sync import render
from devops.sync.report import Copy, Divergence, Report, Side, TargetState, Verdict, Versions


class Tty(io.StringIO):
    def isatty(self):
        return True


@pytest.mark.parametrize("text, expected", [
    ("postgresql://neondb_owner:s3cr3t@ep-x.neon.tech/neondb?sslmode=require",
     "postgresql://****:****@ep-x.neon.tech/neondb?sslmode=require"),
    ("postgres://user@host/db", "postgres://****@host/db"),
    ("see postgresql://a:b%40c@h:5432/d now", "see postgresql://****:****@h:5432/d now"),
    ("host=h user=u password=hunter22 dbname=d", "host=h user=u password=**** dbname=d"),
    ("host=h password='with space' dbname=d", "host=h password=**** dbname=d"),
    ("https://example.com/api/health", "https://example.com/api/health"),
])
def test_mask_hides_credentials(text, expected):
    assert mask(text) == expected


def test_registered_secret_is_hidden_everywhere(monkeypatch):
    # A registry of its own: the secret does not stay registered for the rest of the session.
    monkeypatch.setattr("devops.masking._SECRETS", set())
    register_secret("P@55w0rd!-registered")
    assert mask("auth failed for P@55w0rd!-registered") == "auth failed for ****"
    out = io.StringIO()
    Console(out=out).info("password P@55w0rd!-registered")
    assert "P@55w0rd" not in out.getvalue()


def test_status_lines_and_banner_match_the_original_bash_scripts():
    out = io.StringIO()
    console = Console(out=out)
    console.banner("DEV ENVIRONMENT VALIDATION", "Region: us-east-1")
    console.passed("AWS credentials valid")
    console.warn("w")
    console.fail("f")
    console.info("i")
    assert out.getvalue() == (
        "\n========================================\n  DEV ENVIRONMENT VALIDATION\n  Region: us-east-1\n"
        "========================================\n\n[PASS] AWS credentials valid\n[WARN] w\n[FAIL] f\n[INFO] i\n"
    )


def test_colour_only_on_a_terminal_and_never_with_no_color(monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)
    assert use_colour(Tty())
    assert not use_colour(io.StringIO())
    monkeypatch.setenv("NO_COLOR", "1")
    assert not use_colour(Tty())
    tty = Tty()
    Console(out=tty).passed("ok")
    assert "\033[" not in tty.getvalue()


def test_colour_on_a_terminal(monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)
    tty = Tty()
    Console(out=tty).fail("bad")
    assert tty.getvalue() == "\033[31m[FAIL]\033[0m bad\n"


def test_json_mode_keeps_stdout_for_one_object():
    out, err = io.StringIO(), io.StringIO()
    console = Console(json_mode=True, out=out, err=err)
    console.info("working")
    console.table([["a", 1]], headers=["table", "rows"])
    console.emit({"url": "postgresql://u:pw@h/db", "ok": True})
    assert json.loads(out.getvalue()) == {"url": "postgresql://****:****@h/db", "ok": True}
    assert "[INFO] working" in err.getvalue() and "table" in err.getvalue()


def test_table_and_fields():
    out = io.StringIO()
    console = Console(out=out)
    console.fields([("Source", "neon"), ("S3 Dump", "s3://b/k")])
    console.table([["projects", "5"]], headers=["table", "rows"])
    lines = out.getvalue().splitlines()
    assert lines[0] == "  Source:  neon"
    assert lines[1] == "  S3 Dump: s3://b/k"
    assert lines[2].split() == ["table", "rows"]
    assert lines[4].split() == ["projects", "5"]


def _answer(monkeypatch, text):
    monkeypatch.setattr("sys.stdin", Tty(text))


def test_confirm_goes_on_only_on_yes(monkeypatch):
    out = io.StringIO()
    _answer(monkeypatch, "YES\n")
    assert Console(out=out).confirm("activate", yes=False) is True
    assert out.getvalue() == "Type 'yes' to activate: \n"
    _answer(monkeypatch, "y\n")
    with pytest.raises(DevopsError, match="^cancelled: nothing was changed$"):
        Console(out=io.StringIO()).confirm("activate", yes=False)


def test_confirm_without_a_terminal_refuses_and_yes_skips_the_question(monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO("yes\n"))  # piped, not a terminal: never read
    with pytest.raises(DevopsError, match="^refusing to deactivate without confirmation: no terminal to ask on; "
                                          "pass --yes$"):
        Console(out=io.StringIO()).confirm("deactivate", yes=False)
    out = io.StringIO()
    assert Console(out=out).confirm("deactivate", yes=True) is False
    assert out.getvalue() == ""


def test_sync_asks_with_the_same_prompt_as_activate(monkeypatch):
    """The question is built from the report alone (a plan computed in an ECS task is confirmed the same way)."""
    target = make_endpoint("RDS", "127.0.0.1", 5432, "u", "pw", "app")
    report = Report(operation="sync", dry_run=False, target="sandbox",
                    sides={"target": Side("RDS", target.masked(), target.where(), "15.8")}, plan={},
                    target_state=TargetState(1, 5, "0123456789abcdef"), divergence=Divergence(Verdict.FIRST_SYNC),
                    versions=Versions("17.5", "15.8", False), safety_copy=Copy("s3://bucket/rds-dumps/x.dump"))
    out = io.StringIO()
    _answer(monkeypatch, "yes\n")
    assert render.confirm(Console(out=out), report, yes=False) is True
    what = f"RDS at {target.where()} (1 tables, 5 rows)"
    assert out.getvalue().splitlines() == [f"[WARN] This replaces everything in {what}.",
                                           f"Type 'yes' to overwrite {what}: "]
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    with pytest.raises(DevopsError, match=r"^refusing to overwrite RDS at .* without confirmation: no terminal"):
        render.confirm(Console(out=io.StringIO()), report, yes=False)


def test_first_line_is_the_first_non_blank_line_masked():
    assert first_line(ValueError("\n  could not connect to postgresql://u:pw@h/db  \nDETAIL: more")) == \
        "could not connect to postgresql://****:****@h/db"
    assert first_line(TimeoutError()) == "TimeoutError"
    assert first_line("plain message\nsecond") == "plain message"


def test_cell_and_mode_of():
    assert [cell(None), cell(0), cell(12)] == ["-", "0", "12"]
    assert mode_of({"dev_activated": True}) == ACTIVE
    assert mode_of({"dev_activated": False}) == mode_of({}) == PILOT


def test_table_progress_says_nothing_until_the_count_of_tables_is_known():
    """The verification's count arrives from the server a moment after it starts: no '0/0 tables' line."""
    import time
    from devops.progress import Steps
    out = io.StringIO()
    counts = iter([None, (0, 0), (2, 5)])
    with Steps(Console(out=out), "Verifying RDS", 0.02, poll=lambda: next(counts, (2, 5))):
        time.sleep(0.2)
    lines = out.getvalue().splitlines()
    assert lines and all(line.startswith("[INFO] Verifying RDS: 2/5 tables, ") for line in lines), lines


def test_in_an_ecs_task_the_report_is_marked_lines_of_at_most_8_kb_that_join_back(monkeypatch):
    """Docker cuts log lines at 16 KB, into separate CloudWatch events: the runner joins the marked lines."""
    from devops.console import REPORT_CHUNK, REPORT_LINE_ENV, REPORT_PREFIX
    monkeypatch.setenv(REPORT_LINE_ENV, "1")
    report = {"tables": {f"app.t{i}": {"rows": i, "checksum": "x" * 40} for i in range(500)},
              "source": "postgresql://neondb_owner:s3cr3t@ep-x.neon.tech/neondb"}
    out = io.StringIO()
    Console(json_mode=True, out=out).emit(report)
    lines = out.getvalue().splitlines()
    assert len(lines) > 3 and all(line.startswith(REPORT_PREFIX) for line in lines)
    assert all(len(line) <= len(REPORT_PREFIX) + REPORT_CHUNK for line in lines)
    joined = json.loads("".join(line[len(REPORT_PREFIX):] for line in lines))
    assert joined["tables"] == report["tables"] and "s3cr3t" not in joined["source"]
