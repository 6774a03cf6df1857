"""validate's pure logic, without the sandbox."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from devops.errors import DevopsError
from devops.validate.checks import Answers


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
