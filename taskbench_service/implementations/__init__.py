"""The registry of implementations the service offers: one line each.

Each name is a module of this package defining `IMPLEMENTATION` (see `base.ServiceImplementation`). A process
serves the ones `TASKBENCH_IMPLEMENTATIONS` names (the harness names one: each queue has an environment of its
own); unset, every one whose queue is installed, as the spec's hand-started service does.
"""

from __future__ import annotations

import importlib
import logging

from taskbench_service.implementations.base import ServiceImplementation

REGISTRY = (
    "fastapi",
    "celery",
    "arq",
    "rq",
    "taskiq",
    "dramatiq",
    "saq",
    "streaq",
    "huey",
    "pgqueuer",
    "procrastinate",
    "docket",
    "bullmq",
    "dbos",
)
log = logging.getLogger(__name__)


def load(name: str) -> ServiceImplementation:
    if name not in REGISTRY:
        raise ValueError(f"TASKBENCH_IMPLEMENTATIONS names {name!r}: choose from {', '.join(REGISTRY)}")
    module = importlib.import_module(f"taskbench_service.implementations.{name}")
    implementation: ServiceImplementation = module.IMPLEMENTATION
    return implementation


def load_all(names: tuple[str, ...] = ()) -> list[ServiceImplementation]:
    """`names`, each of which must import; none: every one whose queue is installed in this environment."""
    if names:
        return [load(name) for name in names]
    loaded = []
    for name in REGISTRY:
        try:
            loaded.append(load(name))
        except ImportError as exc:  # its queue is not installed here
            log.info("%s not served: %s", name, exc)
    return loaded
