"""What each chart shows, in numbers, for a reader who cannot see it (a screen reader, a text-only mail client):
the alt text of every `<img>` in report.html. Computed from the same analysis the chart is drawn from."""

from __future__ import annotations

from collections.abc import Sequence

from taskbench.analysis.models import AnalysedRun, ScenarioSummary


def _s(value: float | None, unit: str = " s", digits: int = 1) -> str:
    return "not measured" if value is None else f"{value:.{digits}f}{unit}"


def _ms(value: float | None) -> str:
    return "not measured" if value is None else f"{value * 1000:.0f} ms"


def answer(run: AnalysedRun) -> str:
    parts = []
    for a in run.verdict.answers:
        bars = [
            f"{c.title} {_s(c.makespan_s)}" + ("" if c.status == "held" else f" ({c.status})")
            + (f", {c.drain.value:.2g}× the reference" if c.drain else "")
            for c in a.cells
        ]  # fmt: skip
        parts.append(f"{a.workload}, {a.jobs} jobs: {'; '.join(bars)}")
    return "Time to drain each workload's largest burst. " + ". ".join(parts) + "."


def workload(run: AnalysedRun, workload: str, rows: Sequence[ScenarioSummary]) -> str:
    largest = max(s.jobs for s in rows)
    at = [s for s in rows if s.jobs == largest]
    lines = [
        f"{run.title(s.implementation)} {s.status}: makespan ÷ ideal {_s(s.makespan_ratio, '', 2)}, async probe p99 "
        f"{_ms(s.probes['async'].p99)}, sync probe p99 {_ms(s.probes['sync'].p99)}, submission p99 "
        f"{_ms(s.submission.p99)}, peak memory {_s(s.peak_memory_mb, ' MB', 0)}"
        for s in at
    ]
    counts = ", ".join(str(j) for j in sorted({s.jobs for s in rows}))
    return f"Workload {workload} at {counts} jobs; at {largest} jobs: " + "; ".join(lines) + "."


def faults(summaries: Sequence[ScenarioSummary]) -> str:
    lines = [
        f"{s.fault_label}: {s.implementation} lost {s.executions.lost} of {s.executions.accepted}" for s in summaries
    ]
    return "Jobs lost per fault. " + "; ".join(lines) + "."


def sweep(run: AnalysedRun, workload: str, jobs: int) -> str:
    lines = [
        f"{run.title(r.implementation)}: "
        + ", ".join(f"concurrency {p.concurrency} {_s(p.makespan_s)}" for p in r.points)
        + (f"; as fast as BackgroundTasks from {r.smallest}" if r.smallest is not None else "")
        for r in run.verdict.sweeps
        if (r.workload, r.jobs) == (workload, jobs)
    ]
    return f"Makespan against concurrency, {workload}, {jobs} jobs. " + "; ".join(lines) + "."


def knee(run: AnalysedRun, workload: str) -> str:
    steps = [s for s in run.summaries if s.rate and s.workload_key == workload]
    lines = [
        f"{run.title(s.implementation)} offered {s.rate.offered_per_s:g}/s: completed "
        f"{_s(s.rate.throughput_per_s, '/s')}, p99 {_s(s.rate.total.p99)}, {s.rate.verdict}"
        for s in steps
        if s.rate
    ]
    return f"Sustained load, {workload}. " + "; ".join(lines) + "."


def scenario(summary: ScenarioSummary) -> dict[str, str]:
    """By chart kind: timeline, probes, resources, depth."""
    s = summary
    roles = "; ".join(
        f"{role} peak CPU {r.cpu_peak:.0f}%, peak memory {r.memory_peak_mb:.0f} MB"
        for role, r in s.resources.items()
        if role != "harness"
    )
    probes = s.probes
    return {
        "timeline": f"{s.completion.completed} of {s.jobs} jobs done, last after {_s(s.makespan_s)}; queue time p95 "
        f"{_s(s.queue_time.p95)}, total time p95 {_s(s.total_time.p95)}; {s.executions.lost} lost.",
        "probes": f"Async probe p99 {_ms(probes['async'].p99)}, sync probe p99 {_ms(probes['sync'].p99)}; longest "
        f"silence {_s(max(probes['async'].longest_silence_s or 0, probes['sync'].longest_silence_s or 0), ' s', 2)}.",
        "resources": f"{roles or 'no process sampled'}.",
        "depth": f"Queue depth during the step offered at {s.rate.offered_per_s:g}/s." if s.rate else "",
    }
