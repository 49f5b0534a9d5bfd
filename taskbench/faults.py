"""Crash and restart injections, and the stack state each one needs.

- api-crash: SIGKILL the API server while jobs are queued and running, then start it again.
- api-deploy: SIGTERM the API server (a rolling deploy): uvicorn's graceful shutdown waits for requests and
  background tasks up to --graceful-timeout, then cancels them; SIGKILL if still there after an orchestrator's
  grace period; then start it again.
- worker-crash: SIGKILL the implementation's worker, main process and children, then start it again; run
  under each of the implementation's delivery settings. For BackgroundTasks, every worker of the stack
  dies: its jobs do not care, which is the finding.
- worker-child-crash: SIGKILL only the worker's child processes (an OOM kill, a segfault); the main
  process lives on and starts new ones. For Celery, `task_reject_on_worker_lost` decides here whether the
  running jobs are requeued or acknowledged as failed.
- redis-restart: stop and start the private Redis, with AOF persistence (`aof`) or without (`none`).
- postgres-restart: stop the private PostgreSQL with a fast shutdown (every client cut off, as `pg_ctl restart`
  does; committed jobs are on disk) and start it again: the PostgreSQL queues only.

To add a fault: a name in FAULTS, its variants in `variants`, its stack state in `state_for` and its
injection in `inject`; an implementation lists the faults that apply to it.
"""

from __future__ import annotations

import contextlib
import time

import psutil

from taskbench import implementations
from taskbench.results import Event, PluginOptions, ScenarioSpec
from taskbench.stack import Stack, StackState
from taskbench_wire import enums

FAULTS, WORKER_FAULTS = enums.FAULTS, enums.WORKER_FAULTS
REDIS_VARIANTS = ("none", "aof")
# How long a worker is watched after its children die: Dramatiq's main process notices within 0.1–1.1 s
# (it checks in 1 s steps) and exits; a worker that lives on replaces its children itself.
SUPERVISOR_GRACE_S = 3.0


def variants(fault: str, implementation: str) -> list[str | None]:
    if fault in WORKER_FAULTS:
        impl = implementations.get(implementation)
        # Jobs that do not run on a worker: once is enough to show they do not care.
        return [d.name for d in impl.deliveries] if impl.has_worker else ["default"]
    if fault == "redis-restart":
        return list(REDIS_VARIANTS)
    return [None]


def applies(fault: str, implementation: str, options: PluginOptions | None = None) -> bool:
    return implementations.get(implementation).applies(fault, options or {})


def redelivery_timeout_for(duration_s: float) -> float:
    """Short, so redelivery shows within the run, yet longer than any job: a running job whose message
    outlives this timeout is delivered again while it still runs (Celery's visibility timeout)."""
    return max(5.0, 2 * duration_s + 2)


def state_for(spec: ScenarioSpec) -> StackState:
    """The stack this scenario runs on: stated here, applied by the run before the scenario starts."""
    deliveries = {spec.implementation: spec.variant or "default"} if spec.fault in WORKER_FAULTS else {}
    return StackState(
        deliveries=deliveries,
        redelivery_timeout_s=redelivery_timeout_for(spec.duration_s),
        redis_persistent=spec.fault == "redis-restart" and spec.variant == "aof",
        concurrency=spec.concurrency,
        middleware=spec.middleware,
    )


def _kill_children(stack: Stack, name: str) -> int:
    worker = stack.workers[name]
    assert worker.pid is not None
    children = psutil.Process(worker.pid).children(recursive=True)
    for child in children:
        with contextlib.suppress(psutil.NoSuchProcess):
            child.kill()
    psutil.wait_procs(children, timeout=5)
    return len(children)


def inject(stack: Stack, spec: ScenarioSpec, events: list[Event]) -> None:
    """Blocks the caller for a second or so, on purpose: a child must be started by a thread that outlives
    it (see taskbench.processes), and the probes and sampler run on threads of their own."""
    fault, variant, name = spec.fault, spec.variant, spec.implementation
    targets = [name] if name in stack.workers else list(stack.workers)
    if fault == "api-crash":
        events.append(Event(t=time.time(), name="fault", detail="SIGKILL the API server"))
        stack.restart_api()
    elif fault == "api-deploy":
        graceful = stack.config.api.graceful_timeout_s
        limit = "no limit (uvicorn's default)" if graceful is None else f"--timeout-graceful-shutdown {graceful:g}"
        events.append(Event(t=time.time(), name="fault", detail=f"SIGTERM the API server (a deploy; {limit})"))
        took = stack.deploy_api()
        events.append(Event(t=time.time(), name="restart", detail=f"the old API server took {took:.2f} s to go"))
    elif fault == "worker-crash":
        what = ", ".join(implementations.title(t) for t in targets) or "no"
        events.append(Event(t=time.time(), name="fault", detail=f"SIGKILL the {what} worker ({variant})"))
        for target in targets:
            stack.workers[target].kill()
        for target in targets:
            stack.workers[target].start()
    elif fault == "worker-child-crash":
        at = time.time()
        killed = sum(_kill_children(stack, target) for target in targets)
        events.append(Event(t=at, name="fault", detail=f"SIGKILL the worker's {killed} child processes"))
        for target in targets:  # some workers exit when a child dies (Dramatiq): restart them, as systemd would
            deadline = time.monotonic() + SUPERVISOR_GRACE_S
            while stack.workers[target].alive() and time.monotonic() < deadline:
                time.sleep(0.05)
            if not stack.workers[target].alive():
                events.append(Event(t=time.time(), name="restart", detail=f"the {target} worker exited: restarted"))
                stack.workers[target].start()
    elif fault == "redis-restart":
        persistent = variant == "aof"
        detail = "restart Redis " + ("with AOF persistence" if persistent else "without persistence")
        events.append(Event(t=time.time(), name="fault", detail=detail))
        stack.restart_redis(persistent)
    elif fault == "postgres-restart":
        events.append(Event(t=time.time(), name="fault", detail="restart PostgreSQL (fast shutdown)"))
        stack.restart_postgres()
    else:
        raise ValueError(f"unknown fault {fault!r}")
    events.append(Event(t=time.time(), name="recovered", detail=f"{fault}: the stack answers again"))
