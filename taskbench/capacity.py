"""The one capacity and makespan model: used by the plan, the client, the scenario deadline and the analysis.

`Capacity.concurrency` is how many jobs an implementation really runs at once for a workload (each
implementation says why, see `taskbench.implementations`); a burst of N jobs of D seconds then needs
ceil(N / concurrency) waves of D seconds at best.
"""

from __future__ import annotations

import math

from pydantic import BaseModel

from taskbench_wire.enums import Workload

SCENARIO_OVERHEAD_S = 2.0
PER_JOB_ALLOWANCE_S = 0.01  # 0 s jobs still take time to pass through HTTP, the broker and the records


class Capacity(BaseModel):
    """How many jobs the implementation can really run at once for this workload, and why."""

    concurrency: int
    reason: str
    cpu_cores: int | None = None  # CPU-bound work: the machine's cores, which cap it (more slots do not help)

    @property
    def cores_bound(self) -> bool:
        """CPU-bound and already using every core: more concurrency would not drain it faster."""
        return self.cpu_cores is not None and self.concurrency >= self.cpu_cores


UNEVEN = Workload.uneven.value  # the workload whose first job is long
LONG_FACTOR = 2  # uneven: the first job lasts this many times all the others together


def job_duration_s(workload: str, jobs: int, duration_s: float, index: int) -> float:
    """What job `index` of a burst lasts. `uneven`'s first job lasts twice all the others together, so that with
    two slots or more a balanced schedule runs every other job beside it and ends when it ends: a job that waits
    for it to end was held behind it (a worker's prefetch), not by a lack of slots."""
    if workload == UNEVEN and index == 0:
        return LONG_FACTOR * max(jobs - 1, 1) * duration_s
    return duration_s


def ideal_makespan_s(
    jobs: int, concurrency: int, duration_s: float, arrival_s: float = 0.0, workload: str = ""
) -> float:
    """A burst: its waves (`uneven`: its long job, or all the work over the slots when there are too few).
    Jobs arriving over `arrival_s` (a sustained-load step): the waves, or the last arrival and its job, whichever
    is longer."""
    if workload == UNEVEN:
        long_s = job_duration_s(workload, jobs, duration_s, 0)
        return max(long_s, (long_s + (jobs - 1) * duration_s) / max(concurrency, 1))
    waves = math.ceil(jobs / max(concurrency, 1)) * duration_s
    return max(waves, arrival_s + duration_s) if arrival_s else waves


def deadline_s(jobs: int, ideal_s: float, fault_allowance_s: float = 0.0) -> float:
    """How long a scenario may wait for its jobs: generous, since missing it is itself a finding."""
    return 3 * ideal_s + 10 + PER_JOB_ALLOWANCE_S * jobs + fault_allowance_s


def estimate_s(jobs: int, concurrency: int, duration_s: float, workload: str = "") -> float:
    ideal = ideal_makespan_s(jobs, concurrency, duration_s, workload=workload)
    return ideal + SCENARIO_OVERHEAD_S + PER_JOB_ALLOWANCE_S * jobs
