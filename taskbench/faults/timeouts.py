"""Jobs run twice: a job that outlives its queue's redelivery timeout (Celery's visibility timeout, an idle timeout
on a Redis stream) while its worker is alive. Nothing is killed: the queue's redelivery timeout is set to half the
job's duration and its restore sweep to an eighth, so the question is only whether the queue takes a job still
running for abandoned, as hour-long jobs are taken under Celery's hour. Where a worker renews its claim while a job
runs (a heartbeat) the queue says so (`Implementation.outliving_timeout` is None) and the fault does not apply.

And the same question where the worker does renew, but on the event loop its jobs run on: a job that blocks that
loop (a blocking call in `async def`; the GIL held by a long C call does the same to a renewal thread) blocks the
renewal (`blocked-loop`, Dramatiq #692's question for the asyncio queues)."""

from __future__ import annotations

import time
from dataclasses import replace

from taskbench import implementations
from taskbench.faults.kills import WorkerFault
from taskbench.implementations.base import Implementation
from taskbench.record.results import Event, EventName, PluginOptions, RunSettings, ScenarioSpec
from taskbench.stack.stack import DEFAULT_REDELIVERY_TIMEOUT_S, DEFAULT_RESTORE_INTERVAL_S, Stack, StackState
from taskbench_wire import enums

JOB_PER_TIMEOUT = 2.0  # the job lasts twice the redelivery timeout
SWEEPS_PER_TIMEOUT = 4.0  # the restore sweep runs four times per timeout (where the queue lets us set it)


class LongJob(WorkerFault):
    name = enums.Fault.long_job
    summary = (
        "no kill: jobs twice as long as the queue's redelivery timeout (its restore sweep four times as often), "
        "under each delivery setting: is a job still running delivered again and run twice? Only where the "
        "timeout is not renewed while a job runs"
    )

    def applies(self, impl: Implementation, options: PluginOptions) -> bool:
        return impl.has_worker and impl.outliving_timeout is not None

    def shaped(self, spec: ScenarioSpec, settings: RunSettings) -> ScenarioSpec:
        """Jobs long enough to outlive the shortest timeout the queue takes (SAQ's whole seconds)."""
        shortest = JOB_PER_TIMEOUT * implementations.get(spec.implementation).timeout_step_s
        return spec if spec.duration_s >= shortest else spec.model_copy(update={"duration_s": shortest})

    def state(self, spec: ScenarioSpec) -> StackState:
        timeout = spec.duration_s / JOB_PER_TIMEOUT
        return replace(
            super().state(spec), redelivery_timeout_s=timeout, restore_interval_s=timeout / SWEEPS_PER_TIMEOUT
        )

    def allowance_s(self, spec: ScenarioSpec) -> float:
        return 4 * spec.duration_s  # a job delivered again runs once more, whole; the workers' restart at the end

    def conclude(self, stack: Stack, spec: ScenarioSpec, events: list[Event]) -> None:
        """Each copy delivered again outlives the timeout too, so the deliveries would go on into the next
        scenario: the workers start again on the queue's default timeout (a warm stop returns what they held), and
        what comes back runs here, within a job's length or two, counted in this scenario."""
        stack.apply(
            replace(
                stack.state,
                redelivery_timeout_s=DEFAULT_REDELIVERY_TIMEOUT_S,
                restore_interval_s=DEFAULT_RESTORE_INTERVAL_S,
            )
        )
        events.append(Event(t=time.time(), name=EventName.restart, detail="the workers on the default timeout again"))
        time.sleep(2 * spec.duration_s)

    def strike(self, stack: Stack, spec: ScenarioSpec, events: list[Event]) -> None:
        timeout = self.state(spec).redelivery_timeout_s
        what = implementations.title(spec.implementation)
        detail = f"no kill: {what}'s jobs run {spec.duration_s:g} s, its redelivery timeout is {timeout:g} s"
        events.append(Event(t=time.time(), name=EventName.fault, detail=detail))


class BlockedLoop(LongJob):
    name = enums.Fault.blocked_loop
    summary = (
        "no kill: blocking_async jobs (a blocking call in async def) twice as long as the redelivery timeout, on the "
        "queues whose worker renews a running job's claim on that event loop: is a job whose renewal it blocked "
        "taken for abandoned and run twice?"
    )

    def applies(self, impl: Implementation, options: PluginOptions) -> bool:
        return impl.has_worker and impl.renews_on_loop is not None

    def shaped(self, spec: ScenarioSpec, settings: RunSettings) -> ScenarioSpec:
        return super().shaped(spec, settings).model_copy(update={"workload": "blocking_async"})

    def strike(self, stack: Stack, spec: ScenarioSpec, events: list[Event]) -> None:
        timeout = self.state(spec).redelivery_timeout_s
        what = implementations.title(spec.implementation)
        detail = (
            f"no kill: {what}'s jobs block its event loop for {spec.duration_s:g} s each, its redelivery timeout "
            f"is {timeout:g} s, renewed on that loop"
        )
        events.append(Event(t=time.time(), name=EventName.fault, detail=detail))
