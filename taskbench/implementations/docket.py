"""Docket (`pydocket`): one asyncio worker process over a Redis stream, `concurrency` tasks at once, reading with a
blocking XREADGROUP for its free slots only (nothing prefetched); a dead worker's tasks swept back after the
redelivery timeout, with no limit on how often (at least once by design)."""

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
    "a task's message stays in the consumer group's pending list until its end XACKs it (docket/lua/terminal.lua); "
    "a live worker resets the idle time of the messages it runs every quarter of redelivery_timeout "
    "(docket/_redelivery.py renew_leases, on its event loop), so a dead worker's go idle, and a sweep (XAUTOCLAIM "
    "of messages idle longer than redelivery_timeout, every jittered quarter of it, and at once when a worker "
    "starts: RedeliverySweep) runs them again, however often their worker died (a Retry dependency counts a "
    "task's own failures only)"
)


class DocketImplementation(Implementation):
    name = "docket"
    title = "Docket"
    on_sigterm = (  # a deploy: what its worker does when its main process is sent SIGTERM
        "the read loop stops and the running tasks are awaited before the worker exits (docket/worker.py "
        "Worker.run cancels the loop, _worker_loop gathers active tasks); a SIGKILL after the grace leaves them "
        "pending until the redelivery timeout"
    )
    renews_on_loop = (  # blocked-loop
        "its leases renewed every quarter of redelivery_timeout by a task on the worker's event loop "
        "(docket/worker.py Worker._renew_leases), which also runs the sweep that takes idle messages back"
    )
    packages = ("pydocket>=0.27",)
    queue_package = "pydocket"
    redis_min_version = (6, 2)  # XAUTOCLAIM
    pickles_only = (  # on a server taskbench does not own this would let whoever writes there run code in its worker
        "Docket cloudpickles every task's arguments and has no other serializer (docket/execution.py "
        "Execution.as_message)"
    )
    deliveries = (
        Delivery(
            "default",
            f"at least once (Docket has no other setting): a dead worker's task runs again; {MECHANISM}",
            worker_crash="redelivered",
        ),
    )
    faults = ("api-crash", "api-deploy", "worker-crash", "redis-restart")  # one process: no child to kill

    def worker_argv(self, concurrency: int, options: PluginOptions) -> list[str]:
        # Docket's own Worker.run, as `docket worker` calls it; its concurrency and Redis URL come from the
        # environment (TASKBENCH_CONCURRENCY, TASKBENCH_REDIS_URL): no password on a command line.
        return python_module("taskbench_service.implementations.docket")

    def model(self, workload: str, jobs: int, cpu_count: int, workers: list[Beat], health: Health) -> Capacity:
        threads = [w.concurrency for w in workers]  # its thread pool is sized to concurrency
        return event_loop_model(workload, cpu_count, workers, threads, "concurrency", "via asyncio.to_thread")

    def redis_patterns(self, namespace: str) -> tuple[str, ...]:
        return (f"docket:{namespace}:*",)

    def settings(self, concurrency: int, options: PluginOptions, api: ApiOptions) -> dict[str, str]:
        return {
            "worker": "one process: Docket's Worker.run (what `docket worker` runs), asyncio",
            "concurrency": f"{concurrency} (--concurrency; Docket default 10): tasks at once, each a task on the loop",
            "sync jobs": f"asyncio.to_thread in the loop's thread pool, sized to concurrency ({concurrency}): Docket "
            "runs async def only",
            "prefetch": "none: each XREADGROUP asks for the free slots only (Docket's design)",
            "dequeue": "XREADGROUP BLOCK 100 ms (minimum_check_interval, `docket worker` default): a task starts "
            "as soon as it is added while a slot is free; with every slot busy the worker checks every 100 ms for "
            "one that finished",
            "redelivery_timeout": "the redelivery timeout max(5 s, 2 × job duration + 2 s) with a fault, else "
            "3600 s (Docket default 5 min): how long a dead worker's task stays pending before a sweep takes it",
            "lease renewal": "every quarter of redelivery_timeout, on the worker's event loop (a job that blocks the "
            "loop delays it)",
            "sweep": "XAUTOCLAIM every jittered quarter of redelivery_timeout (0.75–1.25 ×), one worker of the fleet "
            "at a time, and at once when a worker starts; the restore interval is not used",
            "scheduled tasks": "moved to the stream every 250 ms (scheduling_resolution, Docket default); taskbench "
            "adds every task due now",
            "retries": "none (Docket default): a task's own exception fails it; a dead worker's task always runs again",
            "execution_ttl": "15 min (Docket default): a finished task's state hash stays that long",
            "serializer": "cloudpickle (Docket's only one): taskbench runs Docket on its private Redis only",
            "logging": "INFO (`docket worker` default): a line as each task starts and one as it ends",
        }

    def redelivery_bound_s(self, timeout_s: float, concurrency: int, running: int) -> float:
        """The timeout since the last lease renewal (at most a quarter of it before the crash), then the next
        sweep (a jittered quarter, at most 1.25 × timeout / 4), plus the worker's start."""
        return timeout_s * (1 + 1.25 / 4) + 5.0

    def how_it_runs(self, workload: str, options: PluginOptions) -> str:
        if workload in ASYNC_WORKLOADS:
            return "async def on the worker's event loop"
        if workload == "noop":
            return "returns at once in async def on the worker's event loop"
        return "sync def via asyncio.to_thread in the worker's thread pool"


IMPLEMENTATION = DocketImplementation()
