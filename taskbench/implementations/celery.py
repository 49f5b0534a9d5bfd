"""Celery: a worker over Redis (or RabbitMQ with `--broker amqp`), prefetch 1 and the prefork pool as the spec
configures it; its own options `--pool`, `--prefetch` and `--max-tasks-per-child` change them, and `serve
--flower` runs Flower, its monitoring UI, beside it.

`--app celery=package.module:attribute` measures the user's own Celery app as the implementation `celery+app`
(beside `celery`, taskbench's set-up, when the run names both): its settings are the ones measured
(acknowledgement, prefetch, visibility timeout, pool, time limits, serializer, queues and routing), read before
anything starts from its `app.conf` in a child in Celery's environment (`read_app`), recorded in its options
(`app_settings`) and printed by every report; only its connections are taskbench's (the service module says which).
The worker's `--concurrency` stays taskbench's, so sweeps and capacity plans still work; the pool, prefetch and
child replacement are the app's (`--pool`, `--prefetch` and `--max-tasks-per-child` set taskbench's Celery only).
Its delivery is its own settings: the worker faults run it once, as the variant `app`, whose promise states them.
"""

from __future__ import annotations

import argparse
import uuid
from collections.abc import Mapping
from typing import Literal

from taskbench.argtypes import bounded
from taskbench.capacity import Capacity
from taskbench.errors import UsageError
from taskbench.implementations import user_app
from taskbench.implementations.base import (
    ASYNC_WORKLOADS,
    PORT,
    Companion,
    Delivery,
    Implementation,
    Outcome,
    cpu_bound,
    python_module,
)
from taskbench.implementations.user_app import AppOptions
from taskbench.record.results import ApiOptions, OptionValue, PluginOptions
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


class CeleryOptions(AppOptions):
    """Celery's worker (--pool, --prefetch, --max-tasks-per-child; `serve --flower`). The defaults are the spec's:
    the prefork pool with prefetch 1, children never replaced. `--app` (`celery+app`): the user's own app and what
    its `app.conf` said before the run."""

    pool: Literal["prefork", "threads", "gevent", "solo"] = "prefork"
    prefetch: int = 1  # worker_prefetch_multiplier
    max_tasks_per_child: int | None = None  # prefork only: a child is replaced after this many jobs
    flower: bool = False  # `serve --flower`: Flower beside the worker (never in `run`)

    def effective_pool(self) -> str:
        """The worker's pool as `--pool` names it: the option's, or the user's app's `worker_pool`."""
        if self.app is None:
            return self.pool
        return APP_POOLS.get(pool := (self.app_settings or {}).get("worker_pool", "prefork"), pool)


# Celery's names for its pools (worker_pool) → taskbench's (--pool); a pool class path stays as it is.
APP_POOLS = {"prefork": "prefork", "processes": "prefork", "threads": "threads", "gevent": "gevent", "solo": "solo",
             "eventlet": "eventlet"}  # fmt: skip
PATCHED_POOLS = ("gevent", "eventlet")  # Celery monkey-patches for them only when `--pool` is in its argv
KOMBU_VISIBILITY_TIMEOUT_S = 3600.0  # kombu's Redis transport, when broker_transport_options do not say

# After user_app.PROBE_HEAD, in Celery's environment: the app's effective settings. Nothing connects to a server.
APP_PROBE = r"""
app = found
import celery
if not isinstance(app, celery.Celery):
    answer(error=f"{path} is a {type(app).__module__}.{type(app).__qualname__}, not a celery.Celery app")
try:
    conf = app.conf
    consumed = list(app.amqp.queues)  # what its worker consumes, before routing may add a queue
    job_queue = app.amqp.router.route({}, "taskbench.run_job")["queue"].name
    transport = dict(conf.broker_transport_options or {})
    queues = conf.task_queues
    settings = {
        "task_acks_late": text(conf.task_acks_late),
        "task_reject_on_worker_lost": text(conf.task_reject_on_worker_lost),
        "worker_prefetch_multiplier": text(conf.worker_prefetch_multiplier),
        "visibility_timeout": text(transport.get("visibility_timeout")),
        "task_default_queue": text(conf.task_default_queue),
        "task_queues": ", ".join(getattr(q, "name", str(q)) for q in queues) if queues else "None",
        "consumed_queues": ", ".join(consumed),
        "job_queue": job_queue,
        "task_routes": text(conf.task_routes),
        "task_serializer": text(conf.task_serializer),
        "accept_content": text(conf.accept_content),
        "result_serializer": text(conf.result_serializer),
        "task_time_limit": text(conf.task_time_limit),
        "task_soft_time_limit": text(conf.task_soft_time_limit),
        "worker_pool": text(conf.worker_pool),
        "worker_concurrency": text(conf.worker_concurrency),
        "worker_max_tasks_per_child": text(conf.worker_max_tasks_per_child),
        "broker": str(conf.broker_url or "None").split("://", 1)[0],  # the scheme alone: never a password
        "result_backend": str(conf.result_backend or "None").split("://", 1)[0],
        "celery": celery.__version__,
    }
except Exception as exc:
    answer(error=f"reading {path}'s settings raised {type(exc).__name__}: {exc}")
if job_queue not in consumed:
    answer(error=f"taskbench's task would go to queue {job_queue!r}, which your app's worker does not consume "
           f"({', '.join(consumed)}): route taskbench.run_job to one of those in task_routes, or add {job_queue!r} to "
           "task_queues")
answer(settings=settings)
"""


class CeleryBeat(Beat):
    pool: Text = None  # prefork, threads, gevent, solo: what its concurrency means


class CeleryImplementation(Implementation):
    name = "celery"
    title = "Celery"
    on_sigterm = (  # a deploy: what its worker does when its main process is sent SIGTERM
        "warm shutdown (celery/apps/worker.py): stops consuming, waits for running jobs with no limit but "
        "task_time_limit, and returns prefetched messages to the queue; a second SIGTERM changes nothing "
        "(cold shutdown is SIGQUIT; worker_soft_shutdown_timeout 0, off)"
    )
    outliving_timeout = (
        "acknowledged late, it is delivered again while it still runs: kombu's restore sweep takes back every "
        "unacknowledged message older than the visibility timeout, which nothing renews (so Celery's docs ask for a "
        "visibility timeout longer than the longest job); acknowledged on receipt (the default), a running job is "
        "not, but one waiting in the worker's prefetch longer than the timeout is (unacknowledged until it starts), "
        "again and again; on RabbitMQ there is no such timeout"
    )
    Options = CeleryOptions
    beat_model = CeleryBeat
    # flower: `serve --flower`, Celery's monitoring UI (never imported by the worker or the API)
    packages = ("celery[redis]>=5.5", "flower>=2.0")
    queue_package = "celery"
    memory_per_slot = True  # prefork: one process per unit of --concurrency
    # taskbench's own app's delivery variants; with --app, `deliveries` is the one the user's settings make
    own_deliveries = (
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
    own_amqp_deliveries = (
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

    def __init__(self) -> None:
        # The user's app this instance measures (`read_app`; `implementations.APPS` holds the instance that runs
        # apps): the plan's worker faults and each scenario's delivery record read `deliveries`, which no run option
        # reaches, so the plugin holds it for the run.
        self._app: CeleryOptions | None = None

    # A class variable elsewhere; here it follows the app the run measures.
    @property
    def deliveries(self) -> tuple[Delivery, ...]:  # type: ignore[override]
        return self.own_deliveries if self._app is None else (app_delivery(self._app, amqp=False),)

    @property
    def amqp_deliveries(self) -> tuple[Delivery, ...]:  # type: ignore[override]
        return self.own_amqp_deliveries if self._app is None else (app_delivery(self._app, amqp=True),)

    def add_arguments(self, parser: argparse.ArgumentParser, command: str) -> None:
        group = parser.add_argument_group("Celery's worker")
        pools = list(POOLS)
        group.add_argument(
            "--pool", choices=pools, help="Celery's worker pool (default prefork; celery+app: your app's)"
        )
        if command == "env":
            return
        group.add_argument(
            "--prefetch",
            type=bounded(int, 1, 1000),
            help="Celery's worker_prefetch_multiplier (default 1; celery+app: your app's)",
        )
        if command == "serve":
            group.add_argument(
                "--flower", action="store_true", help="also start Flower (Celery's monitoring UI) on 127.0.0.1"
            )

    def options_from(self, args: argparse.Namespace) -> PluginOptions:
        """The flags given, for taskbench's set-up of Celery (`celery+app`, the user's app, has its own: `read_app`)."""
        options = CeleryOptions(
            pool=args.pool or "prefork",
            prefetch=getattr(args, "prefetch", None) or 1,
            max_tasks_per_child=getattr(args, "max_tasks_per_child", None),
            flower=getattr(args, "flower", False),
        )
        if options.max_tasks_per_child is not None and options.pool != "prefork":
            raise UsageError(f"--max-tasks-per-child replaces prefork children; --pool {options.pool} has none")
        return options.model_dump(exclude_defaults=True, exclude_none=True)

    def read_app(
        self, options: PluginOptions, python: str, environ: Mapping[str, str], external: bool
    ) -> PluginOptions:
        """`--app`: import the user's app in a child with Celery's environment's `python` (their working directory
        on its path in `environ`) and read its effective settings; `options` with them (`app_settings`). An
        import that fails, an attribute that is not a Celery app, a queue its worker would not consume, an app that
        accepts pickle on a server taskbench does not own (`external`: whoever writes there would run code in its
        worker): one line (UsageError). The plugin measures that app from now on (its delivery: `deliveries`)."""
        opts = CeleryOptions.model_validate(options)
        assert opts.app is not None, "read_app reads the app --app names"
        flag = f"--app {self.name}={opts.app}"
        read_settings = user_app.read(python, APP_PROBE, opts.app, environ, flag)
        read = CeleryOptions.model_validate(opts.model_dump() | {"app_settings": read_settings})
        accepted = (read.app_settings or {}).get("accept_content", "").split(", ")
        if external and "pickle" in accepted:
            raise UsageError(
                f"{flag}: your app accepts pickle, and on a server taskbench does not own whoever can write there "
                "could run code in its worker: measure it on taskbench's private Redis (drop --redis-url)"
            )
        self._app = read
        return read.model_dump(exclude_defaults=True)

    def option_flags(self, given: Mapping[str, OptionValue]) -> str:
        """With --app, the app alone: the pool and prefetch are its own."""
        opts = CeleryOptions.model_validate(dict(given))
        if opts.app is None:
            return super().option_flags(given)
        return f"--app {self.name}={opts.app}" + (", --flower" if opts.flower else "")

    def worker_argv(self, concurrency: int, options: PluginOptions) -> list[str]:
        """The pool on the command line, not in the config: Celery monkey-patches for gevent only when
        `--pool`/`-P` is in its argv (celery/__main__.py, maybe_patch_concurrency). With --app, the app's own pool
        and prefetch (their config; `--pool` only for a pool Celery patches for), taskbench's --concurrency."""
        opts = CeleryOptions.model_validate(options)
        argv = python_module(
            "celery", "-A", APP, "worker", "--loglevel", "info", "--concurrency", str(concurrency),
            "--without-gossip", "--without-mingle", "-n", f"taskbench-{uuid.uuid4().hex[:6]}@%h",
        )  # fmt: skip
        if opts.app is not None:
            pool = opts.effective_pool()
            return argv + (["--pool", pool] if pool in PATCHED_POOLS else [])
        argv += ["--pool", opts.pool, "--prefetch-multiplier", str(opts.prefetch)]
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
        gevent = CeleryOptions.model_validate(options).effective_pool() == "gevent"
        return self.packages + (("gevent>=24.2",) if gevent else ())

    def applies(self, fault: str, options: PluginOptions) -> bool:
        """Only the prefork pool has child processes to kill."""
        pool = CeleryOptions.model_validate(options).effective_pool()
        return super().applies(fault, options) and (fault != "worker-child-crash" or pool == "prefork")

    def nominal_workers(self, concurrency: int, cpu_count: int, options: PluginOptions) -> list[Beat]:
        return [CeleryBeat(concurrency=concurrency, pool=CeleryOptions.model_validate(options).effective_pool())]

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
        if opts.app is not None:
            return app_settings_shown(opts, concurrency)
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
            "unacked restore lock": "unacked_mutex, 300 s (kombu's unacked_mutex_expire default): a connection "
            "dropped while a worker restores leaves it held, and nothing is restored until it expires",
            "gossip / mingle": "off",
        }

    def settings_on(
        self, concurrency: int, broker: str, options: PluginOptions, api: ApiOptions, external: bool = False
    ) -> dict[str, str]:
        """With --app, the app's settings and where taskbench points its connections (its queue names are its own)."""
        opts = CeleryOptions.model_validate(options)
        if opts.app is None:
            return super().settings_on(concurrency, broker, options, api, external)
        theirs = (opts.app_settings or {}).get("broker", "?")
        if self.broker_for(broker) != "amqp":
            where = {
                "broker": f"taskbench's Redis (kombu's Redis transport; your app's: {theirs}), every key and channel "
                f"prefixed `taskbench:` (kombu's global_keyprefix; the results' too){ON_A_FLAGGED_SERVER}",
            }
        else:
            where = {
                "broker": f"taskbench's private RabbitMQ (py-amqp; your app's: {theirs}); results and records in Redis",
                "visibility_timeout": "none on RabbitMQ: a dead worker's unacknowledged messages are requeued as soon "
                "as its connection drops",
            }
        backend = {
            "result backend": f"taskbench's Redis (your app's: {(opts.app_settings or {}).get('result_backend')})"
        }
        return self.settings(concurrency, options, api) | where | backend

    def stranded_locks(self, namespace: str, broker: str) -> tuple[str, ...]:
        """kombu's restore lock (`unacked_mutex`, expiring after `unacked_mutex_expire`, 300 s): a connection dropped
        while its holder restores leaves it, and no worker restores unacknowledged messages until it expires."""
        return () if self.broker_for(broker) == "amqp" else (f"{namespace}:unacked_mutex",)

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
        pool = CeleryOptions.model_validate(options).effective_pool()
        return what + {
            "prefork": "a prefork child",
            "threads": "a thread of the worker process",
            "gevent": "a greenlet of the worker process",
            "eventlet": "a green thread of the worker process",
            "solo": "the worker's main process, one at a time",
        }.get(pool, f"the worker's {pool} pool")


def _seconds(text: str | None) -> float | None:
    try:
        return float(text) if text not in (None, "None") else None
    except ValueError:
        return None


def app_delivery(opts: CeleryOptions, amqp: bool) -> Delivery:
    """The one delivery of the user's app: what its own settings promise, stated with them."""
    s = opts.app_settings or {}
    acks_late, reject = s.get("task_acks_late") == "True", s.get("task_reject_on_worker_lost") == "True"
    timeout = _seconds(s.get("visibility_timeout")) or KOMBU_VISIBILITY_TIMEOUT_S
    stated = f"your app's settings: task_acks_late={acks_late}, task_reject_on_worker_lost={reject}"
    stated += "" if amqp else f", visibility_timeout={timeout:g} s"
    children: Outcome | None = "lost" if opts.effective_pool() == "prefork" else None
    if not acks_late:
        taken = "when a pool process takes it" if amqp else "on receipt"
        return Delivery(
            "app",
            f"{stated}: at most once: acknowledged {taken}, so a job whose worker dies is lost",
            worker_crash="lost",
            child_crash=children,
        )
    back = (
        "as soon as its connection drops"
        if amqp
        else f"after the visibility timeout, {timeout:g} s: past a scenario's wait, such jobs count as lost there"
    )
    if reject:
        promise = f"at least once: a killed pool process' job is requeued at once, a dead worker's {back}"
        return Delivery("app", f"{stated}: {promise}", "redelivered", "redelivered" if children else None)
    promise = f"at least once when the whole worker dies, redelivered {back}; a killed pool process' job is lost"
    return Delivery("app", f"{stated}: {promise}", worker_crash="redelivered", child_crash=children)


def app_settings_shown(opts: CeleryOptions, concurrency: int) -> dict[str, str]:
    """What every report prints of a run with --app: the user's app's own settings, as it was configured."""
    s = opts.app_settings or {}
    serializers = {s.get("task_serializer"), *s.get("accept_content", "").split(", ")}
    serializer = (
        f"{s.get('task_serializer')} (accept_content: {s.get('accept_content')}; results: {s.get('result_serializer')})"
    )
    if "pickle" in serializers:
        serializer += "; pickle as your app sets it (taskbench's task sends JSON-safe arguments)"
    timeout = _seconds(s.get("visibility_timeout"))
    pool = s.get("worker_pool", "prefork")
    children = s.get("worker_max_tasks_per_child", "None")
    return {
        "app": f"{opts.app}: your Celery app {s.get('celery', '')}, as it is configured (app.conf, read before the "
        "run); taskbench sets only its connections: broker, result backend, key prefix",
        "task_acks_late": s.get("task_acks_late", "?"),
        "task_reject_on_worker_lost": s.get("task_reject_on_worker_lost", "?"),
        "worker_prefetch_multiplier": s.get("worker_prefetch_multiplier", "?"),
        "visibility_timeout": f"{timeout:g} s (your broker_transport_options)"
        if timeout is not None
        else f"{KOMBU_VISIBILITY_TIMEOUT_S:g} s (kombu's default: your broker_transport_options do not set it)",
        "queue": f"`{s.get('job_queue')}`: where your app routes taskbench.run_job (task_default_queue "
        f"`{s.get('task_default_queue')}`, task_queues {s.get('task_queues')}); the worker consumes "
        f"{s.get('consumed_queues')}",
        "task_routes": s.get("task_routes", "?"),
        "serializer": serializer,
        "time limits": f"task_time_limit {s.get('task_time_limit')}, task_soft_time_limit "
        f"{s.get('task_soft_time_limit')}",
        "pool": f"{pool} (your worker_pool), --concurrency {concurrency}: taskbench's --concurrency (your "
        f"worker_concurrency: {s.get('worker_concurrency')})",
        "max_tasks_per_child": "never replaced (Celery's default)" if children == "None" else children,
        "gossip / mingle": "off (taskbench's worker command line)",
    }


IMPLEMENTATION = CeleryImplementation()
