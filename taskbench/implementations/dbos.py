"""DBOS (DBOS Transact): durable workflows in a library, its queue rows of PostgreSQL polled by one worker process,
`worker_concurrency` at once; a dead worker's workflows recovered by the next worker with its executor id, from
their last completed step. Records, ledger and heartbeats stay in Redis."""

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

SERVICE_MODULE = "taskbench_service.implementations.dbos"

MECHANISM = (
    "a dequeued workflow's row is PENDING under its worker's executor id (`local`, DBOS's default outside its "
    "Conductor and Cloud); a worker that launches with that id re-enqueues them at start-up (dbos/_recovery.py "
    "startup_recovery_thread, called by DBOS._launch) and runs them again from their last completed step, up to "
    "max_recovery_attempts (100); nothing times out: they wait for the next worker, not for a timeout"
)


class DbosImplementation(Implementation):
    name = "dbos"
    reads_redelivery_timeout = False  # nothing of its worker derives from it: no restart when it changes
    title = "DBOS"
    on_sigterm = (  # a deploy: what its worker does when its main process is sent SIGTERM
        "the process ends at once (DBOS installs no signal handler; its documented worker blocks until killed): "
        "running workflows stay PENDING and the next worker recovers them at launch, from their last step"
    )
    packages = ("dbos>=3.4",)
    queue_package = "dbos"
    needs_postgres = True
    deliveries = (
        Delivery(
            "default",
            f"at least once (durable execution): a dead worker's workflow runs again when a worker starts; {MECHANISM}",
            worker_crash="redelivered",
        ),
    )
    faults = ("api-crash", "api-deploy", "worker-crash", "redis-restart")  # one process: no child to kill

    def worker_argv(self, concurrency: int, options: PluginOptions) -> list[str]:
        # Its concurrency and URLs come from the environment (TASKBENCH_CONCURRENCY, TASKBENCH_POSTGRES_URL).
        return python_module(SERVICE_MODULE, "worker")

    def setup_argv(self) -> list[str]:
        # Creates the namespace's PostgreSQL schema unless it is there (refusing one not taskbench's), then runs
        # DBOS's migrations in it (DBOS.migrate), so the API's DBOSClient, which never migrates, finds its tables.
        return python_module(SERVICE_MODULE, "setup")

    def model(self, workload: str, jobs: int, cpu_count: int, workers: list[Beat], health: Health) -> Capacity:
        threads = [w.concurrency for w in workers]  # its thread pool is unbounded; worker_concurrency bounds it
        return event_loop_model(workload, cpu_count, workers, threads, "worker_concurrency", "in DBOS's threads")

    def settings(self, concurrency: int, options: PluginOptions, api: ApiOptions) -> dict[str, str]:
        return {
            "worker": "one process: DBOS.launch(), the queue registered, the process kept alive (DBOS's docs)",
            "concurrency": f"worker_concurrency {concurrency} (--concurrency; DBOS default: no limit)",
            "sync jobs": "def workflows in DBOS's thread pool (unbounded; worker_concurrency bounds them)",
            "async jobs": "async def workflows on DBOS's own event loop thread",
            "dequeue": "a poll every 0.1 s (DBOS default 1 s; nothing wakes it): SELECT … FOR UPDATE SKIP LOCKED of "
            "what the free slots allow, in a thread of its own",
            "prefetch": "none: a poll takes rows for the free slots only",
            "recovery": "at a worker's launch, of the workflows PENDING under its executor id (`local`); "
            "max_recovery_attempts 100 (DBOS default); no redelivery timeout",
            "API's client": "DBOSClient (DBOS's way to enqueue from outside the application), pool of 5 (its "
            "default), retry_connection_errors off (a PostgreSQL that is down answers 503)",
            "serializer": "pickle (DBOS default) on taskbench's private PostgreSQL; its portable JSON on one named "
            "by --postgres-url",
            "schema": "DBOS's system tables in the namespace's PostgreSQL schema",
        }

    def redelivery_bound_s(self, timeout_s: float, concurrency: int, running: int) -> float:
        """Recovery waits for no timeout: the next worker's launch (the restart, which the bound starts from), then
        its first polls."""
        return 5.0

    def how_it_runs(self, workload: str, options: PluginOptions) -> str:
        if workload in ASYNC_WORKLOADS:
            return "async def workflow on DBOS's event loop"
        if workload == "noop":
            return "async def workflow that returns at once, on DBOS's event loop"
        return "def workflow in DBOS's thread pool"


IMPLEMENTATION = DbosImplementation()
