"""The job bodies. Every implementation runs exactly this code, so a difference in results is a
difference in the runner, not in the work."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

from taskbench_service import user_job
from taskbench_wire.enums import Workload

Kind = Workload  # the service's name for it


class Call(Protocol):
    """What a body needs of a job (`taskbench_service.jobs.JobCall` is one): stated here, so the bodies depend on
    no store."""

    kind: Kind
    duration: float
    memory_mb: int
    job: int
    args: dict[str, Any]


def sleep(duration: float, memory_mb: int = 0) -> None:
    time.sleep(duration)


async def async_sleep(duration: float, memory_mb: int = 0) -> None:
    await asyncio.sleep(duration)


async def blocking_async(duration: float, memory_mb: int = 0) -> None:
    time.sleep(duration)  # deliberately blocking: this is the workload


_CALIBRATION_S = 0.05


def _spin(iterations: int) -> int:
    total = 0
    for i in range(iterations):
        total += i * i % 7
    return total


def _calibrate() -> float:
    """Once per process, at start-up while it is idle, so `duration` means seconds of one idle core.

    Looping "until the clock says so" would let 40 threads each finish in `duration` while sharing one
    GIL; a fixed amount of work shows the contention instead. Calibrating lazily inside the first jobs
    would measure that very contention (four threads calibrating at once each see a quarter core).
    """
    n = 20_000
    while True:
        start = time.perf_counter()
        _spin(n)
        if time.perf_counter() - start >= _CALIBRATION_S:
            break
        n *= 2
    fastest = min(_timed(n) for _ in range(3))  # the least disturbed of three: a busy machine only slows
    return n / fastest


def _timed(iterations: int) -> float:
    start = time.perf_counter()
    _spin(iterations)
    return time.perf_counter() - start


_iterations_per_second: float | None = None


def calibrate() -> float:
    """Call at process start-up (API lifespan, worker start): a forked worker child inherits the figure."""
    global _iterations_per_second
    if _iterations_per_second is None:
        _iterations_per_second = _calibrate()
    return _iterations_per_second


def cpu(duration: float, memory_mb: int = 0) -> None:
    _spin(int(duration * calibrate()))


def memory(duration: float, memory_mb: int = 0) -> None:
    block = bytearray(memory_mb * 1024 * 1024)
    for offset in range(0, len(block), 4096):  # touch every page so it counts in RSS
        block[offset] = 1
    time.sleep(duration)
    del block


SyncBody = Callable[[float, int], None]
AsyncBody = Callable[[float, int], Coroutine[Any, Any, None]]

# uneven is sleep: the harness gives each job its length (taskbench.capacity.job_duration_s)
SYNC_BODIES: dict[Kind, SyncBody] = {Kind.sleep: sleep, Kind.uneven: sleep, Kind.cpu: cpu, Kind.memory: memory}
SYNC_KINDS = tuple(SYNC_BODIES)  # the built-in kinds that are plain `def`s
ASYNC_BODIES: dict[Kind, AsyncBody] = {Kind.async_sleep: async_sleep, Kind.blocking_async: blocking_async}


def is_async(kind: Kind, job: int = 0) -> bool:
    """Whether this kind (for `job`, the user's function number `job`) is an `async def`."""
    if kind is Kind.job:
        return user_job.is_async(job)
    return kind in ASYNC_BODIES


def run_sync(call: Call) -> None:
    """Run any kind from synchronous code: async kinds with `asyncio.run`, as Celery's docs advise for
    coroutines in a prefork worker (one event loop per job)."""
    kind, duration, memory_mb = call.kind, call.duration, call.memory_mb
    if kind is Kind.noop:
        return
    if kind is Kind.job:
        user_job.run_sync(call.job, call.args)
    elif kind in ASYNC_BODIES:
        asyncio.run(ASYNC_BODIES[kind](duration, memory_mb))
    else:
        SYNC_BODIES[kind](duration, memory_mb)


async def run_async(call: Call) -> None:
    """Run any kind from an event loop: async kinds natively, sync kinds in the loop's default thread
    pool (`asyncio.to_thread`), the way async queues document for blocking functions."""
    kind, duration, memory_mb = call.kind, call.duration, call.memory_mb
    if kind is Kind.noop:
        return
    if kind is Kind.job:
        await user_job.run_async(call.job, call.args)
    elif kind in ASYNC_BODIES:
        await ASYNC_BODIES[kind](duration, memory_mb)
    else:
        await asyncio.to_thread(SYNC_BODIES[kind], duration, memory_mb)
