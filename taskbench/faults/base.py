"""What a fault is, as a plugin: where it applies and its variants, the stack state it needs, the time it adds to
a scenario (its allowance, the scenario's deadline; what it is expected to add, the plan's estimate), how it
strikes, tends the stack while the scenario waits, and concludes, and whether the scenario keeps submitting while it
strikes.

A fault is one class in a module of its family and one line in `taskbench.faults.REGISTRY`; its name is a member
of `taskbench_wire.enums.Fault`, which the record and the reports read."""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from typing import ClassVar

from taskbench.implementations.base import Implementation
from taskbench.record.results import Event, EventName, PluginOptions, RunSettings, ScenarioSpec
from taskbench.stack.stack import DEFAULT_REDELIVERY_TIMEOUT_S, Stack, StackState
from taskbench_wire import enums

DEADLINE_SLACK_S = 15.0  # a fault scenario's deadline: its allowance and this, beyond the ideal makespan
# A fault the scenario submits through: after it, how long the scenario tries until the API accepts a job again.
CUT_RECOVERY_S = 15.0


def redelivery_timeout_for(duration_s: float) -> float:
    """Short, so redelivery shows within the run, yet longer than any job: a running job whose message
    outlives this timeout is delivered again while it still runs (Celery's visibility timeout)."""
    return max(5.0, 2 * duration_s + 2)


class Fault(ABC):
    name: ClassVar[enums.Fault]
    summary: ClassVar[str]  # one line for `--faults`' help and docs
    submits_during: ClassVar[bool] = False  # the scenario keeps submitting while it strikes (on a thread)
    strikes_running_jobs: ClassVar[bool] = True  # held until jobs are halfway through, others still queued
    needs_hosts: ClassVar[bool] = False  # a host cut off: --hosts N
    needs_cgroups: ClassVar[bool] = False  # a memory limit: cgroups, checked before anything starts
    restarts_server: ClassVar[str | None] = None  # the flag of an external server it cannot restart

    def applies(self, impl: Implementation, options: PluginOptions) -> bool:
        """Whether it means something for this implementation with these options: the implementation says."""
        return impl.applies(self.name.value, options)

    def variants(self, impl: Implementation) -> list[str | None]:
        return [None]

    def shaped(self, spec: ScenarioSpec, settings: RunSettings) -> ScenarioSpec:
        """The scenario's jobs: the fault scenarios' `sleep` unless the fault needs others."""
        return spec

    def state(self, spec: ScenarioSpec) -> StackState:
        """The stack it runs on, applied before the scenario starts: a redelivery timeout short enough to show."""
        return StackState(
            redelivery_timeout_s=redelivery_timeout_for(spec.duration_s),
            concurrency=spec.concurrency,
            middleware=spec.middleware,
        )

    def held_s(self, spec: ScenarioSpec) -> float:
        """How long the fault itself lasts once it strikes (a cut host); 0 for an instant one."""
        return 0.0

    def allowance_s(self, spec: ScenarioSpec) -> float:
        """The time it may add to the scenario: its own length and the redelivery it may wait for."""
        return redelivery_timeout_for(spec.duration_s) + self.held_s(spec)

    def expected_s(self, spec: ScenarioSpec) -> float:
        """The time it is expected to add, for the plan's estimate: its allowance, less what only a process that
        does not stop would use (a deploy's grace)."""
        return self.allowance_s(spec)

    def inject(self, stack: Stack, spec: ScenarioSpec, events: list[Event]) -> None:
        """Blocks the caller for a second or so, on purpose: a child must be started by a thread that outlives
        it (see taskbench.stack.processes), and the probes and sampler run on threads of their own."""
        self.strike(stack, spec, events)
        events.append(
            Event(t=time.time(), name=EventName.recovered, detail=f"{self.name.value}: the stack answers again")
        )

    @abstractmethod
    def strike(self, stack: Stack, spec: ScenarioSpec, events: list[Event]) -> None:
        """The fault itself, with a `fault` event when it strikes (and `restart`/`restored` as they happen)."""

    def over_at(self, events: list[Event]) -> float | None:
        """When it stopped striking (the stack answered again), or None while it still strikes: a queue's
        redelivery is waited for from then on, never from an earlier strike of a fault that strikes again."""
        return next((e.t for e in events if e.name == EventName.recovered), None)

    def tend(self, stack: Stack, spec: ScenarioSpec, events: list[Event]) -> None:
        """While the scenario waits, every poll: what an orchestrator would do for the stack (most: nothing)."""
        return None

    def conclude(self, stack: Stack, spec: ScenarioSpec, events: list[Event]) -> None:
        """After the scenario's wait, before the records are read: what only the end can tell (most: nothing)."""
        return None


class NoFault(Fault):
    """A scenario without a fault: the null object, so a scenario asks its fault without asking whether it has
    one."""

    summary = "no fault"

    def state(self, spec: ScenarioSpec) -> StackState:
        # The queues' own default (Celery's visibility timeout: an hour): a short one would deliver again the jobs
        # a worker holds prefetched in a long backlog, and changing it restarts every worker.
        return StackState(
            redelivery_timeout_s=DEFAULT_REDELIVERY_TIMEOUT_S, concurrency=spec.concurrency, middleware=spec.middleware
        )

    def allowance_s(self, spec: ScenarioSpec) -> float:
        return 0.0

    def strike(self, stack: Stack, spec: ScenarioSpec, events: list[Event]) -> None:
        raise ValueError("a scenario without a fault has nothing to strike")
