"""taskiq: `taskiq worker` over Redis (taskiq-redis), its worker processes each an event loop plus a thread pool."""

from __future__ import annotations

import argparse
import os

from pydantic import BaseModel

from taskbench.capacity import Capacity
from taskbench.implementations.base import Delivery, Implementation, cpu_bound, python_module
from taskbench.record.results import ApiOptions, PluginOptions
from taskbench_wire.health import Beat, Count, Health, as_beats


class TaskiqBeat(Beat):
    slots: Count = 0  # this process' --max-async-tasks


class TaskiqOptions(BaseModel):
    """taskiq's worker (`--max-tasks-per-child`): by default its worker processes are never replaced."""

    max_tasks_per_child: int | None = None  # a worker process exits after this many jobs; its manager starts another


def recycled(max_tasks: int | None) -> str:
    if max_tasks is None:
        return "none (taskiq's default): a worker process is never replaced (--max-tasks-per-child)"
    return (
        f"--max-tasks-per-child {max_tasks}: a worker process stops taking jobs after {max_tasks}, finishes them "
        "and exits; the manager sees it dead within ~1 s and starts another (its slots idle meanwhile)"
    )


def split(concurrency: int, cpu_count: int) -> tuple[int, int]:
    """`--concurrency N` as taskiq's two knobs: worker processes (`--workers`, one per core at most, as
    taskiq's default of 2 does on a 2-core machine) × async slots each (`--max-async-tasks`), N in all."""
    workers = max(d for d in range(1, max(1, min(concurrency, cpu_count)) + 1) if concurrency % d == 0)
    return workers, concurrency // workers


class TaskiqImplementation(Implementation):
    name = "taskiq"
    title = "taskiq"
    outliving_timeout = (
        "on a Redis stream (the variant stream), it is claimed again while it still runs and run twice: "
        "XAUTOCLAIM takes back every pending message idle longer than idle_timeout, from any consumer, and "
        "nothing renews it (taskiq_redis RedisStreamBroker.listen); a list (the default) never redelivers"
    )
    on_sigterm = (  # a deploy: what its worker does when its main process is sent SIGTERM
        "the main process sends SIGINT to each worker process: it stops prefetching and waits for running "
        "jobs (--wait-tasks-timeout: no limit by default) and drops what it prefetched without returning it "
        "(taskiq/receiver/receiver.py)"
    )
    packages = ("taskiq>=0.11", "taskiq-redis>=1.0")
    queue_package = "taskiq"
    redis_min_version = (6, 2)  # its stream delivery takes abandoned messages back with XAUTOCLAIM
    beat_model = TaskiqBeat
    Options = TaskiqOptions
    deliveries = (
        Delivery(
            "default",
            "at most once: ListQueueBroker pops the job (BRPOP) and never acknowledges it, so the jobs a dying "
            "worker process was running are lost (taskiq_redis.redis_broker:ListQueueBroker.listen)",
            worker_crash="lost",
            child_crash="lost",
        ),
        Delivery(
            "stream",
            "at least once only while jobs keep arriving: RedisStreamBroker acknowledges (XACK) after the job, and a "
            "dead consumer's unacknowledged job may be claimed by another worker process (XAUTOCLAIM, once idle for "
            "idle_timeout, set to the redelivery timeout), but taskiq-redis 1.2 claims only after an XREADGROUP that "
            "returned new messages (taskiq_redis.redis_broker:RedisStreamBroker.listen, `if not fetched: continue`; "
            "1.0 claimed after every read). A crash after the last job of a burst leaves its jobs pending and never "
            "run again until another job arrives after the idle timeout: lost, or redelivered, by timing",
            worker_crash="either",
            child_crash="either",
        ),
    )

    def options_from(self, args: argparse.Namespace) -> PluginOptions:
        options = TaskiqOptions(max_tasks_per_child=getattr(args, "max_tasks_per_child", None))
        return options.model_dump(exclude_none=True)

    def worker_argv(self, concurrency: int, options: PluginOptions) -> list[str]:
        workers, slots = split(concurrency, os.cpu_count() or 1)
        argv = python_module(
            "taskiq", "worker", "taskbench_service.implementations.taskiq:worker_broker",
            "--workers", str(workers), "--max-async-tasks", str(slots), "--max-threadpool-threads", str(slots),
            "--max-prefetch", "0", "--ack-type", "when_saved", "--log-level", "INFO",
        )  # fmt: skip
        recycle = TaskiqOptions.model_validate(options).max_tasks_per_child
        return argv + (["--max-tasks-per-child", str(recycle)] if recycle is not None else [])

    def nominal_workers(self, concurrency: int, cpu_count: int, options: PluginOptions) -> list[Beat]:
        workers, slots = split(concurrency, cpu_count)
        return [TaskiqBeat(concurrency=concurrency, slots=slots) for _ in range(workers)]

    def model(self, workload: str, jobs: int, cpu_count: int, workers: list[Beat], health: Health) -> Capacity:
        total = sum(w.slots for w in as_beats(TaskiqBeat, workers))  # each process' --max-async-tasks
        processes = len(workers)
        if workload == "blocking_async":
            return Capacity(
                concurrency=processes,
                reason=f"a blocking call in async def holds its process' loop ({processes} processes)",
            )
        if workload == "cpu":
            return cpu_bound(processes, cpu_count, "worker processes (threads in one process share its GIL)")
        unit = "threads" if workload in ("sleep", "memory") else "async slots"
        return Capacity(concurrency=total, reason=f"{total} {unit} over {processes} worker processes")

    def redis_patterns(self, namespace: str) -> tuple[str, ...]:
        return (f"autoclaim:{namespace}:*",)

    def settings(self, concurrency: int, options: PluginOptions, api: ApiOptions) -> dict[str, str]:
        workers, slots = split(concurrency, os.cpu_count() or 1)
        return {
            "worker processes": f"--workers {workers} (children of `taskiq worker`, one per core at most; restarted "
            "within ~1 s when one dies)",
            "async slots": f"--max-async-tasks {slots} per process (default 100): {workers * slots} jobs at once",
            "thread pool": f"--max-threadpool-threads {slots} per process (default min(32, cores + 4)): sync jobs "
            "run there, one per slot",
            "prefetch": "--max-prefetch 0 (default): a process takes a job only when a slot is free",
            "broker (default delivery)": "ListQueueBroker: LPUSH / BRPOP (blocks, no polling), no acknowledgement",
            "broker (stream delivery)": "RedisStreamBroker: XREADGROUP COUNT 1 (default 100) blocking 1 s, then "
            "XAUTOCLAIM of messages idle for max(5 s, 2 × job duration + 2 s) (default 600 s), 1 at a time "
            "(default 100)",
            "acknowledgement": "--ack-type when_saved (default; results are not stored, so: after the job)",
            "result backend": "none (taskiq's default DummyResultBackend stores nothing)",
            "retries": "none: no retry middleware, retry_on_error=False",
            "job timeout": "none (taskiq's default)",
            "max_tasks_per_child": recycled(TaskiqOptions.model_validate(options).max_tasks_per_child),
        }

    def how_it_runs(self, workload: str, options: PluginOptions) -> str:
        if workload in ("async_sleep", "blocking_async", "noop"):
            return "async def on a taskiq worker process' event loop"
        return "sync def in a taskiq worker process' thread pool"


IMPLEMENTATION = TaskiqImplementation()
