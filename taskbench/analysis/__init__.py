"""From raw results to the typed analysis every report renders: `analyse` is the one entry point.

    ScenarioResult ─► stats.figures_of ─► repeats.merge (runs of one scenario; failures.judge) ─┐
                                                                                              ├─► verdict.compute
    RunResult ────────────────────────────────────────────────────────────────────────────────┘   ─► AnalysedRun

Pure: the same files give the same analysis, so `taskbench report` recomputes it with this version's rules.
"""

from __future__ import annotations

from taskbench import implementations
from taskbench.analysis import failures, repeats, stats, verdict
from taskbench.analysis.models import AnalysedRun, ImplementationInfo, ScenarioSummary, Verdict
from taskbench.record.results import RunResult, ScenarioResult, Thresholds


def summarise(result: ScenarioResult) -> ScenarioSummary:
    """One run of a scenario: its figures and failures, against the thresholds it ran with."""
    return failures.annotate(stats.figures_of(result), result.settings.thresholds)


def merge_repeats(scenarios: list[ScenarioResult], figures: list[ScenarioSummary]) -> list[ScenarioSummary]:
    """One summary per scenario, its runs (`--repeat`) merged, in the order of their first run; `figures` are
    `stats.figures_of` of each of `scenarios`, computed once by the caller."""
    groups: dict[str, list[tuple[ScenarioResult, ScenarioSummary]]] = {}
    for result, summary in zip(scenarios, figures, strict=True):
        groups.setdefault(result.spec.group.model_dump_json(), []).append((result, summary))
    return [repeats.merge([s for _, s in runs], runs[0][0].settings.thresholds) for runs in groups.values()]


def implementation_info(name: str, run: RunResult) -> ImplementationInfo:
    """As the run recorded it; a run recorded before that was kept is described by this version's registry, and
    says so (`recorded` False)."""
    recorded = run.described.get(name)
    if recorded is not None:
        return ImplementationInfo(name=name, **recorded.model_dump())
    if not implementations.known(name):
        return ImplementationInfo(name=name, title=name, job_process=stats.job_process(name), in_registry=False)
    implementation = implementations.get(name)
    options = run.settings.options_of(name)
    return ImplementationInfo(
        name=name,
        title=implementations.title(name),
        job_process=implementations.job_process(name),
        settings=implementation.settings_on(
            run.settings.concurrency, run.settings.broker, options, run.settings.api, run.settings.external_servers
        ),
        how_it_runs={
            **{w: implementation.how_it_runs(w, options) for w in run.settings.workloads},
            **{j.path: implementation.how_it_runs(j.behaves_like, options) for j in run.settings.user_jobs},
        },
        recorded=False,
    )


def analyse(run: RunResult, scenarios: list[ScenarioResult]) -> AnalysedRun:
    """The run with every scenario's summary (repeats merged), every run's own, and the verdict."""
    figures = [stats.figures_of(result) for result in scenarios]  # each run once: merged and annotated below
    summaries = merge_repeats(scenarios, figures)
    names = _names(run, summaries)
    return AnalysedRun(
        **run.model_dump(),
        implementations=[implementation_info(name, run) for name in names],
        summaries=summaries,
        scenario_summaries=[
            failures.annotate(s, r.settings.thresholds) for r, s in zip(scenarios, figures, strict=True)
        ],
        verdict=_with_unavailable(_with_jobs(_verdict(run, summaries), run), run),
    )


def rejudge(analysed: AnalysedRun) -> AnalysedRun:
    """A recorded analysis (a docs page keeps no raw results) judged again with this version's rules from its
    figures. A scenario run once is judged exactly; one merged from repeats keeps the outcomes it was judged
    with (each needs every run's figures), except of a rule its shape no longer lets apply (the median says so)."""
    run = RunResult.model_validate(analysed.model_dump(include=set(RunResult.model_fields)))
    thresholds = run.settings.thresholds
    summaries = [_rejudged(summary, thresholds) for summary in analysed.summaries]
    verdict_now = _with_unavailable(_with_jobs(_verdict(run, summaries), run), run)
    return analysed.model_copy(update={"summaries": summaries, "verdict": verdict_now})


def _rejudged(summary: ScenarioSummary, thresholds: Thresholds) -> ScenarioSummary:
    if summary.repeats <= 1:
        return failures.annotate(summary, thresholds)
    applies = {check.rule.value for check in failures.checks(summary, thresholds)}
    gone = failures.APPLIES_BY_SHAPE - applies
    failed = [f for f in summary.failures if f.rule not in gone]
    borderline = [f for f in summary.borderline if f.rule not in gone]
    status = summary.status
    if status != "interrupted":
        status = "failed" if failed else "borderline" if borderline else "held"
    return summary.model_copy(update={"failures": failed, "borderline": borderline, "status": status})


def _names(run: RunResult, summaries: list[ScenarioSummary]) -> list[str]:
    return list(dict.fromkeys([*run.settings.implementations, *(s.implementation for s in summaries)]))


def _verdict(run: RunResult, summaries: list[ScenarioSummary]) -> Verdict:
    names = _names(run, summaries)
    base = run.settings.concurrency if run.settings.concurrency_sweep else None
    reference = run.settings.reference or (implementations.BASELINE if implementations.BASELINE in names else names[0])
    return verdict.compute(summaries, names, base, _target_rate(run), reference)


def _with_unavailable(result: Verdict, run: RunResult) -> Verdict:
    """An implementation that could not run is part of the answer: said after the headline, with why."""
    if not run.unavailable:
        return result
    said = [
        f"{implementations.title(u.implementation)} could not run ({u.when}): {u.part}: {u.reason}"
        for u in run.unavailable
    ]
    return result.model_copy(update={"lines": [*result.headline, *said, *result.lines[len(result.headline) :]]})


def _target_rate(run: RunResult) -> float | None:
    return run.settings.load.target_rate if run.settings.load else None


def _with_jobs(result: Verdict, run: RunResult) -> Verdict:
    """A user's job is named as the workload; the verdict also says what it is and what it took once."""
    if not run.settings.user_jobs:
        return result
    described = [f"Your job {job.description}." for job in run.settings.user_jobs]
    return result.model_copy(update={"lines": [*result.headline, *described, *result.lines[len(result.headline) :]]})


__all__ = ["analyse", "rejudge", "summarise"]
