"""`/health` and the heartbeats it is made of, as both sides see them: the service builds its answer from these
models and the harness reads it back into them, so the capacity models, the idle check and the readiness checks
read fields mypy can check, not string keys.

Unknown fields of a section or of the API are ignored; a missing or null one takes the value of a default service
(a heartbeat without `concurrency` counts 0 slots).
"""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

DEFAULT_THREADPOOL_TOKENS = 40  # anyio's default limiter; the run reads the real value from /health


def _none_is_zero(value: Any) -> Any:
    return 0 if value is None else value


def _as_text(value: Any) -> Any:
    return None if value is None else str(value)


Count = Annotated[int, BeforeValidator(_none_is_zero)]  # a count a heartbeat may send as null
Text = Annotated[str | None, BeforeValidator(_as_text)]


class Beat(BaseModel):
    """One heartbeat: a worker process of a queue, or (for BackgroundTasks) one API process. The fields every
    implementation's heartbeat shares; an implementation whose capacity model needs more declares a subclass
    (`Implementation.beat_model`) and reads its heartbeats as that. Other fields are kept, for it to read."""

    model_config = ConfigDict(extra="allow")

    pid: int | None = None
    concurrency: Count = 0  # the worker's --concurrency (its slots, where the queue has one knob)
    active: Count = 0  # jobs running now
    reserved: Count = 0  # jobs taken from the broker, not yet running
    threadpool_tokens: int = DEFAULT_THREADPOOL_TOKENS  # an API process' Starlette threadpool
    in_flight: Count = 0  # an API process' BackgroundTasks accepted and not finished
    t: float = 0.0  # when it beat (epoch seconds): older than the service's WORKER_STALE_S is a worker gone

    def extra(self, name: str) -> Any:
        """A field only some queue's heartbeat has (the harness reads those through `beat_model`)."""
        return (self.model_extra or {}).get(name)


B = TypeVar("B", bound=Beat)


def as_beats(model: type[B], beats: list[Beat]) -> list[B]:
    """Heartbeats read as an implementation's own `Beat` subclass (its fields typed)."""
    return [b if isinstance(b, model) else model.model_validate(b.model_dump()) for b in beats]


SECTION_OK = "ok"
NO_WORKERS = "no workers"
BROKER_UNREACHABLE = "broker unreachable"  # a broker other than Redis (RabbitMQ) did not answer: a 503


class Section(BaseModel):
    """What `/health` says of one implementation."""

    model_config = ConfigDict(extra="ignore")

    status: str = SECTION_OK  # SECTION_OK, NO_WORKERS, BROKER_UNREACHABLE, or "unknown" while Redis is down
    error: str | None = None
    queued: int = 0
    workers: list[Beat] = Field(default_factory=list)
    processes: list[Beat] = Field(default_factory=list)  # BackgroundTasks: the API processes' heartbeats
    in_flight: int = 0  # BackgroundTasks: this API process' jobs accepted and not finished


class Api(BaseModel):
    """The API process that answered."""

    model_config = ConfigDict(extra="ignore")

    status: str = "ok"
    pid: int | None = None
    threadpool_tokens: int = DEFAULT_THREADPOOL_TOKENS
    threadpool_borrowed: int = 0
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
