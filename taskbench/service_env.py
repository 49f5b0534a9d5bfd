"""The environment contract, harness side: what the stack passes to the API server and every worker.

`app.settings` reads exactly these names (tests/test_contract.py checks that both sides agree).
"""

from __future__ import annotations

import os

from pydantic import BaseModel

REDIS_URL = "TASKBENCH_REDIS_URL"
BROKER_URL = "TASKBENCH_BROKER_URL"
LEDGER = "TASKBENCH_LEDGER"
REDIS_TIMEOUT = "TASKBENCH_REDIS_TIMEOUT"
CONCURRENCY = "TASKBENCH_CONCURRENCY"
DELIVERY = "TASKBENCH_DELIVERY"
REDELIVERY_TIMEOUT = "TASKBENCH_REDELIVERY_TIMEOUT"
RESTORE_INTERVAL = "TASKBENCH_RESTORE_INTERVAL"
JOBS = "TASKBENCH_JOBS"
JOB_TIMEOUT = "TASKBENCH_JOB_TIMEOUT"
MIDDLEWARE = "TASKBENCH_MIDDLEWARE"


class ServiceEnv(BaseModel):
    redis_url: str
    broker_url: str = ""  # Celery's and Dramatiq's broker (amqp://… for RabbitMQ); empty: Redis
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

    def variables(self) -> dict[str, str]:
        return {
            REDIS_URL: self.redis_url,
            BROKER_URL: self.broker_url or self.redis_url,
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
        }

    def environ(self) -> dict[str, str]:
        """The harness's environment plus the contract, unbuffered so logs arrive as they happen."""
        environ = {**os.environ, **self.variables(), "PYTHONUNBUFFERED": "1"}
        if self.job_dir:  # first, as `python -m` puts the working directory first for the user's own app
            environ["PYTHONPATH"] = os.pathsep.join(filter(None, [self.job_dir, os.environ.get("PYTHONPATH", "")]))
        return environ
