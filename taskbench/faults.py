"""Crash and restart injections, and the stack settings each one needs before it starts.

- api-crash: SIGKILL the API server while jobs are queued and running, then start it again.
- worker-crash: SIGKILL the Celery worker, main process and children, then start it again; run under
  each of Celery's three delivery settings.
- worker-child-crash: SIGKILL only the worker's pool processes (an OOM kill, a segfault); the main
  process lives on and forks new ones. Here `task_reject_on_worker_lost` decides whether the running
  jobs are requeued or acknowledged as failed.
- redis-restart: stop and start the private Redis, with AOF persistence (`aof`) or without (`none`).
"""

from __future__ import annotations

import contextlib
import time

import psutil
import redis

from taskbench.results import Event
from taskbench.stack import Delivery, Stack

FAULTS = ("api-crash", "worker-crash", "worker-child-crash", "redis-restart")
WORKER_FAULTS = ("worker-crash", "worker-child-crash")
DELIVERIES = {
    "default": Delivery(),
    "acks_late": Delivery(acks_late=True),
    "acks_late+reject_on_worker_lost": Delivery(acks_late=True, reject_on_worker_lost=True),
}
REDIS_VARIANTS = ("none", "aof")


def variants(fault: str, implementation: str) -> list[str | None]:
    if fault in WORKER_FAULTS:
        # FastAPI's jobs do not run on the worker: once is enough to show they do not care.
        return list(DELIVERIES) if implementation == "celery" else ["default"]
    if fault == "redis-restart":
        return list(REDIS_VARIANTS)
    return [None]


def visibility_timeout_for(duration_s: float) -> float:
    """Short, so redelivery shows within the run, yet longer than any job: a running job whose
    message outlives the visibility timeout is delivered again while it still runs."""
    return max(5.0, 2 * duration_s + 2)


def prepare(stack: Stack, fault: str | None, variant: str | None, duration_s: float) -> None:
    """Put the worker and Redis in the state this scenario needs (default delivery, no AOF otherwise)."""
    base = DELIVERIES.get(variant or "default", Delivery()) if fault in WORKER_FAULTS else Delivery()
    wanted = Delivery(base.acks_late, base.reject_on_worker_lost, visibility_timeout_for(duration_s))
    if stack.config.start_worker and (stack.config.delivery != wanted or not stack.worker or not stack.worker.alive()):
        if stack.worker is not None:
            stack.worker.stop()
        stack.start_worker(wanted)
    if stack.embedded_redis:
        persistent = fault == "redis-restart" and variant == "aof"
        client = redis.Redis.from_url(stack.redis_url)
        client.config_set("appendonly", "yes" if persistent else "no")
        deadline = time.monotonic() + 30
        while persistent and time.monotonic() < deadline:
            info = client.info("persistence")
            if not info.get("aof_rewrite_in_progress") and not info.get("aof_rewrite_scheduled"):
                break
            time.sleep(0.1)


def inject(stack: Stack, fault: str, variant: str | None, events: list[Event]) -> None:
    """Blocks the caller for a second or so, on purpose: a child must be started by a thread that outlives
    it (see taskbench.processes), and the probes and sampler run on threads of their own."""
    if fault == "api-crash":
        assert stack.api is not None
        events.append(Event(t=time.time(), name="fault", detail="SIGKILL the API server"))
        stack.api.kill()
        stack.start_api()
    elif fault == "worker-crash":
        assert stack.worker is not None
        events.append(Event(t=time.time(), name="fault", detail=f"SIGKILL the Celery worker ({variant})"))
        stack.worker.kill()
        stack.start_worker()
    elif fault == "worker-child-crash":
        assert stack.worker is not None and stack.worker.pid is not None
        children = psutil.Process(stack.worker.pid).children(recursive=True)
        events.append(Event(t=time.time(), name="fault", detail=f"SIGKILL the worker's {len(children)} pool processes"))
        for child in children:
            with contextlib.suppress(psutil.NoSuchProcess):
                child.kill()
        psutil.wait_procs(children, timeout=5)
    elif fault == "redis-restart":
        persistent = variant == "aof"
        detail = "restart Redis " + ("with AOF persistence" if persistent else "without persistence")
        events.append(Event(t=time.time(), name="fault", detail=detail))
        stack.restart_redis(persistent)
    else:
        raise ValueError(f"unknown fault {fault!r}")
    events.append(Event(t=time.time(), name="recovered", detail=f"{fault}: the stack answers again"))
