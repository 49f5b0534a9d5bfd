"""Hosts cut off (`--hosts N`): the worker's host from everything, or the APIs' host from the servers alone, for
the variant's time, then restored. The `restored` event marks the return: the analysis reads how long the queue
took to start (or, for the API, accept) a job again."""

from __future__ import annotations

import time

from taskbench import implementations
from taskbench.faults.base import CUT_RECOVERY_S, Fault
from taskbench.implementations.base import Implementation
from taskbench.record.results import Event, EventName, PluginOptions, ScenarioSpec
from taskbench.stack.stack import Stack
from taskbench_wire import enums

PARTITION_VARIANTS = ("5s",)  # how long the host stays cut off


def partition_seconds(variant: str | None) -> float:
    return float((variant or PARTITION_VARIANTS[0]).removesuffix("s"))


class Partition(Fault):
    needs_hosts = True

    def variants(self, impl: Implementation) -> list[str | None]:
        return list(PARTITION_VARIANTS)

    def held_s(self, spec: ScenarioSpec) -> float:
        return partition_seconds(spec.variant)


class NetworkPartition(Partition):
    name = enums.Fault.network_partition
    summary = (
        "the worker's host cut off from the broker and everything else (its link down inside its namespace) for "
        "the variant's time, then restored: the queues with a worker"
    )

    def applies(self, impl: Implementation, options: PluginOptions) -> bool:
        return impl.has_worker

    def strike(self, stack: Stack, spec: ScenarioSpec, events: list[Event]) -> None:
        """`fault` when the link goes down, `restored` when it is up again (from then on the queue can resume)."""
        name = spec.implementation
        network, host = stack.network, stack.host_of(name)
        if network is None or host is None:
            raise ValueError(f"network-partition needs --hosts and a worker in a namespace ({name})")
        seconds = partition_seconds(spec.variant)
        where = f"{network.address(host)}, {network.namespace(host)}"
        detail = f"cut the {implementations.title(name)} worker's host off ({where}: link down) for {seconds:g} s"
        events.append(Event(t=time.time(), name=EventName.fault, detail=detail))
        _, up_at = stack.partition(name, seconds)
        events.append(Event(t=up_at, name=EventName.restored, detail=f"link up again: host {host} reachable"))


class ApiPartition(Partition):
    name = enums.Fault.api_partition
    summary = (
        "the APIs' host cut off from the servers alone (a blackhole route inside its namespace) for the variant's "
        "time, then restored; clients still reach the API, and the scenario keeps submitting through the cut"
    )
    submits_during = True  # what a client meets: a 503 once the retries give up, or no answer until its timeout

    def applies(self, impl: Implementation, options: PluginOptions) -> bool:
        return True  # every implementation has an API

    def held_s(self, spec: ScenarioSpec) -> float:
        return super().held_s(spec) + CUT_RECOVERY_S

    def strike(self, stack: Stack, spec: ScenarioSpec, events: list[Event]) -> None:
        """`fault` once the cut is in place (the scenario submits from then on), `restored` when it is over."""
        network = stack.network
        if network is None:
            raise ValueError("api-partition needs --hosts: the APIs in a namespace of their own")
        seconds = partition_seconds(spec.variant)
        detail = f"cut the APIs' host off from the servers ({network.servers}: blackhole route) for {seconds:g} s"
        stack.cut_api(True)
        try:
            events.append(Event(t=time.time(), name=EventName.fault, detail=detail))
            time.sleep(seconds)
        finally:
            stack.cut_api(False)
        events.append(
            Event(t=time.time(), name=EventName.restored, detail=f"route removed: {network.servers} reachable")
        )
