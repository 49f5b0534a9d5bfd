"""`--concurrency 4,16,40`: the smallest concurrency at which each worker-based implementation drains a
burst as fast as BackgroundTasks while the API stays responsive, and the memory that takes (measured)."""

from __future__ import annotations

from collections.abc import Sequence

from taskbench import implementations
from taskbench.analysis.models import ScenarioSummary, SweepPoint, SweepResult
from taskbench.analysis.tradeoff import SLOWER_FROM

BASELINE = implementations.BASELINE


def _point(s: ScenarioSummary) -> SweepPoint:
    return SweepPoint(
        concurrency=s.concurrency or 0,
        makespan_s=s.makespan_s,
        peak_memory_mb=s.peak_memory_mb,
        responsive=s.responsive,
        status=s.status,
    )


def _matches(point: SweepPoint, target_s: float) -> bool:
    return (
        point.makespan_s is not None
        and point.makespan_s <= target_s * SLOWER_FROM
        and point.responsive is not False
        and point.status != "failed"
    )


def _sentence(r: SweepResult) -> str:
    title = implementations.title(r.implementation)
    if r.smallest is None:
        drained = [p for p in r.points if p.makespan_s is not None]
        if not drained:
            return f"{title} did not drain the burst at any of them"
        best = min(drained, key=lambda p: p.makespan_s or 0.0)
        span = f"{r.points[0].concurrency}–{r.points[-1].concurrency}"
        return f"{title} not within {span} (best {best.makespan_s or 0:.1f} s at {best.concurrency})"
    at = next(p for p in r.points if p.concurrency == r.smallest)
    memory = f", {at.peak_memory_mb:.0f} MB" if at.peak_memory_mb is not None else ""
    return f"{title} from {r.smallest} ({at.makespan_s or 0:.1f} s{memory})"


def sweeps(summaries: Sequence[ScenarioSummary]) -> tuple[list[SweepResult], list[str]]:
    """Each worker-based implementation's points per workload and job count, and one line per pair."""
    plain = [s for s in summaries if not s.fault and not s.interrupted]
    swept = [s for s in plain if s.concurrency is not None]
    results: list[SweepResult] = []
    lines: list[str] = []
    for workload, jobs in dict.fromkeys((s.workload_key, s.jobs) for s in swept):
        key = (BASELINE, workload, jobs)
        baseline = next((s for s in plain if (s.implementation, s.workload_key, s.jobs) == key), None)
        target = baseline.makespan_s if baseline is not None else None
        here = []
        for name in dict.fromkeys(s.implementation for s in swept if (s.workload_key, s.jobs) == (workload, jobs)):
            points = sorted(
                (_point(s) for s in swept if (s.implementation, s.workload_key, s.jobs) == (name, workload, jobs)),
                key=lambda p: p.concurrency,
            )
            smallest = next((p.concurrency for p in points if target and _matches(p, target)), None)
            here.append(SweepResult(workload=workload, jobs=jobs, implementation=name, points=points,
                                    baseline_makespan_s=target, smallest=smallest))  # fmt: skip
        results += here
        values = ", ".join(str(p.concurrency) for p in here[0].points)
        against = f"BackgroundTasks' {target:.1f} s" if target else "BackgroundTasks (not measured)"
        parts = "; ".join(_sentence(r) for r in here)
        lines.append(f"{workload}, {jobs} jobs, --concurrency {values}, drains as fast as {against} and stays "
                     f"responsive: {parts}.")  # fmt: skip
    return results, lines
