"""The Celery side: the task around the shared workloads, and a heartbeat so /health can see workers
without a broadcast on every call. Abandoned (unacknowledged) jobs are restored by kombu's own sweep, every
`unacked_restore_interval` (kombu ≥ 5.7; see celery_app)."""

from __future__ import annotations

from functools import cache
from typing import Any

from celery.signals import celeryd_after_setup, worker_init, worker_ready, worker_shutdown
from celery.worker import state as worker_state

from taskbench_service import workloads
from taskbench_service.celery_app import ACKS_LATE, AMQP, REJECT_ON_WORKER_LOST, celery_app
from taskbench_service.execution import execute_sync
from taskbench_service.heartbeat import Heartbeat
from taskbench_service.jobs import JobCall, WorkerRecords
from taskbench_service.settings import settings


@cache
def _records() -> WorkerRecords:
    return WorkerRecords(settings.redis_url, settings.redis_timeout_s)


@celery_app.task(name="taskbench.run_job")
def run_job(
    job_id: str, kind: str, duration: float, memory_mb: int = 0, job: int = 0, args: dict[str, Any] | None = None
) -> dict[str, Any]:
    call = JobCall(
        job_id=job_id, implementation="celery", kind=kind, duration=duration, memory_mb=memory_mb, job=job,
        args=args or {},
    )  # fmt: skip
    error = execute_sync(call, _records(), lambda: workloads.run_sync(call))
    if error is not None:
        raise error
    return {"job_id": job_id}


# --- worker start-up, heartbeat and the unacked sweep ----------------------------------------------

_worker: dict[str, Any] = {}
_heartbeat: Heartbeat | None = None


def _describe() -> dict[str, Any]:
    return {
        **_worker,
        "active": len(worker_state.active_requests),
        "reserved": len(worker_state.reserved_requests),
        "broker": settings.broker,
        "acks_late": ACKS_LATE,
        "reject_on_worker_lost": REJECT_ON_WORKER_LOST,
        "visibility_timeout": None if AMQP else settings.redelivery_timeout_s,
        "restore_interval": None if AMQP else settings.restore_interval_s,
    }


@worker_init.connect
def _calibrate(**_: Any) -> None:
    workloads.calibrate()  # in the main process, before the pool forks: every child inherits it


POOL_NAMES = {"prefork": "prefork", "thread": "threads", "gevent": "gevent", "solo": "solo", "eventlet": "eventlet"}


def pool_name(pool_cls: Any) -> str:
    """`celery.concurrency.thread.TaskPool` → "threads": the pool as `--pool` names it."""
    module = str(getattr(pool_cls, "__module__", pool_cls)).rsplit(".", 1)[-1]
    return POOL_NAMES.get(module, module)


@celeryd_after_setup.connect
def _remember_worker(sender: str, instance: Any, **_: Any) -> None:
    _worker.update(
        hostname=sender,
        concurrency=instance.concurrency,
        pool=pool_name(instance.pool_cls),
        prefetch_multiplier=instance.prefetch_multiplier,
        max_tasks_per_child=instance.max_tasks_per_child,
    )


@worker_ready.connect
def _start_heartbeat(**_: Any) -> None:
    global _heartbeat
    _heartbeat = Heartbeat("celery", _worker.get("hostname", "celery"), _describe)
    _heartbeat.start()


@worker_shutdown.connect
def _stop_heartbeat(**_: Any) -> None:
    if _heartbeat is not None:
        _heartbeat.stop()
