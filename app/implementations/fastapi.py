"""`/fastapi/*`: jobs run by FastAPI's own BackgroundTasks, records in this process's memory.

Written the way a FastAPI user writes it: sync job functions go to Starlette's threadpool (anyio's
default limiter, 40 threads shared with sync endpoints), async ones run on the event loop itself.
"""

from __future__ import annotations

import threading
from typing import Any

import anyio.to_thread
from fastapi import BackgroundTasks

from app import workloads
from app.execution import execute_async, execute_sync
from app.implementations.base import ServiceImplementation
from app.jobs import JobCall, JobRecord, MemoryJobStore


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

    @property
    def store(self) -> MemoryJobStore:
        return self._store

    @property
    def in_flight(self) -> int:
        """Accepted and not finished: queued for a thread or the loop, or running."""
        return self._store.in_flight

    def _count(self, step: int) -> None:
        with self._lock:
            self._store.in_flight += step

    def _run_sync(self, call: JobCall) -> None:
        try:
            execute_sync(call, self._records, lambda: workloads.run_sync(call))
        finally:  # whatever happened, the job ends: /health must not report it in flight forever
            self._count(-1)

    async def _run_async(self, call: JobCall) -> None:
        try:
            body = lambda: workloads.run_async(call)  # noqa: E731
            await execute_async(call, self._store, body)
        finally:
            self._count(-1)

    async def submit(self, record: JobRecord, background_tasks: BackgroundTasks) -> None:
        self._count(+1)
        call = JobCall.of(record)
        runner = self._run_async if workloads.is_async(call.kind, call.job) else self._run_sync
        background_tasks.add_task(runner, call)

    async def purge(self) -> int:
        return 0  # nothing waits outside the records: a running background task cannot be recalled

    def describe(self) -> dict[str, Any]:
        tokens = int(anyio.to_thread.current_default_thread_limiter().total_tokens)
        return {"runner": self.runner, "threadpool_tokens": tokens}

    async def health(self) -> dict[str, Any]:
        return {"status": "ok", "in_flight": self.in_flight}


IMPLEMENTATION = BackgroundTasksImplementation()
