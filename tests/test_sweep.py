"""`--concurrency 2,8`: the plan, and the sweep's answer on a recorded run (tests/fixtures/sweep_run: 20 × 0.5 s
jobs, BackgroundTasks, and Celery and arq at concurrency 2 and 8, on a 2-core machine)."""

from __future__ import annotations

from pathlib import Path

import pytest

from taskbench.analysis import analyse, sweep
from taskbench.record.results import RunSettings
from taskbench.report import files
from taskbench.run import plan

pytestmark = pytest.mark.pure  # the fast tier: `pytest -m pure`

FIXTURE = Path(__file__).parent / "fixtures" / "sweep_run"


def test_the_plan_runs_worker_scenarios_once_per_value_and_background_tasks_once() -> None:
    settings = RunSettings(implementations=["fastapi", "celery"], workloads=["sleep"], jobs=[10], duration_s=0.5,
                           memory_mb=0, concurrency=4, concurrency_sweep=[4, 16], faults=["worker-crash"])  # fmt: skip
    labels = [s.label for s in plan.scenarios(settings, fault_jobs=5)]
    plain = [label for label in labels if "crash" not in label]
    assert plain == ["fastapi · sleep · 10 jobs", "celery · sleep · 10 jobs · concurrency 4",
                     "celery · sleep · 10 jobs · concurrency 16"]  # fmt: skip
    faults = [label for label in labels if "crash" in label]
    assert faults and all("concurrency" not in label for label in faults)  # once, at the first value


def test_the_sweep_reads_makespan_and_memory_per_concurrency() -> None:
    _, run, scenarios = files.load(FIXTURE)
    analysed = analyse(run, scenarios)
    by_name = {r.implementation: r for r in analysed.verdict.sweeps}
    assert set(by_name) == {"celery", "arq"}
    celery, arq = by_name["celery"], by_name["arq"]
    assert [p.concurrency for p in celery.points] == [2, 8]
    slow, fast = celery.points
    assert slow.makespan_s and fast.makespan_s and fast.makespan_s < slow.makespan_s / 2  # more slots, faster
    assert slow.peak_memory_mb and fast.peak_memory_mb and fast.peak_memory_mb > 2 * slow.peak_memory_mb  # prefork
    a_slow, a_fast = arq.points
    assert a_slow.peak_memory_mb and a_fast.peak_memory_mb and abs(a_fast.peak_memory_mb - a_slow.peak_memory_mb) < 10
    # BackgroundTasks drained the 20 jobs in ~0.6 s: neither gets there by 8, and the verdict says so
    assert celery.smallest is None and arq.smallest is None
    line = next(line for line in analysed.verdict.lines if "--concurrency 2, 8" in line)
    assert "Celery not within 2–8 (best 1.7 s at 8)" in line
    # the verdict proper is at the first value: one Celery row per job count
    (sleep,) = analysed.verdict.workloads
    assert next(o for o in sleep.implementations if o.implementation == "celery").tested_jobs == [20]


def test_the_smallest_concurrency_that_drains_as_fast_is_named() -> None:
    _, run, scenarios = files.load(FIXTURE)
    summaries = analyse(run, scenarios).summaries
    slower_baseline = [s.model_copy(update={"makespan_s": 2.0}) if s.implementation == "fastapi" else s
                       for s in summaries]  # fmt: skip
    results, lines = sweep.sweeps(slower_baseline)
    assert {r.implementation: r.smallest for r in results} == {"celery": 8, "arq": 8}
    assert "Celery from 8 (1.7 s, " in lines[0] and "BackgroundTasks' 2.0 s" in lines[0]


def test_the_plan_says_which_implementations_a_fault_leaves_out() -> None:
    """A fault asked for where it means nothing is left out, and said so: worker-deploy needs a worker (not
    BackgroundTasks), long-job a queue that does not renew a running job's claim (not RQ's heartbeats)."""
    from taskbench.record.results import RunSettings
    from taskbench.run import plan

    faults = ["worker-deploy", "long-job"]
    settings = RunSettings(implementations=["fastapi", "rq", "celery"], workloads=["sleep"], jobs=[10],
                           duration_s=0.5, memory_mb=0, concurrency=4, faults=faults)  # fmt: skip
    assert plan.left_out(settings) == {"worker-deploy": ["fastapi"], "long-job": ["fastapi", "rq"]}
    assert {(s.implementation, s.fault) for s in plan.scenarios(settings, fault_jobs=5) if s.fault} == {
        ("rq", "worker-deploy"),
        ("celery", "worker-deploy"),
        ("celery", "long-job"),
    }
