"""The environment contract: what the stack passes to the API server and every worker of an implementation.

The harness writes `ServiceEnv`; `taskbench_service.settings` reads exactly `ENV_VARS` (tests/test_contract.py
checks that both sides agree).
"""

from __future__ import annotations

import os

from pydantic import BaseModel

REDIS_URL = "TASKBENCH_REDIS_URL"
BROKER_URL = "TASKBENCH_BROKER_URL"
POSTGRES_URL = "TASKBENCH_POSTGRES_URL"  # where the PostgreSQL queues (procrastinate, pgqueuer) keep their jobs
LEDGER = "TASKBENCH_LEDGER"
REDIS_TIMEOUT = "TASKBENCH_REDIS_TIMEOUT"
CONCURRENCY = "TASKBENCH_CONCURRENCY"
DELIVERY = "TASKBENCH_DELIVERY"
REDELIVERY_TIMEOUT = "TASKBENCH_REDELIVERY_TIMEOUT"
RESTORE_INTERVAL = "TASKBENCH_RESTORE_INTERVAL"
JOBS = "TASKBENCH_JOBS"
JOB_TIMEOUT = "TASKBENCH_JOB_TIMEOUT"
MIDDLEWARE = "TASKBENCH_MIDDLEWARE"  # "none" or "base-http": a do-nothing BaseHTTPMiddleware in front of the app
# The implementations this process serves (comma-separated service module names); unset: every one whose queue
# is installed. Each implementation's environment holds one queue, so its API serves that one alone.
IMPLEMENTATIONS = "TASKBENCH_IMPLEMENTATIONS"
# The stack's telemetry Redis (a server of its own, which no fault touches): the ledger's events go to the stream
# TELEMETRY_LEDGER there (one per implementation label), each tagged with HOST_LABEL (unset: the host's name).
TELEMETRY_URL = "TASKBENCH_TELEMETRY_URL"
TELEMETRY_LEDGER = "TASKBENCH_TELEMETRY_LEDGER"
HOST_LABEL = "TASKBENCH_HOST_LABEL"
# The API's bearer token (every endpoint but /health and /health/sync asks for it when set; the stack generates one
# per stack) and the host names its requests may carry beside loopback and IP literals (a DNS-rebinding page
# carries its own). Not in ENV_VARS: a joined worker's document never holds them.
API_TOKEN = "TASKBENCH_API_TOKEN"
ALLOWED_HOSTS = "TASKBENCH_ALLOWED_HOSTS"
# What every key, queue, stream, consumer group and PostgreSQL schema the service writes is named after, so that on
# a server taskbench does not own it never reads, purges or deletes anything it did not create (DEFAULT_NAMESPACE
# on a private server; `taskbench-<stack id>` on one named by --redis-url, --broker-url or --postgres-url).
NAMESPACE = "TASKBENCH_NAMESPACE"
DEFAULT_NAMESPACE = "taskbench"
# The user's own queue app (`taskbench run --app celery=shop.celery:app`: `package.module:attribute`), imported from
# the user's working directory (on PYTHONPATH, as for --job) by that queue's API and worker; unset: taskbench's
# own app. Set only when given, and not in ENV_VARS: a joined worker's document never carries it (the other host
# would need the user's code, and PYTHONPATH is never joinable).
APP = "TASKBENCH_APP"
ENV_VARS = (
    REDIS_URL, BROKER_URL, POSTGRES_URL, LEDGER, REDIS_TIMEOUT, CONCURRENCY, DELIVERY, REDELIVERY_TIMEOUT,
    RESTORE_INTERVAL, JOBS, JOB_TIMEOUT, MIDDLEWARE, IMPLEMENTATIONS, TELEMETRY_URL, TELEMETRY_LEDGER, HOST_LABEL,
    NAMESPACE,
)  # fmt: skip
# Celery's own variables, honoured as Celery users expect; the harness sets them too.
CELERY_ENV_VARS = ("CELERY_BROKER_URL", "CELERY_RESULT_BACKEND")


class ServiceEnv(BaseModel):
    redis_url: str
    broker_url: str = ""  # Celery's and Dramatiq's broker (amqp://… for RabbitMQ); empty: Redis
    postgres_url: str = ""  # the PostgreSQL queues' database; empty for the others
    ledger_path: str
    concurrency: int = 4
    delivery: str = "default"
    redelivery_timeout_s: float = 3600.0
    restore_interval_s: float = 1.0  # how often an abandoned job is looked for, where the queue lets us say
    redis_timeout_s: float = 2.0
    jobs: list[str] = []  # the user's job functions, package.module:function
    job_timeout_s: float = 60.0
    job_dir: str = ""  # the user's working directory, where the API and workers import the jobs from
    middleware: str = "none"  # "base-http": the API runs behind a do-nothing BaseHTTPMiddleware
    implementations: list[str] = []  # what the process serves; empty: every one whose queue is installed
    telemetry_url: str = ""  # the stack's telemetry Redis; empty: the ledger goes to `ledger_path` only
    telemetry_ledger: str = ""  # the ledger's stream there (taskbench.measure.telemetry.ledger_key)
    host_label: str = ""  # what this host's ledger events and samples are attributed to; empty: its host name
    namespace: str = DEFAULT_NAMESPACE  # the prefix of everything the service writes on its servers
    app: str = ""  # the user's own queue app, package.module:attribute (from job_dir); empty: taskbench's

    def variables(self) -> dict[str, str]:
        return {
            REDIS_URL: self.redis_url,
            BROKER_URL: self.broker_url or self.redis_url,
            POSTGRES_URL: self.postgres_url,
            LEDGER: self.ledger_path,
            REDIS_TIMEOUT: str(self.redis_timeout_s),
            CONCURRENCY: str(self.concurrency),
            DELIVERY: self.delivery,
            REDELIVERY_TIMEOUT: str(self.redelivery_timeout_s),
            RESTORE_INTERVAL: str(self.restore_interval_s),
            JOBS: ",".join(self.jobs),
            JOB_TIMEOUT: str(self.job_timeout_s),
            "CELERY_BROKER_URL": self.broker_url or self.redis_url,
            "CELERY_RESULT_BACKEND": self.redis_url,  # results and records stay in Redis on either broker
            MIDDLEWARE: self.middleware,
            IMPLEMENTATIONS: ",".join(self.implementations),
            TELEMETRY_URL: self.telemetry_url,
            TELEMETRY_LEDGER: self.telemetry_ledger,
            HOST_LABEL: self.host_label,
            NAMESPACE: self.namespace,
        } | ({APP: self.app} if self.app else {})

    def environ(self) -> dict[str, str]:
        """The harness's environment plus the contract, unbuffered so logs arrive as they happen."""
        # PYTHONSAFEPATH: `python -m` does not put the working directory first on the path (3.11+); the user's folder
        # is on it only when it holds their --job or --app (job_dir)
        environ = {**os.environ, **self.variables(), "PYTHONUNBUFFERED": "1", "PYTHONSAFEPATH": "1"}
        if not self.app:  # never one the harness's own shell happens to carry
            environ.pop(APP, None)
        if self.job_dir:  # first, as `python -m` puts the working directory first for the user's own app
            environ["PYTHONPATH"] = os.pathsep.join(filter(None, [self.job_dir, os.environ.get("PYTHONPATH", "")]))
        return environ
