"""streaQ: one asyncio (anyio) worker process over Redis streams, `concurrency` tasks at once, woken by a
blocking XREADGROUP of its consumer group (no polling for new tasks)."""

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
from taskbench_wire.health import Beat, Health, as_beats


class StreaqBeat(Beat):
    sync_threads: int | None = None  # streaQ's sync_concurrency: the threads sync tasks run in


MECHANISM = (
    "a task read with XREADGROUP stays in the consumer group's pending list until its worker XACKs it; a live "
    "worker re-XCLAIMs its running tasks every 0.9 × idle_timeout (Worker.renew_idle_timeouts), so a dead "
    "worker's tasks (running and prefetched) go idle, and once idle for idle_timeout (the redelivery timeout "
    "here) any worker's next read takes them back with XAUTOCLAIM (streaq.lua read_streams, called by "
    "Worker.producer before each blocking XREADGROUP, itself bounded by idle_timeout); Worker.run_task then "
    "counts the try (INCR of task:retry:<id>, a try is counted when a task starts, not when it is read) and "
    "past max_tries fails it 'Max retry attempts reached' without running it"
)


class StreaqImplementation(Implementation):
    name = "streaq"
    title = "streaQ"
    on_sigterm = (  # a deploy: what its worker does when its main process is sent SIGTERM
        "running tasks kept for grace_period (0 by default) then relinquished: made claimable at once and "
        "retried; prefetched messages stay pending until idle_timeout (streaq/worker.py signal_handler)"
    )
    renews_on_loop = (  # blocked-loop
        "its running tasks re-XCLAIMed every 0.9 × idle_timeout by a task on the worker's anyio loop "
        "(streaq/worker.py Worker.renew_idle_timeouts)"
    )
    packages = ("streaq>=7.2",)
    queue_package = "streaq"
    redis_min_version = (7, 0)  # its Lua library is loaded with FUNCTION LOAD ("unknown command" on 6.2)
    beat_model = StreaqBeat
    deliveries = (
        Delivery(
            "default",
            f"at least once (max_tries 3, streaQ's default): a dead worker's task runs again; {MECHANISM}",
            worker_crash="redelivered",
        ),
        Delivery(
            "max_tries=1",
            "at most once for a task that had started: a dead worker's running task is failed, never run "
            f"again (its prefetched, unstarted tasks still run, after the same wait); {MECHANISM}",
            worker_crash="lost",
        ),
    )
    faults = ("api-crash", "api-deploy", "worker-crash", "redis-restart")  # --workers 1: no child process to kill

    def worker_argv(self, concurrency: int, options: PluginOptions) -> list[str]:
        # `concurrency` comes from TASKBENCH_CONCURRENCY (the Worker object): streaQ's CLI has no flag for it.
        return python_module("streaq", "run", "taskbench_service.implementations.streaq:worker", "--workers", "1")

    def model(self, workload: str, jobs: int, cpu_count: int, workers: list[Beat], health: Health) -> Capacity:
        threads = [w.sync_threads or w.concurrency for w in as_beats(StreaqBeat, workers)]
        return event_loop_model(workload, cpu_count, workers, threads, "concurrency", "in anyio worker threads")

    def redis_patterns(self, namespace: str) -> tuple[str, ...]:
        return (f"streaq:{namespace}:*",)

    def external_settings(self) -> dict[str, str]:
        return {"serializer": JSON_ON_EXTERNAL}

    def settings(self, concurrency: int, options: PluginOptions, api: ApiOptions) -> dict[str, str]:
        return {
            "worker": "one process (`streaq run --workers 1`), anyio on asyncio; streaQ's `--workers N` starts "
            "N unsupervised copies with multiprocessing (a dead one is not replaced)",
            "concurrency": f"{concurrency} (--concurrency; streaQ default 16): tasks at once, each a task on the loop",
            "sync jobs": f"streaQ's own way: sync def in anyio worker threads, sync_concurrency {concurrency} "
            "(streaQ's default: the same as concurrency)",
            "prefetch": f"streaQ default: up to 2 × concurrency = {2 * concurrency} tasks read and held by the "
            f"worker ({concurrency} running + {concurrency} waiting in memory, pending in the consumer group)",
            "dequeue": "XREADGROUP BLOCK idle_timeout: a task starts as soon as it is added; before each blocking "
            "read, an XAUTOCLAIM of tasks idle for idle_timeout and a non-blocking XREADGROUP (Redis < 8.4; on "
            "8.4+ XREADGROUP CLAIM does both)",
            "idle_timeout": "the redelivery timeout max(5 s, 2 × job duration + 2 s) with a fault, else 3600 s "
            "(streaQ default 60 s): how long a dead worker's task (or a prefetched one left waiting) stays "
            "pending before another read reclaims it; a prefetched task that waits longer than that behind "
            "jobs sharing the GIL or a blocked loop (cpu, blocking_async at high concurrency) is read again by "
            "its own worker, as streaQ documents, and may run twice",
            "reclaim": "no sweep of its own: XAUTOCLAIM at each read, so within idle_timeout (one blocking read) "
            "after the task went idle; the restore interval is not used",
            "renewal": "every 0.9 × idle_timeout the worker XCLAIMs its running tasks (resets their idle time) and "
            "writes its health key",
            "delayed tasks": "every 0.5 s (fixed): delayed/retried tasks moved to the stream, aborts read",
            "task timeout": "none (streaQ default): a task is never cancelled for its duration",
            "max_tries": "per delivery variant (default: 3, streaQ's default); a task's own exception never "
            "re-runs it (only StreaqRetry, which taskbench never raises)",
            "ttl": "0: no result stored (streaQ default 300 s); taskbench keeps its own records",
            "serializer": "pickle (streaQ default)",
            "logging": "streaQ's CLI default, INFO: a line as each task starts and one as it ends",
            "worker's Redis client": "coredis, retries a lost connection for ~9 s (streaQ leaves coredis' "
            "default, 2 retries 10 ms apart); without persistence a Redis restart still ends the worker: "
            "its Lua library and consumer group are gone until it starts again",
        }

    def redelivery_bound_s(self, timeout_s: float, concurrency: int, running: int) -> float:
        """idle_timeout for the task to go idle, then up to one blocking read (idle_timeout) before the next
        XAUTOCLAIM, plus the worker's restart."""
        return 2 * timeout_s + 5.0

    def how_it_runs(self, workload: str, options: PluginOptions) -> str:
        if workload in ASYNC_WORKLOADS:
            return "async def on the worker's event loop"
        if workload == "noop":
            return "returns at once in async def on the worker's event loop"
        return "sync def in the streaQ worker's anyio threads (sync_concurrency = concurrency)"


IMPLEMENTATION = StreaqImplementation()
