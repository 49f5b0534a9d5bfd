"""The answer at a glance (issue: one-sided answer): every implementation against a reference, as ratios, with
their range over repeats; "cheapest" only among two or more that held, on CPU per job."""

from __future__ import annotations

import math

import pytest

from taskbench.analysis import answer, failures, verdict
from taskbench.analysis.models import ProcessResources, Ratio, ScenarioSummary, Spread, Verdict
from taskbench.analysis.stats import cpu_seconds
from tests.test_stats import THRESHOLDS, summary

pytestmark = pytest.mark.pure  # the fast tier: `pytest -m pure`


def measured(s: ScenarioSummary, makespan_s: float, p95_s: float, cpu_s: float) -> ScenarioSummary:
    """`s` with a drain time, a p95 and the CPU-seconds of its job process (the API for BackgroundTasks)."""
    role = s.job_process
    resources = {role: s.resources[role].model_copy(update={"cpu_s": cpu_s})}
    total = s.total_time.model_copy(update={"p95": p95_s})
    return s.model_copy(update={"makespan_s": makespan_s, "total_time": total, "resources": resources})


def burst(reference: str = "fastapi") -> Verdict:
    """BackgroundTasks unresponsive from 50 jobs but fast; Celery held at 8× the drain time; arq held, 2× faster
    than Celery and cheaper per job."""
    rows = []
    for jobs in (10, 50):
        slow = jobs == 50
        rows += [
            measured(summary("fastapi", jobs, probe_p99=2.0 if slow else 0.005, peak_memory_mb=60), 1.0, 0.9, 2.0),
            measured(summary("celery", jobs, peak_memory_mb=200), 8.0, 7.5, 8.0 * jobs / 50),
            measured(summary("arq", jobs, peak_memory_mb=40), 4.0, 3.8, 1.0 * jobs / 50),
        ]
    annotated = [failures.annotate(s, THRESHOLDS) for s in rows]
    return verdict.compute(annotated, ["fastapi", "celery", "arq"], reference=reference)


def test_every_implementation_is_stated_against_backgroundtasks_at_the_largest_count() -> None:
    (sleep,) = burst().answers
    assert (sleep.workload, sleep.jobs, sleep.reference) == ("sleep", 50, "fastapi")
    ref, celery, _ = sleep.cells
    assert (ref.implementation, ref.status, ref.fails_at, ref.drain) == ("fastapi", "failed", 50, None)
    assert celery.status == "held" and celery.drain is not None and celery.memory is not None
    assert celery.drain.value == pytest.approx(8.0) and celery.memory.value == pytest.approx(200 / 60)
    assert celery.p95 is not None and celery.p95.value == pytest.approx(7.5 / 0.9)
    # CPU per 1 000 jobs: 2 s over 50 jobs for BackgroundTasks, 8 s for Celery
    assert (ref.cpu_s_per_1000, celery.cpu_s_per_1000) == pytest.approx((40.0, 160.0))
    assert celery.cpu is not None and celery.cpu.value == pytest.approx(4.0)
    assert celery.workers_to_match == math.ceil(4 * 8.0)  # its 4 at once, eight times as fast
    assert celery.drain.low is None  # one run each: no range
    assert "drain 8.0× slower (≈ 32 at once to match, 4 now)" in sleep.sentence
    assert sleep.sentence.startswith("sleep, 50 jobs, against BackgroundTasks failed from 50 jobs (1.0 s to drain 50")


def test_cheapest_is_the_least_cpu_per_job_of_two_that_held_and_never_the_only_one() -> None:
    (sleep,) = burst().answers
    assert [c.implementation for c in sleep.cells if c.cheapest] == ["arq"]  # 20 CPU-s per 1 000 jobs, Celery 160
    assert "Cheapest of those that held: arq (20.0 CPU-s per 1 000 jobs)." in sleep.sentence
    decision = {c.implementation: c.cheapest for c in burst().decisions[0].cells}
    assert decision == {"fastapi": False, "celery": False, "arq": True}
    alone = verdict.compute(
        [failures.annotate(measured(summary(n, 50, probe_p99=2.0 if n == "fastapi" else 0.005), 1, 1, 1), THRESHOLDS)
         for n in ("fastapi", "celery")], ["fastapi", "celery"],
    )  # fmt: skip
    assert not any(c.cheapest for row in alone.decisions for c in row.cells)  # Celery is the only one that held
    assert not any(c.cheapest for a in alone.answers for c in a.cells)


def test_reference_celery_restates_the_answer_against_celery() -> None:
    (sleep,) = burst("celery").answers
    assert [c.implementation for c in sleep.cells] == ["celery", "fastapi", "arq"]
    _, fastapi, arq = sleep.cells
    assert fastapi.drain is not None and fastapi.drain.value == pytest.approx(1 / 8)
    assert arq.drain is not None and arq.drain.value == pytest.approx(0.5)
    assert arq.workers_to_match is None  # faster than the reference: nothing to match
    assert "against Celery held" in sleep.sentence
    assert "BackgroundTasks failed from 50 jobs: drain 8.0× faster" in sleep.sentence
    assert "arq held: drain 2.0× faster" in sleep.sentence


def test_a_ratio_over_repeats_spans_the_runs_and_reads_like_hyperfine() -> None:
    assert answer.times(Ratio(value=2.0, low=1.8, high=2.2), "slower", "faster") == "2.0× (1.8–2.2) slower"
    assert answer.times(Ratio(value=0.5, low=0.4, high=0.625), "slower", "faster") == "2.0× (1.6–2.5) faster"
    assert answer.times(Ratio(value=1.03), "slower", "faster") == "about the same"
    # the ratio's range: the smallest over the reference's largest, the largest over its smallest
    assert answer.ratio(0.0, 1.0, None) is None and answer.ratio(1.0, 0.0, None) is None  # CPU too small to read
    zero_run = answer.ratio(2.0, 1.0, ((0.0, 3.0), (1.0, 1.0)))
    assert zero_run is not None and (zero_run.value, zero_run.low, zero_run.high) == (2.0, None, None)
    ratio = answer.ratio(8.0, 1.0, ((7.0, 9.0), (0.8, 1.25)))
    assert ratio is not None and (ratio.low, ratio.high) == pytest.approx((5.6, 11.25))
    celery = summary("celery", 50).model_copy(update={"repeats": 3, "spread": {"makespan_s": Spread(min=7, max=9)}})
    fastapi = summary("fastapi", 50).model_copy(update={"repeats": 3})
    cell = answer._ratios(measured(celery, 8, 8, 1), measured(fastapi, 1, 1, 1))["drain"]
    assert cell is not None and (cell.low, cell.value, cell.high) == pytest.approx((7.0, 8.0, 9.0))


def test_cpu_seconds_count_each_reading_over_the_interval_before_it() -> None:
    assert cpu_seconds([0.0, 1.0, 1.5], [30.0, 100.0, 50.0]) == pytest.approx(1.0 + 0.25)
    assert cpu_seconds([0.0], [80.0]) == 0.0
    resources = ProcessResources(samples=1, cpu_peak=1, cpu_avg=1, rss_peak_mb=1, rss_avg_mb=1)
    assert resources.cpu_s is None  # a run recorded before it: the answer leaves CPU out rather than guess
