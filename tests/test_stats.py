"""Pure logic on constructed data: statistics, failure rules and the verdict of the typed analysis."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

import pytest

from taskbench.analysis import failures, verdict
from taskbench.analysis.models import (
    Completion,
    Distribution,
    Executions,
    ProbeSummary,
    ProcessResources,
    ScenarioSummary,
    SubmissionSummary,
    SystemResources,
)
from taskbench.analysis.stats import distribution, longest_silence, max_concurrent, percentile
from taskbench.capacity import Capacity
from taskbench.record.results import Probe, Thresholds
from taskbench.run.scenario import CompletionWatch

pytestmark = pytest.mark.pure  # the fast tier: `pytest -m pure`

THRESHOLDS = Thresholds()


def test_percentile_interpolates_like_numpy() -> None:
    values = [1.0, 2.0, 3.0, 4.0]
    assert percentile(values, 0) == 1.0
    assert percentile(values, 50) == 2.5
    assert percentile(values, 100) == 4.0
    assert percentile(values, 99) == pytest.approx(3.97)
    assert percentile([], 50) is None


def test_distribution_ignores_missing_values() -> None:
    d = distribution([1.0, None, 3.0])
    assert (d.count, d.avg, d.max) == (2, 2.0, 3.0)
    assert distribution([]) == Distribution()


def test_longest_silence_spans_unanswered_probes() -> None:
    probes = [
        Probe(endpoint="async", sent_at=0.0, latency_s=0.01),
        Probe(endpoint="async", sent_at=0.1, latency_s=None, error="timeout"),
        Probe(endpoint="async", sent_at=0.2, latency_s=None, error="timeout"),
        Probe(endpoint="async", sent_at=0.3, latency_s=1.0),  # answered at 1.3
    ]
    assert longest_silence(probes, 0.0, 1.5) == pytest.approx(1.29)


def test_max_concurrent_counts_overlaps() -> None:
    assert max_concurrent([(0, 2), (1, 3), (2.5, 4), (5, 6)]) == 2
    assert max_concurrent([]) == 0


def summary(
    implementation: str,
    jobs: int,
    *,
    workload: str = "sleep",
    probe_p99: float = 0.005,
    probe_timeouts: int = 0,
    submit_timeouts: int = 0,
    completed: int | None = None,
    failed: int = 0,
    peak_memory_mb: float = 60.0,
    peak_cpu_percent: float = 10.0,
    makespan_ratio: float = 1.01,
    fault: str | None = None,
    variant: str | None = None,
    lost: int = 0,
    recovered: int = 0,
    duplicated: int = 0,
    interrupted: bool = False,
) -> ScenarioSummary:
    """A scenario's summary as `stats.figures_of` would make it, with the figures the rules read."""
    completed = jobs if completed is None else completed
    probe = ProbeSummary(sent=50, answered=50 - probe_timeouts, timeouts=probe_timeouts, p99=probe_p99,
                         longest_silence_s=0.1)  # fmt: skip
    role = "api" if implementation == "fastapi" else f"{implementation}-worker"
    return ScenarioSummary(
        label=f"{implementation} · {workload} · {jobs} jobs",
        implementation=implementation,
        workload=workload,
        jobs=jobs,
        duration_s=30.0,
        fault=fault,
        variant=variant,
        interrupted=interrupted,
        submission=SubmissionSummary(attempted=jobs, accepted=jobs, timeouts=submit_timeouts, max=0.01),
        probes={"async": probe, "sync": probe},
        completion=Completion(
            completed=completed, failed=failed, pending=jobs - completed - failed, missing_records=0, timed_out=False
        ),
        queue_time=Distribution(),
        execution_time=Distribution(),
        total_time=Distribution(),
        client_total_time=Distribution(),
        makespan_s=makespan_ratio * 30,
        ideal_makespan_s=30.0,
        makespan_ratio=makespan_ratio,
        capacity=Capacity(concurrency=4, reason="4 worker processes"),
        max_running=4,
        resources={
            role: ProcessResources(
                samples=10, cpu_peak=peak_cpu_percent, cpu_avg=1.0, rss_peak_mb=peak_memory_mb, rss_avg_mb=50.0
            )
        },
        system=SystemResources(
            samples=10,
            cpu_peak=50.0,
            cpu_avg=20.0,
            memory_peak_percent=10.0,
            memory_avg_percent=9.0,
            memory_used_peak_mb=1000.0,
        ),
        job_process=role,
        peak_cpu_percent=peak_cpu_percent,
        peak_memory_mb=peak_memory_mb,
        executions=Executions(
            source="ledger",
            accepted=jobs,
            completed_once=jobs - lost - duplicated,
            duplicated=duplicated,
            lost=lost,
            recovered=recovered,
            lost_ids=[f"id{i}" for i in range(lost)],
        ),
        responsive=None,
    )


def rules(s: ScenarioSummary) -> list[str]:
    return [f.rule for f in failures.detect(s, THRESHOLDS)]


def annotated(*rows: ScenarioSummary) -> list[ScenarioSummary]:
    return [failures.annotate(r, THRESHOLDS) for r in rows]


def test_healthy_scenario_has_no_failure() -> None:
    s = summary("celery", 10)
    assert rules(s) == []
    assert failures.annotate(s, THRESHOLDS).responsive is True


@pytest.mark.parametrize(
    ("kwargs", "rule"),
    [
        ({"probe_p99": 0.9}, "server unresponsive (async endpoint)"),
        ({"probe_timeouts": 1}, "server unresponsive (sync endpoint)"),
        ({"submit_timeouts": 3}, "submission timeouts"),
        ({"peak_memory_mb": 5000}, "resource exhaustion"),
        ({"completed": 7}, "jobs not completed"),
        ({"completed": 8, "failed": 2}, "jobs failed"),
        ({"makespan_ratio": 3.0}, "makespan far over ideal"),
        ({"fault": "api-crash", "lost": 4}, "jobs not completed"),
        ({"fault": "worker-crash", "duplicated": 2}, "jobs duplicated"),
    ],
)
def test_each_failure_rule_fires_with_evidence(kwargs: dict[str, Any], rule: str) -> None:
    found = failures.detect(summary("fastapi", 10, **kwargs), THRESHOLDS)
    assert rule in [f.rule for f in found]
    assert all(f.evidence for f in found)


def test_verdict_picks_the_smallest_failing_job_count() -> None:
    rows = annotated(
        summary("fastapi", 10), summary("celery", 10),
        summary("fastapi", 50, probe_p99=0.8), summary("celery", 50),
        summary("fastapi", 100, probe_timeouts=5), summary("celery", 100, makespan_ratio=2.0),
    )  # fmt: skip
    result = verdict.compute(rows, ["fastapi", "celery"])
    (sleep,) = result.workloads
    fastapi, celery = sleep.implementations
    assert (fastapi.implementation, fastapi.fails_at) == ("fastapi", 50)
    assert [f.rule for f in fastapi.failures] == ["server unresponsive (async endpoint)",
                                                  "server unresponsive (sync endpoint)"]  # fmt: skip
    assert (celery.implementation, celery.fails_at) == ("celery", 100)
    assert sleep.tested_jobs == [10, 50, 100]
    assert [(c.jobs, c.held, list(c.failed)) for c in sleep.by_jobs] == [
        (10, ["fastapi", "celery"], []),
        (50, ["celery"], ["fastapi"]),
        (100, [], ["fastapi", "celery"]),
    ]
    assert result.headline == ["Answer: BackgroundTasks failed for sleep from 50 jobs (Celery held there)."]
    assert result.lines[0] == result.headline[0]


def test_verdict_says_when_nothing_failed_and_what_range_was_tested() -> None:
    rows = annotated(summary("fastapi", 10, workload="cpu"), summary("celery", 10, workload="cpu"),
                     summary("fastapi", 40, workload="cpu"), summary("celery", 40, workload="cpu"))  # fmt: skip
    result = verdict.compute(rows)
    assert result.workloads[0].implementations[0].fails_at is None
    assert result.lines[0] == "Answer: BackgroundTasks were enough for cpu (tested up to 40 jobs)."
    assert "did not fail in the tested range (10–40 jobs)" in result.lines[1]


def test_verdict_counts_lost_jobs_per_fault_with_the_delivery_promise() -> None:
    rows = annotated(summary("fastapi", 20, fault="api-crash", lost=20), summary("celery", 20, fault="api-crash"))
    result = verdict.compute(rows)
    assert [(f.implementation, f.lost) for f in result.faults] == [("fastapi", 20), ("celery", 0)]
    assert result.lines == ["api-crash: fastapi lost 20/20; celery lost 0/20."]
    assert [f.delivery for f in result.faults] == ["default", "default"]
    assert result.faults[1].promise.startswith("at most once")


def test_verdict_claims_nothing_for_an_implementation_not_run() -> None:
    lines = verdict.compute(annotated(summary("celery", 10), summary("celery", 50))).lines
    assert lines[0] == "sleep: BackgroundTasks not tested. Celery did not fail in 10–50 jobs."


def test_a_scenario_cut_short_by_ctrl_c_is_no_failure_and_no_verdict() -> None:
    cut = summary("fastapi", 10, completed=5, interrupted=True)
    assert failures.detect(cut, THRESHOLDS) == []
    result = verdict.compute(annotated(cut, summary("celery", 10)))
    assert result.workloads[0].implementations[0].tested_jobs == []


# The README's kinds of verdict, computed once with the code before the typed analysis (git HEAD of
# taskbench/verdict.py and taskbench/failures.py on the same figures as dicts): a fastapi+celery run must
# give the same lines, plus one "who held" line per workload.
OLD_CODE_LINES = [
    "Answer: BackgroundTasks were enough for async_sleep (tested up to 100 jobs); they failed for sleep from 100 "
    "jobs (Celery held there), memory from 10 jobs (Celery held there), cpu from 10 jobs (Celery failed there too).",
    "sleep: BackgroundTasks fail from 100 jobs (server unresponsive (async endpoint), server unresponsive (sync "
    "endpoint)); Celery at that count: no failure. Celery did not fail in 10–100 jobs.",
    "async_sleep: BackgroundTasks did not fail in the tested range (10–100 jobs). Celery did not fail in 10–100 jobs.",
    "memory: BackgroundTasks fail from 10 jobs (makespan far over ideal); Celery at that count: no failure. Celery "
    "fails from 100 jobs (resource exhaustion).",
    "cpu: BackgroundTasks fail from 10 jobs (server unresponsive (async endpoint), server unresponsive (sync "
    "endpoint)); Celery at that count: jobs failed. Celery fails from 10 jobs (jobs failed).",
    "api-crash: fastapi lost 20/20; celery lost 0/20.",
    "worker-crash (default): fastapi lost 0/20; celery lost 4/20.",
    "worker-crash (acks_late): celery lost 0/20, redelivered 4.",
    "worker-crash (acks_late+reject_on_worker_lost): celery lost 0/20, duplicated 1, redelivered 4.",
]


def readme_like_run(*extra: ScenarioSummary) -> list[ScenarioSummary]:
    return annotated(
        summary("fastapi", 10), summary("celery", 10),
        summary("fastapi", 50), summary("celery", 50),
        summary("fastapi", 100, probe_timeouts=3), summary("celery", 100),
        summary("fastapi", 10, workload="async_sleep"), summary("celery", 10, workload="async_sleep"),
        summary("fastapi", 100, workload="async_sleep"), summary("celery", 100, workload="async_sleep"),
        summary("fastapi", 10, workload="memory", makespan_ratio=2.0), summary("celery", 10, workload="memory"),
        summary("fastapi", 100, workload="memory", makespan_ratio=2.0),
        summary("celery", 100, workload="memory", peak_memory_mb=5000),
        summary("fastapi", 10, workload="cpu", probe_p99=0.9),
        summary("celery", 10, workload="cpu", failed=1, completed=9),
        *extra,
        summary("fastapi", 20, fault="api-crash", lost=20), summary("celery", 20, fault="api-crash"),
        summary("fastapi", 20, fault="worker-crash", variant="default"),
        summary("celery", 20, fault="worker-crash", variant="default", lost=4),
        summary("celery", 20, fault="worker-crash", variant="acks_late", recovered=4),
        summary("celery", 20, fault="worker-crash", variant="acks_late+reject_on_worker_lost", recovered=4,
                duplicated=1),
    )  # fmt: skip


def test_a_fastapi_and_celery_run_gives_the_old_code_s_verdict_lines() -> None:
    result = verdict.compute(readme_like_run(), ["fastapi", "celery"])
    held_lines = [w.held_line for w in result.workloads]
    costs = [t.sentence for t in result.tradeoffs]  # what each choice cost (issue 14): new lines, not old ones
    assert [line for line in result.lines if line not in held_lines + costs] == OLD_CODE_LINES
    sleep = result.lines.index(OLD_CODE_LINES[1])
    assert result.lines[sleep + 1] == held_lines[0]  # each workload's "who held" line follows its sentence
    assert held_lines[0] == (
        "sleep, who held (peaks of the process that ran the jobs): 10 jobs: BackgroundTasks, Celery (least memory "
        "BackgroundTasks 60 MB; least CPU BackgroundTasks 10.0%); 50 jobs: BackgroundTasks, Celery (least memory "
        "BackgroundTasks 60 MB; least CPU BackgroundTasks 10.0%); 100 jobs: Celery (least memory Celery 60 MB; "
        "least CPU Celery 10.0%)."
    )


def test_every_other_implementation_gets_its_own_sentence_part() -> None:
    """Names outside the registry (titled by their name), as a run of a removed implementation would have."""
    rows = annotated(
        summary("fastapi", 10), summary("celery", 10, peak_memory_mb=270), summary("ducky", 10, peak_memory_mb=80),
        summary("fastapi", 100, probe_p99=0.9), summary("celery", 100, peak_memory_mb=270, peak_cpu_percent=30),
        summary("ducky", 100, makespan_ratio=2.0), summary("goose", 100, peak_memory_mb=90, peak_cpu_percent=5),
    )  # fmt: skip
    result = verdict.compute(rows, ["fastapi", "celery", "ducky", "goose"])
    (sleep,) = result.workloads
    assert result.headline == [
        "Answer: BackgroundTasks failed for sleep from 100 jobs (Celery, goose held there; ducky failed there too)."
    ]
    assert sleep.sentence == (
        "sleep: BackgroundTasks fail from 100 jobs (server unresponsive (async endpoint), server unresponsive "
        "(sync endpoint)); Celery at that count: no failure; ducky at that count: makespan far over ideal; goose at "
        "that count: no failure. Celery did not fail in 10–100 jobs. ducky fails from 100 jobs (makespan far over "
        "ideal). goose did not fail in 10–100 jobs."
    )
    at_100 = sleep.by_jobs[1]
    assert (at_100.held, list(at_100.failed)) == (["celery", "goose"], ["fastapi", "ducky"])
    assert (at_100.cheapest_memory, at_100.cheapest_memory_mb) == ("goose", 90)
    assert (at_100.cheapest_cpu, at_100.cheapest_cpu_percent) == ("goose", 5)
    assert sleep.by_jobs[0].cheapest_memory == "fastapi"
    assert "100 jobs: Celery, goose (least memory goose 90 MB; least CPU goose 5.0%)" in sleep.held_line


def test_committed_json_schema_matches_the_models() -> None:
    """Regenerate with `python -m taskbench.report.schema > docs/result-schema.json` after changing the models."""
    from taskbench.report.schema import json_schema

    committed = json.loads((Path(__file__).resolve().parents[1] / "docs" / "result-schema.json").read_text())
    assert committed == json_schema()


def test_a_run_of_background_tasks_alone_names_no_missing_implementation() -> None:
    rows = annotated(summary("fastapi", 10), summary("fastapi", 50, probe_p99=0.9))
    result = verdict.compute(rows, ["fastapi"])
    assert result.headline == ["Answer: BackgroundTasks failed for sleep from 50 jobs."]


def test_noop_jobs_are_not_failed_for_a_makespan_over_an_ideal_near_zero() -> None:
    """1 000 no-op jobs drained in 1.9 s: the ratio to an ideal of a few milliseconds says what the queue costs
    per job (the throughput column), not that it failed; a job with work of its own is still judged on it."""
    thresholds = Thresholds()
    noop = summary("celery", 1000, workload="noop").model_copy(
        update={"makespan_s": 1.9, "ideal_makespan_s": 0.02, "makespan_ratio": 95.0}
    )
    assert "makespan far over ideal" not in {c.rule for c in failures.checks(noop, thresholds)}
    # the ideal is the burst's own arrival (1.36 s to submit 1 000) while the jobs' work is nil: still not judged
    submitted_slowly = noop.model_copy(
        update={"makespan_s": 2.6, "model_makespan_s": 0.0, "ideal_makespan_s": 1.36, "makespan_ratio": 1.91}
    )
    assert "makespan far over ideal" not in {c.rule for c in failures.checks(submitted_slowly, thresholds)}
    slow = summary("celery", 1000, makespan_ratio=3.0)
    assert "makespan far over ideal" in {f.rule for f in failures.detect(slow, thresholds)}


def test_a_recorded_analysis_is_judged_again_with_this_version_s_rules() -> None:
    """A docs page keeps merged summaries only: run once, a scenario is judged again exactly; merged from repeats,
    it keeps its recorded outcomes but of a rule its shape no longer lets apply."""
    from taskbench import analysis
    from taskbench.analysis import rejudge
    from taskbench.analysis.models import AnalysedRun, Failure

    judged_before = Failure(rule="makespan far over ideal", evidence="makespan 2.60 s is 1.91× the ideal 1.36 s")
    noop = summary("celery", 1000, workload="noop").model_copy(
        update={"makespan_s": 2.6, "model_makespan_s": 0.0, "ideal_makespan_s": 1.36, "makespan_ratio": 1.91,
                "failures": [judged_before], "status": "failed"}
    )  # fmt: skip
    in_two_of_three = Failure(rule="a process died", evidence="rq-worker", runs="in 1 of 3 runs")  # not the median run
    repeated = noop.model_copy(
        update={"label": "rq · noop · 1000 jobs", "implementation": "rq", "repeats": 3,
                "borderline": [in_two_of_three], "status": "failed"}
    )  # fmt: skip
    page = Path(__file__).parents[1] / "docs" / "results" / "broker-kept.json"  # a recorded page: its settings
    recorded = AnalysedRun.model_validate_json(page.read_text()).model_copy(update={"summaries": [noop, repeated]})
    recorded = recorded.model_copy(update={"verdict": analysis._verdict(recorded, [noop, repeated])})
    again = rejudge(recorded)
    once, merged = again.summaries
    assert (once.status, once.failures) == ("held", [])
    assert (merged.status, merged.failures, merged.borderline) == ("borderline", [], [in_two_of_three])
    assert recorded.verdict.lines != again.verdict.lines
    assert not any("Celery failed" in line or "Celery fails" in line for line in again.verdict.lines)


def test_an_unfinished_burst_says_how_far_it_got_and_how_fast_it_was_completing() -> None:
    unfinished = summary("rq", 1000, completed=936)
    unfinished.completion.unfinished = "936 of 1000 jobs finished, completing at 47.0/s at the end"
    (rule,) = [f for f in failures.detect(unfinished, Thresholds()) if f.rule == "jobs not completed"]
    assert rule.evidence.endswith("at the deadline 936 of 1000 jobs finished, completing at 47.0/s at the end")


def test_the_completion_rate_is_read_over_the_last_window_of_polls() -> None:
    completion = CompletionWatch()
    for second, finished in enumerate([0, 10, 20, 30, 30, 40, 50]):
        completion.seen.append((float(second), finished))
    assert completion.rate_per_s(window_s=2.0) == pytest.approx(10.0)  # (50 − 30) / 2 s
    assert completion.rate_per_s(window_s=100.0) == pytest.approx(50 / 6)


@pytest.mark.pure
def test_what_the_broker_keeps_is_counted_per_thousand_completed_jobs() -> None:
    from taskbench.analysis.stats import broker_kept
    from taskbench.record.results import BrokerBytes, load_scenario
    from taskbench.report.fmt import size

    fixture = Path(__file__).parent / "fixtures" / "small_run" / "fastapi_5_jobs_20261125_061235.json"
    result = load_scenario(fixture).model_copy(update={"broker_bytes": BrokerBytes(before=2_000, after=18_000)})
    kept = broker_kept(result, completed=50)
    assert kept is not None and kept.kept_bytes == 16_000 and kept.kept_per_1000_bytes == 320_000
    assert broker_kept(result, completed=0) == kept.model_copy(update={"kept_per_1000_bytes": None})
    assert broker_kept(result.model_copy(update={"broker_bytes": None}), completed=50) is None
    assert [size(v) for v in (None, 812, 49_356, 3_250_000)] == ["–", "812 B", "48.2 KB", "3.1 MB"]
    # key by key: what the burst added counts, not what others let go meanwhile (a result expiring: -3 000)
    added = broker_kept(
        result.model_copy(update={"broker_bytes": BrokerBytes(before=5_000, after=3_500, grown=1_500)}), 50
    )
    assert added is not None and added.kept_bytes == 1_500


@pytest.mark.pure
def test_what_a_burst_added_to_its_broker_is_read_key_by_key() -> None:
    from taskbench.measure.retention import grown

    before = {"results:old": 3_000, "queue": 100, "stream": 1_000}
    after = {"queue": 60, "stream": 1_400, "results:a": 700, "results:b": 700}  # one expired, one shrank, two new
    assert grown(before, after) == 400 + 700 + 700
    assert grown(after, after) == 0 and grown({}, after) == sum(after.values())


def test_what_idle_neighbours_took_is_said_apart_for_paused_and_running_scenarios() -> None:
    from taskbench.report.content import neighbours_note

    def beside(s: ScenarioSummary, neighbour_cpu: float) -> ScenarioSummary:
        other = ProcessResources(samples=10, cpu_peak=1.0, cpu_avg=neighbour_cpu, rss_peak_mb=30, rss_avg_mb=30)
        return s.model_copy(update={"resources": {**s.resources, "arq-worker": other}, "worker_role": "celery-worker"})

    plain, crashed = beside(summary("celery", 10), 0.0), beside(summary("celery", 10, fault="worker-crash"), 8.0)
    paused = " ".join(str(block) for block in neighbours_note([plain, crashed], paused=True))
    assert "running, polling their queues, they used 8.0% of one core on average over 1 scenarios" in paused
    assert "paused (SIGSTOP) through each scenario without a fault, they used 0.0%" in paused
    running = " ".join(str(block) for block in neighbours_note([plain, crashed], paused=False))
    assert "paused" not in running and "over 2 scenarios" in running


def test_redis_commands_per_job_leave_out_the_idle_rate_read_before_the_burst() -> None:
    from taskbench.analysis.stats import per_job as commands_per_job
    from taskbench.record.results import CommandCount

    base, start = CommandCount(t=0.0, calls=100), CommandCount(t=1.0, calls=110)  # idle: 10 commands a second
    end = CommandCount(t=3.0, calls=1130)  # 1 020 more in 2 s, 20 of them idle
    assert commands_per_job([base, start, end], completed=100) == 10.0
    assert commands_per_job([base, start, end], completed=0) is None
    assert commands_per_job([base, start], completed=100) is None  # no third reading: not counted
    quieter = CommandCount(t=3.0, calls=120)  # fewer than the idle rate predicts: none, never negative
    assert commands_per_job([base, start, quieter], completed=10) == 0.0
    statements = [CommandCount(t=0.0, calls=0, rows=0), CommandCount(t=1.0, calls=5, rows=2),
                  CommandCount(t=2.0, calls=405, rows=302)]  # fmt: skip
    assert commands_per_job(statements, completed=100) == 3.95  # (400 − 5 idle) ÷ 100
    assert commands_per_job(statements, completed=100, rows=True) == 2.98  # (300 − 2 idle) ÷ 100


@pytest.mark.pure
def test_jobs_a_worker_holds_unstarted_are_waiting_yet_not_in_the_brokers_count() -> None:
    from taskbench.analysis.stats import depth_seen
    from taskbench.record.results import BrokerDepth, Execution, Submission, load_scenario

    fixture = Path(__file__).parent / "fixtures" / "small_run" / "celery_5_jobs_20261125_061235.json"
    # 6 jobs answered at t = 1.0; two start at 2.0, two at 3.0; the broker counts 2 waiting at 1.5 (two prefetched)
    subs = [Submission(index=i, sent_at=0.9, latency_s=0.1, job_id=f"j{i}") for i in range(6)]
    starts = [Execution(job_id=f"j{i}", implementation="celery", event="start", t=2.0 + i // 2) for i in range(4)]
    depth = [BrokerDepth(t=0.5, queued=0), BrokerDepth(t=1.5, queued=2), BrokerDepth(t=2.5, queued=1),
             BrokerDepth(t=3.5, queued=0)]  # fmt: skip
    result = load_scenario(fixture).model_copy(
        update={"submissions": subs, "executions": starts, "broker_depth": depth}
    )
    seen = depth_seen(result)
    assert seen is not None and seen.samples == 4
    assert seen.peak_waiting == 6 and seen.peak_unseen == 4  # at 1.5: 6 waiting, 2 counted
    assert seen.median_unseen == 3  # unseen 4, 3 and 2 over the three samples with jobs waiting
    assert seen.seen_share == pytest.approx((2 + 1 + 0) / (6 + 4 + 2))
    assert seen.first_unseen is None and seen.last_unseen is None  # 3 samples with jobs waiting: no drift said
    assert depth_seen(result.model_copy(update={"broker_depth": []})) is None  # not sampled (a fault)


@pytest.mark.pure
def test_what_workers_hold_unstarted_growing_over_a_long_step_is_a_drift() -> None:
    """Celery's "reserved grows to hundreds after days", in small: 100 jobs waiting throughout; the broker counts
    all but 2 of them in the first quarter of the samples and all but 20 in the last."""
    from taskbench.analysis.stats import DRIFT_SAMPLES, depth_seen
    from taskbench.record.results import BrokerDepth, Submission, load_scenario

    fixture = Path(__file__).parent / "fixtures" / "small_run" / "celery_5_jobs_20261125_061235.json"
    subs = [Submission(index=i, sent_at=0.0, latency_s=0.1, job_id=f"j{i}") for i in range(100)]
    held = [2 + 18 * i // (DRIFT_SAMPLES - 1) for i in range(DRIFT_SAMPLES)]  # 2 → 20, rising
    depth = [BrokerDepth(t=1.0 + i, queued=100 - h) for i, h in enumerate(held)]
    result = load_scenario(fixture).model_copy(update={"submissions": subs, "broker_depth": depth})
    seen = depth_seen(result)
    assert seen is not None and seen.peak_waiting == 100 and seen.peak_unseen == 20
    quarter = DRIFT_SAMPLES // 4
    assert seen.first_unseen == statistics.median(held[:quarter]) and seen.last_unseen == statistics.median(
        held[-quarter:]
    )
    assert seen.first_unseen < 5 < 15 < seen.last_unseen
    fewer = depth_seen(result.model_copy(update={"broker_depth": depth[: DRIFT_SAMPLES - 1]}))
    assert fewer is not None and fewer.first_unseen is None  # too few samples to say


@pytest.mark.pure
def test_the_processes_that_ran_a_bursts_jobs_are_counted_from_the_ledger() -> None:
    from taskbench.analysis.stats import figures_of
    from taskbench.record.results import Execution, load_scenario

    fixture = Path(__file__).parent / "fixtures" / "small_run" / "celery_5_jobs_20261125_061235.json"
    result = load_scenario(fixture)
    # a fork per job (RQ), or a pool whose children a recycling setting replaces: each pid that started a job
    starts = [
        Execution(job_id=f"j{i}", implementation="celery", event="start", t=1.0, pid=100 + i % 3) for i in range(6)
    ]
    ends = [Execution(job_id=f"j{i}", implementation="celery", event="end", t=2.0, pid=999) for i in range(6)]
    assert figures_of(result.model_copy(update={"executions": starts + ends})).job_processes == 3
    assert figures_of(result.model_copy(update={"executions": []})).job_processes is None


def test_an_uneven_burst_counts_the_short_jobs_held_behind_its_long_one() -> None:
    """Two slots, a long job of 2 × 3 × 0.1 s = 0.6 s and three short ones: one short job started by the long
    job's process only once it ended (its prefetch held it), the others beside it on another process."""
    from taskbench import capacity
    from taskbench.analysis.hoarding import held_behind
    from taskbench.record.results import Execution, ScenarioSpec, Submission

    spec = ScenarioSpec(implementation="dramatiq", workload="uneven", jobs=4, duration_s=0.1)
    assert [capacity.job_duration_s("uneven", 4, 0.1, i) for i in range(4)] == pytest.approx([0.6, 0.1, 0.1, 0.1])
    assert capacity.ideal_makespan_s(4, 2, 0.1, workload="uneven") == pytest.approx(0.6)  # the long job beside
    assert capacity.ideal_makespan_s(4, 1, 0.1, workload="uneven") == pytest.approx(0.9)  # one slot: all the work
    subs = [Submission(index=i, sent_at=0.0, latency_s=0.01, job_id=f"j{i}") for i in range(4)]
    runs = {"j0": (1, 0.0, 0.6), "j1": (2, 0.0, 0.1), "j2": (2, 0.1, 0.2), "j3": (1, 0.61, 0.71)}

    def ledger(runs: dict[str, tuple[int, float, float]]) -> list[Execution]:
        return [
            Execution(job_id=job, implementation="dramatiq", event=event, pid=pid, t=t)
            for job, (pid, start, end) in runs.items()
            for event, t in (("start", start), ("end", end))
        ]

    held = held_behind(spec, subs, ledger(runs), concurrency=2, makespan_s=0.72)
    assert held is not None and (held.held, held.held_by_its_process, held.short_jobs) == (1, 1, 3), held
    assert held.ideal_s == pytest.approx(0.6) and held.cost_s == pytest.approx(0.12)
    balanced = held_behind(spec, subs, ledger({**runs, "j3": (2, 0.2, 0.3)}), concurrency=2, makespan_s=0.6)
    assert balanced is not None and balanced.held == 0 and balanced.cost_s == pytest.approx(0.0)
    assert held_behind(spec, subs, ledger({"j1": (2, 0.0, 0.1)}), 2, None) is None  # the long job never ran
    assert held_behind(spec.model_copy(update={"workload": "sleep"}), subs, ledger(runs), 2, 0.72) is None
