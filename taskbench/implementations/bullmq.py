"""BullMQ for Python: one asyncio worker process over Redis lists (the Node queue's layout and Lua scripts),
`concurrency` jobs at once, woken by a blocking BZPOPMIN; a dead worker's job moved back by the stalled-job check
once its lock has expired, at most `maxStalledCount` times."""

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

MECHANISM = (
    "a job taken moves to the active list with a lock key that expires after lockDuration (the redelivery timeout "
    "here), renewed every lockDuration / 2 by the worker's lock manager on its event loop (bullmq/lock_manager.py); "
    "every live worker runs the stalled-job check every stalledInterval (commands/moveStalledJobsToWait-9.lua): an "
    "active job without its lock is marked stalled at one check and, still unlocked at the next, moved back to wait "
    "and run again, or failed once it has stalled more than maxStalledCount times"
)


class BullmqImplementation(Implementation):
    name = "bullmq"
    title = "BullMQ"
    on_sigterm = (  # a deploy: what its worker does when its main process is sent SIGTERM
        "Worker.close(), BullMQ's documented graceful shutdown (its Python port has no CLI; its guide writes the "
        "signal handler): no new job, the running ones awaited; a SIGKILL after the grace leaves them active until "
        "their lock expires and a stalled-job check moves them back"
    )
    renews_on_loop = (  # blocked-loop
        "its locks extended every lockDuration / 2 by the lock manager's task on the worker's event loop "
        "(bullmq/lock_manager.py), which also runs the stalled-job check"
    )
    # Right after a pause (SIGSTOP, SIGCONT) its worker took its first job 1.1–1.6 s late, every other queue's
    # within 0.1 s; 3 s after, within 0.01 s (this VM, 2026-12-07, 2 jobs after 10, 20 and 70 s paused).
    settle_after_pause_s = 3.0
    packages = ("bullmq>=3.4",)
    queue_package = "bullmq"
    redis_min_version = (6, 2)  # BullMQ checks for ≥ 5; its blocking BZPOPMIN with a fractional timeout wants 6
    deliveries = (
        Delivery(
            "default",
            f"at least once (maxStalledCount 1, BullMQ's default): a dead worker's job runs again, once; {MECHANISM}",
            worker_crash="redelivered",
        ),
        Delivery(
            "maxStalledCount=0",
            f"at most once: a dead worker's job is failed 'job stalled more than allowable limit'; {MECHANISM}",
            worker_crash="lost",
        ),
    )
    faults = ("api-crash", "api-deploy", "worker-crash", "redis-restart")  # one process: no child to kill

    def worker_argv(self, concurrency: int, options: PluginOptions) -> list[str]:
        # Its concurrency and Redis URL come from the environment (TASKBENCH_CONCURRENCY, TASKBENCH_REDIS_URL).
        return python_module("taskbench_service.implementations.bullmq")

    def model(self, workload: str, jobs: int, cpu_count: int, workers: list[Beat], health: Health) -> Capacity:
        threads = [w.concurrency for w in workers]  # its thread pool is sized to concurrency
        return event_loop_model(workload, cpu_count, workers, threads, "concurrency", "via asyncio.to_thread")

    def redis_patterns(self, namespace: str) -> tuple[str, ...]:
        return (f"bull:{namespace}:*",)

    def settings(self, concurrency: int, options: PluginOptions, api: ApiOptions) -> dict[str, str]:
        return {
            "worker": "one process, asyncio: a BullMQ Worker as its guide writes one (SIGTERM → close())",
            "concurrency": f"{concurrency} (--concurrency; BullMQ default 1): jobs at once, each a task on the loop",
            "sync jobs": f"asyncio.to_thread in the loop's thread pool, sized to concurrency ({concurrency})",
            "prefetch": "none: a job is taken (moved to active) only for a free slot",
            "dequeue": "BZPOPMIN on the queue's marker, then the moveToActive script (no polling); drainDelay 5 s "
            "(BullMQ default): how long one blocking wait lasts on an empty queue",
            "lockDuration": "the redelivery timeout max(5 s, 2 × job duration + 2 s) with a fault, else 3600 s "
            "(BullMQ default 30 s): a dead worker's job is taken back once its lock expires; renewed every half of "
            "it on the worker's event loop (a job that blocks the loop longer loses its lock and can run twice)",
            "stalledInterval": "1 s (BullMQ default 30 s), taskbench's sweep interval: the stalled-job check; a "
            "job stalls at one check and moves back at the next",
            "maxStalledCount": "per delivery variant (default 1, BullMQ's)",
            "runRetryDelay": "15 s (BullMQ default): after a connection error (a Redis restart, a timeout) the worker "
            "waits this long before it asks Redis for a job again",
            "attempts": "1 (BullMQ default): a job's own exception fails it",
            "keep jobs": "removeOnComplete: last 1 000, removeOnFail: last 5 000 (BullMQ keeps every finished job "
            "for ever by default; its guide advises auto-removal)",
            "API's Redis client": "one connection per Queue (BullMQ for Python's single_connection_client): the "
            "API's concurrent adds take turns on it; redis-py retries 20 times with backoff up to 20 s (BullMQ's "
            "setting), bounded by the API's 5 s publish timeout",
            "serializer": "JSON (BullMQ's data)",
        }

    def redelivery_bound_s(self, timeout_s: float, concurrency: int, running: int) -> float:
        """The lock's expiry (at most lockDuration after its last renewal), then two stalled-job checks (1 s each
        here), plus the worker's start."""
        return timeout_s + 2 * 1.0 + 5.0

    def how_it_runs(self, workload: str, options: PluginOptions) -> str:
        if workload in ASYNC_WORKLOADS:
            return "async def on the worker's event loop"
        if workload == "noop":
            return "returns at once in async def on the worker's event loop"
        return "sync def via asyncio.to_thread in the worker's thread pool"


IMPLEMENTATION = BullmqImplementation()
