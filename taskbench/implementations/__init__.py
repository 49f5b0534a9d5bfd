"""The registry: every implementation taskbench can measure, one line each.

`--implementations`, its help and error message, the plan, the failure rules, the verdict and every
report come from here; `taskbench_service.implementations.REGISTRY` must list the same names (a test checks).

A run names an implementation by a *label*: its registry name (`celery`), or the name and a release of its
queue (`celery@5.5.3`), so that two releases run side by side as two implementations, each in an environment
of its own; or the queue running the user's own app (`celery+app`, with `--app celery=PATH`), beside taskbench's
set-up of the same queue. Everything keyed by implementation (results, roles, tables) is keyed by the label.
"""

from __future__ import annotations

from collections.abc import Iterable

from taskbench.implementations import (
    arq,
    bullmq,
    celery,
    dbos,
    docket,
    dramatiq,
    fastapi,
    huey,
    pgqueuer,
    procrastinate,
    rq,
    saq,
    streaq,
    taskiq,
)
from taskbench.implementations.base import Delivery, Implementation
from taskbench.record.labels import (
    APP_MARK,
    RELEASE_SEPARATOR,
    app_label,
    options_key,
    options_of,
    plugin_name,
    release,
    runs_app,
)

REGISTRY: dict[str, Implementation] = {
    "fastapi": fastapi.IMPLEMENTATION,
    "celery": celery.IMPLEMENTATION,
    "arq": arq.IMPLEMENTATION,
    "rq": rq.IMPLEMENTATION,
    "taskiq": taskiq.IMPLEMENTATION,
    "dramatiq": dramatiq.IMPLEMENTATION,
    "saq": saq.IMPLEMENTATION,
    "streaq": streaq.IMPLEMENTATION,
    "huey": huey.IMPLEMENTATION,
    "pgqueuer": pgqueuer.IMPLEMENTATION,
    "procrastinate": procrastinate.IMPLEMENTATION,
    "docket": docket.IMPLEMENTATION,
    "bullmq": bullmq.IMPLEMENTATION,
    "dbos": dbos.IMPLEMENTATION,
}
DEFAULT = ("fastapi", "celery")  # the spec's two
# The question is when BackgroundTasks stop being enough: every other implementation is compared with it.
BASELINE = "fastapi"
# The queues that can run the user's app, each a plugin instance of its own: what it measures (its delivery, read
# from that app) is that label's alone, and `celery` beside it stays taskbench's set-up.
APPS: dict[str, Implementation] = {"celery": celery.CeleryImplementation(), "arq": arq.ArqImplementation()}


def known(label: str) -> bool:
    return plugin_name(label) in (APPS if runs_app(label) else REGISTRY)


def get(label: str) -> Implementation:
    return (APPS if runs_app(label) else REGISTRY)[plugin_name(label)]


def title(label: str) -> str:
    """A report's name for an implementation, also for runs that name one this version no longer has."""
    if not known(label):
        return label
    version = release(label)
    return get(label).title + (f" {version}" if version else "") + (" (your app)" if runs_app(label) else "")


def redis_minimum(labels: Iterable[str]) -> tuple[tuple[int, ...], str]:
    """The oldest Redis every one of `labels` runs on, and which of them ask for it ("streaQ")."""
    minimum = max((get(label).redis_min_version for label in labels), default=())
    needing = [title(label) for label in labels if minimum and get(label).redis_min_version == minimum]
    return minimum, ", ".join(needing)


def worker_role(label: str) -> str:
    return f"{label}-worker"


def job_process(label: str) -> str:
    """The sampled role whose CPU and memory the jobs use: the label's worker, or the API."""
    return worker_role(label) if known(label) and get(label).has_worker else "api"


__all__ = [
    "APPS",
    "APP_MARK",
    "BASELINE",
    "DEFAULT",
    "REGISTRY",
    "RELEASE_SEPARATOR",
    "Delivery",
    "Implementation",
    "app_label",
    "get",
    "job_process",
    "known",
    "options_key",
    "options_of",
    "plugin_name",
    "redis_minimum",
    "release",
    "runs_app",
    "title",
    "worker_role",
]
