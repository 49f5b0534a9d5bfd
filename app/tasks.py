"""The Celery side: the task around the shared workloads, and a heartbeat so /health can see workers
without a broadcast on every call."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from functools import cache
from typing import Any

import redis
from celery.signals import celeryd_after_setup, worker_ready, worker_shutdown
from celery.worker import state as worker_state

from app import ledger
from app.celery_app import celery_app
from app.jobs import WorkerRecords, finished_fields, running_fields
from app.settings import settings
from app.workloads import Kind, run_sync

log = logging.getLogger(__name__)

WORKERS_KEY = "taskbench:workers"
HEARTBEAT_INTERVAL_S = 1.0
_RECORD_RETRY_S = 10.0  # a Redis restart takes a moment; the job's own stamps should survive it


@cache
def _records() -> WorkerRecords:
    return WorkerRecords(settings.redis_url, settings.redis_timeout_s)


def _update_record(job_id: str, fields: dict[str, Any]) -> None:
    deadline = time.monotonic() + _RECORD_RETRY_S
    while True:
        try:
            _records().update(job_id, fields)
            return
        except redis.RedisError as exc:
            if time.monotonic() > deadline:
                log.warning("job %s: could not update its record: %s", job_id, exc)
                return
            time.sleep(0.2)


@celery_app.task(name="taskbench.run_job")
def run_job(job_id: str, kind: str, duration: float, memory_mb: int = 0) -> dict[str, Any]:
    _update_record(job_id, running_fields())
    ledger.record(job_id, "celery", "start")
    error: BaseException | None = None
    try:
        run_sync(Kind(kind), duration, memory_mb)
    except Exception as exc:
        error = exc
    fields = finished_fields(error)
    _update_record(job_id, fields)
    ledger.record(job_id, "celery", "end", fields.get("error"))
    if error is not None:
        raise error
    return {"job_id": job_id, "finished_at": fields["finished_at"]}


# --- worker heartbeat -------------------------------------------------------------------------------

_worker: dict[str, Any] = {}
_stop = threading.Event()


@celeryd_after_setup.connect
def _remember_worker(sender: str, instance: Any, **_: Any) -> None:
    _worker.update(hostname=sender, concurrency=instance.concurrency)


def _beat() -> None:
    client = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=1, socket_timeout=1)
    while not _stop.is_set():
        beat = {
            **_worker,
            "pid": os.getpid(),
            "active": len(worker_state.active_requests),
            "reserved": len(worker_state.reserved_requests),
            "acks_late": settings.acks_late,
            "reject_on_worker_lost": settings.reject_on_worker_lost,
            "visibility_timeout": settings.visibility_timeout_s,
            "restore_interval": settings.restore_interval_s,
            "t": time.time(),
        }
        try:
            client.hset(WORKERS_KEY, _worker.get("hostname", str(os.getpid())), json.dumps(beat))
        except redis.RedisError as exc:
            log.debug("heartbeat skipped: %s", exc)
        _stop.wait(HEARTBEAT_INTERVAL_S)


@worker_ready.connect
def _start_heartbeat(**_: Any) -> None:
    threading.Thread(target=_beat, name="taskbench-heartbeat", daemon=True).start()


@worker_shutdown.connect
def _stop_heartbeat(**_: Any) -> None:
    _stop.set()
    with contextlib.suppress(redis.RedisError):
        redis.Redis.from_url(settings.redis_url, socket_connect_timeout=1, socket_timeout=1).hdel(
            WORKERS_KEY, _worker.get("hostname", str(os.getpid()))
        )
