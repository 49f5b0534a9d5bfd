"""Dramatiq: its own CLI forks worker processes, each running jobs on a pool of threads, over Redis (or RabbitMQ
with `--broker amqp`)."""

from __future__ import annotations

import os

from taskbench.capacity import Capacity
from taskbench.implementations.base import ASYNC_WORKLOADS, Delivery, Implementation, cpu_bound, python_module
from taskbench.record.results import ApiOptions, PluginOptions
from taskbench_wire.health import Beat, Count, Health, as_beats


class DramatiqBeat(Beat):
    threads: Count = 0  # worker threads of this process


# The idle consumer's longest back-off between polls of Redis (Dramatiq's default 1000 ms); the service's
# maintenance chance assumes the same value (taskbench_service/implementations/dramatiq.py WORKER_TIMEOUT_MS).
WORKER_TIMEOUT_MS = 100
# The name the service gives its queue (taskbench_service/implementations/dramatiq.py), in the stack's namespace.
QUEUE = "taskbench.dramatiq"
ON_A_FLAGGED_SERVER = (
    " (names in the stack's namespace: `taskbench`, `taskbench-<stack id>` on a server named by --redis-url or "
    "--broker-url)"
)


def processes_and_threads(concurrency: int, cpu_count: int) -> tuple[int, int]:
    """Dramatiq's defaults are one process per CPU and 8 threads each: as many processes as there are cores
    (the largest that divides --concurrency, so processes × threads is exactly it), threads for the rest."""
    processes = max(p for p in range(1, max(1, min(concurrency, cpu_count)) + 1) if concurrency % p == 0)
    return processes, concurrency // processes


class DramatiqImplementation(Implementation):
    name = "dramatiq"
    title = "Dramatiq"
    on_sigterm = (  # a deploy: what its worker does when its main process is sent SIGTERM
        "forwarded to every worker process: worker threads stop taking messages and are joined for "
        "--worker-shutdown-timeout (600 s by default); prefetched messages are requeued; running actors are "
        "not interrupted (dramatiq/worker.py Worker.stop)"
    )
    # pika: its RabbitmqBroker (--broker amqp)
    packages = ("dramatiq[redis,rabbitmq]>=1.17",)
    queue_package = "dramatiq"
    beat_model = DramatiqBeat
    deliveries = (
        Delivery(
            "default",
            "at least once: the Redis broker acknowledges a message only after the actor returns "
            "(worker.py:ConsumerThread.post_process_message); a dead worker process's unacknowledged messages, "
            "running and prefetched, go back to the queue at the first queue maintenance after its broker "
            "heartbeat is heartbeat_timeout old (brokers/redis/dispatch.lua; here max(5 s, 2 × job duration "
            "+ 2 s), default 60 s). A killed worker process makes the dramatiq main process stop the rest and "
            "exit (cli.py:main): once restarted (by a supervisor; the harness does it) the same sweep "
            "redelivers",
            worker_crash="redelivered",
            child_crash="redelivered",
        ),
    )

    brokers = ("redis", "amqp")
    amqp_deliveries = (
        Delivery(
            "default",
            "at least once: RabbitmqBroker acknowledges a message only after the actor returns; RabbitMQ requeues "
            "a worker process's unacknowledged messages, running and prefetched, as soon as its connection drops "
            "(no heartbeat timeout). A killed worker process makes the dramatiq main process stop the rest and "
            "exit (cli.py:main): once restarted (by a supervisor; the harness does it) it takes them again",
            worker_crash="redelivered",
            child_crash="redelivered",
        ),
    )

    def worker_argv(self, concurrency: int, options: PluginOptions) -> list[str]:
        processes, threads = processes_and_threads(concurrency, os.cpu_count() or 1)
        return [
            "env", f"dramatiq_worker_timeout={WORKER_TIMEOUT_MS}",  # Dramatiq reads it at import
            *python_module("dramatiq", "taskbench_service.implementations.dramatiq:setup_worker"),
            "--processes", str(processes), "--threads", str(threads),
        ]  # fmt: skip

    def nominal_workers(self, concurrency: int, cpu_count: int, options: PluginOptions) -> list[Beat]:
        processes, threads = processes_and_threads(concurrency, cpu_count)
        return [DramatiqBeat(concurrency=concurrency, threads=threads) for _ in range(processes)]

    def model(self, workload: str, jobs: int, cpu_count: int, workers: list[Beat], health: Health) -> Capacity:
        processes = len(workers)  # one heartbeat per worker process
        threads = sum(w.threads for w in as_beats(DramatiqBeat, workers))
        if workload == "cpu":
            return cpu_bound(processes, cpu_count, "worker processes (the threads of one share its GIL)")
        if workload == "blocking_async":
            reason = f"a blocking call in async def holds its process's one event-loop thread: {processes} processes"
            return Capacity(concurrency=processes, reason=reason)
        reason = f"{processes} worker processes × {threads // processes} threads"
        if workload == "async_sleep":
            reason += " (each async job holds a worker thread while it waits on the event loop)"
        return Capacity(concurrency=threads, reason=reason)

    def settings(self, concurrency: int, options: PluginOptions, api: ApiOptions) -> dict[str, str]:
        processes, threads = processes_and_threads(concurrency, os.cpu_count() or 1)
        return {
            "processes × threads": f"--processes {processes} --threads {threads} (Dramatiq's defaults: one process "
            "per CPU, 8 threads; the processes divide --concurrency)",
            "prefetch": f"{2 * threads} messages per process (2 × threads, Dramatiq's default); delay queue "
            f"{1000 * threads}",
            "idle poll back-off (dramatiq_worker_timeout)": f"5 ms doubling up to {WORKER_TIMEOUT_MS} ms "
            "(default 1000 ms)",
            "acknowledgement": "after the actor returns (Redis broker; no switch)",
            "heartbeat_timeout": "max(5 s, 2 × job duration + 2 s) (default 60 s): how long a silent worker "
            "process counts as alive",
            "maintenance_chance": f"{WORKER_TIMEOUT_MS / 1000:.0%} of broker commands (default 0.1 %): an idle "
            "consumer sweeps for dead workers' messages about once a second",
            "retries": "max_retries=0 (Retries middleware default: 20, backoff from 15 s)",
            "time_limit": "3660 s per job (TimeLimit middleware default: 600 s)",
            "async actors": "AsyncIO middleware: one event-loop thread per process",
            "results": "none (no Results middleware); failed messages dead-lettered for 1 h (default 7 days)",
        }

    def broker_settings(self, broker: str) -> dict[str, str]:
        if broker != "amqp":
            return {
                "broker": "Redis (RedisBroker)",
                "queue": f"`{QUEUE}` (Dramatiq's default: default), its keys under the broker namespace `taskbench` "
                f"(default `dramatiq`){ON_A_FLAGGED_SERVER}",
            }
        return {
            "broker": "RabbitMQ (RabbitmqBroker, pika); records in Redis",
            "queue": f"`{QUEUE}`, with `{QUEUE}.DQ` (delays) and `{QUEUE}.XQ` (dead letters) (Dramatiq's "
            f"default: default){ON_A_FLAGGED_SERVER}",
            "confirm_delivery": "on (Dramatiq's default: off): every send waits for RabbitMQ's confirm",
            "acknowledgement": "after the actor returns (RabbitmqBroker; no switch)",
            "heartbeat_timeout": "none on RabbitMQ: a dead process's unacknowledged messages are requeued as soon "
            "as its connection drops",
            "maintenance_chance": "none (Redis only)",
            "idle poll back-off (dramatiq_worker_timeout)": f"none: RabbitMQ pushes messages to the consumer "
            f"({WORKER_TIMEOUT_MS} ms only bounds each wait)",
            "results": f"none (no Results middleware); failed messages dead-lettered to `{QUEUE}.XQ` for 7 days "
            "(Dramatiq's RabbitMQ default)",
        }

    def redelivery_bound_s(self, timeout_s: float, concurrency: int, running: int) -> float:
        """The heartbeat timeout, a maintenance pass (about once a second), and the worker's start: its main
        process exits when a child dies and only a running consumer redelivers; on a busy 2-core machine that
        start (interpreter, imports, calibration) took up to 10 s (15.7 s after the crash in all, measured)."""
        return timeout_s + 15.0

    def how_it_runs(self, workload: str, options: PluginOptions) -> str:
        if workload in ASYNC_WORKLOADS:
            return "async def actor on the process's event-loop thread (AsyncIO middleware); a worker thread waits"
        return "sync def on a worker thread (processes × threads)"


IMPLEMENTATION = DramatiqImplementation()
