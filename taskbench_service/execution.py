"""The one job-execution wrapper: every runner of every implementation runs a job through here.

It stamps the record (`running`, then `completed` or `failed`) and appends the ledger's start and end
lines around the job body, so a difference between implementations is a difference in the runner, not
in the bookkeeping. How the body runs (a thread, the event loop, `asyncio.run` in a worker process) is the
implementation's choice, passed in as `body`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import redis

from taskbench_service import ledger, workloads
from taskbench_service.jobs import JobCall, JobStore, SyncRecords, finished_fields, running_fields

log = logging.getLogger(__name__)

RECORD_RETRY_S = 10.0  # a Redis restart takes a moment; the job's own stamps should survive it


def _stamp_sync(records: SyncRecords, job_id: str, fields: dict[str, Any]) -> None:
    deadline = time.monotonic() + RECORD_RETRY_S
    while True:
        try:
            records.update(job_id, fields)
            return
        except redis.RedisError as exc:
            if time.monotonic() > deadline:
                log.warning("job %s: could not update its record: %s", job_id, exc)
                return
            time.sleep(0.2)


async def _stamp_async(records: JobStore, job_id: str, fields: dict[str, Any]) -> None:
    deadline = time.monotonic() + RECORD_RETRY_S
    while True:
        try:
            await records.update(job_id, fields)
            return
        except redis.RedisError as exc:
            if time.monotonic() > deadline:
                log.warning("job %s: could not update its record: %s", job_id, exc)
                return
            await asyncio.sleep(0.2)


def execute_sync(call: JobCall, records: SyncRecords, body: Callable[[], Any]) -> BaseException | None:
    """Run `body` in this thread; returns the job's exception (already recorded) or None."""
    _stamp_sync(records, call.job_id, running_fields())
    ledger.record(call.job_id, call.implementation, "start")
    error: BaseException | None = None
    try:
        body()
    except Exception as exc:
        error = exc
    fields = finished_fields(error)
    _stamp_sync(records, call.job_id, fields)
    ledger.record(call.job_id, call.implementation, "end", fields.get("error"))
    return error


async def execute_async(call: JobCall, records: JobStore, body: Callable[[], Awaitable[Any]]) -> BaseException | None:
    """Await `body` on this event loop; returns the job's exception (already recorded) or None."""
    await _stamp_async(records, call.job_id, running_fields())
    ledger.record(call.job_id, call.implementation, "start")
    error: BaseException | None = None
    try:
        await body()
    except Exception as exc:
        error = exc
    fields = finished_fields(error)
    await _stamp_async(records, call.job_id, fields)
    ledger.record(call.job_id, call.implementation, "end", fields.get("error"))
    return error


class Slots(Protocol):
    """A worker's state: how many jobs it runs now, which its heartbeat reports (one int, under the GIL)."""

    active: int


async def run_counted_async(call: JobCall, records: JobStore, slots: Slots) -> BaseException | None:
    """The job on this loop (sync kinds in its thread pool), counted in `slots` while it runs."""
    slots.active += 1
    try:
        return await execute_async(call, records, lambda: workloads.run_async(call))
    finally:
        slots.active -= 1


def run_counted_sync(call: JobCall, records: SyncRecords, slots: Slots) -> BaseException | None:
    """The job in this thread, counted in `slots` while it runs."""
    slots.active += 1
    try:
        return execute_sync(call, records, lambda: workloads.run_sync(call))
    finally:
        slots.active -= 1
