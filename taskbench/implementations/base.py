"""The harness side of the implementation contract.

An implementation is one module in this package defining an `Implementation` named `IMPLEMENTATION`:
the packages of its environment, the worker it needs (if any), its own options and their command-line flags,
the fields of its workers' heartbeats, how many jobs it runs at once for a workload and why (its capacity
model), its delivery settings (what a worker's death does to a running job), which faults apply to it, the
settings that change its timing, which every report prints, and any process it runs beside its worker
(Celery's Flower). Nothing outside its module names it; `taskbench.implementations.REGISTRY` lists them.
"""

from __future__ import annotations

import argparse
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar, Literal

import redis
from pydantic import BaseModel

from taskbench.capacity import Capacity
from taskbench.errors import StackError
from taskbench.record.results import ApiOptions, OptionValue, PluginOptions
from taskbench_wire import enums
from taskbench_wire.health import Beat, Health

ASYNC_WORKLOADS = enums.ASYNC_WORKLOADS
ALL_FAULTS = enums.FAULTS
# Where jobs wait (--broker): Redis for every queue, or RabbitMQ (AMQP) for the queues that speak it. Records,
# the ledger and heartbeats stay in Redis either way.
BROKERS = ("redis", "amqp")
# On RabbitMQ a dead consumer's unacknowledged messages are requeued as soon as its connection drops, so a
# crashed job starts again once a worker consumes: the harness restarts the only one, which takes seconds.
AMQP_REDELIVERY_BOUND_S = 20.0
# The serializer of the queues that pickle by default, on a server taskbench does not own (docs/security.md)
JSON_ON_EXTERNAL = "JSON (a server taskbench does not own: anyone with its password could write a pickle there)"


# What happens to the jobs a worker was running when it is SIGKILLed: gone for good, run again (after the
# queue's timeout, or at once), or untouched because they never ran there. tests/test_delivery_promises.py
# checks every implementation's declared outcomes against real crashes.
# "either": lost or redelivered depending on timing the queue does not control (the promise says on what).
Outcome = Literal["lost", "redelivered", "unaffected", "either"]


@dataclass(frozen=True)
class Delivery:
    """A named delivery setting (passed to the service as TASKBENCH_DELIVERY) and what it promises."""

    name: str
    promise: str  # in words, for the reports: at most / at least once, after which timeout
    worker_crash: Outcome  # the whole worker (main process and children) is SIGKILLed
    child_crash: Outcome | None = None  # only its child processes are; None: it has none


class NoOptions(BaseModel):
    """An implementation with no options of its own (its queue's knobs follow --concurrency)."""


@dataclass(frozen=True)
class Companion:
    """A process an implementation runs beside its worker, in its environment, on a loopback port the stack
    picks (Celery's Flower): `argv` with `PYTHON` and `PORT` for the interpreter and the port."""

    name: str
    what: str  # for messages and `serve`'s listing: "Flower (Celery's monitoring UI)"
    argv: tuple[str, ...]
    ready_path: str  # answers 200 on http://127.0.0.1:PORT once it is ready
    env: Mapping[str, str] = field(default_factory=dict)

    def command(self, python: str, port: int) -> list[str]:
        return [python if a == PYTHON else a.replace(PORT, str(port)) for a in self.argv]


class Implementation(ABC):
    name: ClassVar[str]
    title: ClassVar[str]  # how reports name it: "BackgroundTasks", "Celery"
    deliveries: ClassVar[tuple[Delivery, ...]]  # the first is the default; worker faults run each
    faults: ClassVar[tuple[str, ...]] = ALL_FAULTS
    # What befalls a job still running when its redelivery timeout passes, the worker alive (the fault long-job);
    # None where nothing times out while a job runs (its worker renews its claim by a heartbeat, or never redelivers)
    outliving_timeout: ClassVar[str | None] = None
    # Where its worker renews a running job's claim on the event loop its async jobs run on (a job that blocks that
    # loop blocks the renewal, `blocked-loop`): how, read in its source; None where it renews elsewhere or never.
    renews_on_loop: ClassVar[str | None] = None
    # Whether its worker's settings derive from the redelivery timeout and the restore interval: a change restarts
    # the worker where they do, and would restart it for nothing where they do not.
    reads_redelivery_timeout: ClassVar[bool] = True
    timeout_step_s: ClassVar[float] = 0.0  # the shortest redelivery timeout it takes (SAQ: whole seconds, 1 at least)
    # How long its worker must have run again after being paused (Stack.pause_neighbours) before its first job is
    # taken as promptly as ever: measured per queue, a scenario waits it out; 0 where the first job is not late.
    settle_after_pause_s: ClassVar[float] = 0.0
    on_sigterm: ClassVar[str] = ""  # its worker's shutdown, as a deploy starts it (worker-deploy); every report says
    # Each unit of --concurrency is a process of its own (a prefork pool, RQ's worker pool): memory grows with
    # concurrency, and the verdict extrapolates it linearly. Threads and coroutines share their process.
    memory_per_slot: ClassVar[bool] = False
    brokers: ClassVar[tuple[str, ...]] = ("redis",)  # what its jobs can wait in
    # Its jobs wait in PostgreSQL (procrastinate, pgqueuer): the stack starts a private server, or uses
    # --postgres-url, and passes it as TASKBENCH_POSTGRES_URL; records, ledger and heartbeats stay in Redis.
    needs_postgres: ClassVar[bool] = False
    # The oldest Redis its queue runs on (streaQ loads Redis functions: 7.0); the embedded Redis is chosen to meet
    # every selected queue's (taskbench.stack.redis_server.server_for). Empty: any Redis taskbench starts.
    redis_min_version: ClassVar[tuple[int, ...]] = ()
    # Why it cannot run on a server taskbench does not own (it unpickles what anyone writing there puts): "" if it can
    pickles_only: ClassVar[str] = ""
    amqp_deliveries: ClassVar[tuple[Delivery, ...]] = ()  # on RabbitMQ: the same names, what they promise there
    # Records in the memory of the API process that took the job (BackgroundTasks): under --api-workers N no
    # single answer holds them all, so the harness rebuilds them from the ledger (taskbench.measure.records).
    records_in_api_process: ClassVar[bool] = False
    # Its environment (taskbench.envs.venvs): the queue's packages, installed beside the service's at the newest
    # release the package index serves; `queue_package` is the one `name@VERSION` pins.
    packages: ClassVar[tuple[str, ...]] = ()
    queue_package: ClassVar[str]
    # Its own options (a typed model; recorded as `RunSettings.options[name]`) and its heartbeats' fields.
    Options: ClassVar[type[BaseModel]] = NoOptions
    beat_model: ClassVar[type[Beat]] = Beat

    @property
    def worker_role(self) -> str:
        return f"{self.name}-worker"

    @property
    def has_worker(self) -> bool:
        return self.worker_argv(1, {}) is not None

    # --- its options ------------------------------------------------------------------------------------

    def add_arguments(self, parser: argparse.ArgumentParser, command: str) -> None:  # noqa: B027 — optional
        """Its command-line flags for `command` (run, serve, env), in a group of its own."""

    def options_from(self, args: argparse.Namespace) -> PluginOptions:
        """The options the flags gave, those that differ from the defaults (UsageError when they conflict)."""
        return {}

    def options(self, given: Mapping[str, OptionValue] | None = None) -> BaseModel:
        """The typed options: what was given, over the defaults."""
        return self.Options.model_validate(dict(given or {}))

    def option_flags(self, given: Mapping[str, OptionValue]) -> str:
        """The options as flags, for the reports' topology line (those unset or off left out)."""
        shown = {k: v for k, v in self.options(given).model_dump().items() if v is not None and v is not False}
        return ", ".join(f"--{k.replace('_', '-')}" + ("" if v is True else f" {v}") for k, v in shown.items())

    # --- its processes ----------------------------------------------------------------------------------

    def requirements(self, options: PluginOptions) -> tuple[str, ...]:
        """What its environment installs for this run: `packages`, and what the options add."""
        return self.packages

    def worker_argv(self, concurrency: int, options: PluginOptions) -> list[str] | None:
        """The worker's command line (`PYTHON` stands for its environment's interpreter); None when the jobs run
        inside the API process."""
        return None

    def setup_argv(self) -> list[str] | None:
        """A command run once in its environment before its API and worker start, with their environment (a
        PostgreSQL queue installs its schema there); None: nothing to set up. It must be idempotent."""
        return None

    def redis_patterns(self, namespace: str) -> tuple[str, ...]:
        """What its service writes on Redis beside `{namespace}:*` (keys whose prefix the queue fixes), for the
        clean-up of a server taskbench does not own (`forget`): patterns that match nothing of anyone else's."""
        return ()

    def forget(self, client: redis.Redis, namespace: str) -> None:
        """Delete what its service wrote on a server taskbench does not own, and nothing else."""
        for pattern in (f"{namespace}:*", *self.redis_patterns(namespace)):
            for key in client.scan_iter(match=pattern, count=1000):
                client.unlink(key)

    def stranded_locks(self, namespace: str, broker: str) -> tuple[str, ...]:
        """The Redis keys of locks its queue takes that a dropped connection can leave held until they expire (a
        fault that drops connections says how long each had left, then releases it for the next scenario)."""
        return ()

    def companions(self, options: PluginOptions) -> list[Companion]:
        """Processes it runs beside its worker with these options."""
        return []

    def applies(self, fault: str, options: PluginOptions) -> bool:
        """Whether a fault that asks the implementation means something here with these options (no pool
        children, no child crash); a fault with a rule of its own (`taskbench.faults`) does not ask."""
        return fault in self.faults

    # --- what the reports say ---------------------------------------------------------------------------

    @abstractmethod
    def settings(self, concurrency: int, options: PluginOptions, api: ApiOptions) -> dict[str, str]:
        """Every setting that changes timing (prefetch, polling, acknowledgement), for the reports."""

    @abstractmethod
    def how_it_runs(self, workload: str, options: PluginOptions) -> str:
        """How a job of this workload runs here (thread pool, event loop, asyncio.run per job, ...)."""

    def settings_on(
        self, concurrency: int, broker: str, options: PluginOptions, api: ApiOptions, external: bool = False
    ) -> dict[str, str]:
        """What the reports print: `settings`, with those of the broker the jobs really waited in, and on servers of
        someone else's (`external`) what changes there."""
        shown = self.settings(concurrency, options, api) | self.broker_settings(self.broker_for(broker))
        shown |= {"on SIGTERM": self.on_sigterm} if self.on_sigterm else {}
        shown |= {"a job outliving its timeout": self.outliving_timeout} if self.outliving_timeout else {}
        shown |= {"a job that blocks its event loop": self.renews_on_loop} if self.renews_on_loop else {}
        return shown | (self.external_settings() if external else {})

    def external_settings(self) -> dict[str, str]:
        """What changes on a server taskbench does not own (its serializer: no pickle there)."""
        return {}

    def broker_settings(self, broker: str) -> dict[str, str]:
        """The settings that change with the broker, over those of `settings` (same keys replace them)."""
        if not self.has_worker:
            return {}
        return {"broker": "PostgreSQL"} if self.needs_postgres else {"broker": "Redis"}

    # --- its capacity -----------------------------------------------------------------------------------

    def capacity(self, workload: str, jobs: int, concurrency: int, cpu_count: int, health: Health) -> Capacity:
        """How many jobs run at once for this workload; `health` is what the service's /health says. A queue
        whose worker the service does not see runs nothing: that is a stack error, not a capacity of 0."""
        workers = self.workers_seen(health)
        if self.has_worker and not workers:
            raise StackError(f"no {self.title} worker is seen by the service (GET /health): start one")
        return self.model(workload, jobs, cpu_count, workers, health)

    @abstractmethod
    def model(self, workload: str, jobs: int, cpu_count: int, workers: list[Beat], health: Health) -> Capacity:
        """The capacity model, from the workers' heartbeats (as `beat_model`)."""

    def nominal_workers(self, concurrency: int, cpu_count: int, options: PluginOptions) -> list[Beat]:
        """The heartbeats a healthy worker sends at this concurrency: the capacity model before the stack
        is up (the plan's estimate); at run time the real heartbeats from /health replace them."""
        return [self.beat_model(concurrency=concurrency)]

    def workers_seen(self, health: Health) -> list[Beat]:
        return [self.beat_model.model_validate(beat.model_dump()) for beat in health.section(self.name).workers]

    # --- its deliveries ---------------------------------------------------------------------------------

    def redelivery_bound_s(self, timeout_s: float, concurrency: int, running: int) -> float:
        """The latest a crashed job may start again after the crash, given the redelivery timeout the harness
        set, when the queue adds fixed delays of its own: the timeout plus a sweep or two by default."""
        return timeout_s + 5.0

    def broker_for(self, broker: str) -> str:
        """The broker its jobs really wait in when the run asks for `broker`: Redis where it knows no other,
        PostgreSQL for the PostgreSQL queues."""
        if self.needs_postgres:
            return "postgres"
        return broker if broker in self.brokers else "redis"

    def deliveries_on(self, broker: str) -> tuple[Delivery, ...]:
        return self.amqp_deliveries if self.broker_for(broker) == "amqp" else self.deliveries

    def redelivery_bound_on(self, broker: str, timeout_s: float, concurrency: int, running: int) -> float:
        """`redelivery_bound_s` on that broker: on RabbitMQ no timeout applies, only the worker's restart."""
        if self.broker_for(broker) == "amqp":
            return AMQP_REDELIVERY_BOUND_S
        return self.redelivery_bound_s(timeout_s, concurrency, running)

    def delivery(self, name: str | None, broker: str = "redis") -> Delivery:
        deliveries = self.deliveries_on(broker)
        return next((d for d in deliveries if d.name == name), deliveries[0])


PYTHON = "{python}"  # in a command line: the interpreter of the implementation's environment (Stack fills it in)
PORT = "{port}"  # in a companion's command line: the port the stack gave it


def python_module(*argv: str) -> list[str]:
    """A module run with the interpreter of the implementation's environment."""
    return [PYTHON, "-m", *argv]


def cpu_bound(total: int, cpu_count: int, unit: str) -> Capacity:
    return Capacity(
        concurrency=min(total, cpu_count), reason=f"{total} {unit} on {cpu_count} cores", cpu_cores=cpu_count
    )


def event_loop_model(
    workload: str, cpu_count: int, workers: list[Beat], sync_threads: list[int], knob: str, sync_pool: str
) -> Capacity:
    """The asyncio queues' model (arq, SAQ, streaQ, procrastinate, pgqueuer): each heartbeat is one worker process
    running up to its `knob` jobs as coroutines on one event loop, sync jobs in a pool of `sync_threads` threads
    (one figure per worker), CPU jobs one per process (its GIL), and a blocking call in async def one per process
    (it holds the loop)."""
    total, processes = sum(w.concurrency for w in workers), len(workers)
    if workload == "blocking_async":
        return Capacity(
            concurrency=processes, reason=f"a blocking call in async def holds the event loop ({processes} worker)"
        )
    if workload == "cpu":
        return cpu_bound(processes, cpu_count, "worker processes (threads share one GIL each)")
    if workload in ASYNC_WORKLOADS or workload == "noop":
        return Capacity(concurrency=total, reason=f"{knob} {total}: coroutines on one event loop")
    running = sum(min(w.concurrency, t) for w, t in zip(workers, sync_threads, strict=True))
    return Capacity(concurrency=running, reason=f"{knob} {total}, sync def {sync_pool} of {max(sync_threads)} threads")
