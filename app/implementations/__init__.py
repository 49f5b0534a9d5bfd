"""The registry of implementations the service offers: one line each.

Each name is a module of this package defining `IMPLEMENTATION` (see `base.ServiceImplementation`).
"""

from __future__ import annotations

import importlib

from app.implementations.base import ServiceImplementation

REGISTRY = (
    "fastapi",
    "celery",
    "arq",
    "rq",
    "taskiq",
    "dramatiq",
    "saq",
)


def load(name: str) -> ServiceImplementation:
    module = importlib.import_module(f"app.implementations.{name}")
    implementation: ServiceImplementation = module.IMPLEMENTATION
    return implementation


def load_all() -> list[ServiceImplementation]:
    return [load(name) for name in REGISTRY]
