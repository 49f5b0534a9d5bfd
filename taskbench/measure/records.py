"""Job records rebuilt from the execution ledger and the API's 202 answers.

Under `--api-workers N`, BackgroundTasks keep each record in the memory of the process that took the job, and
`GET /fastapi/jobs` answers from whichever process the connection reached: no answer holds them all. The
ledger (written by the job code in every process) and each submission's answer (the API's own
`submitted_at`) hold every stamp a record has, so the harness rebuilds the records from them: complete,
and stamped by the same code that stamps the records.
"""

from __future__ import annotations

from collections.abc import Sequence

from taskbench import implementations
from taskbench.record.results import Execution, ScenarioSpec, Submission
from taskbench_wire.records import JobRecord


def rebuild(spec: ScenarioSpec, submissions: Sequence[Submission], executions: Sequence[Execution]) -> list[JobRecord]:
    """One record per accepted job, as the API would have kept it: the last attempt's start and end."""
    starts: dict[str, Execution] = {}
    ends: dict[str, Execution] = {}
    for e in sorted(executions, key=lambda e: e.t):
        if e.implementation == implementations.plugin_name(spec.implementation):
            (starts if e.event == "start" else ends)[e.job_id] = e
    kind = "job" if spec.job_index is not None else spec.workload
    records = []
    for submission in submissions:
        if not submission.job_id:
            continue
        start, end = starts.get(submission.job_id), ends.get(submission.job_id)
        if end is not None and start is not None and end.t < start.t:
            end = None  # started again after its last end (a redelivery still running)
        submitted = submission.submitted_at or submission.sent_at
        started = start.t if start else None
        finished = end.t if end else None
        status = "queued" if start is None else "running" if end is None else "completed" if end.ok else "failed"
        records.append(
            JobRecord(
                job_id=submission.job_id, implementation=spec.implementation, kind=kind, duration=spec.duration_s,
                memory_mb=spec.memory_mb, status=status, submitted_at=submitted, started_at=started,
                finished_at=finished, error=end.error if end else None, pid=start.pid if start else None,
            )
        )  # fmt: skip
    return records
