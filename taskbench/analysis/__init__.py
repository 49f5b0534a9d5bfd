"""From raw results to the typed analysis every report renders: `analyse` is the one entry point.

    ScenarioResult ─► stats.summarize ─► failures.annotate ─┐
                                                            ├─► verdict.compute ─► AnalysedRun
    RunResult ──────────────────────────────────────────────┘

Pure: the same files give the same analysis, so `taskbench report` recomputes it with this version's rules.
"""

from __future__ import annotations

from taskbench import implementations
from taskbench.analysis import failures, stats, verdict
from taskbench.analysis.models import AnalysedRun, ImplementationInfo, ScenarioSummary
from taskbench.results import RunResult, ScenarioResult


def summarise(result: ScenarioResult) -> ScenarioSummary:
    """One scenario's figures and failures, against the thresholds it ran with."""
    return failures.annotate(stats.summarize(result), result.settings.thresholds)


def implementation_info(name: str, run: RunResult) -> ImplementationInfo:
    if name not in implementations.REGISTRY:
        return ImplementationInfo(name=name, title=name, job_process=stats.job_process(name), in_registry=False)
    implementation = implementations.get(name)
    return ImplementationInfo(
        name=name,
        title=implementation.title,
        job_process=implementation.job_process,
        settings=implementation.settings(run.settings.concurrency),
        how_it_runs={workload: implementation.how_it_runs(workload) for workload in run.settings.workloads},
    )


def analyse(run: RunResult, scenarios: list[ScenarioResult]) -> AnalysedRun:
    """The run with every scenario's summary (in the order of `scenarios`) and the verdict."""
    summaries = [summarise(result) for result in scenarios]
    names = list(dict.fromkeys([*run.settings.implementations, *(s.implementation for s in summaries)]))
    return AnalysedRun(
        **run.model_dump(),
        implementations=[implementation_info(name, run) for name in names],
        summaries=summaries,
        verdict=verdict.compute(summaries, names),
    )


__all__ = ["analyse", "summarise"]
