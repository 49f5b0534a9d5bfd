"""Pure logic on constructed data: statistics, failure rules, the verdict."""

from __future__ import annotations

from typing import Any

import pytest

from taskbench import failures, verdict
from taskbench.results import Probe, Thresholds
from taskbench.stats import distribution, longest_silence, max_concurrent, percentile

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
    assert d["count"] == 2 and d["avg"] == 2.0 and d["max"] == 3.0


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
    makespan_ratio: float = 1.01,
    fault: str | None = None,
    lost: int = 0,
) -> dict[str, Any]:
    completed = jobs if completed is None else completed
    probe = {"sent": 50, "answered": 50 - probe_timeouts, "timeouts": probe_timeouts, "errors": 0,
             "p99": probe_p99, "longest_silence_s": 0.1}  # fmt: skip
    return {
        "label": f"{implementation} · {workload} · {jobs} jobs",
        "implementation": implementation,
        "workload": workload,
        "jobs": jobs,
        "fault": fault,
        "variant": None,
        "probes": {"async": probe, "sync": probe},
        "submission": {"attempted": jobs, "timeouts": submit_timeouts, "errors": 0, "max": 0.01},
        "completion": {
            "completed": completed,
            "failed": failed,
            "pending": jobs - completed - failed,
            "missing_records": 0,
        },
        "resources": {"system": {"memory_peak_percent": 10.0}},
        "job_process": "api" if implementation == "fastapi" else "worker",
        "peak_memory_mb": peak_memory_mb,
        "makespan_s": makespan_ratio * 30,
        "ideal_makespan_s": 30.0,
        "makespan_ratio": makespan_ratio,
        "capacity": {"concurrency": 4, "reason": "4 worker processes"},
        "executions": {
            "lost": lost,
            "duplicated": 0,
            "recovered": 0,
            "lost_ids": [f"id{i}" for i in range(lost)],
            "duplicated_ids": [],
        },
    }


def rules(s: dict[str, Any]) -> list[str]:
    return [f["rule"] for f in failures.detect(s, THRESHOLDS)]


def test_healthy_scenario_has_no_failure() -> None:
    s = summary("celery", 10)
    assert rules(s) == []
    assert failures.annotate(s, THRESHOLDS)["responsive"] is True


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
    ],
)
def test_each_failure_rule_fires_with_evidence(kwargs: dict[str, Any], rule: str) -> None:
    found = failures.detect(summary("fastapi", 10, **kwargs), THRESHOLDS)
    assert rule in [f["rule"] for f in found]
    assert all(f["evidence"] for f in found)


def annotated(*rows: dict[str, Any]) -> list[dict[str, Any]]:
    return [failures.annotate(r, THRESHOLDS) for r in rows]


def test_verdict_picks_the_smallest_failing_job_count() -> None:
    rows = annotated(
        summary("fastapi", 10), summary("celery", 10),
        summary("fastapi", 50, probe_p99=0.8), summary("celery", 50),
        summary("fastapi", 100, probe_timeouts=5), summary("celery", 100, makespan_ratio=2.0),
    )  # fmt: skip
    answer = verdict.compute(rows)["workloads"]["sleep"]
    assert answer["fastapi_fails_at"] == 50
    assert [f["rule"] for f in answer["fastapi_failures"]] == ["server unresponsive (async endpoint)",
                                                               "server unresponsive (sync endpoint)"]  # fmt: skip
    assert answer["celery_at_that_count"] == []
    assert answer["celery_fails_at"] == 100
    assert answer["tested_jobs"] == [10, 50, 100]
    headline = verdict.compute(rows)["lines"][0]
    assert headline == "Answer: BackgroundTasks failed for sleep from 50 jobs (Celery held there)."


def test_verdict_says_when_nothing_failed_and_what_range_was_tested() -> None:
    rows = annotated(summary("fastapi", 10, workload="cpu"), summary("celery", 10, workload="cpu"),
                     summary("fastapi", 40, workload="cpu"), summary("celery", 40, workload="cpu"))  # fmt: skip
    result = verdict.compute(rows)
    assert result["workloads"]["cpu"]["fastapi_fails_at"] is None
    assert result["lines"][0] == "Answer: BackgroundTasks were enough for cpu (tested up to 40 jobs)."
    assert "did not fail in the tested range (10–40 jobs)" in result["lines"][1]


def test_verdict_counts_lost_jobs_per_fault() -> None:
    rows = annotated(summary("fastapi", 20, fault="api-crash", lost=20), summary("celery", 20, fault="api-crash"))
    result = verdict.compute(rows)
    assert [(f["implementation"], f["lost"]) for f in result["faults"]] == [("fastapi", 20), ("celery", 0)]
    assert result["lines"] == ["api-crash: fastapi lost 20/20; celery lost 0/20."]


def test_committed_json_schema_matches_the_models() -> None:
    """Regenerate with `python -m taskbench.results > docs/result-schema.json` after changing results.py."""
    import json
    from pathlib import Path

    from taskbench.results import json_schema

    committed = json.loads((Path(__file__).resolve().parents[1] / "docs" / "result-schema.json").read_text())
    assert committed == json_schema()


def test_verdict_claims_nothing_for_an_implementation_not_run() -> None:
    lines = verdict.compute(annotated(summary("celery", 10), summary("celery", 50)))["lines"]
    assert lines == ["sleep: BackgroundTasks not tested. Celery did not fail in 10–50 jobs."]


def test_a_scenario_cut_short_by_ctrl_c_is_no_failure_and_no_verdict() -> None:
    cut = summary("fastapi", 10, completed=5)
    cut["interrupted"] = True
    assert failures.detect(cut, THRESHOLDS) == []
    assert verdict.compute(annotated(cut, summary("celery", 10)))["workloads"]["sleep"]["fastapi_tested"] is False
