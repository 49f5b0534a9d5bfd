"""What a worker's prefetch costs when job lengths are uneven (the `uneven` workload): the short jobs that waited
for the burst's long job to end although other slots were free to run them.

The long job lasts twice all the others together, so with two slots or more a balanced schedule runs every short
job beside it: none needs to start after it ends, and the burst ends with it. A short job that starts only once it
has ended was held behind it: taken by its process (prefetched) while another process had a free slot, which is
what users of prefetching queues meet as "short tasks stuck behind a long one while other workers idle". Each
such job adds about its own length to the makespan; `cost_s` is what they added in all."""

from __future__ import annotations

from collections.abc import Sequence

from taskbench import capacity
from taskbench.analysis.models import HeldBehind
from taskbench.record.results import Execution, ScenarioSpec, Submission


def held_behind(
    spec: ScenarioSpec,
    submissions: Sequence[Submission],
    executions: Sequence[Execution],
    concurrency: int,
    makespan_s: float | None,
) -> HeldBehind | None:
    """None unless the burst is `uneven` and its long job (the first submitted) ran to its end."""
    if spec.workload != capacity.UNEVEN or spec.rate is not None:
        return None
    long_id = next((s.job_id for s in submissions if s.index == 0 and s.job_id), None)
    starts: dict[str, Execution] = {}
    long_end: float | None = None
    for e in sorted(executions, key=lambda e: e.t):
        if e.event == "start":
            starts.setdefault(e.job_id, e)
        elif e.job_id == long_id and long_end is None:
            long_end = e.t
    if long_id is None or long_end is None or long_id not in starts:
        return None
    long_pid = starts[long_id].pid
    shorts = [e for job_id, e in starts.items() if job_id != long_id]
    held = [e for e in shorts if e.t >= long_end]
    ideal = capacity.ideal_makespan_s(spec.jobs, concurrency, spec.duration_s, workload=spec.workload)
    return HeldBehind(
        long_s=capacity.job_duration_s(spec.workload, spec.jobs, spec.duration_s, 0),
        short_jobs=len([s for s in submissions if s.job_id]) - 1,
        held=len(held),
        held_by_its_process=sum(1 for e in held if long_pid is not None and e.pid == long_pid),
        ideal_s=ideal,
        cost_s=None if makespan_s is None else max(0.0, makespan_s - ideal),
    )
