import io
import json

import pytest

from devops.console import Console, mask, register_secret, use_colour


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
    monkeypatch.setattr("devops.console._SECRETS", set())
    register_secret("P@55w0rd!-registered")
    assert mask("auth failed for P@55w0rd!-registered") == "auth failed for ****"
    out = io.StringIO()
    Console(out=out).info("password P@55w0rd!-registered")
    assert "P@55w0rd" not in out.getvalue()


def test_status_lines_and_banner_match_the_seeds():
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
