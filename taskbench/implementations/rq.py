"""RQ: `rq worker-pool -n N` over Redis, RQ's default forking Worker (a work horse per job)."""

from __future__ import annotations

from collections import Counter

import redis

from taskbench.capacity import Capacity
from taskbench.implementations.base import (
    ALL_FAULTS,
    JSON_ON_EXTERNAL,
    Delivery,
    Implementation,
    cpu_bound,
    python_module,
)
from taskbench.record.results import ApiOptions, PluginOptions
from taskbench_wire.health import Beat, Health, Text, as_beats


class RqBeat(Beat):
    pool: Text = None  # the pid of the worker-pool process this worker is in


class RQImplementation(Implementation):
    name = "rq"
    title = "RQ"
    on_sigterm = (  # a deploy: what its worker does when its main process is sent SIGTERM
        "warm shutdown (rq/worker/base.py request_stop): stops dequeuing and waits for the work horse's job, "
        "bounded only by the job's timeout; a second signal kills the horse (cold shutdown) and leaves its "
        "job in the started registry"
    )
    packages = ("rq>=2.0",)
    queue_package = "rq"
    beat_model = RqBeat
    memory_per_slot = True  # worker-pool: one worker process per unit of --concurrency (and a work horse per job)
    deliveries = (
        Delivery(
            "default",
            "at most once: a running job is never run again. A killed work horse's job is failed at once "
            "(Worker.monitor_work_horse); a dead worker's job stays STARTED until its execution heartbeat "
            "expires (job_monitoring_interval + 60 s, so max(61 s, the redelivery timeout)) and RQ's maintenance "
            "sweep (StartedJobRegistry.cleanup, every 1 s here) moves it to the FailedJobRegistry as abandoned; "
            "retries are off (retry=None). Queued jobs wait in Redis for the next worker",
            worker_crash="lost",
            child_crash="lost",
        ),
    )
    # worker-child-crash kills the pool's worker processes and their work horses; the pool starts new ones.
    faults = ALL_FAULTS

    def worker_argv(self, concurrency: int, options: PluginOptions) -> list[str]:
        return python_module(
            "rq.cli", "worker-pool", "--num-workers", str(concurrency),
            "--config", "taskbench_service.implementations.rq",
            "--worker-class", "taskbench_service.implementations.rq.TaskbenchWorker",
            "--logging-level", "INFO",
        )  # fmt: skip

    def nominal_workers(self, concurrency: int, cpu_count: int, options: PluginOptions) -> list[Beat]:
        return [RqBeat(concurrency=concurrency, pool="nominal") for _ in range(concurrency)]

    def model(self, workload: str, jobs: int, cpu_count: int, workers: list[Beat], health: Health) -> Capacity:
        # Each worker process beats on its own and runs one job at a time; a pool's size caps its live
        # workers (a crashed worker's last beat lingers for a few seconds beside its replacement's).
        beats = as_beats(RqBeat, workers)
        live = Counter(w.pool for w in beats)
        size = {w.pool: w.concurrency for w in beats}
        total = sum(min(count, size[pool] or count) for pool, count in live.items())
        if workload == "cpu":
            return cpu_bound(total, cpu_count, "work horses")
        if workload in ("async_sleep", "blocking_async"):
            reason = f"{total} worker processes, one job each at a time: asyncio.run per job in its work horse"
            return Capacity(concurrency=total, reason=reason)
        return Capacity(concurrency=total, reason=f"{total} worker processes, one job each at a time")

    def redis_patterns(self, namespace: str) -> tuple[str, ...]:
        return (f"rq:*:{namespace}*",)

    def forget(self, client: redis.Redis, namespace: str) -> None:
        """Also our members of RQ's shared sets (`rq:queues`, `rq:workers`), never another's."""
        super().forget(client, namespace)
        client.srem("rq:queues", f"rq:queue:{namespace}")
        ours = [m for m in client.sscan_iter("rq:workers", match=f"rq:worker:{namespace}.*", count=1000)]
        if ours:
            client.srem("rq:workers", *ours)

    def external_settings(self) -> dict[str, str]:
        return {"serializer": JSON_ON_EXTERNAL}

    def settings(self, concurrency: int, options: PluginOptions, api: ApiOptions) -> dict[str, str]:
        return {
            "pool": f"rq worker-pool -n {concurrency}: {concurrency} worker processes, one job at a time each",
            "worker class": "rq.Worker, RQ's default and what its docs recommend in production: forks a work horse "
            "per job (isolation; ~5× slower than SimpleWorker on empty jobs). The horse dies with its worker "
            "(PR_SET_PDEATHSIG), as in a container",
            "dequeue": "blocking BLMOVE (no poll delay); an idle worker wakes every 1 s to run maintenance "
            "(worker_ttl 16 s → dequeue timeout 1 s; RQ default 420 s → 405 s)",
            "maintenance_interval": "1 s (RQ default 600 s): the sweep that fails abandoned jobs",
            "job_monitoring_interval": "max(1 s, redelivery timeout − 60 s) (RQ default 30 s): a busy worker's "
            "heartbeat; RQ adds a fixed 60 s before a job counts as abandoned",
            "job_timeout": "3660 s (the API's longest job + 60 s; RQ default 180 s)",
            "retries": "none (retry=None)",
            "result_ttl / failure_ttl": "0 (results discarded) / 60 s",
            "serializer": "pickle (RQ default)",
            "scheduler": "on in one worker (worker-pool always starts RQ's scheduler; no scheduled jobs here)",
            "logging": "INFO (4 lines per job, and 2 per maintenance pass)",
        }

    def how_it_runs(self, workload: str, options: PluginOptions) -> str:
        if workload in ("async_sleep", "blocking_async"):
            return "asyncio.run per job in a forked work horse"
        return "sync def in a forked work horse (one fork per job)"


IMPLEMENTATION = RQImplementation()
