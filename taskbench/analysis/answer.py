"""The answer at a glance: per workload, what each choice costs against a reference.

"Celery held" is true and alone it misleads: the choice a team makes is between costs. As hyperfine states "1.50 ±
0.03 times faster than" one reference command, each implementation is stated against one reference (`--reference`,
default BackgroundTasks, the benchmark's question; a Celery shop weighing arq asks `--reference celery`): time to
drain, p95 total time, peak memory and CPU per job as ratios at the largest job count both ran, with their range
over repeats, and the jobs at once it would need to drain as fast. "Cheapest" is `tradeoff.cheapest`: among two
or more that held at every count, on CPU per job.
"""

from __future__ import annotations

from collections.abc import Sequence

from taskbench import implementations
from taskbench.analysis import tradeoff
from taskbench.analysis.models import (
    AnswerCell,
    ImplementationOutcome,
    Ratio,
    ScenarioSummary,
    Status,
    WorkloadAnswer,
    WorkloadVerdict,
)


def _range(s: ScenarioSummary, path: str, value: float) -> tuple[float, float]:
    spread = s.spread.get(path)
    return (spread.min, spread.max) if spread is not None else (value, value)


def _cpu_range(s: ScenarioSummary) -> tuple[float, float]:
    """CPU per job over repeats: each role's CPU-seconds range, summed (a bound: each run's own sum lies within)."""
    low = high = 0.0
    for role in tradeoff.cost_roles(s):
        seconds = s.resources[role].cpu_s or 0.0
        low, high = (x + y for x, y in zip((low, high), _range(s, f"resources.{role}.cpu_s", seconds), strict=True))
    done = s.completion.completed or 1
    return low / done * 1000, high / done * 1000


def ratio(value: float | None, of: float | None, ranges: tuple[tuple[float, float], tuple[float, float]] | None
          ) -> Ratio | None:  # fmt: skip
    """`value` ÷ `of`; with repeats, `ranges` (each figure's min and max) give the ratio's own range. A figure
    of zero (a short scenario's CPU below the sampler's resolution) has no ratio."""
    if value is None or of is None or value <= 0 or of <= 0:
        return None
    if ranges is None or min(*ranges[0], *ranges[1]) <= 0:
        return Ratio(value=value / of)
    (low, high), (of_low, of_high) = ranges
    return Ratio(value=value / of, low=low / of_high, high=high / of_low)


def _ratios(s: ScenarioSummary, ref: ScenarioSummary) -> dict[str, Ratio | None]:
    repeated = s.repeats > 1 or ref.repeats > 1
    figures = {
        "drain": (s.makespan_s, ref.makespan_s, "makespan_s"),
        "p95": (s.total_time.p95, ref.total_time.p95, "total_time.p95"),
        "memory": (s.peak_memory_mb, ref.peak_memory_mb, "peak_memory_mb"),
    }
    out = {
        name: ratio(value, of, (_range(s, path, value), _range(ref, path, of)) if repeated and value and of else None)
        for name, (value, of, path) in figures.items()
    }
    cpu, ref_cpu = tradeoff.cpu_per_1000(s), tradeoff.cpu_per_1000(ref)
    cpu_ranges = (_cpu_range(s), _cpu_range(ref)) if repeated and cpu and ref_cpu else None
    out["cpu"] = ratio(cpu, ref_cpu, cpu_ranges)
    return out


def _status(o: ImplementationOutcome) -> tuple[Status, str]:
    if o.fails_at is not None:
        return "failed", tradeoff.deciding(o.failures)
    if o.borderline_at:
        return "borderline", tradeoff.deciding(o.borderline)
    return "held", ""


def _cell(s: ScenarioSummary, outcome: ImplementationOutcome, ref: ScenarioSummary, is_ref: bool) -> AnswerCell:
    status, deciding = _status(outcome)
    ratios = {} if is_ref else _ratios(s, ref)
    slower = None if is_ref else tradeoff.slower_than(s, ref.makespan_s)
    return AnswerCell(
        implementation=s.implementation,
        title=implementations.title(s.implementation),
        status=status,
        fails_at=outcome.fails_at,
        deciding=deciding,
        makespan_s=s.makespan_s,
        total_p95_s=s.total_time.p95,
        peak_memory_mb=s.peak_memory_mb,
        cpu_s_per_1000=tradeoff.cpu_per_1000(s),
        concurrency=s.capacity.concurrency,
        workers_to_match=tradeoff.to_match(s, slower) if status == "held" else None,
        **ratios,
    )


def times(r: Ratio, more: str, less: str) -> str:
    """ "7.3× slower", "2.1× (1.9–2.4) faster", "about the same": a ratio in the figure's words, as hyperfine
    writes it."""
    inverse = r.value < 1
    value, low, high = (1 / r.value, r.high, r.low) if inverse else (r.value, r.low, r.high)
    if f"{value:.1f}" == "1.0":
        return "about the same"
    spread = ""
    if low is not None and high is not None:
        low, high = (1 / low, 1 / high) if inverse else (low, high)
        spread = f" ({low:.1f}–{high:.1f})" if f"{low:.1f}" != f"{high:.1f}" else ""
    return f"{value:.1f}×{spread} {less if inverse else more}"


def _reference_text(cell: AnswerCell, jobs: int) -> str:
    return f"{cell.title} {status_text(cell)} ({', '.join(reference_figures(cell, jobs))})"


def reference_figures(cell: AnswerCell, jobs: int) -> list[str]:
    """The reference's own figures, which every ratio divides by."""
    figures = [f"{cell.makespan_s:.1f} s to drain {jobs}" if cell.makespan_s is not None else "did not drain"]
    if cell.peak_memory_mb is not None:
        figures.append(f"{cell.peak_memory_mb:.0f} MB")
    if cell.cpu_s_per_1000 is not None:
        figures.append(f"{cell.cpu_s_per_1000:.1f} CPU-s per 1 000 jobs")
    return figures


def clause(cell: AnswerCell) -> str:
    """ "Celery held: drain 7.3× slower (≈ 30 at once to match, 4 now), p95 7.0× longer, memory 3.4× more" """
    parts = figures(cell)
    return f"{cell.title} {status_text(cell)}" + (f": {', '.join(parts)}" if parts else "")


def status_text(cell: AnswerCell) -> str:
    return f"failed from {cell.fails_at} jobs" if cell.fails_at is not None else cell.status


def figures(cell: AnswerCell) -> list[str]:
    """Each ratio in words: "drain 7.3× slower (≈ 30 at once to match, 4 now)", "p95 7.0× longer", …"""
    parts = []
    if cell.drain is not None:
        drain = "drain " + times(cell.drain, "slower", "faster")
        if cell.workers_to_match is not None:
            drain += f" (≈ {cell.workers_to_match} at once to match, {cell.concurrency} now)"
        parts.append(drain)
    if cell.p95 is not None:
        parts.append("p95 " + times(cell.p95, "longer", "shorter"))
    if cell.memory is not None:
        parts.append("memory " + times(cell.memory, "more", "less"))
    if cell.cpu is not None:
        parts.append("CPU per job " + times(cell.cpu, "more", "less"))
    return parts


def _sentence(workload: str, jobs: int, cells: list[AnswerCell]) -> str:
    reference, others = cells[0], cells[1:]
    text = f"{workload}, {jobs} jobs, against {_reference_text(reference, jobs)}: "
    text += "; ".join(clause(c) for c in others) + "."
    best = next((c for c in cells if c.cheapest), None)
    if best is not None:
        cost = f"{best.cpu_s_per_1000:.1f} CPU-s per 1 000 jobs" if best.cpu_s_per_1000 is not None else "least memory"
        text += f" Cheapest of those that held: {best.title} ({cost})."
    return text


def answers(
    workloads: Sequence[WorkloadVerdict], summaries: Sequence[ScenarioSummary], reference: str
) -> list[WorkloadAnswer]:
    """One answer per workload the reference ran with at least one other implementation, at the largest job
    count they shared; `summaries` are the verdict's plain ones (no fault, the base concurrency)."""
    out = []
    for w in workloads:
        outcomes = {o.implementation: o for o in w.implementations}
        at = {(s.implementation, s.jobs): s for s in summaries if s.workload_key == w.workload}
        shared = [j for j in w.tested_jobs if (reference, j) in at and any(n != reference and m == j for n, m in at)]
        if reference not in outcomes or not shared:
            continue
        jobs = max(shared)
        ref = at[(reference, jobs)]
        names = [reference, *(o.implementation for o in w.implementations if o.implementation != reference)]
        cells = [_cell(at[(n, jobs)], outcomes[n], ref, n == reference) for n in names if (n, jobs) in at]
        best = tradeoff.cheapest([at[(c.implementation, jobs)] for c in cells if c.status == "held"])
        cells = [c.model_copy(update={"cheapest": True}) if c.implementation == best else c for c in cells]
        out.append(WorkloadAnswer(workload=w.workload, jobs=jobs, reference=reference, cells=cells,
                                  sentence=_sentence(w.workload, jobs, cells)))  # fmt: skip
    return out
