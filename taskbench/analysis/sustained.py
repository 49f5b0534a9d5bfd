"""The verdict of a sustained-load run (--rate, --rate auto, --target-rate), from annotated summaries only.

Per implementation and workload: the highest rate it sustained and the lowest it did not (the bracket of its
saturation point, `taskbench.analysis.rates` says what sustained means), beside what the capacity model says
it can do (jobs at once ÷ job duration). Under --target-rate: the smallest worker concurrency that sustained the
target, its memory, and Little's law (jobs running ≈ rate × execution time) against the running jobs measured.
"""

from __future__ import annotations

from collections.abc import Sequence

from taskbench import implementations
from taskbench.analysis.models import (
    CapacityPlan,
    DecisionCell,
    DecisionRow,
    RateLimit,
    ScenarioSummary,
    Verdict,
)

BASELINE = implementations.BASELINE


def _rate(s: ScenarioSummary) -> float:
    return s.rate.offered_per_s if s.rate else 0.0


def _title(name: str) -> str:
    return implementations.title(name) if implementations.known(name) else name


def limits(summaries: Sequence[ScenarioSummary]) -> list[RateLimit]:
    groups: dict[tuple[str, str, int | None], list[ScenarioSummary]] = {}
    for s in summaries:
        if s.rate is not None and not s.interrupted:
            groups.setdefault((s.implementation, s.workload_key, s.concurrency), []).append(s)
    found = []
    for (name, workload, concurrency), steps in groups.items():
        sustained = [s for s in steps if s.rate and s.rate.verdict == "sustained"]
        best = max(sustained, key=_rate, default=None)
        above = [
            s for s in steps if s.rate and s.rate.verdict == "saturated" and (best is None or _rate(s) > _rate(best))
        ]
        worst = min(above, key=_rate, default=None)
        low, high = (_rate(best) if best else None), (_rate(worst) if worst else None)
        any_step = steps[0]
        duration = any_step.rate.execution.p50 if any_step.rate and any_step.rate.execution.p50 else any_step.duration_s
        found.append(
            RateLimit(
                implementation=name,
                workload=workload,
                concurrency=concurrency,
                sustained_per_s=low,
                saturated_per_s=high,
                inconclusive_per_s=sorted(_rate(s) for s in steps if s.rate and s.rate.verdict == "inconclusive"),
                margin=(high - low) / low if low and high else None,
                capacity_per_s=any_step.capacity.concurrency / duration if duration > 0 else None,
                memory_mb=best.peak_memory_mb if best else None,
            )
        )
    return found


def limit_text(limit: RateLimit) -> str:
    if limit.sustained_per_s is None:
        return f"no rate sustained (lowest tried {limit.saturated_per_s:g}/s)" if limit.saturated_per_s else "no step"
    text = f"sustains {limit.sustained_per_s:g}/s"
    if limit.saturated_per_s is not None:
        text += f", saturated at {limit.saturated_per_s:g}/s"
    else:
        text += " (the highest rate tried)"
    if limit.capacity_per_s:
        text += f"; model {limit.capacity_per_s:.1f}/s"
    return text


def plans(summaries: Sequence[ScenarioSummary], target: float) -> list[CapacityPlan]:
    groups: dict[tuple[str, str], list[ScenarioSummary]] = {}
    for s in summaries:
        if s.rate is not None and not s.interrupted:
            groups.setdefault((s.implementation, s.workload_key), []).append(s)
    found = []
    for (name, workload), steps in groups.items():
        has_worker = implementations.known(name) and implementations.get(name).has_worker
        tried = {s.concurrency or 0: s.rate.verdict for s in steps if s.rate}
        ok = [s for s in steps if s.rate and s.rate.verdict == "sustained"]
        best = min(ok, key=lambda s: s.concurrency or 0, default=None)
        rate = best.rate if best else None
        littles = target * rate.execution.mean if rate and rate.execution.mean is not None else None
        who = f"{_title(name)} ({workload})"
        if not has_worker:
            why = "" if best or not steps[0].rate else f" ({'; '.join(steps[0].rate.reasons)})"
            sentence = f"{who}: {'sustains' if best else 'does not sustain'} {target:g}/s in the API process{why}"
        elif best is None or rate is None:
            sentence = f"{who}: no concurrency tried ({', '.join(map(str, sorted(tried)))}) sustains {target:g}/s"
        else:
            sentence = (
                f"{who}: concurrency {best.concurrency} sustains {target:g}/s with queue p95 "
                f"{rate.queue_p95_s or 0:.2f} s and {best.peak_memory_mb or 0:.0f} MB; Little's law: "
                f"{littles or 0:.1f} running at once, measured {rate.mean_running or 0:.1f}"
            )
        found.append(
            CapacityPlan(
                implementation=name,
                workload=workload,
                target_per_s=target,
                sustained=best is not None,
                concurrency=(best.concurrency if has_worker else None) if best else None,
                tried={c: v for c, v in sorted(tried.items())} if has_worker else {},
                memory_mb=best.peak_memory_mb if best else None,
                littles_running=littles,
                measured_running=rate.mean_running if rate else None,
                queue_p95_s=rate.queue_p95_s if rate else None,
                sentence=sentence,
            )
        )
    return found


def decisions(found: Sequence[RateLimit], order: Sequence[str]) -> list[DecisionRow]:
    rows = []
    for workload in dict.fromkeys(limit.workload for limit in found):
        cells = []
        for name in order:
            limit = next((x for x in found if x.implementation == name and x.workload == workload), None)
            if limit is None:
                continue
            status = "held" if limit.sustained_per_s is not None else "failed"
            cells.append(
                DecisionCell(implementation=name, status=status, text=limit_text(limit), memory_mb=limit.memory_mb)
            )
        rows.append(DecisionRow(workload=workload, cells=cells))
    return rows


def plan_decisions(found: Sequence[CapacityPlan], order: Sequence[str]) -> list[DecisionRow]:
    """--target-rate: each implementation's cell is its plan, held when some concurrency sustained the rate."""
    rows = []
    for workload in dict.fromkeys(plan.workload for plan in found):
        cells = []
        for name in order:
            plan = next((x for x in found if x.implementation == name and x.workload == workload), None)
            if plan is None:
                continue
            held = plan.sustained
            text = plan.sentence.split(": ", 1)[-1]
            cells.append(DecisionCell(implementation=name, status="held" if held else "failed", text=text,
                                      memory_mb=plan.memory_mb))  # fmt: skip
        rows.append(DecisionRow(workload=workload, cells=cells))
    return rows


def verdict(summaries: Sequence[ScenarioSummary], order: Sequence[str], target: float | None) -> Verdict:
    """--rate: each implementation's bracket, highest sustained first. --target-rate: the capacity plan alone
    (the steps at each concurrency are the search's, not limits worth a line each)."""
    found = limits(summaries)
    capacity = plans(summaries, target) if target is not None else []
    if capacity:
        lines = [p.sentence + "." for p in capacity]
        cells = plan_decisions(capacity, order)
    else:
        ranked = sorted(found, key=lambda x: -(x.sustained_per_s or 0.0))
        lines = []
        for workload in dict.fromkeys(x.workload for x in found):
            each = "; ".join(f"{_title(x.implementation)} {limit_text(x)}" for x in ranked if x.workload == workload)
            lines.append(f"{workload}, sustained load: {each}.")
        cells = decisions(found, order)
    return Verdict(
        baseline=BASELINE, workloads=[], faults=[], headline=lines[:1], lines=lines,
        decisions=cells, rate_limits=found, capacity_plans=capacity,
    )  # fmt: skip
