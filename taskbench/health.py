"""The service's `/health`, as the harness reads it: typed, so the capacity models, the idle check and the
readiness checks read fields mypy can check, not string keys.

Unknown fields are ignored; a missing or null one takes the value of a default service (a heartbeat without
`concurrency` counts 0 slots).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

DEFAULT_THREADPOOL_TOKENS = 40  # anyio's default limiter; the run reads the real value from /health


class Beat(BaseModel):
    """One heartbeat: a worker process of a queue, or (for BackgroundTasks) one API process."""

    model_config = ConfigDict(extra="ignore")

    pid: int | None = None
    concurrency: int = 0  # the worker's --concurrency (Celery, arq, SAQ: its slots)
    threads: int = 0  # Dramatiq: worker threads of this process
    slots: int = 0  # taskiq: this process' --max-async-tasks
    sync_threads: int | None = None  # SAQ: the thread pool sync jobs run in
    pool: str | None = None  # Celery: prefork, threads, gevent, solo; RQ: the pid of the worker pool it is in
    active: int = 0  # jobs running now
    reserved: int = 0  # jobs taken from the broker, not yet running
    threadpool_tokens: int = DEFAULT_THREADPOOL_TOKENS  # an API process' Starlette threadpool
    in_flight: int = 0  # an API process' BackgroundTasks accepted and not finished

    @field_validator("concurrency", "threads", "slots", "active", "reserved", "in_flight", mode="before")
    @classmethod
    def _none_is_zero(cls, value: Any) -> Any:
        return 0 if value is None else value

    @field_validator("pool", mode="before")
    @classmethod
    def _pool_as_text(cls, value: Any) -> Any:
        return None if value is None else str(value)


class Section(BaseModel):
    """What `/health` says of one implementation."""

    model_config = ConfigDict(extra="ignore")

    queued: int = 0
    workers: list[Beat] = Field(default_factory=list)
    processes: list[Beat] = Field(default_factory=list)  # BackgroundTasks: the API processes' heartbeats


class Api(BaseModel):
    """The API process that answered."""

    model_config = ConfigDict(extra="ignore")

    pid: int | None = None
    threadpool_tokens: int = DEFAULT_THREADPOOL_TOKENS
    fastapi_jobs_in_flight: int = 0


class Health(BaseModel):
    api: Api = Field(default_factory=Api)
    sections: dict[str, Section] = Field(default_factory=dict)  # by implementation name

    @classmethod
    def of(cls, body: dict[str, Any]) -> Health:
        """From `/health`'s JSON: `api`, and one object per implementation."""
        sections = {
            name: Section.model_validate(v) for name, v in body.items() if name != "api" and isinstance(v, dict)
        }
        return cls(api=Api.model_validate(body.get("api") or {}), sections=sections)

    def section(self, name: str) -> Section:
        return self.sections.get(name, Section())
