"""Memory that only grows: the process that runs the scenario's jobs (its worker; BackgroundTasks' API) under a
memory limit (its cgroup: --worker-memory, else its idle usage at the scenario's start + OOM_HEADROOM_MB, whatever
its pool's own size) and `memory` jobs that fit one at a time but not at the worker's concurrency. The kernel's
OOM killer kills a process of it (the biggest: a pool's child holding a job, or the whole single-process worker or
API), as in a container under Kubernetes; the cgroup's OOM kill count says when and how many; a process whose main
process died is started again whenever it dies, as its orchestrator would (`tend`). Every implementation, under
each delivery setting."""

from __future__ import annotations

import time
from dataclasses import replace

from taskbench.errors import StackError
from taskbench.faults.kills import SUPERVISOR_GRACE_S, WorkerFault
from taskbench.implementations.base import Implementation
from taskbench.record.results import Event, EventName, PluginOptions, RunSettings, ScenarioSpec
from taskbench.stack.stack import Stack, StackState
from taskbench_wire import enums

OOM_HEADROOM_MB = 256  # without --worker-memory: the limit is the worker's idle usage plus this
# Each job holds this share of the limit: one fits beside the worker's own memory, two do not, so a worker running
# two or more at once (any --concurrency above 1) is OOM-killed.
OOM_JOB_SHARE = 0.6
OOM_WAIT_S = 5.0  # after the jobs' duration: how long it waits for the OOM kill before it says there was none
OOM_RESTARTS = 5  # restarts of a worker the OOM killer killed, per scenario


class WorkerOom(WorkerFault):
    name = enums.Fault.worker_oom
    summary = (
        "the worker (BackgroundTasks: the API) under a memory limit and memory jobs above it at its concurrency: "
        "the kernel's OOM killer, as in a container"
    )
    strikes_running_jobs = False  # its jobs are the fault
    needs_cgroups = True

    def applies(self, impl: Implementation, options: PluginOptions) -> bool:
        return True  # wherever the jobs run: a worker, or BackgroundTasks' API

    def shaped(self, spec: ScenarioSpec, settings: RunSettings) -> ScenarioSpec:
        """`memory` jobs above the worker's limit."""
        limit = settings.worker_limits.memory_mb  # None: the worker's idle usage + OOM_HEADROOM_MB, when it starts
        memory_mb = max(1, round((limit or OOM_HEADROOM_MB) * OOM_JOB_SHARE))
        return spec.model_copy(update={"workload": "memory", "memory_mb": memory_mb, "memory_limit_mb": limit})

    def state(self, spec: ScenarioSpec) -> StackState:
        return replace(
            super().state(spec), worker_memory_mb=spec.memory_limit_mb, worker_memory_headroom_mb=OOM_HEADROOM_MB
        )

    def strike(self, stack: Stack, spec: ScenarioSpec, events: list[Event]) -> None:
        """Wait for the kernel's kill (the cgroup's count, watched from the scenario's start), state it, and start
        the worker again if its main process died."""
        name = spec.implementation
        cgroup, process = stack.job_cgroup(name), stack.job_service(name)
        concurrency = stack.worker_concurrency if name in stack.workers else "a thread per job"
        limit, idle = cgroup.memory_limit_mb, cgroup.idle_mb
        shape = f"{spec.jobs} jobs of {spec.memory_mb} MiB, concurrency {concurrency}, limit {limit} MiB"
        shape += f" over {idle:.0f} MiB used idle" if idle is not None else ""
        deadline = time.monotonic() + spec.duration_s + OOM_WAIT_S
        while cgroup.oom_at is None and time.monotonic() < deadline:
            time.sleep(0.05)
        if cgroup.oom_at is None:
            detail = f"no OOM kill in the cgroup of {process.what} ({shape})"
            events.append(Event(t=time.time(), name=EventName.fault, detail=detail))
            return
        killed = cgroup.oom_kills_since_mark()
        detail = f"the kernel OOM-killed {killed} process{'es' if killed != 1 else ''} of {process.what} ({shape})"
        events.append(Event(t=cgroup.oom_at, name=EventName.fault, detail=detail))
        grace = time.monotonic() + SUPERVISOR_GRACE_S
        while process.alive() and time.monotonic() < grace:
            time.sleep(0.05)
        self.tend(stack, spec, events)

    def tend(self, stack: Stack, spec: ScenarioSpec, events: list[Event]) -> None:
        """Start the job process again whenever the kernel killed its main process, at once and up to OOM_RESTARTS
        times (an orchestrator's restart policy, without Kubernetes' growing back-off), so that jobs run again
        into the same limit show what the queue does with them."""
        name = spec.implementation
        if name not in stack.config.implementations:
            return
        process = stack.job_service(name)
        if process.alive() or sum(e.name == EventName.restart for e in events) >= OOM_RESTARTS:
            return
        how = process.process.ended_how()
        events.append(Event(t=time.time(), name=EventName.restart, detail=f"{process.what} exited ({how}): restarted"))
        try:
            process.start()
        except StackError as exc:  # killed again while it started (jobs it took at once): the next poll tries again
            events.append(Event(t=time.time(), name=EventName.restart_failed, detail=str(exc).splitlines()[0]))

    def conclude(self, stack: Stack, spec: ScenarioSpec, events: list[Event]) -> None:
        """State every OOM kill of the scenario (jobs redelivered into the same limit are killed again)."""
        if spec.implementation not in stack.config.implementations:
            return
        process = stack.job_service(spec.implementation)
        killed = stack.job_cgroup(spec.implementation).oom_kills_since_mark()
        detail = f"{killed} OOM kills in the cgroup of {process.what}"
        events.append(Event(t=time.time(), name=EventName.oom_kills, detail=detail))
