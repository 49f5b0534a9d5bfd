"""How a run names an implementation (a *label*), as every record keys it.

`celery` is the queue as taskbench sets it up; `celery@5.5.3` the same at a release of its queue (two releases
side by side, each in an environment of its own); `celery+app` the queue running the user's own app (`--app
celery=PATH`), beside taskbench's set-up of the same queue. The registry name alone is what the service's routes
and records use.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

RELEASE_SEPARATOR = "@"
APP_MARK = "+app"

T = TypeVar("T")


def plugin_name(label: str) -> str:
    """`celery@5.5.3`, `celery+app` → `celery`."""
    return label.removesuffix(APP_MARK).split(RELEASE_SEPARATOR, 1)[0]


def release(label: str) -> str | None:
    """`celery@5.5.3` → `5.5.3`; None for the release the package index serves by default."""
    _, sep, version = label.removesuffix(APP_MARK).partition(RELEASE_SEPARATOR)
    return version if sep else None


def runs_app(label: str) -> bool:
    """Whether `label` runs the user's own app (`--app`) rather than taskbench's set-up of its queue."""
    return label.endswith(APP_MARK)


def app_label(queue: str) -> str:
    return queue + APP_MARK


def options_key(label: str) -> str:
    """Where a run keeps `label`'s own options: a release takes its queue's (`celery@5.5.3`: Celery's flags), the
    user's app its own (`celery+app`: the app and the settings read from it)."""
    return label if runs_app(label) else plugin_name(label)


def options_of(options: Mapping[str, Mapping[str, T]], label: str) -> dict[str, T]:
    return dict(options.get(options_key(label), {}))
