"""The user's own job functions (`taskbench run --job package.module:function`).

The harness fixes them when it starts the stack (TASKBENCH_JOBS, a comma-separated list of import paths);
a request selects one only by its index in that list and passes JSON keyword arguments. The HTTP API never
imports or runs anything a request names. Each function is imported once per process, from the user's
working directory (on PYTHONPATH), as the user's own app would import it.

A job that runs longer than TASKBENCH_JOB_TIMEOUT is recorded as failed (`JobTimeout`) and the runner goes on.
Python cannot kill a thread: a sync function past its timeout keeps running in the background, as it would
in the user's own app.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import threading
from collections.abc import Callable
from functools import cache
from typing import Any

from taskbench_service.settings import settings


class JobTimeout(Exception):
    pass


class NoSuchJob(LookupError):
    """The index names no function the service was started with."""


def paths() -> tuple[str, ...]:
    return settings.jobs


@cache
def function(index: int) -> Callable[..., Any]:
    if not 0 <= index < len(settings.jobs):
        raise NoSuchJob(f"job {index}: this service was started with {len(settings.jobs)} job function(s) (--job)")
    module_name, _, attribute = settings.jobs[index].partition(":")
    target: Callable[..., Any] = getattr(importlib.import_module(module_name), attribute)
    return target


def is_async(index: int) -> bool:
    return inspect.iscoroutinefunction(function(index))


def _in_thread_with_timeout(target: Callable[..., Any], kwargs: dict[str, Any], timeout_s: float) -> None:
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            target(**kwargs)
            outcome.append(None)
        except BaseException as exc:  # handed to the runner, which records it
            outcome.append(exc)

    thread = threading.Thread(target=run, name=f"{threading.current_thread().name}-job", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if not outcome:
        raise JobTimeout(f"the job did not return within {timeout_s:g} s (--job-timeout)")
    if outcome[0] is not None:
        raise outcome[0]


def run_sync(index: int, kwargs: dict[str, Any]) -> None:
    """From a sync runner: a sync function in this thread's stead (bounded), an async one with asyncio.run."""
    target = function(index)
    timeout_s = settings.job_timeout_s
    if is_async(index):
        asyncio.run(_bounded(target(**kwargs), timeout_s))
    else:
        _in_thread_with_timeout(target, kwargs, timeout_s)


async def run_async(index: int, kwargs: dict[str, Any]) -> None:
    """From an event loop: an async function natively, a sync one in the loop's thread pool."""
    target = function(index)
    if is_async(index):
        await _bounded(target(**kwargs), settings.job_timeout_s)
    else:
        await _bounded(asyncio.to_thread(target, **kwargs), settings.job_timeout_s)


async def _bounded(awaitable: Any, timeout_s: float) -> None:
    try:
        await asyncio.wait_for(awaitable, timeout_s)
    except asyncio.TimeoutError:
        raise JobTimeout(f"the job did not return within {timeout_s:g} s (--job-timeout)") from None
