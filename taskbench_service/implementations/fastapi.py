"""`/fastapi/*`: jobs run by FastAPI's own BackgroundTasks, records in this process's memory.

Written the way a FastAPI user writes it: sync job functions go to Starlette's threadpool (anyio's
default limiter, 40 threads shared with sync endpoints), async ones run on the event loop itself.

Under `uvicorn --workers N` every process has its own thread pool and its own records; each publishes its
jobs in flight to Redis (a heartbeat, as the queues' workers do), so `/health` can say what the whole server
still runs, whichever process answers. The records themselves stay in memory, as a user's would.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from typing import Any

import anyio.to_thread
import redis.asyncio as aredis
from fastapi import BackgroundTasks, HTTPException

from taskbench_service import workloads
from taskbench_service.execution import execute_async, execute_sync
from taskbench_service.heartbeat import Heartbeat, live_beats
from taskbench_service.implementations.base import ServiceImplementation
from taskbench_service.jobs import JobCall, MemoryJobStore
from taskbench_service.settings import MAX_MEMORY_IN_FLIGHT_MB, settings
from taskbench_service.workloads import Kind
from taskbench_wire.health import Section
from taskbench_wire.records import JobRecord

API_BEAT_S = 0.5  # in-flight counts of the other API processes are at most this old


def server_id() -> int:
    """The uvicorn server this process belongs to: its supervisor's pid under `--workers` (uvicorn spawns them
    with multiprocessing), else its own. Beats of a server that was killed and restarted do not count."""
    return os.getppid() if multiprocessing.parent_process() is not None else os.getpid()


class _Records:
    """The memory store seen from a job's thread: a plain dict update."""

    def __init__(self, store: MemoryJobStore) -> None:
        self.store = store

    def update(self, job_id: str, fields: dict[str, Any]) -> None:
        self.store.update_now(job_id, fields)


class BackgroundTasksImplementation(ServiceImplementation):
    name = "fastapi"
    runner = "BackgroundTasks"

    def __init__(self) -> None:
        self._store = MemoryJobStore()
        self._records = _Records(self._store)
        self._lock = threading.Lock()
        self._heartbeat: Heartbeat | None = None
        self._redis: aredis.Redis | None = None
        self.server = 0
        self._tokens = 40
        self._memory_mb = 0  # held by the memory jobs accepted and not finished (admit)

    async def startup(self) -> None:
        self.server = server_id()
        self._tokens = int(anyio.to_thread.current_default_thread_limiter().total_tokens)  # read on the loop
        self._redis = aredis.Redis.from_url(
            settings.redis_url,
            socket_connect_timeout=settings.redis_timeout_s,
            socket_timeout=settings.redis_timeout_s,
            decode_responses=True,
        )
        self._heartbeat = Heartbeat("fastapi", f"api-{os.getpid()}", self._beat, interval_s=API_BEAT_S)
        self._heartbeat.start()

    async def shutdown(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.stop()
        if self._redis is not None:
            await self._redis.aclose()

    def _beat(self) -> dict[str, Any]:
        """On the heartbeat's thread: plain attributes only (anyio's limiter is read on the event loop)."""
        tokens = self._tokens
        return {"in_flight": self.in_flight, "concurrency": tokens, "threadpool_tokens": tokens, "server": self.server}

    @property
    def store(self) -> MemoryJobStore:
        return self._store

    @property
    def in_flight(self) -> int:
        """Accepted and not finished: queued for a thread or the loop, or running."""
        return self._store.in_flight

    def _count(self, step: int, memory_mb: int) -> None:
        with self._lock:
            self._store.in_flight += step
            self._memory_mb += step * memory_mb

    def admit(self, record: JobRecord) -> None:
        """Memory jobs run here, in the API process: what the accepted ones may hold at once is bounded."""
        held = self._memory_mb
        if record.kind is Kind.memory and held + record.memory_mb > MAX_MEMORY_IN_FLIGHT_MB:
            raise HTTPException(
                503,
                f"memory jobs accepted here and not finished already hold {held} MB; {record.memory_mb} MB more "
                f"would pass the bound of {MAX_MEMORY_IN_FLIGHT_MB} MB per API process: try again later",
            )

    def _memory(self, call: JobCall) -> int:
        return call.memory_mb if call.kind is Kind.memory else 0

    def _run_sync(self, call: JobCall) -> None:
        try:
            execute_sync(call, self._records, lambda: workloads.run_sync(call))
        finally:  # whatever happened, the job ends: /health must not report it in flight forever
            self._count(-1, self._memory(call))

    async def _run_async(self, call: JobCall) -> None:
        try:
            body = lambda: workloads.run_async(call)  # noqa: E731
            await execute_async(call, self._store, body)
        finally:
            self._count(-1, self._memory(call))

    async def submit(self, record: JobRecord, background_tasks: BackgroundTasks) -> None:
        self._count(+1, record.memory_mb if record.kind is Kind.memory else 0)
        call = JobCall.of(record)
        runner = self._run_async if workloads.is_async(call.kind, call.job) else self._run_sync
        background_tasks.add_task(runner, call)

    async def purge(self, queued_ids: list[str]) -> int:
        return 0  # nothing waits outside the records: a running background task cannot be recalled

    def describe(self) -> dict[str, Any]:
        tokens = int(anyio.to_thread.current_default_thread_limiter().total_tokens)
        return {"runner": self.runner, "threadpool_tokens": tokens}

    async def health(self) -> Section:
        """This process' jobs in flight, and every live process of the same server (its own included)."""
        assert self._redis is not None
        processes = [w for w in await live_beats(self._redis, self.name) if w.extra("server") == self.server]
        return Section(in_flight=self.in_flight, processes=processes)


IMPLEMENTATION = BackgroundTasksImplementation()
