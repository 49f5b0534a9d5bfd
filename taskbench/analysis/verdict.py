"""The computed answer, from annotated summaries only.

Per workload: the smallest job count at which each implementation fails and how, where it was borderline
(a rule that fired in some runs only, or a figure near its limit), what the others did at the baseline's
(BackgroundTasks') deciding count, who held at each job count and the cheapest of those.
Per fault: how many jobs each implementation and delivery variant lost, duplicated or had redelivered.
The headline answers the benchmark's question: when do BackgroundTasks stop being enough?
"""

from __future__ import annotations

from collections.abc import Sequence

from taskbench import implementations
from taskbench.analysis import answer, sustained, sweep, tradeoff
from taskbench.analysis.models import (
    Failure,
    FaultRow,
    ImplementationOutcome,
    JobCountOutcome,
    ScenarioSummary,
    Verdict,
    WorkloadVerdict,
)

BASELINE = implementations.BASELINE


def _first_failure(rows: list[ScenarioSummary]) -> ScenarioSummary | None:
    return next((r for r in sorted(rows, key=lambda r: r.jobs) if r.status == "failed"), None)


def _rules(failures: Sequence[Failure]) -> str:
    return ", ".join(f.rule for f in failures)


def _span(tested: list[int]) -> str:
    return f"{tested[0]}–{tested[-1]} jobs" if len(tested) > 1 else f"{tested[0]} jobs" if tested else "nothing"


def _join(names: list[str]) -> str:
    return ", ".join(names)


def _outcome(name: str, rows: list[ScenarioSummary]) -> ImplementationOutcome:
    first = _first_failure(rows)
    borderline = sorted(
        (r for r in rows if r.status == "borderline" and (first is None or r.jobs < first.jobs)), key=lambda r: r.jobs
    )
    return ImplementationOutcome(
        implementation=name,
        title=implementations.title(name),
        tested_jobs=sorted({r.jobs for r in rows}),
        fails_at=first.jobs if first else None,
        failures=first.failures if first else [],
        borderline_at=[r.jobs for r in borderline],
        borderline=borderline[0].borderline if borderline else [],
    )


def _cheapest(rows: list[ScenarioSummary], value: str) -> tuple[str | None, float | None]:
    measured = [(getattr(r, value), r.implementation) for r in rows if getattr(r, value) is not None]
    if not measured:
        return None, None
    best = min(measured, key=lambda m: m[0])  # the first of equals: the run's order
    return best[1], best[0]


def _by_jobs(tested: list[int], rows: dict[str, list[ScenarioSummary]]) -> list[JobCountOutcome]:
    out = []
    for jobs in tested:
        at = {name: next(r for r in impl_rows if r.jobs == jobs) for name, impl_rows in rows.items()
              if any(r.jobs == jobs for r in impl_rows)}  # fmt: skip
        held = [r for r in at.values() if r.status == "held"]
        memory, memory_mb = _cheapest(held, "peak_memory_mb")
        cpu, cpu_percent = _cheapest(held, "peak_cpu_percent")
        out.append(
            JobCountOutcome(
                jobs=jobs,
                held=[r.implementation for r in held],
                failed={name: r.failures for name, r in at.items() if r.status == "failed"},
                borderline={name: r.borderline for name, r in at.items() if r.status == "borderline"},
                cheapest_memory=memory,
                cheapest_memory_mb=memory_mb,
                cheapest_cpu=cpu,
                cheapest_cpu_percent=cpu_percent,
            )
        )
    return out


def _held_line(workload: str, by_jobs: list[JobCountOutcome]) -> str:
    parts = []
    for count in by_jobs:
        part = f"{count.jobs} jobs: " + (_join([implementations.title(n) for n in count.held]) or "none")
        cheapest = []
        if count.cheapest_memory is not None and count.cheapest_memory_mb is not None:
            cheapest.append(f"least memory {implementations.title(count.cheapest_memory)} "
                            f"{count.cheapest_memory_mb:.0f} MB")  # fmt: skip
        if count.cheapest_cpu is not None and count.cheapest_cpu_percent is not None:
            cheapest.append(f"least CPU {implementations.title(count.cheapest_cpu)} {count.cheapest_cpu_percent:.1f}%")
        if count.held and cheapest:
            part += f" ({'; '.join(cheapest)})"
        parts.append(part)
    return f"{workload}, who held (peaks of the process that ran the jobs): {'; '.join(parts)}."


def _counts(jobs: list[int]) -> str:
    return (", ".join(map(str, jobs[:-1])) + " and " if len(jobs) > 1 else "") + f"{jobs[-1]} jobs"


def _borderline(outcome: ImplementationOutcome, verb: str) -> str:
    """ "are borderline at 50 jobs (server unresponsive (sync endpoint) in 2 of 3 runs)", or ""."""
    if not outcome.borderline_at:
        return ""
    rules = ", ".join(f.rule + (f" {f.runs}" if f.runs else "") for f in outcome.borderline)
    return f"{verb} borderline at {_counts(outcome.borderline_at)} ({rules})"


def _at_count(summary: ScenarioSummary) -> str:
    if summary.status == "failed":
        return _rules(summary.failures)
    if summary.status == "borderline":
        return f"borderline ({_rules(summary.borderline)})"
    return "no failure"


def _outcome_text(outcome: ImplementationOutcome, span: str, plural: bool) -> str:
    """ "are borderline at 50 jobs (…) and fail from 100 jobs (…)", "did not fail in 10–100 jobs", …"""
    borderline = _borderline(outcome, "are" if plural else "is")
    if outcome.fails_at is not None:
        fails = f"fail{'' if plural else 's'} from {outcome.fails_at} jobs ({_rules(outcome.failures)})"
        return f"{borderline} and {fails}" if borderline else fails
    if borderline:
        return f"{borderline}, and did not fail in {span}"
    return f"did not fail in {span}"


def _sentence(workload: str, span: str, baseline: ImplementationOutcome, others: list[ImplementationOutcome],
              rows: dict[str, list[ScenarioSummary]]) -> str:  # fmt: skip
    if not baseline.tested_jobs:
        sentence = f"{workload}: {baseline.title} not tested."
    elif baseline.fails_at is not None or baseline.borderline_at:
        sentence = f"{workload}: {baseline.title} {_outcome_text(baseline, span, plural=True)}"
        decisive = baseline.borderline_at[0] if baseline.borderline_at else baseline.fails_at
        where = f"at {decisive} jobs" if baseline.borderline_at else "at that count"
        for other in others:
            same = next((r for r in rows[other.implementation] if r.jobs == decisive), None)
            if same is not None:
                sentence += f"; {other.title} {where}: {_at_count(same)}"
        sentence += "."
    else:
        sentence = f"{workload}: {baseline.title} did not fail in the tested range ({span})."
    for other in others:
        if other.tested_jobs:
            sentence += f" {other.title} {_outcome_text(other, span, plural=False)}."
    return sentence


def _promise(summary: ScenarioSummary) -> tuple[str | None, str]:
    record = summary.delivery
    if record is not None and record.promise:
        return record.name, record.promise
    if summary.implementation in implementations.REGISTRY:
        delivery = implementations.get(summary.implementation).delivery(record.name if record else None)
        return delivery.name, delivery.promise
    return (record.name if record else None), ""


def _fault_rows(summaries: list[ScenarioSummary]) -> list[FaultRow]:
    rows = []
    for s in summaries:
        if not s.fault or s.interrupted:
            continue
        execs = s.executions
        delivery, promise = _promise(s)
        rows.append(
            FaultRow(
                fault=s.fault,
                variant=s.variant,
                implementation=s.implementation,
                workload=s.workload,
                middleware=s.middleware,
                jobs=s.jobs,
                lost=execs.lost,
                duplicated=execs.duplicated,
                recovered=execs.recovered,
                lost_ids=execs.lost_ids,
                duplicated_ids=execs.duplicated_ids,
                delivery=delivery,
                promise=promise,
                broker=s.delivery.broker if s.delivery else "redis",
                resumed_after_s=execs.resumed_after_s,
                during_cut=execs.cut.text if execs.cut else None,
            )
        )
    return rows


def _resumed(r: FaultRow) -> str:
    if r.resumed_after_s is None:
        return ""
    if r.fault == "api-partition":  # the API, not its workers, was cut off
        return f", took jobs again {r.resumed_after_s:.2f} s after the cut"
    return f", resumed {r.resumed_after_s:.2f} s after the link came back"


def _fault_lines(rows: list[FaultRow]) -> list[str]:
    lines = []
    for fault in dict.fromkeys((r.fault, r.variant, r.middleware) for r in rows):
        same = [r for r in rows if (r.fault, r.variant, r.middleware) == fault]
        name = fault[0] + (f" ({fault[1]})" if fault[1] else "") + ("" if fault[2] == "none" else f" [{fault[2]}]")
        parts = [
            f"{r.implementation}{' on RabbitMQ' if r.broker == 'amqp' else ''} lost {r.lost}/{r.jobs}"
            + (f", duplicated {r.duplicated}" if r.duplicated else "")
            + (f", redelivered {r.recovered}" if r.recovered else "")
            + (f"; submissions during the cut {r.during_cut}" if r.during_cut else "")
            + _resumed(r)
            for r in same
        ]
        lines.append(f"{name}: " + "; ".join(parts) + ".")
    return lines


def _there(at: JobCountOutcome, others: list[str]) -> str:
    """What the other implementations did at the baseline's failing count."""
    notes = []
    if at.held:
        notes.append(f"{_join([implementations.title(n) for n in at.held])} held there")
    if borderline := [n for n in others if n in at.borderline]:
        notes.append(f"{_join([implementations.title(n) for n in borderline])} borderline there")
    if failed := [n for n in others if n in at.failed]:
        notes.append(f"{_join([implementations.title(n) for n in failed])} failed there too")
    if others and not (at.held or borderline or failed):
        notes.append(f"{_join([implementations.title(n) for n in others])} not run")
    return "; ".join(notes)


def _headline(workloads: list[WorkloadVerdict], others: list[str], baseline_title: str) -> list[str]:
    """One sentence a reader can act on: where BackgroundTasks were enough, where borderline, where not."""
    held: list[str] = []
    failed: list[str] = []
    not_held: list[str] = []
    for w in workloads:
        baseline = next(o for o in w.implementations if o.implementation == BASELINE)
        if not baseline.tested_jobs:
            continue
        if baseline.fails_at is None and not baseline.borderline_at:
            held.append(f"{w.workload} (tested up to {max(w.tested_jobs)} jobs)")
            continue
        counts = _counts(baseline.borderline_at) if baseline.borderline_at else ""
        if baseline.fails_at is None:
            not_held.append(f"are borderline for {w.workload} at {counts} (no failure up to {max(w.tested_jobs)} jobs)")
            continue
        there = _there(next(c for c in w.by_jobs if c.jobs == baseline.fails_at), others)
        there = f" ({there})" if there else ""
        fails = f"{baseline.fails_at} jobs{there}"
        if counts:
            not_held.append(f"are borderline for {w.workload} at {counts} and fail from {fails}")
        else:
            failed.append(f"{w.workload} from {fails}")
    parts = [f"were enough for {', '.join(held)}"] if held else []
    parts += [f"failed for {', '.join(failed)}"] if failed else []
    parts += not_held
    parts = [f"{baseline_title if i == 0 else 'they'} {part}" for i, part in enumerate(parts)]
    return [f"Answer: {'; '.join(parts)}."] if parts else []


def compute(
    summaries: list[ScenarioSummary],
    run_implementations: Sequence[str] = (),
    base_concurrency: int | None = None,
    target_rate: float | None = None,
    reference: str = BASELINE,
) -> Verdict:
    """The verdict of annotated `summaries` (see `failures.annotate`); `run_implementations` orders them. With
    a concurrency sweep, the verdict proper is at `base_concurrency` (the first value) and the sweep adds its
    own lines. The answer at a glance states every implementation against `reference`."""
    order = list(dict.fromkeys([*run_implementations, *(s.implementation for s in summaries)]))
    others = [name for name in order if name != BASELINE]
    if any(s.rate is not None for s in summaries):
        return sustained.verdict(summaries, order, target_rate)
    swept, sweep_lines = sweep.sweeps(summaries)
    # A scenario cut short by Ctrl-C says nothing about where an implementation fails.
    plain = [s for s in summaries if not s.fault and not s.interrupted and s.concurrency in (None, base_concurrency)]
    workloads = []
    for workload in dict.fromkeys(s.workload_key for s in plain):  # each middleware judged apart
        in_workload = [s for s in plain if s.workload_key == workload]
        rows = {name: [s for s in in_workload if s.implementation == name] for name in [BASELINE, *others]}
        tested = sorted({s.jobs for s in in_workload})
        baseline = _outcome(BASELINE, rows[BASELINE])
        outcomes = [_outcome(name, rows[name]) for name in others]
        by_jobs = _by_jobs(tested, rows)
        workloads.append(
            WorkloadVerdict(
                workload=workload,
                tested_jobs=tested,
                implementations=[baseline, *outcomes],
                by_jobs=by_jobs,
                sentence=_sentence(workload, _span(tested), baseline, outcomes, rows),
                held_line=_held_line(workload, by_jobs),
            )
        )
    fault_rows = _fault_rows(summaries)
    headline = _headline(workloads, others, implementations.title(BASELINE))
    costs = tradeoff.tradeoffs(plain, [BASELINE, *others])
    at_a_glance = answer.answers(workloads, plain, reference)
    lines = [*headline]
    for w in workloads:
        lines += [w.sentence, w.held_line, *(t.sentence for t in costs if t.workload == w.workload)]
        lines += [line for line in sweep_lines if line.startswith(f"{w.workload}, ")]
    lines += _fault_lines(fault_rows)
    return Verdict(
        baseline=BASELINE,
        workloads=workloads,
        faults=fault_rows,
        headline=headline,
        lines=lines,
        tradeoffs=costs,
        decisions=tradeoff.decisions(workloads, plain),
        sweeps=swept,
        reference=reference,
        answers=at_a_glance,
    )
