"""PgQueuer: one asyncio worker process over PostgreSQL, `max_concurrent_tasks` jobs at once, woken by
LISTEN/NOTIFY (polling only as a fallback); records, ledger and heartbeats stay in Redis."""

from __future__ import annotations

from taskbench.capacity import Capacity
from taskbench.implementations.base import (
    ASYNC_WORKLOADS,
    Delivery,
    Implementation,
    event_loop_model,
    python_module,
)
from taskbench.record.results import ApiOptions, PluginOptions
from taskbench_wire.health import Beat, Health

SERVICE_MODULE = "taskbench_service.implementations.pgqueuer"
DEFAULT_BATCH_SIZE = 10  # PgQueuer's default; the service module caps it at concurrency // 2

MECHANISM = (
    "a picked job's row stays 'picked' with the heartbeat its worker writes every heartbeat_timeout / 2 "
    "(pgqueuer/core/heartbeat.py Heartbeat, flushed by HeartbeatBuffer); every dequeue also claims picked jobs "
    "whose heartbeat is older than heartbeat_timeout (pgqueuer/adapters/persistence/qb.py build_dequeue_query, "
    "CTE next_stale), without counting a try, so a dead worker's job runs again once its heartbeat is "
    "heartbeat_timeout old (the redelivery timeout here), at the next dequeue (a NOTIFY or the dequeue_timeout "
    "poll, 1 s here); PgQueuer 1.x has no setting that turns this off (0.x's per-entrypoint retry_timer is gone)"
)


def batch_size(concurrency: int) -> int:
    return min(DEFAULT_BATCH_SIZE, concurrency // 2) if concurrency >= 2 else 1


class PgqueuerImplementation(Implementation):
    name = "pgqueuer"
    title = "PgQueuer"
    on_sigterm = (  # a deploy: what its worker does when its main process is sent SIGTERM
        "stops dequeuing and awaits the jobs it dispatched, with no timeout (pgqueuer/core/qm.py "
        "QueueManager.run); a job left 'picked' by a killed worker is taken again once its heartbeat is "
        "heartbeat_timeout old"
    )
    renews_on_loop = (  # blocked-loop
        "a picked job's heartbeat sent every heartbeat_timeout / 2 by an asyncio task on the worker's loop "
        "(pgqueuer/core/heartbeat.py Heartbeat.send_heartbeat)"
    )
    # asyncpg: the driver of PgQueuer's README and examples (psycopg is the alternative extra).
    packages = ("pgqueuer[asyncpg]>=1.0",)
    queue_package = "pgqueuer"
    needs_postgres = True
    deliveries = (
        Delivery(
            "default",
            f"at least once: a dead worker's job runs again after the redelivery timeout (+ up to 1 s); {MECHANISM}",
            worker_crash="redelivered",
        ),
    )
    # One process, no child to kill; records are in Redis. (postgres-restart: base.applies, by needs_postgres.)
    faults = ("api-crash", "api-deploy", "worker-crash", "redis-restart")

    def worker_argv(self, concurrency: int, options: PluginOptions) -> list[str]:
        # `pgqueuer.run` (what `pgq run` calls) with the values `pgq run` takes as flags, read from the
        # environment: its heartbeat timeout follows the redelivery timeout the harness sets per scenario.
        return python_module(SERVICE_MODULE, "worker")

    def setup_argv(self) -> list[str]:
        # Creates the namespace's PostgreSQL schema (taskbench.stack.postgres_server.schema_name) unless it is there,
        # and installs PgQueuer's objects in it unless its table is there.
        return python_module(SERVICE_MODULE, "setup")

    def model(self, workload: str, jobs: int, cpu_count: int, workers: list[Beat], health: Health) -> Capacity:
        threads = [w.concurrency for w in workers]  # asyncio.to_thread on a pool sized to it
        return event_loop_model(workload, cpu_count, workers, threads, "max_concurrent_tasks", "via asyncio.to_thread")

    def settings(self, concurrency: int, options: PluginOptions, api: ApiOptions) -> dict[str, str]:
        batch = batch_size(concurrency)
        if concurrency >= 2:
            cap = (
                f"max_concurrent_tasks {concurrency} (--concurrency; PgQueuer default: unlimited): this worker's cap "
                "on picked jobs, enforced by the dequeue query; entrypoint concurrency_limit 0 (unlimited)"
            )
        else:
            cap = (
                "entrypoint concurrency_limit 1 (--concurrency 1; enforced in SQL across all workers): "
                "max_concurrent_tasks must be ≥ 2 × batch_size, so it cannot say 1"
            )
        return {
            "worker": "one process, asyncio event loop on uvloop (`pgq run`'s), a QueueManager over one asyncpg "
            "connection; run by `pgqueuer.run`, the function behind `pgq run`",
            "concurrency": cap,
            "batch_size": f"{batch} (PgQueuer default 10, capped at concurrency / 2: QueueManager.run requires "
            "max_concurrent_tasks ≥ 2 × batch_size): jobs claimed per dequeue statement",
            "sync jobs": f"PgQueuer 1.x runs async entrypoints only: sync code via asyncio.to_thread on the loop's "
            f"default executor, set to {concurrency} threads (Python's default: min(32, cores + 4))",
            "dequeue": "LISTEN/NOTIFY: an INSERT's trigger wakes the worker, which claims with UPDATE … FOR UPDATE "
            "SKIP LOCKED",
            "dequeue_timeout": "1 s, the restore interval (PgQueuer default 30 s): the polling fallback without a "
            "NOTIFY, and when a dead worker's stale jobs are found",
            "heartbeat_timeout": "the redelivery timeout max(5 s, 2 × duration + 2 s) (PgQueuer default 30 s): a "
            "picked job whose heartbeat is older is picked again; heartbeats every heartbeat_timeout / 2, "
            "written in batches every heartbeat_timeout / 8",
            "retries": "none: a job's exception deletes it (on_failure 'delete', the default executor); only a "
            "stale heartbeat re-runs a job",
            "job status log": "buffered, flushed every 0.1 s or batch_size jobs (PgQueuer's fixed values)",
            "listener health check": "PgQueuer's NOTIFY round trip every 10 s; shutdown_on_listener_failure off "
            "(default)",
            "log aggregation": "every 30 s (PgQueuer default)",
            "API enqueue": "Queries.enqueue over an asyncpg pool of 10 connections (asyncpg's default size)",
            "schema": "pgq install's, durable (logged) tables, installed once before the API and worker start, in the "
            "PostgreSQL schema of the stack's namespace (taskbench, or taskbench_<stack id> on a --postgres-url "
            "server: never a user's own PgQueuer in public), its channel <schema>.ch_pgqueuer",
        }

    def redelivery_bound_s(self, timeout_s: float, concurrency: int, running: int) -> float:
        """The heartbeat timeout, the 1 s dequeue poll that finds the stale job, and the worker's restart."""
        return timeout_s + 1.0 + 5.0

    def how_it_runs(self, workload: str, options: PluginOptions) -> str:
        if workload in ASYNC_WORKLOADS:
            return "async def on the worker's event loop"
        if workload == "noop":
            return "returns at once in async def on the worker's event loop"
        return "sync code via asyncio.to_thread in the worker's thread pool"


IMPLEMENTATION = PgqueuerImplementation()
