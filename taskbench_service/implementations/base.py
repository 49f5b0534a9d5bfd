"""The service side of the implementation contract.

An implementation is one module in this package that defines a `ServiceImplementation` named
`IMPLEMENTATION`: how a job is handed to its runner (`enqueue`), where records live (`store`), how the
queue is purged and what `/health` reports of it. `job_router` gives every implementation the same four
endpoints and the same record shape; `taskbench_service.implementations.REGISTRY` lists the modules.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated, Any, TypeVar

import redis
from fastapi import APIRouter, BackgroundTasks, Body, HTTPException, Query, Response

from taskbench_service.heartbeat import live_beats
from taskbench_service.jobs import JobRequest, JobStore, RedisJobStore, finished_fields, new_record
from taskbench_service.settings import settings
from taskbench_wire.enums import JobStatus
from taskbench_wire.health import BROKER_UNREACHABLE, NO_WORKERS, SECTION_OK, Beat, Section
from taskbench_wire.records import JobList, JobRecord

T = TypeVar("T")

PUBLISH_TIMEOUT_S = 5.0


class BrokerUnavailable(Exception):
    """Publishing to the broker failed, or did not finish in time (`maybe_sent`: it may still go out)."""

    def __init__(self, message: str, maybe_sent: bool = False) -> None:
        super().__init__(message)
        self.maybe_sent = maybe_sent


class ServiceImplementation(ABC):
    name: str
    runner: str  # how jobs run, one line for `/`

    @property
    @abstractmethod
    def store(self) -> JobStore: ...

    @abstractmethod
    async def submit(self, record: JobRecord, background_tasks: BackgroundTasks) -> None:
        """Hand the job to its runner; the record is already stored."""

    @abstractmethod
    async def purge(self, queued_ids: list[str]) -> int:
        """Drop jobs still waiting (they would run in the next scenario), in the queue and wherever a worker holds
        them unstarted; `queued_ids`: the records still queued when DELETE came. Returns how many."""

    async def startup(self) -> None:  # noqa: B027 (optional hook)
        """Pools, clients and executors: created when the API starts, never at import."""

    async def shutdown(self) -> None:  # noqa: B027 (optional hook)
        """Close what `startup` opened."""

    def admit(self, record: JobRecord) -> None:  # noqa: B027 — an optional hook
        """Refuse a job this implementation cannot take now (HTTPException); by default every one is taken."""

    def describe(self) -> dict[str, Any]:
        return {"runner": self.runner}

    @property
    def broker_url(self) -> str:
        """Where its jobs wait: Redis, unless the queue can run on another broker and was told to."""
        return settings.redis_url

    @abstractmethod
    async def health(self) -> Section: ...


def job_router(impl: ServiceImplementation) -> APIRouter:
    """`/{name}/job`, `/{name}/status/{id}`, `/{name}/jobs` and `DELETE /{name}/jobs`, the same for all."""
    router = APIRouter(prefix=f"/{impl.name}", tags=[impl.name])

    @router.post("/job", status_code=202, response_model=JobRecord)
    async def submit(
        background_tasks: BackgroundTasks, request: Annotated[JobRequest | None, Body()] = None
    ) -> Response:
        record = new_record(impl.name, request or JobRequest())
        impl.admit(record)  # a bound of its own (memory held in the API process) answers 503 before anything
        await impl.store.add(record)  # first, so the runner always finds the record it stamps
        try:
            await impl.submit(record, background_tasks)
        except BrokerUnavailable as exc:
            if exc.maybe_sent:  # it may still go out: keep a record that says so, for the worker to fix
                await impl.store.update(record.job_id, finished_fields(exc))
            else:
                await impl.store.refuse(record.job_id)
            raise
        # The record as JSON straight away: the model is already valid, and FastAPI's response_model would
        # validate and serialise it again on every submission (it still documents the answer's shape).
        return Response(record.model_dump_json(), status_code=202, media_type="application/json")

    @router.get("/status/{job_id}", response_model=JobRecord)
    async def status(job_id: str) -> JobRecord:
        record = await impl.store.get(job_id)
        if record is None:  # Celery itself would say PENDING for any unknown id
            raise HTTPException(404, f"no {impl.name} job with id {job_id!r}")
        return record

    @router.get("/jobs", response_model=JobList)
    async def jobs(limit: Annotated[int | None, Query(ge=0)] = None) -> JobList:
        return await impl.store.list(limit)

    @router.delete("/jobs")
    async def clear() -> dict[str, int]:
        """Clear the records and purge jobs still waiting, in the queue or prefetched by a worker, which would
        otherwise run later."""
        queued = [job.job_id for job in (await impl.store.list(None)).jobs if job.status is JobStatus.queued]
        cleared = await impl.store.clear()  # fails fast with 503 when Redis is down
        return {"cleared": cleared, "purged": await impl.purge(queued)}

    return router


class QueueImplementation(ServiceImplementation):
    """A queue on Redis: records beside it, a blocking publish kept off the event loop, workers seen by
    their heartbeat. Subclasses say how to enqueue, count and purge."""

    publisher_threads = 4  # for queues whose enqueue call blocks (Celery, RQ, Dramatiq)

    def __init__(self) -> None:
        self._store: RedisJobStore | None = None
        self._publisher: ThreadPoolExecutor | None = None

    @property
    def store(self) -> RedisJobStore:
        if self._store is None:
            raise RuntimeError(f"{self.name}: the API has not started (lifespan) yet")
        return self._store

    async def startup(self) -> None:
        self._store = RedisJobStore(self.name, settings.redis_url, settings.redis_timeout_s)
        self._publisher = ThreadPoolExecutor(self.publisher_threads, thread_name_prefix=f"{self.name}-publish")

    async def shutdown(self) -> None:
        if self._publisher is not None:
            self._publisher.shutdown(wait=False, cancel_futures=True)
        if self._store is not None:
            await self._store.aclose()

    async def in_publisher(self, func: Callable[[], T]) -> T:
        """Run a blocking broker call on this implementation's own executor, bounded in time: neither the
        event loop nor Starlette's threadpool waits on the broker."""
        assert self._publisher is not None
        loop = asyncio.get_running_loop()
        return await self.bounded(loop.run_in_executor(self._publisher, func))

    async def bounded(self, awaitable: Awaitable[T]) -> T:
        try:
            return await asyncio.wait_for(awaitable, PUBLISH_TIMEOUT_S)
        except asyncio.TimeoutError as exc:
            message = f"the broker did not answer within {PUBLISH_TIMEOUT_S:.0f} s"
            raise BrokerUnavailable(message, maybe_sent=True) from exc
        except (redis.RedisError, OSError) as exc:
            raise BrokerUnavailable(f"{type(exc).__name__}: {exc}") from exc

    @abstractmethod
    async def queued(self) -> int:
        """Jobs waiting in the broker, not yet taken by a worker."""

    async def health(self) -> Section:
        workers = await live_beats(self.store.redis, self.name)
        try:
            queued = await self.queued()
        except BrokerUnavailable as exc:  # a broker other than Redis (RabbitMQ): /health says which, with a 503
            return Section(status=BROKER_UNREACHABLE, error=str(exc), workers=workers)
        return Section(status=SECTION_OK if workers else NO_WORKERS, queued=queued, workers=workers)


class CountedWithBeats(QueueImplementation):
    """A queue whose waiting jobs and live workers come back in one round trip (its running jobs sit beside the
    waiting ones, so the count needs the heartbeats): `queued` and `health` both read `queue_and_workers`."""

    @abstractmethod
    async def queue_and_workers(self) -> tuple[int, list[Beat]]:
        """The jobs waiting (not those a live worker runs) and the live workers' heartbeats."""

    async def queued(self) -> int:
        return (await self.queue_and_workers())[0]

    async def health(self) -> Section:
        queued, workers = await self.queue_and_workers()
        return Section(status=SECTION_OK if workers else NO_WORKERS, queued=queued, workers=workers)
