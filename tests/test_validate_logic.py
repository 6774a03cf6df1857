"""validate's pure logic, without the sandbox."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from devops.errors import DevopsError
from devops.masking import register_secret
from devops.modes import ACTIVE, PILOT
from devops.postgres import parse_url
from devops.validate.checks import Answers, named_host
from devops.validate.report import CheckResult, CheckStatus, Finding, ValidationReport


def test_a_question_asked_by_two_checks_at_once_is_asked_once_and_both_get_its_answer():
    answers, asked, started = Answers(), [], threading.Event()

    def describe() -> dict:
        asked.append(1)
        started.set()
        time.sleep(0.2)  # the second check asks while the first is still waiting for its answer
        return {"DBInstanceStatus": "available"}

    with ThreadPoolExecutor(max_workers=2) as pool:
        first = pool.submit(answers, ("rds", "db"), describe)
        started.wait()
        second = pool.submit(answers, ("rds", "db"), describe)
        assert first.result() == second.result() == {"DBInstanceStatus": "available"}
    assert len(asked) == 1
    assert answers(("rds", "other"), lambda: "another question") == "another question"


def test_an_error_reaches_every_check_that_asked():
    answers = Answers()

    def stopped() -> dict:
        raise DevopsError("RDS instance db is stopped, not available")

    for _ in range(2):
        with pytest.raises(DevopsError, match="is stopped"):
            answers(("rds", "db"), stopped)


def results(*statuses: CheckStatus) -> list[CheckResult]:
    return [CheckResult(f"check {i}", Finding(status, f"{status} line", "its detail"), 0.25)
            for i, status in enumerate(statuses)]


def test_the_json_report_has_the_shape_the_lines_have():
    report = ValidationReport.of(PILOT, results(CheckStatus.PASS, CheckStatus.WARN), strict=False)
    report.seconds = 1.5
    # As `--json` prints it: the statuses as strings, the summary the original bash script's.
    assert json.loads(json.dumps(report.to_json())) == {
        "mode": "pilot-light",
        "checks": [{"name": "check 0", "status": "PASS", "message": "PASS line", "detail": "its detail",
                    "seconds": 0.25},
                   {"name": "check 1", "status": "WARN", "message": "WARN line", "detail": "its detail",
                    "seconds": 0.25}],
        "summary": {"mode": "Pilot Light", "passed": 1, "warnings": 1, "failed": 0,
                    "result": "Dev environment has warnings - review before activation"},
        "status": "warn",
        "exit_code": 0,
        "seconds": 1.5,
    }


@pytest.mark.parametrize(("mode", "statuses", "strict", "status", "code", "sentence"), [
    (PILOT, (CheckStatus.PASS,), False, "pass", 0, "Dev Pilot Light components are healthy"),
    (ACTIVE, (CheckStatus.PASS,), False, "pass", 0, "Dev environment is healthy and fully activated"),
    (ACTIVE, (CheckStatus.PASS, CheckStatus.WARN), False, "warn", 0,
     "Dev environment has warnings - review before activation"),
    (ACTIVE, (CheckStatus.PASS, CheckStatus.WARN), True, "warn", 1,
     "Dev environment has warnings - review before activation"),
    (PILOT, (CheckStatus.FAIL, CheckStatus.WARN), False, "fail", 1,
     "Dev environment has failures - investigate before using"),
])
def test_the_worst_check_decides_the_status_the_sentence_and_the_exit_code(mode, statuses, strict, status, code,
                                                                            sentence):
    report = ValidationReport.of(mode, results(*statuses), strict=strict)
    assert (report.to_json()["status"], report.exit_code, report.summary.result) == (status, code, sentence)
    assert report.summary.mode == {PILOT: "Pilot Light", ACTIVE: "Full (activated)"}[mode]


def test_the_report_masks_what_a_check_said(monkeypatch):
    monkeypatch.setattr("devops.masking._SECRETS", set())
    register_secret("s3cret-in-a-message")
    found = Finding(CheckStatus.FAIL, "login failed for s3cret-in-a-message", "with s3cret-in-a-message")
    row = CheckResult("RDS connection", found, 0.1).to_json()
    assert "s3cret" not in json.dumps(row) and row["status"] == "FAIL"


def test_the_neon_line_says_whether_the_url_names_the_pooled_or_the_direct_host():
    pooled = "postgresql://owner:pw@ep-quiet-lake-123456-pooler.us-east-2.aws.neon.tech/neondb"
    direct = pooled.replace("-pooler", "")
    endpoint, _ = parse_url(pooled, "Neon", "NEON_DATABASE_URL")
    assert endpoint.host == "ep-quiet-lake-123456.us-east-2.aws.neon.tech"  # what the tasks connect to
    assert named_host(pooled, endpoint.host) == ("NEON_DATABASE_URL names the pooled host "
                                                 "ep-quiet-lake-123456-pooler.us-east-2.aws.neon.tech: the tasks use the "
                                                 "direct one")
    assert named_host(direct, parse_url(direct, "Neon", "NEON_DATABASE_URL")[0].host) == \
        "NEON_DATABASE_URL names the direct host"
