"""Huey: its own consumer (`huey_consumer`), one process of worker threads over Redis (`RedisHuey`)."""

from __future__ import annotations

from taskbench.capacity import Capacity
from taskbench.implementations.base import (
    ASYNC_WORKLOADS,
    JSON_ON_EXTERNAL,
    Delivery,
    Implementation,
    cpu_bound,
    python_module,
)
from taskbench.record.results import ApiOptions, PluginOptions
from taskbench_wire.health import Beat, Health

# The consumer's polling (huey/consumer_options.py defaults, stated on the command line so the reports say them):
# with RedisStorage(blocking=True) an idle worker thread waits in BRPOP and never sleeps; these apply only after
# an error reading the queue (Worker.loop → Worker.sleep: 0.1 s, × 1.15 each time, at most 10 s), e.g. while
# Redis restarts, and the delay resets when a task arrives.
INITIAL_DELAY_S = 0.1
BACKOFF = 1.15
MAX_DELAY_S = 10.0


class HueyImplementation(Implementation):
    name = "huey"
    reads_redelivery_timeout = False  # nothing of its worker derives from it: no restart when it changes
    title = "Huey"
    on_sigterm = (  # a deploy: what its worker does when its main process is sent SIGTERM
        "Huey's immediate shutdown (-g INT, its default: SIGINT is the graceful one): running tasks are "
        "interrupted and not requeued, no SIGNAL_INTERRUPTED handler here (huey/consumer.py _handle_signal)"
    )
    packages = ("huey[redis]>=2.5",)
    queue_package = "huey"
    deliveries = (
        Delivery(
            "default",
            "at most once: a worker thread takes a message with BRPOP (storage.py:RedisStorage.dequeue), which "
            "removes it from Redis before the task runs; there is no acknowledgement, in-progress list or "
            "timeout, so a SIGKILLed consumer's running tasks are gone and nothing can bring them back. Huey's "
            "only remedy, a SIGNAL_INTERRUPTED handler that re-enqueues (api.py:Huey.notify_interrupted_tasks), "
            "runs on SIGTERM, never on SIGKILL. Queued jobs wait in Redis for the next consumer (no prefetch)",
            worker_crash="lost",
        ),
    )
    # -k thread: one process, no child to kill (worker-child-crash applies to -k process only).
    faults = ("api-crash", "api-deploy", "worker-crash", "redis-restart")

    def worker_argv(self, concurrency: int, options: PluginOptions) -> list[str]:
        return python_module(
            "huey.bin.huey_consumer", "taskbench_service.implementations.huey.huey",
            "--workers", str(concurrency), "--worker-type", "thread",
            "--delay", str(INITIAL_DELAY_S), "--backoff", str(BACKOFF), "--max-delay", str(MAX_DELAY_S),
            "--no-periodic",
        )  # fmt: skip

    def model(self, workload: str, jobs: int, cpu_count: int, workers: list[Beat], health: Health) -> Capacity:
        threads = sum(w.concurrency for w in workers)  # each consumer's beat: its -w worker threads
        processes = len(workers)
        if workload == "cpu":
            return cpu_bound(processes, cpu_count, "consumer processes (their worker threads share one GIL)")
        if workload in ASYNC_WORKLOADS:
            reason = f"{threads} worker threads, each running asyncio.run per job (its own event loop)"
            return Capacity(concurrency=threads, reason=reason)
        return Capacity(concurrency=threads, reason=f"{threads} worker threads, one job each at a time")

    def redis_patterns(self, namespace: str) -> tuple[str, ...]:
        name = namespace.replace("-", "_")  # Huey strips dashes from its names
        return (f"huey.*.{name}", f"huey.notify.{name}.*")

    def external_settings(self) -> dict[str, str]:
        return {"serializer": JSON_ON_EXTERNAL}

    def settings(self, concurrency: int, options: PluginOptions, api: ApiOptions) -> dict[str, str]:
        return {
            "consumer": f"huey_consumer -w {concurrency} -k thread: one process, {concurrency} worker threads "
            "(--concurrency; Huey's default -w 1) and a scheduler thread",
            "worker type": "thread, Huey's default and its docs' safe choice. -k process forks a process per "
            "worker (no shared GIL: CPU jobs in parallel; memory per worker; a killed child's task is lost and "
            "the consumer starts another within -c 10 s; a task timeout is enforced by SIGALRM). -k greenlet runs them "
            "as gevent greenlets in one process (the app must monkey-patch first; cooperative: a CPU-bound job, or a "
            "blocking call gevent does not patch, stalls them all; a timeout by gevent.Timeout)",
            "storage": "RedisHuey (a Redis list, LPUSH / BRPOP: FIFO), Huey's documented default; "
            "PriorityRedisHuey (a sorted set, BZPOPMIN) only adds task priorities, unused here",
            "dequeue": "blocking BRPOP, 1 s timeout (RedisStorage blocking=True, read_timeout=1: the defaults), "
            "one message per idle worker thread: no prefetch",
            "polling (-d / -b / -m)": f"{INITIAL_DELAY_S} s × {BACKOFF} up to {MAX_DELAY_S:g} s (Huey's defaults): "
            "unused while BRPOP blocks; only the back-off after an error reading the queue (a Redis restart)",
            "acknowledgement": "none: BRPOP removes the message before the task runs (no switch; no visibility "
            "timeout, so the redelivery timeout does not apply)",
            "retries": "0 (Huey's default)",
            "task timeout": "none: with -k thread Huey cannot stop a running task (ThreadEnvironment.timeout is a "
            "no-op); the user's --job timeout is taskbench's own",
            "results": "off (results=False; Huey's default keeps every non-None return value in Redis)",
            "utc": "True (Huey's default)",
            "scheduler": "every 1 s (-s 1, the default: one Redis call a second); --no-periodic (no periodic tasks)",
            "health check": "every 10 s (-c 10, the default): a dead worker thread is started again",
            "serializer": "pickle (Huey's default), no compression",
            "logging": "INFO (2 lines per task)",
        }

    def how_it_runs(self, workload: str, options: PluginOptions) -> str:
        if workload in ASYNC_WORKLOADS:
            return "asyncio.run per job on a consumer worker thread (Huey refuses async def tasks)"
        return "sync def on a consumer worker thread"


IMPLEMENTATION = HueyImplementation()
