"""A job's record and the job counts, as the service keeps and answers them and the harness reads them back.

The service stamps the times (the API `submitted_at`, the code that runs the job `started_at` and
`finished_at`); the durations are computed from them, on both sides the same way.
"""

from __future__ import annotations

from typing import Any, TypedDict

from pydantic import BaseModel, Field, computed_field

from taskbench_wire.enums import JobStatus, Workload


class JobBody(TypedDict, total=False):
    """The body of `POST /{impl}/job` as a client sends it; the service validates it (`JobRequest`: bounds, 422)."""

    duration: float
    kind: str
    memory_mb: int
    job: int  # `job` kind: which of the user's functions
    args: dict[str, Any]  # `job` kind: its keyword arguments


class JobRecord(BaseModel):
    job_id: str
    implementation: str
    kind: Workload
    duration: float
    memory_mb: int = 0
    job: int | None = None  # `job` kind: the index of the user's function
    args: dict[str, Any] | None = Field(default=None, exclude=True)  # travels to the runner, never stored
    status: JobStatus = JobStatus.queued
    submitted_at: float  # stamped by the API when it accepts the job (epoch seconds)
    started_at: float | None = None  # stamped by the code that runs the job
    finished_at: float | None = None
    error: str | None = None
    pid: int | None = None
    thread: str | None = None
    host: str | None = None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def queue_time(self) -> float | None:
        return None if self.started_at is None else self.started_at - self.submitted_at

    @computed_field  # type: ignore[prop-decorator]
    @property
    def execution_time(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return self.finished_at - self.started_at

    @computed_field  # type: ignore[prop-decorator]
    @property
    def total_time(self) -> float | None:
        return None if self.finished_at is None else self.finished_at - self.submitted_at


class JobList(BaseModel):
    """`GET /{name}/jobs`: every record's status counted, and the records (`?limit=0`: the counts alone)."""

    count: int
    counts: dict[JobStatus, int]
    jobs: list[JobRecord]

    @property
    def finished(self) -> int:
        return self.counts.get(JobStatus.completed, 0) + self.counts.get(JobStatus.failed, 0)

    @property
    def pending(self) -> int:
        """Queued or running: not idle while any is."""
        return self.counts.get(JobStatus.queued, 0) + self.counts.get(JobStatus.running, 0)
