"""The registry: every implementation taskbench can measure, one line each.

`--implementations`, its help and error message, the plan, the failure rules, the verdict and every
report come from here; `app.implementations.REGISTRY` must list the same names (a test checks).
"""

from __future__ import annotations

from taskbench.implementations import arq, celery, dramatiq, fastapi, rq, saq, taskiq
from taskbench.implementations.base import Delivery, Implementation

REGISTRY: dict[str, Implementation] = {
    "fastapi": fastapi.IMPLEMENTATION,
    "celery": celery.IMPLEMENTATION,
    "arq": arq.IMPLEMENTATION,
    "rq": rq.IMPLEMENTATION,
    "taskiq": taskiq.IMPLEMENTATION,
    "dramatiq": dramatiq.IMPLEMENTATION,
    "saq": saq.IMPLEMENTATION,
}
DEFAULT = ("fastapi", "celery")  # the spec's two


def get(name: str) -> Implementation:
    return REGISTRY[name]


def title(name: str) -> str:
    """A report's name for an implementation, also for runs that name one this version no longer has."""
    return REGISTRY[name].title if name in REGISTRY else name


__all__ = ["DEFAULT", "REGISTRY", "Delivery", "Implementation", "get", "title"]
