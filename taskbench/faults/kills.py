"""Processes killed: the API (SIGKILL, or SIGTERM as a deploy does) and the worker (whole, only its children, or
SIGTERMed as a deploy does).

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
from taskbench.record.results import Event, EventName, PluginOptions, ScenarioSpec
from taskbench.stack.stack import Stack, StackState
from taskbench_wire import enums

# How long a worker is watched after its children die: Dramatiq's main process notices within 0.1–1.1 s
# (it checks in 1 s steps) and exits; a worker that lives on replaces its children itself.
SUPERVISOR_GRACE_S = 3.0
KUBERNETES_GRACE_S = 30.0  # terminationGracePeriodSeconds' default
KILLS_IN_A_LOOP = 5  # worker-crash-loop: the strike and four more
RESTART_ALLOWANCE_S = 5.0  # a worker's start, in worker-crash-loop's allowance


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
        self.kill(stack, spec, events)

    def kill(self, stack: Stack, spec: ScenarioSpec, events: list[Event]) -> None:
        targets = self.targets(stack, spec)
        what = ", ".join(implementations.title(t) for t in targets) or "no"
        events.append(Event(t=time.time(), name=EventName.fault, detail=f"SIGKILL the {what} worker ({spec.variant})"))
        for target in targets:
            stack.workers[target].kill()
        for target in targets:
            stack.workers[target].start()


class WorkerCrashLoop(WorkerCrash):
    """What users of a crash-looping worker ask (OOM-killed 15–24 times an hour): what share of a burst completes
    when its worker dies again and again? Against the same burst without faults (the recovery ratio a
    PostgreSQL-queue benchmark publishes per queue), under each delivery setting."""

    name = enums.Fault.worker_crash_loop
    summary = (
        "SIGKILL the worker again and again, twice the job's duration (at least 1 s) after it is back each time, "
        f"{KILLS_IN_A_LOOP} times, starting it again each time: what share of the burst completes"
    )

    def applies(self, impl: Implementation, options: PluginOptions) -> bool:
        return impl.has_worker and impl.applies(enums.Fault.worker_crash.value, options)

    def period_s(self, spec: ScenarioSpec) -> float:
        return max(1.0, 2 * spec.duration_s)

    def allowance_s(self, spec: ScenarioSpec) -> float:
        return super().allowance_s(spec) + KILLS_IN_A_LOOP * (self.period_s(spec) + RESTART_ALLOWANCE_S)

    def over_at(self, events: list[Event]) -> float | None:
        """After the last kill's restart: a job killed by the fifth kill is owed its redelivery as the first's was
        (ending at the first's, a CI run counted two acks_late jobs lost that Celery was about to deliver again)."""
        kills = [e for e in events if e.name == EventName.fault]
        restarts = [e.t for e in events if e.name == EventName.restart]
        return restarts[-1] if len(kills) >= KILLS_IN_A_LOOP and restarts else None

    def tend(self, stack: Stack, spec: ScenarioSpec, events: list[Event]) -> None:
        """Another kill once the period has passed since the worker came back; the kills so far are the scenario's
        fault events, the last one's restart its latest event."""
        kills = [e for e in events if e.name == EventName.fault]
        if not kills or len(kills) >= KILLS_IN_A_LOOP:
            return
        if time.time() - events[-1].t >= self.period_s(spec):
            self.kill(stack, spec, events)  # each kill a fault event: a run cut off died at the first after it
            events.append(Event(t=time.time(), name=EventName.restart, detail="the worker is back"))


class WorkerDeploy(Fault):
    """What users of every queue ask: are jobs lost or run twice when the workers are redeployed under load? The
    queue's own shutdown answers (Celery's warm shutdown, RQ's wait for its work-horse, Huey's immediate stop on
    SIGTERM, …), within the grace period an orchestrator gives it, under its default delivery."""

    name = enums.Fault.worker_deploy
    summary = (
        "SIGTERM the worker's main process mid-burst, as a rolling deploy does (Kubernetes, docker stop), SIGKILL "
        "what is left after the grace period, start a new worker: long-grace lets running jobs finish (Kubernetes' "
        "default of 30 s, or 2 × the job's duration + 2 s if longer), short-grace ends before they do (a quarter of "
        "the job's duration)"
    )
    GRACES = ("long-grace", "short-grace")

    def applies(self, impl: Implementation, options: PluginOptions) -> bool:
        return impl.has_worker  # BackgroundTasks' deploy is the API's: api-deploy

    def variants(self, impl: Implementation) -> list[str | None]:
        return list(self.GRACES)

    def grace_s(self, spec: ScenarioSpec) -> float:
        if spec.variant == "short-grace":
            return spec.duration_s / 4  # struck when the running jobs are halfway: killed at three quarters
        # Kubernetes' default terminationGracePeriodSeconds: a worker that exits by itself ends the wait sooner, and
        # one whose own shutdown takes seconds on a loaded machine is not SIGKILLed for the machine's sake
        return max(KUBERNETES_GRACE_S, 2 * spec.duration_s + 2)

    def allowance_s(self, spec: ScenarioSpec) -> float:
        return super().allowance_s(spec) + self.grace_s(spec)

    def expected_s(self, spec: ScenarioSpec) -> float:
        """A long grace is expected to end when the running jobs do (their worker exits by itself), not after 30 s."""
        return super().allowance_s(spec) + min(self.grace_s(spec), spec.duration_s)

    def strike(self, stack: Stack, spec: ScenarioSpec, events: list[Event]) -> None:
        grace = self.grace_s(spec)
        what = implementations.title(spec.implementation)
        detail = f"SIGTERM the {what} worker's main process (a deploy; SIGKILL after a grace of {grace:g} s)"
        events.append(Event(t=time.time(), name=EventName.fault, detail=detail))
        took, killed = stack.deploy_worker(spec.implementation, grace)
        gone = f"still running after {grace:g} s: SIGKILLed" if killed else f"exited by itself in {took:.2f} s"
        events.append(Event(t=time.time(), name=EventName.restart, detail=f"the old worker {gone}; a new one started"))


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
