"""The run's answer in a few fields, for CI (`taskbench run --json PATH|-`) and `results.csv` (the spec's table as
numbers): rendered from the analysed run alone, like every other report."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from pydantic import BaseModel

from taskbench import __version__
from taskbench.analysis.models import AnalysedRun, ScenarioSummary, WorkloadAnswer
from taskbench.analysis.tradeoff import cpu_per_1000

SCHEMA_VERSION = 2  # 2: `answers`, `reference` and CPU-seconds per 1 000 jobs; a reader checks it before the fields


class ScenarioDigest(BaseModel):
    label: str
    implementation: str
    workload: str
    jobs: int
    rate_per_s: float | None  # sustained load: the offered rate
    status: str  # held, borderline, failed, interrupted
    failed_rules: list[str]
    completed: int
    failed_jobs: int
    submission_avg_s: float | None
    total_time_avg_s: float | None
    total_time_p95_s: float | None
    makespan_s: float | None
    peak_cpu_percent: float | None
    peak_memory_mb: float | None
    cpu_s_per_1000_jobs: float | None  # the implementation's API and worker processes
    memory_measure: str  # PSS, USS or RSS
    responsive: bool | None
    verdict: str | None  # sustained load: sustained, saturated or inconclusive


class Digest(BaseModel):
    schema_version: int = SCHEMA_VERSION
    taskbench: str
    folder: str
    timestamp: str
    exit_code: int
    interrupted: bool
    verdict: list[str]
    reference: str  # what `answers` states every implementation against
    answers: list[WorkloadAnswer]
    scenarios: list[ScenarioDigest]


def _scenario(s: ScenarioSummary, measure: str) -> ScenarioDigest:
    return ScenarioDigest(
        label=s.label,
        implementation=s.implementation,
        workload=s.workload_key,
        jobs=s.jobs,
        rate_per_s=s.rate.offered_per_s if s.rate else None,
        status=s.status,
        failed_rules=[f.rule for f in s.failures],
        completed=s.completion.completed,
        failed_jobs=s.completion.failed,
        submission_avg_s=s.submission.avg,
        total_time_avg_s=s.total_time.avg,
        total_time_p95_s=s.total_time.p95,
        makespan_s=s.makespan_s,
        peak_cpu_percent=s.peak_cpu_percent,
        peak_memory_mb=s.peak_memory_mb,
        cpu_s_per_1000_jobs=cpu_per_1000(s),
        memory_measure=measure,
        responsive=s.responsive,
        verdict=s.rate.verdict if s.rate else None,
    )


def of(run: AnalysedRun, folder: Path, exit_code: int) -> Digest:
    measure = run.environment.machine.job_memory.upper()
    return Digest(
        taskbench=__version__,
        folder=str(folder),
        timestamp=run.timestamp,
        exit_code=exit_code,
        interrupted=run.interrupted,
        verdict=run.verdict.lines,
        reference=run.verdict.reference,
        answers=run.verdict.answers,
        scenarios=[_scenario(s, measure) for s in run.summaries],
    )


def csv_table(run: AnalysedRun) -> str:
    """The spec's table as numbers, one scenario a row (repeats merged: medians), with the status."""
    rows = [_scenario(s, run.environment.machine.job_memory.upper()) for s in run.summaries]
    out = io.StringIO()
    fields = [f for f in ScenarioDigest.model_fields if f != "failed_rules"] + ["failed_rules"]
    writer = csv.DictWriter(out, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        data = row.model_dump()
        data["failed_rules"] = "; ".join(row.failed_rules)
        writer.writerow(data)
    return out.getvalue()
