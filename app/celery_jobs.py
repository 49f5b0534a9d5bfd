"""`/celery/*`: jobs published to a Celery worker over Redis, records in Redis.

Publishing (`apply_async`) is a blocking socket call of ~0.5 ms; it runs on a small executor of its
own so it neither stalls the event loop nor competes for Starlette's threadpool.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Annotated, TypeVar

import redis
from celery._state import _set_task_join_will_block  # type: ignore[attr-defined]
from fastapi import APIRouter, Body, HTTPException, Query
from kombu.exceptions import KombuError

from app.celery_app import celery_app
from app.jobs import JobList, JobRecord, JobRequest, RedisJobStore, finished_fields, new_record
from app.settings import settings
from app.tasks import run_job

IMPLEMENTATION = "celery"
PUBLISH_TIMEOUT_S = 5.0
PUBLISH_RETRY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5}

T = TypeVar("T")

router = APIRouter(prefix="/celery", tags=["celery"])
store = RedisJobStore(settings.redis_url, settings.redis_timeout_s)
publisher = ThreadPoolExecutor(max_workers=4, thread_name_prefix="celery-publish")


# This process never waits on a Celery result (records live in Redis, read by the store), so it tells
# Celery what the worker tells it: joins will not happen here. Otherwise the Redis result backend
# SUBSCRIBEs to every task's result channel inside apply_async and UNSUBSCRIBEs when the AsyncResult is
# collected: two extra Redis round trips per submission, under the backend's pubsub lock (Redis
# commandstats for 1000 submissions: 1000 SUBSCRIBE + 1000 UNSUBSCRIBE before, none after). The worker
# still stores every result.
_set_task_join_will_block(True)


class BrokerUnavailable(Exception):
    """Publishing to the broker failed, or did not finish in time (`maybe_sent`: it may still go out)."""

    def __init__(self, message: str, maybe_sent: bool = False) -> None:
        super().__init__(message)
        self.maybe_sent = maybe_sent


async def _in_publisher(func: Callable[[], T]) -> T:
    loop = asyncio.get_running_loop()
    try:
        return await asyncio.wait_for(loop.run_in_executor(publisher, func), PUBLISH_TIMEOUT_S)
    except asyncio.TimeoutError as exc:
        message = f"the broker did not answer within {PUBLISH_TIMEOUT_S:.0f} s"
        raise BrokerUnavailable(message, maybe_sent=True) from exc
    except (KombuError, redis.RedisError, OSError) as exc:  # what kombu raises for a broker it cannot reach
        raise BrokerUnavailable(f"{type(exc).__name__}: {exc}") from exc


@router.post("/job", status_code=202, response_model=JobRecord)
async def submit(request: Annotated[JobRequest | None, Body()] = None) -> JobRecord:
    record = new_record(IMPLEMENTATION, request or JobRequest())
    await store.add(record)  # first, so the worker always finds the record it stamps
    publish = partial(
        run_job.apply_async,
        args=(record.job_id, record.kind.value, record.duration, record.memory_mb),
        task_id=record.job_id,
        # A pooled connection may be stale after a Redis restart: retry briefly, always within the timeout.
        retry=True,
        retry_policy=PUBLISH_RETRY,
    )
    try:
        await _in_publisher(publish)
    except BrokerUnavailable as exc:
        if exc.maybe_sent:  # the thread may still publish it: keep a record that says so, for the worker to fix
            await store.update(record.job_id, finished_fields(exc))
        else:
            await store.remove(record.job_id)
        raise
    return record


@router.get("/status/{job_id}", response_model=JobRecord)
async def status(job_id: str) -> JobRecord:
    record = await store.get(job_id)
    if record is None:  # Celery itself would say PENDING for any unknown id
        raise HTTPException(404, f"no celery job with id {job_id!r}")
    return record


@router.get("/jobs", response_model=JobList)
async def jobs(limit: Annotated[int | None, Query(ge=0)] = None) -> JobList:
    return await store.list(limit)


@router.delete("/jobs")
async def clear() -> dict[str, int]:
    """Clear the records and purge jobs still waiting in the queue, which would otherwise run later."""
    cleared = await store.clear()  # fails fast with 503 when Redis is down
    purged = await _in_publisher(celery_app.control.purge)
    return {"cleared": cleared, "purged": int(purged or 0)}
