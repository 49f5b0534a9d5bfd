"""Everything the service reads from its environment, in one place.

The harness starts the API and the worker with these variables; a user running the spec's three
terminals by hand gets the loopback defaults.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"

# Bounds on what a client controls.
MAX_DURATION_S = 3600.0
MAX_MEMORY_MB = 2048
MAX_BODY_BYTES = 16 * 1024
DEFAULT_DURATION_S = 30.0  # the spec's job: time.sleep(30)
DEFAULT_MEMORY_MB = 50


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class Settings:
    broker_url: str
    result_backend: str
    redis_url: str
    # Celery delivery: the fault benchmark switches these (see taskbench.faults).
    acks_late: bool = False
    reject_on_worker_lost: bool = False
    visibility_timeout_s: float = 3600.0
    # kombu sweeps for unacked messages every interval × throttle seconds (10 × 10 by default).
    restore_interval_s: float | None = None
    # Where job code appends one line per execution start/end (the execution ledger); off when empty.
    ledger_path: str = ""
    redis_timeout_s: float = 2.0


def load() -> Settings:
    """Celery's usual variables win, then TASKBENCH_REDIS_URL, then the loopback default."""
    redis_url = os.environ.get("TASKBENCH_REDIS_URL", DEFAULT_REDIS_URL)
    broker = os.environ.get("CELERY_BROKER_URL", redis_url)
    backend = os.environ.get("CELERY_RESULT_BACKEND", broker)
    return Settings(
        broker_url=broker,
        result_backend=backend,
        # Job records live beside the results, so any API process that reaches the backend reads them.
        redis_url=os.environ.get("TASKBENCH_REDIS_URL", backend),
        acks_late=_flag("TASKBENCH_ACKS_LATE"),
        reject_on_worker_lost=_flag("TASKBENCH_REJECT_ON_WORKER_LOST"),
        visibility_timeout_s=float(os.environ.get("TASKBENCH_VISIBILITY_TIMEOUT", "3600")),
        restore_interval_s=float(os.environ["TASKBENCH_RESTORE_INTERVAL"])
        if os.environ.get("TASKBENCH_RESTORE_INTERVAL")
        else None,
        ledger_path=os.environ.get("TASKBENCH_LEDGER", ""),
        redis_timeout_s=float(os.environ.get("TASKBENCH_REDIS_TIMEOUT", "2")),
    )


settings = load()
