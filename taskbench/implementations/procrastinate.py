"""procrastinate: jobs in PostgreSQL, one asyncio worker process, `concurrency` jobs at once, woken by
LISTEN/NOTIFY with a polling fallback. The service module's docstring says how it runs and what a worker's
death does, from the source."""

from __future__ import annotations

from taskbench.capacity import Capacity
from taskbench.implementations.base import ASYNC_WORKLOADS, Delivery, Implementation, event_loop_model, python_module
from taskbench.record.results import ApiOptions, PluginOptions
from taskbench_wire.health import Beat, Health, as_beats

SERVICE_MODULE = "taskbench_service.implementations.procrastinate"
APP = f"{SERVICE_MODULE}.app"
POOL_SIZE = 4  # psycopg_pool.AsyncConnectionPool's default min_size (max_size = min_size), in the API and the worker
FETCH_POLL_S = 5.0  # fetch_job_polling_interval, procrastinate's default
RETRY_LOOP_S = 1.0  # the harness's restore interval: the retry-stalled loop's period

MECHANISM = (
    "a SIGKILLed worker's job stays `doing` in procrastinate_jobs: only its own worker would finish it "
    "(procrastinate/worker.py Worker._process_job → JobManager.finish_job); workers beat into "
    "procrastinate_workers every update_heartbeat_interval, and JobManager.get_stalled_jobs"
    "(seconds_since_heartbeat) lists the `doing` jobs of workers whose beat is older than that, which "
    "JobManager.retry_job makes `todo` again (procrastinate_retry_job_v2; an UPDATE, which notifies no one, so "
    "the next fetch poll takes it). Nothing calls them unless the user schedules it (docs: 'Retry stalled jobs', "
    "a periodic task)"
)


class ProcrastinateBeat(Beat):
    sync_threads: int | None = None  # the loop's default thread pool, which runs sync tasks


def _default_sync_threads(cpu_count: int) -> int:
    return min(32, cpu_count + 4)  # the loop's default ThreadPoolExecutor: Python's default size


class ProcrastinateImplementation(Implementation):
    name = "procrastinate"
    title = "procrastinate"
    on_sigterm = (  # a deploy: what its worker does when its main process is sent SIGTERM
        "stops fetching (it never prefetches) and waits for running jobs (shutdown_graceful_timeout: no limit "
        "by default), then aborts what is left (procrastinate/worker.py stop)"
    )
    renews_on_loop = (  # blocked-loop
        "its worker's heartbeat updated by an asyncio task on its loop (procrastinate/worker.py "
        "Worker._update_heartbeat); only the retry-stalled delivery takes back the jobs of a stale heartbeat"
    )
    packages = ("procrastinate>=3.0", "psycopg[binary]>=3.1")
    queue_package = "procrastinate"
    needs_postgres = True
    beat_model = ProcrastinateBeat
    deliveries = (
        Delivery(
            "default",
            "at most once (procrastinate's default: no stalled-job task): a dead worker's job stays `doing` "
            f"for ever, never run again; {MECHANISM}",
            worker_crash="lost",
        ),
        Delivery(
            "retry-stalled",
            "at least once: every worker runs the documented stalled-job retry (get_stalled_jobs with "
            "seconds_since_heartbeat = the redelivery timeout, then retry_job) every 1 s instead of a cron "
            "minute, so a dead worker's job runs again within the timeout + 1 s + a 5 s fetch poll; "
            f"{MECHANISM}. A live worker whose event loop is blocked longer than 2/3 of the timeout "
            "(blocking_async) misses its heartbeats and would see its jobs run twice",
            worker_crash="redelivered",
        ),
    )
    faults = ("api-crash", "api-deploy", "worker-crash", "redis-restart")  # one process: no child to kill

    def worker_argv(self, concurrency: int, options: PluginOptions) -> list[str]:
        return python_module("procrastinate", f"--app={APP}", "worker", "--concurrency", str(concurrency))

    def setup_argv(self) -> list[str]:
        # Creates the namespace's PostgreSQL schema (taskbench.stack.postgres_server.schema_name) unless it is there,
        # and installs procrastinate's schema.sql in it (its channels prefixed) unless its tables are there.
        return python_module(SERVICE_MODULE, "setup")

    def model(self, workload: str, jobs: int, cpu_count: int, workers: list[Beat], health: Health) -> Capacity:
        threads = [w.sync_threads or _default_sync_threads(cpu_count) for w in as_beats(ProcrastinateBeat, workers)]
        return event_loop_model(workload, cpu_count, workers, threads, "concurrency", "in the loop's default pool")

    def settings(self, concurrency: int, options: PluginOptions, api: ApiOptions) -> dict[str, str]:
        return {
            "worker": "one process (procrastinate's CLI `worker`), asyncio event loop; scale by running more workers",
            "concurrency": f"{concurrency} (--concurrency; procrastinate default 1): jobs at once, an asyncio "
            "semaphore",
            "sync jobs": "procrastinate's own way: utils.sync_to_async (asgiref, thread_sensitive=False) on the "
            "loop's default ThreadPoolExecutor, Python's default size min(32, cores + 4), not configurable",
            "new jobs": "LISTEN/NOTIFY on (listen_notify, default): the INSERT's trigger wakes the worker; a "
            "connection of its own outside the pool",
            "fetch_job_polling_interval": f"{FETCH_POLL_S:g} s (default): the fallback poll, and what finds a "
            "retried job (its UPDATE notifies no one)",
            "abort_job_polling_interval": "5 s (default)",
            "update_heartbeat_interval": "min(10 s, the redelivery timeout / 3) (default 10 s): the worker's row in "
            "procrastinate_workers",
            "stalled_worker_timeout": "the redelivery timeout max(5 s, 2 × duration + 2 s) (default 30 s): a worker "
            "prunes older workers' rows at start-up",
            "stalled-job retry": "default: none (procrastinate runs none). retry-stalled: an asyncio task in every "
            f"worker, every {RETRY_LOOP_S:g} s (the restore interval), calls get_stalled_jobs(seconds_since_"
            "heartbeat = the redelivery timeout) and retry_job for each: the documented periodic task's body "
            "(docs 'Retry stalled jobs': @app.periodic(cron='*/10 * * * *')), without cron's minute granularity "
            "or its queueing lock (a second worker's retry of the same job fails and is ignored)",
            "delete_jobs": "always (default never): a finished job's row is deleted; taskbench keeps its own records",
            "retries": "none (a task's default): a job's own exception fails it for good",
            "connection pools": f"psycopg_pool min_size = max_size = {POOL_SIZE} (its default): the API holds "
            f"{POOL_SIZE} PostgreSQL connections, the worker {POOL_SIZE} + 1 (LISTEN)",
            "purge": "DELETE the todo jobs, and the doing jobs of workers that missed two heartbeats (not cancel)",
            "schema": "procrastinate's schema.sql, installed once before the API and worker start, in the PostgreSQL "
            "schema of the stack's namespace (taskbench, or taskbench_<stack id> on a --postgres-url server: never a "
            "user's own procrastinate in public), reached through search_path; its channels prefixed <schema>.",
        }

    def redelivery_bound_s(self, timeout_s: float, concurrency: int, running: int) -> float:
        """The heartbeat's age past the timeout, the retry loop's period, then the fetch poll (a retried job is
        not notified), and the restarted worker's start-up (the only worker: it runs the loop)."""
        return timeout_s + RETRY_LOOP_S + FETCH_POLL_S + 5.0

    def how_it_runs(self, workload: str, options: PluginOptions) -> str:
        if workload in ASYNC_WORKLOADS:
            return "async task on the worker's event loop"
        if workload == "noop":
            return "returns at once in an async task on the worker's event loop"
        return "sync task in the procrastinate worker's default thread pool (asgiref sync_to_async)"


IMPLEMENTATION = ProcrastinateImplementation()
