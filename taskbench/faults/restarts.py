"""Servers restarted: the stack's private Redis (without persistence, or with AOF) and PostgreSQL; and each of them
dropping every client's connection without a restart (a failover, a proxy's restart, an administrator's
pg_terminate_backend)."""

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


class RedisConnectionsKilled(Fault):
    """Every connection dropped, the server up: do the queue's API and worker reconnect, and what of the jobs
    running and queued? (Its clients see a reset, as in a failover or behind a restarted proxy.)"""

    name = enums.Fault.redis_connections_killed
    summary = (
        "the private Redis drops every client connection at once (CLIENT KILL TYPE normal), its data and its "
        "process untouched, as a failover or a proxy's restart does: the queues on Redis"
    )
    restarts_server = "--redis-url"  # someone else's Redis: its other clients' connections would go too

    def applies(self, impl: Implementation, options: PluginOptions) -> bool:
        return impl.has_worker and not impl.needs_postgres

    def strike(self, stack: Stack, spec: ScenarioSpec, events: list[Event]) -> None:
        at = time.time()
        dropped = stack.drop_redis_connections()
        events.append(Event(t=at, name=EventName.fault, detail=f"CLIENT KILL: {dropped} Redis connections dropped"))

    def conclude(self, stack: Stack, spec: ScenarioSpec, events: list[Event]) -> None:
        """A lock whose holder lost its connection mid-way stays until it expires (kombu's restore lock: 300 s, no
        redelivery meanwhile): said, with the time it had left, and released so the next scenario starts clean."""
        for key, left_s in stack.release_stranded_locks(spec.implementation).items():
            detail = f"{key} still held {left_s:.0f} s after the drop (released by taskbench at the scenario's end)"
            events.append(Event(t=time.time(), name=EventName.lock_stranded, detail=detail))


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


class PostgresConnectionsKilled(Fault):
    """Every backend ended, the server up: do the PostgreSQL queues' API and worker reconnect, and their jobs?"""

    name = enums.Fault.postgres_connections_killed
    summary = (
        "the private PostgreSQL ends every client's backend at once (pg_terminate_backend), its data and its "
        "process untouched, as a failover, a pooler's restart or an administrator does: the PostgreSQL queues"
    )
    restarts_server = "--postgres-url"  # someone else's PostgreSQL: its other clients' sessions would go too

    def applies(self, impl: Implementation, options: PluginOptions) -> bool:
        return impl.needs_postgres

    def strike(self, stack: Stack, spec: ScenarioSpec, events: list[Event]) -> None:
        at = time.time()
        ended = stack.drop_postgres_connections()
        events.append(Event(t=at, name=EventName.fault, detail=f"pg_terminate_backend: {ended} sessions ended"))
