"""`/fastapi/*`: jobs run by FastAPI's own BackgroundTasks, records in this process's memory.

Written the way a FastAPI user writes it: sync job functions go to Starlette's threadpool (anyio's
default limiter, 40 threads shared with sync endpoints), async ones run on the event loop itself.
"""

from __future__ import annotations

import threading
from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Body, HTTPException, Query

from app import ledger
from app.jobs import (
    JobList,
    JobRecord,
    JobRequest,
    MemoryJobStore,
    finished_fields,
    new_record,
    running_fields,
)
from app.workloads import ASYNC_BODIES, SYNC_BODIES, Kind

IMPLEMENTATION = "fastapi"

router = APIRouter(prefix="/fastapi", tags=["fastapi"])
store = MemoryJobStore()
_in_flight_lock = threading.Lock()


def _count_in_flight(step: int) -> None:
    with _in_flight_lock:
        store.in_flight += step


def _started(job_id: str) -> None:
    store.update(job_id, running_fields())
    ledger.record(job_id, IMPLEMENTATION, "start")


def _finished(job_id: str, error: BaseException | None) -> None:
    fields = finished_fields(error)
    store.update(job_id, fields)
    ledger.record(job_id, IMPLEMENTATION, "end", fields.get("error"))


def run_sync_job(job_id: str, kind: Kind, duration: float, memory_mb: int) -> None:
    error: BaseException | None = None
    try:
        _started(job_id)
        SYNC_BODIES[kind](duration, memory_mb)
    except Exception as exc:
        error = exc
    finally:  # whatever happened, the job ends: /health must not report it in flight forever
        _finished(job_id, error)
        _count_in_flight(-1)


async def run_async_job(job_id: str, kind: Kind, duration: float, memory_mb: int) -> None:
    error: BaseException | None = None
    try:
        _started(job_id)
        await ASYNC_BODIES[kind](duration, memory_mb)
    except Exception as exc:
        error = exc
    finally:
        _finished(job_id, error)
        _count_in_flight(-1)


@router.post("/job", status_code=202, response_model=JobRecord)
async def submit(background_tasks: BackgroundTasks, request: Annotated[JobRequest | None, Body()] = None) -> JobRecord:
    record = new_record(IMPLEMENTATION, request or JobRequest())
    store.add(record)
    _count_in_flight(+1)
    runner = run_async_job if record.kind in ASYNC_BODIES else run_sync_job
    background_tasks.add_task(runner, record.job_id, record.kind, record.duration, record.memory_mb)
    return record


@router.get("/status/{job_id}", response_model=JobRecord)
async def status(job_id: str) -> JobRecord:
    record = store.get(job_id)
    if record is None:
        raise HTTPException(404, f"no fastapi job with id {job_id!r}")
    return record


@router.get("/jobs", response_model=JobList)
async def jobs(limit: Annotated[int | None, Query(ge=0)] = None) -> JobList:
    return store.list(limit)


@router.delete("/jobs")
async def clear() -> dict[str, int]:
    return {"cleared": store.clear()}
