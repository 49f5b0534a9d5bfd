"""SAQ: one asyncio worker process over Redis, `concurrency` jobs at once, woken by BLMOVE (no polling)."""

from __future__ import annotations

from taskbench.capacity import Capacity
from taskbench.implementations.base import ASYNC_WORKLOADS, Delivery, Implementation, event_loop_model, python_module
from taskbench.record.results import ApiOptions, PluginOptions
from taskbench_wire.health import Beat, Health, as_beats


class SaqBeat(Beat):
    sync_threads: int | None = None  # the thread pool sync jobs run in


MECHANISM = (
    "the job's id stays in SAQ's active list; a worker's sweep (every 1 s here) finds it once it is older than "
    "its timeout (the redelivery timeout here), aborts it and waits a hard-coded 5 s for a worker to confirm, "
    "one stuck job after another, then re-queues it if retries > attempts, else finishes it ABORTED 'swept' "
    "(saq/queue/redis.py RedisQueue.sweep, saq/job.py Job.stuck and Job.retryable)"
)


def _default_sync_threads(cpu_count: int) -> int:
    return min(32, cpu_count + 4)  # ThreadPoolExecutor() in saq.Worker.__init__: Python's default size


class SaqImplementation(Implementation):
    name = "saq"
    title = "SAQ"
    timeout_step_s = 1.0  # its timeouts are whole seconds (taskbench_service: max(1, ceil(redelivery timeout)))
    outliving_timeout = (
        "it is cancelled at its timeout (the job's timeout, the redelivery timeout here; saq/worker.py "
        "Worker.process) and retried if its retries allow; a sync job goes on in its thread, so a retry runs "
        "it twice"
    )
    on_sigterm = (  # a deploy: what its worker does when its main process is sent SIGTERM
        "running jobs cancelled at once (shutdown_grace_period_s unset: 0; saq/worker.py Worker.stop) and "
        "retried after cancellation_hard_deadline_s (1 s) whatever their retries"
    )
    packages = ("saq[redis]>=0.24",)
    queue_package = "saq"
    beat_model = SaqBeat
    deliveries = (
        Delivery(
            "default",
            f"at most once (retries 1, SAQ's default): a dead worker's job is marked aborted, never run again; "
            f"{MECHANISM}",
            worker_crash="lost",
        ),
        Delivery(
            "retries=2",
            "at least once: a dead worker's k-th job runs again after its timeout + up to 1 s + k × 5 s; "
            f"{MECHANISM}. "
            "retries also re-runs a job that raised, so the job function makes its failure final "
            "(retries = attempts): only the sweep re-runs a job",
            worker_crash="redelivered",
        ),
    )
    faults = ("api-crash", "api-deploy", "worker-crash", "redis-restart")  # --workers 1: no child process to kill

    def worker_argv(self, concurrency: int, options: PluginOptions) -> list[str]:
        # `concurrency` comes from TASKBENCH_CONCURRENCY (worker_settings): SAQ's CLI has no flag for it.
        return python_module("saq", "taskbench_service.implementations.saq.worker_settings", "--workers", "1")

    def model(self, workload: str, jobs: int, cpu_count: int, workers: list[Beat], health: Health) -> Capacity:
        threads = [w.sync_threads or _default_sync_threads(cpu_count) for w in as_beats(SaqBeat, workers)]
        return event_loop_model(workload, cpu_count, workers, threads, "concurrency", "on the worker's thread pool")

    def redis_patterns(self, namespace: str) -> tuple[str, ...]:
        return (
            f"saq:{namespace}:*",
            f"saq:job:{namespace}:*",
        )

    def settings(self, concurrency: int, options: PluginOptions, api: ApiOptions) -> dict[str, str]:
        return {
            "worker": "one process (`--workers 1`), asyncio event loop; SAQ's `--workers N` forks N unsupervised "
            "copies (a dead one is not replaced)",
            "concurrency": f"{concurrency} (--concurrency; SAQ default 10): jobs at once, each a task on the loop",
            "sync jobs": "SAQ's own way: sync def on the Worker's ThreadPoolExecutor(), Python's default size "
            "min(32, cores + 4), not configurable",
            "dequeue": "BLMOVE queued → active, dequeue_timeout 0: blocks, no polling",
            "timeout": "per job, stamped by the worker: max(5 s, 2 × job duration + 2 s), the redelivery timeout "
            f"(SAQ default 10 s), × {concurrency} for cpu and blocking_async, × ⌈{concurrency} / pool threads⌉ "
            "for sleep and memory (SAQ counts from dequeue, and these jobs wait for the GIL, the loop or a "
            "thread); SAQ cancels a job past it, and its sweep calls it stuck",
            "heartbeat": "0, off (SAQ default): nothing in a job touches it",
            "sweep": "every 1 s, the restore interval (SAQ default 60 s); it aborts stuck jobs one by one, waiting "
            "a fixed 5 s for each (RedisQueue.sweep abort=5.0, not configurable)",
            "retries": "per delivery variant (default: 1, SAQ's default); a job's own exception is never retried",
            "ttl": "-1: SAQ deletes its job record at finish (default 600 s)",
            "API enqueue": "RedisQueue, max_concurrent_ops 20 (SAQ default)",
            "worker's Redis client": "retries a lost connection for ~9 s (rides out a Redis restart)",
        }

    def redelivery_bound_s(self, timeout_s: float, concurrency: int, running: int) -> float:
        """The job's timeout, a 1 s sweep, then SAQ's fixed 5 s abort wait for each stuck job in turn."""
        return timeout_s + 1.0 + 5.0 * running + 5.0

    def how_it_runs(self, workload: str, options: PluginOptions) -> str:
        if workload in ASYNC_WORKLOADS:
            return "async def on the worker's event loop"
        if workload == "noop":
            return "returns at once in async def on the worker's event loop"
        return "sync def on the SAQ worker's thread pool"


IMPLEMENTATION = SaqImplementation()
