"""The next step of a search, from the verdicts of the steps so far (pure: the run loop measures each step).

- `next_rate` (`--rate auto`): double the rate while it is sustained, then bisect between the highest
  sustained and the lowest saturated rate until the bracket is narrower than `resolution` of its low end, as a
  breakpoint test does.
- `next_concurrency` (`--target-rate`): from Little's law's guess, halve toward the smallest concurrency that
  sustains the target rate, or double until one does; then bisect down to adjacent whole numbers.
An inconclusive step (the harness could not offer the rate) ends a search: a higher one would say no more.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from taskbench.analysis.models import RateVerdict

Step = tuple[float, RateVerdict]  # the value tried (a rate, or a concurrency) and its verdict

MIN_RATE = 0.05  # jobs per second: a search that finds nothing sustained above this gives up
MAX_CONCURRENCY_TRIED = 256


def bracket(steps: Sequence[Step]) -> tuple[float | None, float | None]:
    """(the highest sustained value, the lowest saturated value above it)."""
    low = max((v for v, verdict in steps if verdict == "sustained"), default=None)
    high = min((v for v, verdict in steps if verdict == "saturated" and (low is None or v > low)), default=None)
    return low, high


def next_rate(steps: Sequence[Step], start: float, resolution: float, max_steps: int) -> float | None:
    if not steps:
        return start
    if steps[-1][1] == "inconclusive" or len(steps) >= max_steps:
        return None
    low, high = bracket(steps)
    if high is None:
        return (low or start) * 2
    if low is None:
        return high / 2 if high / 2 >= MIN_RATE else None
    if (high - low) / low <= resolution:
        return None
    return round((low + high) / 2, 3)


def littles_law_concurrency(rate: float, seconds_per_job: float, headroom: float = 1.25) -> int:
    """Jobs in service at once ≈ rate × time each takes (Little's law), with headroom for the variance."""
    return max(1, math.ceil(rate * seconds_per_job * headroom))


def next_concurrency(steps: Sequence[Step], start: int, max_steps: int) -> int | None:
    if not steps:
        return start
    if steps[-1][1] == "inconclusive" or len(steps) >= max_steps:
        return None
    enough = min((int(v) for v, verdict in steps if verdict == "sustained"), default=None)
    short = max(
        (int(v) for v, verdict in steps if verdict == "saturated" and (enough is None or v < enough)), default=0
    )
    if enough is None:
        doubled = max(short, start) * 2
        return doubled if doubled <= MAX_CONCURRENCY_TRIED else None
    if enough - short <= 1:
        return None
    return (short + enough) // 2
