"""What each choice costs, beside where it fails: the trade-off lines and the decision table of the verdict.

"Celery held" alone misleads when Celery needed 8× as long to drain the burst: a team would not learn that
matching today's latency takes about eight times the concurrency, and what that costs. For each workload
and job count, each implementation's makespan, p95 total time and the peaks of the process that ran the
jobs; where one held and was slower than the fastest, by how much, the concurrency that would drain as
fast (the capacity model: waves of `concurrency` jobs) and the memory that would take (measured, or
extrapolated linearly where each unit of concurrency is a process). Every word is computed from the run.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from taskbench import implementations
from taskbench.analysis.models import (
    DecisionCell,
    DecisionRow,
    Failure,
    ScenarioSummary,
    TradeOff,
    TradeOffRow,
    WorkloadVerdict,
)
from taskbench.record.results import HostCeilings

SLOWER_FROM = 1.2  # a makespan this many times the fastest's is "slower"; below, it is noise on a shared box
SLOWER_BY_S = 1.0  # … and this much longer: 0.1 s against 0.05 s is start-up, not a cost worth a sentence


def _memory_per_slot(name: str) -> bool:
    return implementations.known(name) and implementations.get(name).memory_per_slot


def slower_than(s: ScenarioSummary, makespan_s: float | None) -> float | None:
    """How many times `makespan_s` this scenario took to drain; None when as fast, within noise."""
    slower = s.makespan_s / makespan_s if s.makespan_s and makespan_s else None
    if slower is not None and (slower < SLOWER_FROM or (s.makespan_s or 0.0) - (makespan_s or 0.0) < SLOWER_BY_S):
        return None
    return slower


def to_match(s: ScenarioSummary, slower: float | None) -> int | None:
    """The jobs at once that would drain `slower` times as fast (the capacity model: waves of `concurrency`
    jobs), where more concurrency would help: not for a failed scenario, nor CPU-bound work on every core."""
    if slower is None or s.status == "failed" or s.capacity.cores_bound:
        return None
    needs = min(math.ceil(s.capacity.concurrency * slower), s.jobs)
    if s.capacity.cpu_cores is not None:  # CPU-bound: only processes on free cores add speed
        needs = min(needs, s.capacity.cpu_cores)
    return needs


def _row(s: ScenarioSummary, fastest: float | None) -> TradeOffRow:
    slower = slower_than(s, fastest)
    needs = to_match(s, slower)
    needs_memory = None
    if needs is not None and s.peak_memory_mb is not None:
        needs_memory = s.peak_memory_mb
        if _memory_per_slot(s.implementation):  # a main process and one per slot
            needs_memory *= (needs + 1) / (s.capacity.concurrency + 1)
    return TradeOffRow(
        implementation=s.implementation,
        title=implementations.title(s.implementation),
        status=s.status,
        makespan_s=s.makespan_s,
        total_p95_s=s.total_time.p95,
        peak_memory_mb=s.peak_memory_mb,
        peak_cpu_percent=s.peak_cpu_percent,
        concurrency=s.capacity.concurrency,
        cores_bound=s.capacity.cores_bound,
        cpu_cores=s.capacity.cpu_cores,
        slower=slower,
        needs_concurrency=needs,
        needs_memory_mb=needs_memory,
    )


def _figures(r: TradeOffRow) -> str:
    parts = [f"{r.makespan_s:.1f} s" if r.makespan_s is not None else "did not drain",
             f"p95 {r.total_p95_s:.1f} s" if r.total_p95_s is not None else "",
             f"{r.peak_memory_mb:.0f} MB" if r.peak_memory_mb is not None else "",
             f"{r.peak_cpu_percent:.0f}% CPU" if r.peak_cpu_percent is not None else ""]  # fmt: skip
    return ", ".join(p for p in parts if p)


def _clause(r: TradeOffRow, fastest: TradeOffRow) -> str:
    text = f"{r.title} {r.status}"
    if r is fastest or r.slower is None:
        return f"{text} ({_figures(r)})"
    text += f", {r.slower:.1f}× slower than {fastest.title} ({_figures(r)})"
    if r.cores_bound:
        return text + ": CPU-bound on this machine's cores, more concurrency would not drain it faster"
    if r.needs_concurrency is not None and r.cpu_cores is not None:
        text += (f": CPU-bound, so only worker processes on free cores help: up to {r.needs_concurrency} on this "
                 f"machine's {r.cpu_cores} cores ({r.concurrency} now)")  # fmt: skip
        return text
    if r.needs_concurrency is not None:
        text += f": draining as fast needs ≈ {r.needs_concurrency} at once ({r.concurrency} now)"
        if r.needs_memory_mb is not None and r.peak_memory_mb is not None:
            if _memory_per_slot(r.implementation):
                text += (f", ≈ {r.needs_memory_mb:.0f} MB (extrapolated from {r.peak_memory_mb:.0f} MB for a main "
                         f"process and {r.concurrency})")  # fmt: skip
            else:
                text += f" in the same process ({r.peak_memory_mb:.0f} MB measured)"
    return text


def tradeoffs(summaries: Sequence[ScenarioSummary], order: Sequence[str]) -> list[TradeOff]:
    """One trade-off per workload and job count run by more than one implementation."""
    plain = [s for s in summaries if not s.fault and not s.interrupted]
    out = []
    for workload in dict.fromkeys(s.workload_key for s in plain):  # each middleware apart
        for jobs in sorted({s.jobs for s in plain if s.workload_key == workload}):
            here = [s for s in plain if (s.workload_key, s.jobs) == (workload, jobs)]
            at = [s for name in order for s in here if s.implementation == name]
            if len(at) < 2:
                continue
            drained = [s.makespan_s for s in at if s.makespan_s]
            fastest_s = min(drained) if drained else None
            rows = [_row(s, fastest_s) for s in at]
            fastest = next((r for r in rows if r.makespan_s == fastest_s), rows[0])
            sentence = f"{workload}, {jobs} jobs: " + "; ".join(_clause(r, fastest) for r in rows) + "."
            out.append(TradeOff(workload=workload, jobs=jobs, fastest=fastest.implementation, rows=rows,
                                sentence=sentence))  # fmt: skip
    return out


def deciding(failures: Sequence[Failure]) -> str:
    """The first rule with its figure against its limit where it has one."""
    if not failures:
        return ""
    f = failures[0]
    if f.figure is not None and f.limit is not None:
        name = f"{f.figure_name} " if f.figure_name else ""
        return f"{f.rule}: {name}{f.figure:.3g}{f.unit} (limit {f.limit:g}{f.unit})" + (f", {f.runs}" if f.runs else "")
    return f"{f.rule}: {f.evidence.split(';')[0]}" + (f", {f.runs}" if f.runs else "")


def cost_roles(s: ScenarioSummary) -> list[str]:
    """The implementation's own sampled processes: its API and the process that ran the jobs (its worker)."""
    return sorted(r for r in {"api", s.job_process, s.worker_role} if r is not None and r in s.resources)


def cpu_per_1000(s: ScenarioSummary) -> float | None:
    """CPU-seconds its own processes (the API and the worker, with their children) spent per 1 000 completed
    jobs: what an operator pays per job. The broker is shared by every implementation and left out."""
    seconds = [s.resources[r].cpu_s for r in cost_roles(s)]
    if not seconds or not s.completion.completed or any(x is None for x in seconds):
        return None
    return sum(x or 0.0 for x in seconds) / s.completion.completed * 1000


def broker_bound(s: ScenarioSummary, broker: str, ceilings: HostCeilings | None) -> float | None:
    """The jobs a second its broker alone could serve this queue on this host (`run --calibrate`): the commands a
    second the run's Redis serves with many clients ÷ the queue's Redis commands per job; for a PostgreSQL queue,
    the rows a second a SKIP LOCKED dequeue takes. None where either was not measured."""
    if ceilings is None:
        return None
    redis_ceiling = ceilings.redis.commands_per_s if ceilings.redis else None
    if broker == "redis" and redis_ceiling and s.redis_commands_per_job:
        return redis_ceiling / s.redis_commands_per_job
    if broker == "postgres" and ceilings.postgres:
        return ceilings.postgres.dequeues_per_s
    return None


def broker_share(s: ScenarioSummary, broker: str, ceilings: HostCeilings | None) -> float | None:
    """Its no-op rate as a share of `broker_bound`: far below 1, the queue's own Python is the limit, not its
    broker."""
    bound = broker_bound(s, broker, ceilings)
    if bound is None or s.throughput_jobs_per_s is None:
        return None
    return s.throughput_jobs_per_s / bound


def cpu_by_part(s: ScenarioSummary, broker: str) -> dict[str, float]:
    """CPU-seconds per 1 000 completed jobs of each part that served them: its API, its worker (with its children)
    and, when its neighbours were paused so that the broker served it alone, its broker (Redis or PostgreSQL; with
    taskbench's own record of each job, which BackgroundTasks keep in the API's memory)."""
    completed = s.completion.completed
    roles = {"API": "api", "worker": s.worker_role}
    if s.neighbours_paused and broker in ("redis", "postgres"):
        roles["broker"] = broker
    seconds = {part: s.resources[role].cpu_s for part, role in roles.items() if role and role in s.resources}
    return {part: x / completed * 1000 for part, x in seconds.items() if x is not None and completed}


def cheapest(held_throughout: Sequence[ScenarioSummary]) -> str | None:
    """Among two or more that held at every job count (each at the largest): the least CPU per job, or, where
    CPU was not measured (runs before it was), the least memory. Never the only one left: that says nothing."""
    if len(held_throughout) < 2:
        return None
    for cost in (cpu_per_1000, lambda s: s.peak_memory_mb):
        costs = [(c, s.implementation) for s in held_throughout if (c := cost(s)) is not None]
        if len(costs) == len(held_throughout):
            return min(costs, key=lambda c: c[0])[1]  # the first of equals: the run's order
    return None


def decisions(workloads: Sequence[WorkloadVerdict], summaries: Sequence[ScenarioSummary]) -> list[DecisionRow]:
    """Rows: workloads; cells: each implementation held / borderline / failed with the deciding figure; the
    cheapest of two or more that held throughout (`cheapest`) is marked."""
    rows = []
    for w in workloads:
        largest = max(w.tested_jobs) if w.tested_jobs else 0
        at_largest = {s.implementation: s for s in summaries if (s.workload_key, s.jobs) == (w.workload, largest)}
        cells = []
        for o in w.implementations:
            if not o.tested_jobs:
                continue
            s = at_largest.get(o.implementation)
            if o.fails_at is not None:
                text = f"from {o.fails_at} jobs: {deciding(o.failures)}"
                cell = DecisionCell(implementation=o.implementation, status="failed", text=text)
            elif o.borderline_at:
                text = f"at {o.borderline_at[0]} jobs: {deciding(o.borderline)}"
                cell = DecisionCell(implementation=o.implementation, status="borderline", text=text)
            else:
                figures = (
                    ""
                    if s is None
                    else f": drains {largest} in {s.makespan_s or 0:.1f} s, "
                    + (f"{s.peak_memory_mb:.0f} MB" if s.peak_memory_mb is not None else "memory not sampled")
                )
                memory = None if s is None else s.peak_memory_mb
                text = f"to {largest} jobs{figures}"
                cell = DecisionCell(implementation=o.implementation, status="held", text=text, memory_mb=memory)
            cells.append(cell)
        best = cheapest(
            [at_largest[c.implementation] for c in cells if c.status == "held" and c.implementation in at_largest]
        )
        cells = [c.model_copy(update={"cheapest": True}) if c.implementation == best else c for c in cells]
        rows.append(DecisionRow(workload=w.workload, cells=cells))
    return rows
