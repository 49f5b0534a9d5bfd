"""Processes killed: the API (SIGKILL, or SIGTERM as a deploy does) and the worker (whole, or only its children).

The worker faults run under each of the implementation's delivery settings; for BackgroundTasks, every worker of
the stack dies: its jobs do not care, which is the finding."""

from __future__ import annotations

import contextlib
import time
from dataclasses import replace

import psutil

from taskbench import implementations
from taskbench.faults.base import Fault
from taskbench.implementations.base import Implementation
from taskbench.record.results import Event, EventName, ScenarioSpec
from taskbench.stack.stack import Stack, StackState
from taskbench_wire import enums

# How long a worker is watched after its children die: Dramatiq's main process notices within 0.1–1.1 s
# (it checks in 1 s steps) and exits; a worker that lives on replaces its children itself.
SUPERVISOR_GRACE_S = 3.0


class ApiCrash(Fault):
    name = enums.Fault.api_crash
    summary = "SIGKILL the API server while jobs are queued and running, then start it again"

    def strike(self, stack: Stack, spec: ScenarioSpec, events: list[Event]) -> None:
        events.append(Event(t=time.time(), name=EventName.fault, detail="SIGKILL the API server"))
        stack.restart_api()


class ApiDeploy(Fault):
    name = enums.Fault.api_deploy
    summary = (
        "SIGTERM the API server (a rolling deploy): uvicorn's graceful shutdown waits for requests and background "
        "tasks up to --graceful-timeout, then cancels them; SIGKILL after an orchestrator's grace period; restart"
    )

    def strike(self, stack: Stack, spec: ScenarioSpec, events: list[Event]) -> None:
        graceful = stack.config.api.graceful_timeout_s
        limit = "no limit (uvicorn's default)" if graceful is None else f"--timeout-graceful-shutdown {graceful:g}"
        events.append(Event(t=time.time(), name=EventName.fault, detail=f"SIGTERM the API server (a deploy; {limit})"))
        took = stack.deploy_api()
        events.append(
            Event(t=time.time(), name=EventName.restart, detail=f"the old API server took {took:.2f} s to go")
        )


class WorkerFault(Fault):
    """A fault of the process that runs the jobs, under each of the implementation's delivery settings."""

    def variants(self, impl: Implementation) -> list[str | None]:
        # Jobs that do not run on a worker: once is enough to show they do not care.
        return [d.name for d in impl.deliveries] if impl.has_worker else ["default"]

    def state(self, spec: ScenarioSpec) -> StackState:
        state = super().state(spec)
        return replace(state, deliveries={spec.implementation: spec.variant or "default"})

    def targets(self, stack: Stack, spec: ScenarioSpec) -> list[str]:
        return [spec.implementation] if spec.implementation in stack.workers else list(stack.workers)


class WorkerCrash(WorkerFault):
    name = enums.Fault.worker_crash
    summary = "SIGKILL the implementation's worker, main process and children, then start it again"

    def strike(self, stack: Stack, spec: ScenarioSpec, events: list[Event]) -> None:
        targets = self.targets(stack, spec)
        what = ", ".join(implementations.title(t) for t in targets) or "no"
        events.append(Event(t=time.time(), name=EventName.fault, detail=f"SIGKILL the {what} worker ({spec.variant})"))
        for target in targets:
            stack.workers[target].kill()
        for target in targets:
            stack.workers[target].start()


class WorkerChildCrash(WorkerFault):
    name = enums.Fault.worker_child_crash
    summary = (
        "SIGKILL only the worker's child processes (an OOM kill, a segfault); the main process lives on and starts "
        "new ones (Celery's task_reject_on_worker_lost decides whether running jobs are requeued)"
    )

    def strike(self, stack: Stack, spec: ScenarioSpec, events: list[Event]) -> None:
        targets = self.targets(stack, spec)
        at = time.time()
        killed = sum(_kill_children(stack, target) for target in targets)
        events.append(Event(t=at, name=EventName.fault, detail=f"SIGKILL the worker's {killed} child processes"))
        for target in targets:  # some workers exit when a child dies (Dramatiq): restart them, as systemd would
            deadline = time.monotonic() + SUPERVISOR_GRACE_S
            while stack.workers[target].alive() and time.monotonic() < deadline:
                time.sleep(0.05)
            if not stack.workers[target].alive():
                events.append(
                    Event(t=time.time(), name=EventName.restart, detail=f"the {target} worker exited: restarted")
                )
                stack.workers[target].start()


def _kill_children(stack: Stack, name: str) -> int:
    worker = stack.workers[name]
    assert worker.pid is not None
    children = psutil.Process(worker.pid).children(recursive=True)
    for child in children:
        with contextlib.suppress(psutil.NoSuchProcess):
            child.kill()
    psutil.wait_procs(children, timeout=5)
    return len(children)
