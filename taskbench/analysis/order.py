"""Queue order: jobs in the order the service accepted them, and how first-in-first-out each implementation
ran them.

A burst over many connections arrives out of the client's order (in the spec's run jobs 0-9 were accepted
last by both implementations), so order is the service's acceptance, not the client's sending. Starved
early jobs are something users notice: `fifo` counts, for each job, the later-accepted jobs that started
before it, in O(n log n) (a Fenwick tree over start ranks), since noop runs have 10 000 jobs.
"""

from __future__ import annotations

from taskbench.analysis.models import FifoSummary
from taskbench.record.results import ScenarioResult


def accepted_at(result: ScenarioResult) -> dict[str, float]:
    """When the service accepted each job: its record's stamp, else when the client got the answer."""
    stamped = {j.job_id: j.submitted_at for j in result.jobs if j.job_id and j.submitted_at}
    answered = {str(s.job_id): s.sent_at + (s.latency_s or 0.0) for s in result.submissions if s.job_id and s.latency_s}
    return {**answered, **stamped}


def acceptance_order(result: ScenarioResult) -> list[str]:
    """Accepted job ids, first accepted first."""
    accepted = accepted_at(result)
    return sorted(accepted, key=lambda job_id: (accepted[job_id], job_id))


def first_starts(result: ScenarioResult) -> dict[str, float]:
    """Each job's first start: the ledger's, else its record's."""
    starts: dict[str, float] = {}
    for e in result.executions:
        if e.event == "start":
            starts[e.job_id] = min(e.t, starts.get(e.job_id, e.t))
    for j in result.jobs:
        if j.job_id not in starts and j.started_at:
            starts[j.job_id] = j.started_at
    return starts


def fifo(result: ScenarioResult) -> FifoSummary:
    """How far the start order departs from the acceptance order."""
    starts = first_starts(result)
    order = [job_id for job_id in acceptance_order(result) if job_id in starts]
    n = len(order)
    rank = {t: i + 1 for i, t in enumerate(sorted({starts[j] for j in order}))}
    tree = [0] * (len(rank) + 1)
    overtaken = []
    for job_id in reversed(order):  # later-accepted jobs are in the tree when an earlier one is counted
        r = rank[starts[job_id]]
        count, i = 0, r - 1
        while i > 0:  # later-accepted jobs that started strictly earlier
            count += tree[i]
            i -= i & -i
        overtaken.append(count)
        i = r
        while i <= len(rank):
            tree[i] += 1
            i += i & -i
    pairs = n * (n - 1) // 2
    return FifoSummary(
        started=n,
        max_overtaken=max(overtaken, default=0),
        overtaken_jobs=sum(1 for c in overtaken if c),
        kendall_tau=(1 - 2 * sum(overtaken) / pairs) if pairs else None,
    )
