"""Everything the service reads from its environment, in one place: the environment contract.

The variables are named in `taskbench_wire.env`, which the harness writes from; a test checks that this
module reads each one. A user running the spec's three terminals by hand gets the loopback defaults.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from taskbench_wire.env import (
    ALLOWED_HOSTS,
    API_TOKEN,
    APP,
    BROKER_URL,
    CONCURRENCY,
    DEFAULT_NAMESPACE,
    DELIVERY,
    HOST_LABEL,
    IMPLEMENTATIONS,
    JOB_TIMEOUT,
    JOBS,
    LEDGER,
    MIDDLEWARE,
    NAMESPACE,
    POSTGRES_URL,
    REDELIVERY_TIMEOUT,
    REDIS_TIMEOUT,
    REDIS_URL,
    RESTORE_INTERVAL,
    TELEMETRY_LEDGER,
    TELEMETRY_URL,
)
from taskbench_wire.urls import is_amqp

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"

# Bounds on what a client controls.
MAX_DURATION_S = 3600.0
MAX_MEMORY_MB = 2048
# What the `memory` jobs accepted by one API process and not finished may hold in all (BackgroundTasks run them
# there; a queue's run in its workers, --concurrency at a time): past it, a memory job is a 503.
MAX_MEMORY_IN_FLIGHT_MB = 8192
MAX_BODY_BYTES = 16 * 1024
DEFAULT_DURATION_S = 30.0  # the spec's job: time.sleep(30)
DEFAULT_MEMORY_MB = 50


@dataclass(frozen=True)
class Settings:
    # The broker of Celery and Dramatiq (Redis or RabbitMQ); `redis_url` holds everything else.
    broker_url: str
    result_backend: str
    redis_url: str
    # The PostgreSQL queues' database (postgresql://user:password@host:port/db); records stay in Redis.
    postgres_url: str = ""
    # Worker processes (or the queue's own concurrency knob) for the workers of every queue.
    concurrency: int = 4
    # A delivery variant by name; each implementation says what its names mean (see taskbench.faults.kills.WorkerFault).
    delivery: str = "default"
    # How long a queue waits before it treats an unacknowledged job as abandoned (Celery's visibility
    # timeout, and each other queue's equivalent); production defaults are an hour or so.
    redelivery_timeout_s: float = 3600.0
    # kombu sweeps for unacked messages every 10 × 10 s by default; the harness asks for 1 s.
    restore_interval_s: float | None = None
    # Where job code appends one line per execution start/end (the execution ledger); off when empty.
    ledger_path: str = ""
    redis_timeout_s: float = 2.0
    # The user's own job functions, fixed when the stack starts (taskbench_service.user_job); a request picks one
    # by index.
    jobs: tuple[str, ...] = ()
    job_timeout_s: float = 60.0
    # "base-http": the app runs behind a do-nothing BaseHTTPMiddleware, as users add for logging or auth.
    middleware: str = "none"
    # The implementations this process serves; empty: every one whose queue is installed here.
    implementations: tuple[str, ...] = ()
    # The stack's telemetry Redis and the ledger's stream there (taskbench_service.ledger); off when empty.
    telemetry_url: str = ""
    telemetry_ledger: str = ""
    # The host the ledger's events are attributed to (`taskbench worker --host-label`); empty: the host's name.
    host_label: str = ""
    # The prefix of every key, queue, stream and schema the service writes (taskbench_wire.env.NAMESPACE).
    namespace: str = DEFAULT_NAMESPACE
    # The bearer token every endpoint but the probes' asks for (empty: none, as for the spec's manual flow), and the
    # host names requests may carry beside loopback and IP literals (taskbench_service.guard).
    api_token: str = ""
    allowed_hosts: frozenset[str] = frozenset()
    # The user's own queue app (`--app`), `package.module:attribute`; empty: taskbench's own (its implementation
    # module says which queues take one).
    app: str = ""

    @property
    def foreign_servers(self) -> bool:
        """Whether the servers are someone else's (the stack names its namespace after its run there): no queue
        unpickles what it reads then (anyone with the server's password could write a payload)."""
        return self.namespace != DEFAULT_NAMESPACE

    @property
    def broker(self) -> str:
        """`amqp` (RabbitMQ) or `redis`: what Celery and Dramatiq run on."""
        return "amqp" if is_amqp(self.broker_url) else "redis"


def load() -> Settings:
    """The broker: TASKBENCH_BROKER_URL, else Celery's usual variable, else Redis. Records and results always
    live in a Redis: TASKBENCH_REDIS_URL, else CELERY_RESULT_BACKEND, else the broker when it is a Redis, else
    the loopback default."""
    env = os.environ
    broker = env.get(BROKER_URL) or env.get("CELERY_BROKER_URL") or env.get(REDIS_URL) or DEFAULT_REDIS_URL
    a_redis = (env.get(REDIS_URL) or DEFAULT_REDIS_URL) if is_amqp(broker) else broker
    backend = env.get("CELERY_RESULT_BACKEND") or a_redis
    restore = os.environ.get(RESTORE_INTERVAL)
    return Settings(
        broker_url=broker,
        result_backend=backend,
        # Job records live beside the results, so any API process that reaches the backend reads them.
        redis_url=env.get(REDIS_URL) or backend,
        postgres_url=env.get(POSTGRES_URL, ""),
        concurrency=int(os.environ.get(CONCURRENCY, "4")),
        delivery=os.environ.get(DELIVERY, "default"),
        redelivery_timeout_s=float(os.environ.get(REDELIVERY_TIMEOUT, "3600")),
        restore_interval_s=float(restore) if restore else None,
        ledger_path=os.environ.get(LEDGER, ""),
        redis_timeout_s=float(os.environ.get(REDIS_TIMEOUT, "2")),
        jobs=tuple(path for path in os.environ.get(JOBS, "").split(",") if path),
        job_timeout_s=float(os.environ.get(JOB_TIMEOUT, "60")),
        middleware=os.environ.get(MIDDLEWARE, "none"),
        implementations=tuple(name for name in os.environ.get(IMPLEMENTATIONS, "").split(",") if name),
        telemetry_url=env.get(TELEMETRY_URL, ""),
        telemetry_ledger=env.get(TELEMETRY_LEDGER, ""),
        host_label=env.get(HOST_LABEL, ""),
        namespace=env.get(NAMESPACE) or DEFAULT_NAMESPACE,
        api_token=env.get(API_TOKEN, ""),
        allowed_hosts=frozenset(h.strip().lower() for h in env.get(ALLOWED_HOSTS, "").split(",") if h.strip()),
        app=env.get(APP, "").strip(),
    )


settings = load()
