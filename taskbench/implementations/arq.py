"""arq: one asyncio worker process over Redis, `max_jobs` jobs at once, polling a sorted set."""

from __future__ import annotations

from taskbench.capacity import Capacity
from taskbench.implementations.base import (
    ASYNC_WORKLOADS,
    JSON_ON_EXTERNAL,
    Delivery,
    Implementation,
    event_loop_model,
    python_module,
)
from taskbench.record.results import ApiOptions, PluginOptions
from taskbench_wire.health import Beat, Health

MECHANISM = (
    "the job stays in arq's queue under an in-progress key that expires job_timeout + 10 s after it started "
    "(arq/worker.py Worker.start_jobs; never renewed; job_timeout = max_jobs × the redelivery timeout here), "
    "then any worker's poll takes it again and Worker.run_job counts the try against max_tries"
)


class ArqImplementation(Implementation):
    name = "arq"
    title = "arq"
    on_sigterm = (  # a deploy: what its worker does when its main process is sent SIGTERM
        "running jobs cancelled at once (job_completion_wait 0, arq's default; arq/worker.py handle_sig) and, "
        "with retry_jobs, run again by the next worker within max_tries"
    )
    packages = ("arq>=0.26",)
    queue_package = "arq"
    deliveries = (
        Delivery(
            "default",
            f"at least once (max_tries 5, arq's default): a dead worker's job runs again; {MECHANISM}",
            worker_crash="redelivered",
        ),
        Delivery(
            "max_tries=1",
            f"at most once: a dead worker's job is not run again but failed as 'max 1 retries exceeded'; {MECHANISM}",
            worker_crash="lost",
        ),
    )
    faults = ("api-crash", "api-deploy", "worker-crash", "redis-restart")  # one process: no child to kill

    def worker_argv(self, concurrency: int, options: PluginOptions) -> list[str]:
        # max_jobs comes from TASKBENCH_CONCURRENCY (WorkerSettings): arq's CLI has no flag for it.
        return python_module("arq", "taskbench_service.implementations.arq.WorkerSettings")

    def model(self, workload: str, jobs: int, cpu_count: int, workers: list[Beat], health: Health) -> Capacity:
        threads = [w.concurrency for w in workers]  # asyncio.to_thread on a pool of max_jobs threads
        return event_loop_model(workload, cpu_count, workers, threads, "max_jobs", "via asyncio.to_thread")

    def redis_patterns(self, namespace: str) -> tuple[str, ...]:
        return (f"arq:*:{namespace}:*",)

    def external_settings(self) -> dict[str, str]:
        return {"serializer": JSON_ON_EXTERNAL}

    def settings(self, concurrency: int, options: PluginOptions, api: ApiOptions) -> dict[str, str]:
        return {
            "worker": "one process, asyncio event loop (arq's only model; scale by running more workers)",
            "max_jobs": f"{concurrency} (--concurrency; arq default 10)",
            "sync jobs": f"asyncio.to_thread on the loop's default executor, set to {concurrency} threads "
            "(Python's default: min(32, cores + 4))",
            "poll_delay": "0.1 s (arq default 0.5 s: up to 0.5 s before a queued job starts, and a poll starts "
            "at most max_jobs jobs)",
            "queue_read_limit": "arq default, max(5 × max_jobs, 100) job ids per poll",
            "job_timeout": "max_jobs × the redelivery timeout max(5 s, 2 × duration + 2 s) (arq default 300 s): arq "
            "cancels a job at this timeout, and cpu / blocking_async jobs share one GIL / loop, up to max_jobs × "
            "duration each",
            "in-progress key TTL": "job_timeout + 10 s, fixed by arq: when a dead worker's job can be taken again "
            "(not configurable on its own)",
            "abandoned-job sweep": "none in arq: every poll re-reads the queue (restore interval not used)",
            "max_tries": "per delivery variant (default: 5, arq's default)",
            "retry_jobs": "on (arq's default): a job cancelled by the worker's shutdown is run again, within "
            "max_tries; a job's exception never is",
            "keep_result": "0 s: no result stored (arq default 3600 s)",
            "serializer": "pickle (arq's default)",
            "worker's Redis client": "reconnects and retries (5 tries, backoff 0.2 → 1 s): arq's poll loop exits on "
            "the first Redis error otherwise",
        }

    def redelivery_bound_s(self, timeout_s: float, concurrency: int, running: int) -> float:
        """job_timeout (max_jobs × timeout) + arq's fixed 10 s on the in-progress key, then one poll."""
        return concurrency * timeout_s + 10.0 + 5.0

    def how_it_runs(self, workload: str, options: PluginOptions) -> str:
        if workload in ASYNC_WORKLOADS:
            return "async def on the worker's event loop"
        if workload == "noop":
            return "returns at once on the worker's event loop"
        return "sync def via asyncio.to_thread in the worker's thread pool"


IMPLEMENTATION = ArqImplementation()
