"""Servers restarted: the stack's private Redis (without persistence, or with AOF) and PostgreSQL."""

from __future__ import annotations

import time
from dataclasses import replace

from taskbench.faults.base import Fault
from taskbench.implementations.base import Implementation
from taskbench.record.results import Event, EventName, PluginOptions, ScenarioSpec
from taskbench.stack.stack import Stack, StackState
from taskbench_wire import enums

REDIS_VARIANTS = ("none", "aof")


class RedisRestart(Fault):
    name = enums.Fault.redis_restart
    summary = "stop and start the private Redis, with AOF persistence (aof) or without (none)"
    restarts_server = "--redis-url"

    def variants(self, impl: Implementation) -> list[str | None]:
        return list(REDIS_VARIANTS)

    def state(self, spec: ScenarioSpec) -> StackState:
        return replace(super().state(spec), redis_persistent=spec.variant == "aof")

    def strike(self, stack: Stack, spec: ScenarioSpec, events: list[Event]) -> None:
        persistent = spec.variant == "aof"
        detail = "restart Redis " + ("with AOF persistence" if persistent else "without persistence")
        events.append(Event(t=time.time(), name=EventName.fault, detail=detail))
        stack.restart_redis(persistent)


class PostgresRestart(Fault):
    name = enums.Fault.postgres_restart
    summary = (
        "stop the private PostgreSQL with a fast shutdown (every client cut off; committed jobs are on disk) and "
        "start it again: the PostgreSQL queues only"
    )
    restarts_server = "--postgres-url"

    def applies(self, impl: Implementation, options: PluginOptions) -> bool:
        return impl.needs_postgres  # only where the jobs wait in PostgreSQL

    def strike(self, stack: Stack, spec: ScenarioSpec, events: list[Event]) -> None:
        events.append(Event(t=time.time(), name=EventName.fault, detail="restart PostgreSQL (fast shutdown)"))
        stack.restart_postgres()
