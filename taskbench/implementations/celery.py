"""Celery: a worker over Redis (or RabbitMQ with `--broker amqp`), prefetch 1 and the prefork pool as the spec
configures it; its own options `--pool`, `--prefetch` and `--max-tasks-per-child` change them, and `serve
--flower` runs Flower, its monitoring UI, beside it."""

from __future__ import annotations

import argparse
import uuid
from typing import Literal

from pydantic import BaseModel

from taskbench.argtypes import bounded
from taskbench.capacity import Capacity
from taskbench.errors import UsageError
from taskbench.implementations.base import (
    ASYNC_WORKLOADS,
    PORT,
    Companion,
    Delivery,
    Implementation,
    cpu_bound,
    python_module,
)
from taskbench.results import ApiOptions, PluginOptions
from taskbench_wire.health import Beat, Health, Text, as_beats

APP = "taskbench_service.implementations.celery:celery_app"  # `celery -A`: the service's Celery app
# The names the service gives its queue (taskbench_service/implementations/celery.py), in the stack's namespace.
QUEUE = "taskbench.celery"
ON_A_FLAGGED_SERVER = (
    " (names in the stack's namespace: `taskbench`, `taskbench-<stack id>` on a server named by --redis-url or "
    "--broker-url)"
)

# What each pool is, in Celery's words and ours: every report prints it.
POOLS = {
    "prefork": "prefork, --concurrency N",  # child processes, one job each (the spec)
    "threads": "threads, --concurrency N: N threads in the worker process, sharing one GIL",
    "gevent": "gevent, --concurrency N: N greenlets in the worker process (monkey-patched I/O), sharing one GIL",
    "solo": "solo: one job at a time, in the worker's main process",
}


class CeleryOptions(BaseModel):
    """Celery's worker (--pool, --prefetch, --max-tasks-per-child; `serve --flower`). The defaults are the spec's:
    the prefork pool with prefetch 1, children never replaced."""

    pool: Literal["prefork", "threads", "gevent", "solo"] = "prefork"
    prefetch: int = 1  # worker_prefetch_multiplier
    max_tasks_per_child: int | None = None  # prefork only: a child is replaced after this many jobs
    flower: bool = False  # `serve --flower`: Flower beside the worker (never in `run`)


class CeleryBeat(Beat):
    pool: Text = None  # prefork, threads, gevent, solo: what its concurrency means


class CeleryImplementation(Implementation):
    name = "celery"
    title = "Celery"
    Options = CeleryOptions
    beat_model = CeleryBeat
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

    def add_arguments(self, parser: argparse.ArgumentParser, command: str) -> None:
        group = parser.add_argument_group("Celery's worker")
        pools = list(POOLS)
        group.add_argument("--pool", choices=pools, default="prefork", help="Celery's worker pool (default prefork)")
        if command == "env":
            return
        group.add_argument(
            "--prefetch", type=bounded(int, 1, 1000), default=1, help="Celery's worker_prefetch_multiplier (default 1)"
        )
        group.add_argument(
            "--max-tasks-per-child",
            type=bounded(int, 1, 1_000_000),
            help="Celery prefork: replace a child after this many jobs (default: never)",
        )
        if command == "serve":
            group.add_argument(
                "--flower", action="store_true", help="also start Flower (Celery's monitoring UI) on 127.0.0.1"
            )

    def options_from(self, args: argparse.Namespace) -> PluginOptions:
        options = CeleryOptions(
            pool=args.pool,
            prefetch=getattr(args, "prefetch", 1),
            max_tasks_per_child=getattr(args, "max_tasks_per_child", None),
            flower=getattr(args, "flower", False),
        )
        if options.max_tasks_per_child is not None and options.pool != "prefork":
            raise UsageError(f"--max-tasks-per-child replaces prefork children; --pool {options.pool} has none")
        return options.model_dump(exclude_defaults=True)

    def worker_argv(self, concurrency: int, options: PluginOptions) -> list[str]:
        """The pool on the command line, not in the config: Celery monkey-patches for gevent only when
        `--pool`/`-P` is in its argv (celery/__main__.py, maybe_patch_concurrency)."""
        opts = CeleryOptions.model_validate(options)
        argv = python_module(
            "celery", "-A", APP, "worker", "--loglevel", "info", "--concurrency", str(concurrency),
            "--without-gossip", "--without-mingle", "-n", f"taskbench-{uuid.uuid4().hex[:6]}@%h",
            "--pool", opts.pool, "--prefetch-multiplier", str(opts.prefetch),
        )  # fmt: skip
        if opts.max_tasks_per_child is not None:
            argv += ["--max-tasks-per-child", str(opts.max_tasks_per_child)]
        return argv

    def companions(self, options: PluginOptions) -> list[Companion]:
        """Flower, on the workers' broker, on loopback, behind basic auth (user `taskbench`, the stack's API token
        as its password: FLOWER_BASIC_AUTH, set by the stack, never on the command line)."""
        if not CeleryOptions.model_validate(options).flower:
            return []
        argv = python_module("celery", "-A", APP, "flower", "--address=127.0.0.1", f"--port={PORT}")
        return [Companion("flower", "Flower (Celery's monitoring UI)", tuple(argv), "/healthcheck")]

    def requirements(self, options: PluginOptions) -> tuple[str, ...]:
        """gevent only for `--pool gevent`: installed, it is not imported unless the pool asks for it."""
        gevent = CeleryOptions.model_validate(options).pool == "gevent"
        return self.packages + (("gevent>=24.2",) if gevent else ())

    def applies(self, fault: str, options: PluginOptions) -> bool:
        """Only the prefork pool has child processes to kill."""
        pool = CeleryOptions.model_validate(options).pool
        return super().applies(fault, options) and (fault != "worker-child-crash" or pool == "prefork")

    def nominal_workers(self, concurrency: int, cpu_count: int, options: PluginOptions) -> list[Beat]:
        return [CeleryBeat(concurrency=concurrency, pool=CeleryOptions.model_validate(options).pool)]

    def model(self, workload: str, jobs: int, cpu_count: int, workers: list[Beat], health: Health) -> Capacity:
        """Per worker, from its heartbeat: the pool decides what its concurrency means."""
        slots, processes, pools = 0, 0, set()
        for worker in as_beats(CeleryBeat, workers):
            pool, size = worker.pool or "prefork", worker.concurrency
            pools.add(pool)
            if pool == "solo":
                slots, processes = slots + 1, processes + 1
            elif pool == "prefork":
                slots, processes = slots + size, processes + size
            else:  # threads, gevent: one process, one GIL
                slots, processes = slots + size, processes + 1
        pool_names = "/".join(sorted(pools))
        if workload == "cpu":
            return cpu_bound(processes, cpu_count, f"processes running jobs ({pool_names} pool: one GIL each)")
        return Capacity(concurrency=slots, reason=f"{slots} job slots ({len(workers)} worker, {pool_names} pool)")

    def settings(self, concurrency: int, options: PluginOptions, api: ApiOptions) -> dict[str, str]:
        opts = CeleryOptions.model_validate(options)
        pool = POOLS[opts.pool].replace(" N", f" {concurrency}")
        if opts.pool == "solo":
            pool += f" (--concurrency {concurrency} is ignored)"
        prefetch = f"{opts.prefetch}" + (" (the spec)" if opts.prefetch == 1 else " (Celery's default: 4)")
        children = (
            "never replaced (default)"
            if opts.max_tasks_per_child is None
            else f"{opts.max_tasks_per_child} jobs, then the child is replaced"
        )
        if opts.pool == "gevent":
            pool += (
                "; async jobs (asyncio.run per job) fail with RuntimeError when two overlap: the greenlets share one "
                "thread's running loop (measured; celery #7465)"
            )
        return {
            "pool": pool,
            "worker_prefetch_multiplier": prefetch,
            "max_tasks_per_child": children if opts.pool == "prefork" else "– (no child processes)",
            "acknowledgement": "per delivery variant (default: on receipt)",
            "visibility_timeout": "max(5 s, 2 × job duration + 2 s) (production default 3600 s)",
            "unacked restore sweep": "every 1 s (kombu ≥ 5.7's unacked_restore_interval; its default 100 s; "
            "older kombu: every 100 s, hard-coded)",
            "gossip / mingle": "off",
        }

    def broker_settings(self, broker: str) -> dict[str, str]:
        if broker != "amqp":
            return {
                "broker": "Redis (kombu's Redis transport)",
                "queue": f"`{QUEUE}`, its exchange and routing key alike (Celery's default: celery); remote control "
                f"on `{QUEUE}.pidbox`; every key and channel prefixed `taskbench:` (kombu's global_keyprefix; the "
                f"results' too){ON_A_FLAGGED_SERVER}",
            }
        return {
            "broker": "RabbitMQ (py-amqp); results and records in Redis",
            "queue": f"`{QUEUE}`, classic, durable, persistent messages (Celery's defaults), its exchange and routing "
            f"key alike (Celery's default: celery); remote control on `{QUEUE}.pidbox`{ON_A_FLAGGED_SERVER}",
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

    def how_it_runs(self, workload: str, options: PluginOptions) -> str:
        what = "asyncio.run per job in " if workload in ASYNC_WORKLOADS else "sync def in "
        return (
            what
            + {
                "prefork": "a prefork child",
                "threads": "a thread of the worker process",
                "gevent": "a greenlet of the worker process",
                "solo": "the worker's main process, one at a time",
            }[CeleryOptions.model_validate(options).pool]
        )


IMPLEMENTATION = CeleryImplementation()
