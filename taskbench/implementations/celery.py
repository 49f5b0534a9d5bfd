"""Celery: a worker over Redis (or RabbitMQ with `--broker amqp`), prefetch 1 and the prefork pool as the spec
configures it; `--pool`, `--prefetch` and `--max-tasks-per-child` change them."""

from __future__ import annotations

import uuid

from taskbench.capacity import Capacity
from taskbench.errors import StackError
from taskbench.health import Health
from taskbench.implementations.base import ASYNC_WORKLOADS, Delivery, Implementation, cpu_bound, python_module
from taskbench.results import WorkerOptions

# What each pool is, in Celery's words and ours: every report prints it.
POOLS = {
    "prefork": "prefork, --concurrency N",  # child processes, one job each (the spec)
    "threads": "threads, --concurrency N: N threads in the worker process, sharing one GIL",
    "gevent": "gevent, --concurrency N: N greenlets in the worker process (monkey-patched I/O), sharing one GIL",
    "solo": "solo: one job at a time, in the worker's main process",
}


class CeleryImplementation(Implementation):
    name = "celery"
    title = "Celery"
    # flower: `serve --flower`, Celery's monitoring UI (never imported by the worker or the API)
    packages = ("celery[redis]>=5.5", "flower>=2.0")
    queue_package = "celery"
    memory_per_slot = True  # prefork: one process per unit of --concurrency
    deliveries = (
        Delivery(
            "default",
            "at most once: acknowledged on receipt, so a job whose worker dies is lost",
            worker_crash="lost",
            child_crash="lost",
        ),
        Delivery(
            "acks_late",
            "at least once when the whole worker dies (redelivered after the visibility timeout); a killed pool "
            "process' job is acknowledged and lost",
            worker_crash="redelivered",
            child_crash="lost",
        ),
        Delivery(
            "acks_late+reject_on_worker_lost",
            "at least once: a killed pool process' job is requeued at once, a dead worker's after the visibility "
            "timeout",
            worker_crash="redelivered",
            child_crash="redelivered",
        ),
    )

    brokers = ("redis", "amqp")
    amqp_deliveries = (
        Delivery(
            "default",
            "at most once: acknowledged when a pool process takes it, so a job whose worker dies is lost (jobs "
            "only prefetched go back to the queue when the worker's connection drops)",
            worker_crash="lost",
            child_crash="lost",
        ),
        Delivery(
            "acks_late",
            "at least once when the whole worker dies: RabbitMQ requeues its unacknowledged messages as soon as "
            "its connection drops (no visibility timeout); a killed pool process' job is acknowledged and lost",
            worker_crash="redelivered",
            child_crash="lost",
        ),
        Delivery(
            "acks_late+reject_on_worker_lost",
            "at least once: a killed pool process' job is requeued at once, a dead worker's as soon as its "
            "connection drops",
            worker_crash="redelivered",
            child_crash="redelivered",
        ),
    )

    def worker_argv(self, concurrency: int) -> list[str]:
        return python_module(
            "celery", "-A", "taskbench_service.celery_app", "worker", "--loglevel", "info",
            "--concurrency", str(concurrency),
            "--without-gossip", "--without-mingle", "-n", f"taskbench-{uuid.uuid4().hex[:6]}@%h",
        )  # fmt: skip

    def worker_command(self, concurrency: int, options: WorkerOptions) -> list[str]:
        """On the command line, not in the config: Celery monkey-patches for gevent only when `--pool`/`-P` is
        in its argv (celery/__main__.py, maybe_patch_concurrency)."""
        argv = [*self.worker_argv(concurrency), "--pool", options.pool, "--prefetch-multiplier", str(options.prefetch)]
        if options.max_tasks_per_child is not None:
            argv += ["--max-tasks-per-child", str(options.max_tasks_per_child)]
        return argv

    def requirements(self, options: WorkerOptions) -> tuple[str, ...]:
        """gevent only for `--pool gevent`: installed, it is not imported unless the pool asks for it."""
        return self.packages + (("gevent>=24.2",) if options.pool == "gevent" else ())

    def applies(self, fault: str, options: WorkerOptions) -> bool:
        """Only the prefork pool has child processes to kill."""
        return fault in self.faults and (fault != "worker-child-crash" or options.pool == "prefork")

    def capacity(self, workload: str, jobs: int, concurrency: int, cpu_count: int, health: Health) -> Capacity:
        """Per worker, from its heartbeat: the pool decides what its concurrency means."""
        workers = self.workers_seen(health)
        if not workers:
            raise StackError("no Celery worker is seen by the service (GET /health): start one")
        slots, processes, pools = 0, 0, set()
        for worker in workers:
            pool, size = worker.pool or "prefork", worker.concurrency
            pools.add(pool)
            if pool == "solo":
                slots, processes = slots + 1, processes + 1
            elif pool == "prefork":
                slots, processes = slots + size, processes + size
            else:  # threads, gevent: one process, one GIL
                slots, processes = slots + size, processes + 1
        if slots == 0:
            raise StackError("no Celery worker is seen by the service (GET /health): start one")
        pool_names = "/".join(sorted(pools))
        if workload == "cpu":
            return cpu_bound(processes, cpu_count, f"processes running jobs ({pool_names} pool: one GIL each)")
        return Capacity(concurrency=slots, reason=f"{slots} job slots ({len(workers)} worker, {pool_names} pool)")

    def settings(self, concurrency: int) -> dict[str, str]:
        return self.worker_settings(concurrency, WorkerOptions())

    def worker_settings(self, concurrency: int, options: WorkerOptions) -> dict[str, str]:
        pool = POOLS[options.pool].replace(" N", f" {concurrency}")
        if options.pool == "solo":
            pool += f" (--concurrency {concurrency} is ignored)"
        prefetch = f"{options.prefetch}" + (" (the spec)" if options.prefetch == 1 else " (Celery's default: 4)")
        children = (
            "never replaced (default)"
            if options.max_tasks_per_child is None
            else f"{options.max_tasks_per_child} jobs, then the child is replaced"
        )
        if options.pool == "gevent":
            pool += (
                "; async jobs (asyncio.run per job) fail with RuntimeError when two overlap: the greenlets share one "
                "thread's running loop (measured; celery #7465)"
            )
        return {
            "pool": pool,
            "worker_prefetch_multiplier": prefetch,
            "max_tasks_per_child": children if options.pool == "prefork" else "– (no child processes)",
            "acknowledgement": "per delivery variant (default: on receipt)",
            "visibility_timeout": "max(5 s, 2 × job duration + 2 s) (production default 3600 s)",
            "unacked restore sweep": "every 1 s (kombu ≥ 5.7's unacked_restore_interval; its default 100 s; "
            "older kombu: every 100 s, hard-coded)",
            "gossip / mingle": "off",
        }

    def broker_settings(self, broker: str) -> dict[str, str]:
        if broker != "amqp":
            return {"broker": "Redis (kombu's Redis transport)"}
        return {
            "broker": "RabbitMQ (py-amqp); results and records in Redis",
            "queue": "`celery`, classic, durable, persistent messages (Celery's defaults)",
            "prefetch": "basic.qos prefetch_count = concurrency × worker_prefetch_multiplier (1)",
            "visibility_timeout": "none on RabbitMQ: a dead worker's unacknowledged messages are requeued as soon "
            "as its connection drops",
            "unacked restore sweep": "none (Redis only)",
            "publisher confirms": "on (broker_transport_options confirm_publish; py-amqp's default: off)",
            "worker_cancel_long_running_tasks_on_connection_loss": "True (Celery 6's default; 5.x: False): a "
            "late-acknowledged job whose connection dropped is requeued, so it is not run on",
            "consumer_timeout": "the server's (RabbitMQ's default 30 min): a late-acknowledged job running longer "
            "has its channel closed and is delivered again",
        }

    def how_it_runs(self, workload: str) -> str:
        if workload in ASYNC_WORKLOADS:
            return "asyncio.run per job in a prefork child"
        return "sync def in a prefork child"

    def how_it_runs_with(self, workload: str, options: WorkerOptions) -> str:
        where = {
            "prefork": "a prefork child",
            "threads": "a thread of the worker process",
            "gevent": "a greenlet of the worker process",
            "solo": "the worker's main process, one at a time",
        }[options.pool]
        return self.how_it_runs(workload).replace("a prefork child", where)


IMPLEMENTATION = CeleryImplementation()
