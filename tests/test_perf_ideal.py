"""The ideal makespan with the submission span in it (benchmarks.perf, issue 13): pure logic, no stack."""

from __future__ import annotations

import pytest

from benchmarks.perf.bench import ideal_with_arrivals

pytestmark = pytest.mark.pure  # the fast tier: `pytest -m pure`


def test_jobs_all_there_at_once_give_the_plain_ideal() -> None:
    # 5 jobs of 1 s on 2 runners: ceil(5 / 2) = 3 waves
    assert ideal_with_arrivals([10.0] * 5, 2, 1.0, since=10.0) == pytest.approx(3.0)


def test_no_job_starts_before_it_reached_the_service() -> None:
    # sent from t=0; two runners; the last job arrives at 2.5 s and runs to 3.5 s
    assert ideal_with_arrivals([0.1, 0.2, 2.5], 2, 1.0, since=0.0) == pytest.approx(3.5)
    # the third job waits for a runner (free at 1.1 s) rather than for its arrival (0.3 s)
    assert ideal_with_arrivals([0.3, 0.1, 0.2], 2, 1.0, since=0.0) == pytest.approx(2.1)


def test_a_slow_submission_span_is_added_only_where_it_delays_a_wave() -> None:
    # 100 jobs on 40 runners, 0.5 s each, one arriving every ms: each runner's chain of three jobs starts when
    # its first job arrives, so the last of the 20 third-wave jobs ends at 0.019 + 3 × 0.5 s, not 0.099 + 1.5
    arrivals = [i * 0.001 for i in range(100)]
    assert ideal_with_arrivals(arrivals, 40, 0.5, since=0.0) == pytest.approx(1.519)
