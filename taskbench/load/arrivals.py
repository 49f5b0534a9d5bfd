"""Open-loop arrivals for sustained load (--rate): when each submission is due, and the sender that keeps to it.

Every submission is sent at its due time whether or not earlier ones have answered (an open loop, like k6's
constant-arrival-rate executor and wrk2), and every latency is counted from the due time, so a service that
stalls cannot slow the load down and hide its stall (coordinated omission). How late the harness itself was
(`sent_at - due_at`) is kept, so that a rate the harness could not offer is said, not blamed on the queue.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from typing import Literal

from taskbench.record.results import Submission

Arrivals = Literal["uniform", "poisson"]


def schedule(rate: float, for_s: float, arrivals: Arrivals = "uniform", seed: int = 0) -> list[float]:
    """Due times (seconds from the step's start) of the submissions of one step: every 1/rate s, or a Poisson
    process of that mean rate (exponential gaps, seeded so a run can be repeated)."""
    if rate <= 0 or for_s <= 0:
        raise ValueError("a rate and a length must be positive")
    if arrivals == "uniform":
        return [i / rate for i in range(max(1, round(rate * for_s)))]
    draw = random.Random(seed)
    due, t = [], draw.expovariate(rate)
    while t < for_s:
        due.append(t)
        t += draw.expovariate(rate)
    return due


Send = Callable[[int, float], Awaitable[Submission]]  # (index, due_at epoch) → the submission as answered


async def fire(due: list[float], start: float, send: Send, stop: asyncio.Event) -> list[Submission]:
    """Send submission i at `start + due[i]` (epoch seconds) without waiting for earlier answers; stop sending
    (and keep what was sent) when `stop` is set. Every submission carries its due time."""
    tasks: list[asyncio.Task[Submission]] = []
    offset = time.time() - time.monotonic()  # due times are epoch; sleep on the monotonic clock
    for i, at in enumerate(due):
        if stop.is_set():
            break
        delay = (start + at - offset) - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(_stamped(send, i, start + at)))
    return list(await asyncio.gather(*tasks))


async def _stamped(send: Send, index: int, due_at: float) -> Submission:
    submission = await send(index, due_at)
    return submission.model_copy(update={"due_at": due_at})
