"""Queue order on a hand-made ledger: rows in the service's acceptance order, and how FIFO the starts were."""

from __future__ import annotations

from pathlib import Path

import pytest

from taskbench.analysis import order
from taskbench.record.results import Execution, ScenarioResult, Submission, load_scenario
from taskbench.report import charts
from taskbench_wire.records import JobRecord

pytestmark = pytest.mark.pure  # the fast tier: `pytest -m pure`

FIXTURE = Path(__file__).parent / "fixtures" / "small_run" / "fastapi_5_jobs_20261125_061235.json"


def hand_made(sent: list[str], accepted: list[str], started: list[str]) -> ScenarioResult:
    """Jobs sent in one order, accepted by the service in another, started (ledger) in a third."""
    base = load_scenario(FIXTURE)
    t0 = base.started_at
    submissions = [Submission(index=i, sent_at=t0 + i * 0.001, latency_s=0.05, job_id=j) for i, j in enumerate(sent)]
    jobs = [JobRecord(job_id=j, implementation="celery", kind="sleep", duration=0.5, status="completed",
                    submitted_at=t0 + 0.01 * (accepted.index(j) + 1)) for j in sent]  # fmt: skip
    ledger = [
        Execution(job_id=j, implementation="celery", event="start", t=t0 + 1 + 0.1 * i) for i, j in enumerate(started)
    ]
    # a redelivered attempt later does not change where the job first started
    ledger.append(Execution(job_id=started[0], implementation="celery", event="start", t=t0 + 9))
    return base.model_copy(update={"submissions": submissions, "jobs": jobs, "executions": ledger})


def test_order_is_the_service_s_acceptance_not_the_client_s_sending() -> None:
    result = hand_made(sent=["a", "b", "c", "d"], accepted=["c", "d", "a", "b"], started=["c", "d", "a", "b"])
    assert order.acceptance_order(result) == ["c", "d", "a", "b"]
    fifo = order.fifo(result)
    assert (fifo.started, fifo.max_overtaken, fifo.overtaken_jobs, fifo.kendall_tau) == (4, 0, 0, 1.0)
    bars = charts.job_bars(result)  # the timeline's rows: first accepted at the top
    assert [round(b.submitted - bars[0].submitted, 3) for b in bars] == [0.0, 0.01, 0.02, 0.03]


def test_later_jobs_that_start_first_are_counted() -> None:
    # accepted a b c d e; c starts first, then e, then a, b, d: a is overtaken by c and e (2), b by c and e (2),
    # d by e (1)
    result = hand_made(sent=list("abcde"), accepted=list("abcde"), started=list("ceabd"))
    fifo = order.fifo(result)
    assert (fifo.max_overtaken, fifo.overtaken_jobs) == (2, 3)
    assert fifo.kendall_tau == pytest.approx(1 - 2 * 5 / 10)


def test_reversed_order_is_minus_one() -> None:
    fifo = order.fifo(hand_made(sent=list("abcd"), accepted=list("abcd"), started=list("dcba")))
    assert (fifo.max_overtaken, fifo.kendall_tau) == (3, -1.0)
