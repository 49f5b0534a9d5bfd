"""The registry: every fault a scenario can inject, one line each (a fault is a plugin, as a queue is).

`--faults`, its help, the plan (where each applies, its variants, its scenarios' jobs), the stack state, the
scenario's deadline and what happens while it waits come from the fault's class; nothing outside this wing names
a fault (`tests/test_architecture.py`). To add one: its name in `taskbench_wire.enums.Fault`, a class in the
module of its family (`base.Fault` says what it can declare), and a line here.
"""

from __future__ import annotations

from taskbench.faults.base import Fault, NoFault
from taskbench.faults.kills import ApiCrash, ApiDeploy, WorkerChildCrash, WorkerCrash, WorkerCrashLoop, WorkerDeploy
from taskbench.faults.oom import WorkerOom
from taskbench.faults.partitions import ApiPartition, NetworkPartition
from taskbench.faults.restarts import PostgresConnectionsKilled, PostgresRestart, RedisConnectionsKilled, RedisRestart
from taskbench.faults.timeouts import BlockedLoop, LongJob
from taskbench.record.results import ScenarioSpec

REGISTRY: dict[str, Fault] = {
    fault.name.value: fault
    for fault in (
        ApiCrash(),
        ApiDeploy(),
        WorkerCrash(),
        WorkerChildCrash(),
        WorkerDeploy(),
        WorkerCrashLoop(),
        RedisRestart(),
        RedisConnectionsKilled(),
        PostgresRestart(),
        PostgresConnectionsKilled(),
        NetworkPartition(),
        ApiPartition(),
        WorkerOom(),
        LongJob(),
        BlockedLoop(),
    )
}
FAULTS = tuple(REGISTRY)
NO_FAULT = NoFault()


def get(name: str) -> Fault:
    return REGISTRY[name]


def of(spec: ScenarioSpec) -> Fault:
    """The scenario's fault; a scenario without one gets the null fault (its state, no allowance)."""
    return REGISTRY[spec.fault] if spec.fault else NO_FAULT
