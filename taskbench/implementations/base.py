"""The harness side of the implementation contract.

An implementation is one module in this package defining an `Implementation` named `IMPLEMENTATION`:
the worker it needs (if any), how many jobs it runs at once for a workload and why (its capacity model),
its delivery settings (what a worker's death does to a running job), which faults apply to it, and the
settings that change its timing, which every report prints. `taskbench.implementations.REGISTRY` lists them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar, Literal

from taskbench.capacity import Capacity
from taskbench.health import Beat, Health
from taskbench.results import WorkerOptions

ASYNC_WORKLOADS = ("async_sleep", "blocking_async")
ALL_FAULTS = ("api-crash", "api-deploy", "worker-crash", "worker-child-crash", "redis-restart")
# Where jobs wait (--broker): Redis for every queue, or RabbitMQ (AMQP) for the queues that speak it. Records,
# the ledger and heartbeats stay in Redis either way.
BROKERS = ("redis", "amqp")
# On RabbitMQ a dead consumer's unacknowledged messages are requeued as soon as its connection drops, so a
# crashed job starts again once a worker consumes: the harness restarts the only one, which takes seconds.
AMQP_REDELIVERY_BOUND_S = 20.0


# What happens to the jobs a worker was running when it is SIGKILLed: gone for good, run again (after the
# queue's timeout, or at once), or untouched because they never ran there. tests/test_delivery_promises.py
# checks every implementation's declared outcomes against real crashes.
Outcome = Literal["lost", "redelivered", "unaffected"]


@dataclass(frozen=True)
class Delivery:
    """A named delivery setting (passed to the service as TASKBENCH_DELIVERY) and what it promises."""

    name: str
    promise: str  # in words, for the reports: at most / at least once, after which timeout
    worker_crash: Outcome  # the whole worker (main process and children) is SIGKILLed
    child_crash: Outcome | None = None  # only its child processes are; None: it has none


class Implementation(ABC):
    name: ClassVar[str]
    title: ClassVar[str]  # how reports name it: "BackgroundTasks", "Celery"
    deliveries: ClassVar[tuple[Delivery, ...]]  # the first is the default; worker faults run each
    faults: ClassVar[tuple[str, ...]] = ALL_FAULTS
    # Each unit of --concurrency is a process of its own (a prefork pool, RQ's worker pool): memory grows with
    # concurrency, and the verdict extrapolates it linearly. Threads and coroutines share their process.
    memory_per_slot: ClassVar[bool] = False
    brokers: ClassVar[tuple[str, ...]] = ("redis",)  # what its jobs can wait in
    amqp_deliveries: ClassVar[tuple[Delivery, ...]] = ()  # on RabbitMQ: the same names, what they promise there
    # Records in the memory of the API process that took the job (BackgroundTasks): under --api-workers N no
    # single answer holds them all, so the harness rebuilds them from the ledger (taskbench.records).
    records_in_api_process: ClassVar[bool] = False
    # Its environment (taskbench.venvs): the queue's packages, installed beside the service's at the newest
    # release the package index serves; `queue_package` is the one `name@VERSION` pins.
    packages: ClassVar[tuple[str, ...]] = ()
    queue_package: ClassVar[str]

    @property
    def worker_role(self) -> str:
        return f"{self.name}-worker"

    @property
    def job_process(self) -> str:
        """The sampled process whose CPU and memory the jobs use: its worker, or the API."""
        return self.worker_role if self.has_worker else "api"

    def requirements(self, options: WorkerOptions) -> tuple[str, ...]:
        """What its environment installs for this run: `packages`, and what the run's options add."""
        return self.packages

    @property
    def has_worker(self) -> bool:
        return self.worker_argv(1) is not None

    def worker_argv(self, concurrency: int) -> list[str] | None:
        """The worker's command line (`PYTHON` stands for its environment's interpreter); None when the jobs run
        inside the API process."""
        return None

    def worker_command(self, concurrency: int, options: WorkerOptions) -> list[str] | None:
        """The command line with the run's worker options (`--pool` and co.), for the queues that take them."""
        return self.worker_argv(concurrency)

    def worker_settings(self, concurrency: int, options: WorkerOptions) -> dict[str, str]:
        """`settings`, as the run's worker options make them: what every report prints."""
        return self.settings(concurrency)

    def how_it_runs_with(self, workload: str, options: WorkerOptions) -> str:
        """`how_it_runs`, as the run's worker options make it (Celery's pool)."""
        return self.how_it_runs(workload)

    def applies(self, fault: str, options: WorkerOptions) -> bool:
        """Whether a fault means something here with these worker options (no pool children, no child crash)."""
        return fault in self.faults

    @abstractmethod
    def capacity(self, workload: str, jobs: int, concurrency: int, cpu_count: int, health: Health) -> Capacity:
        """How many jobs run at once for this workload; `health` is what the service's /health says."""

    @abstractmethod
    def settings(self, concurrency: int) -> dict[str, str]:
        """Every setting that changes timing (prefetch, polling, acknowledgement), for the reports."""

    @abstractmethod
    def how_it_runs(self, workload: str) -> str:
        """How a job of this workload runs here (thread pool, event loop, asyncio.run per job, ...)."""

    def nominal_workers(self, concurrency: int, cpu_count: int) -> list[Beat]:
        """The heartbeats a healthy worker sends at this concurrency: the capacity model before the stack
        is up (the plan's estimate); at run time the real heartbeats from /health replace them."""
        return [Beat(concurrency=concurrency)]

    def settings_on(self, concurrency: int, broker: str, options: WorkerOptions) -> dict[str, str]:
        """What the reports print: `settings` as the worker options make them, with those of the broker the jobs
        really waited in."""
        return self.worker_settings(concurrency, options) | self.broker_settings(self.broker_for(broker))

    def broker_settings(self, broker: str) -> dict[str, str]:
        """The settings that change with the broker, over those of `settings` (same keys replace them)."""
        return {"broker": "Redis"} if self.has_worker else {}

    def redelivery_bound_s(self, timeout_s: float, concurrency: int, running: int) -> float:
        """The latest a crashed job may start again after the crash, given the redelivery timeout the harness
        set, when the queue adds fixed delays of its own: the timeout plus a sweep or two by default."""
        return timeout_s + 5.0

    def broker_for(self, broker: str) -> str:
        """The broker its jobs really wait in when the run asks for `broker`: Redis where it knows no other."""
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

    def workers_seen(self, health: Health) -> list[Beat]:
        return health.section(self.name).workers


PYTHON = "{python}"  # in a command line: the interpreter of the implementation's environment (Stack fills it in)


def python_module(*argv: str) -> list[str]:
    """A module run with the interpreter of the implementation's environment."""
    return [PYTHON, "-m", *argv]


def cpu_bound(total: int, cpu_count: int, unit: str) -> Capacity:
    return Capacity(
        concurrency=min(total, cpu_count), reason=f"{total} {unit} on {cpu_count} cores", cpu_cores=cpu_count
    )
