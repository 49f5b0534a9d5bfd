"""The runs of one scenario (`--repeat`) as one summary: the median of every figure, its spread, and the
rules judged over all runs (`failures.judge`: fired in every run → failed; in some, or near the limit →
borderline).

Medians are taken figure by figure over the runs' summaries as data, so a figure added to
`ScenarioSummary` is covered without a line here; lists (ids) and words come from the median run.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

from taskbench.analysis import failures
from taskbench.analysis.models import ScenarioSummary, Spread
from taskbench.results import Thresholds

JUDGED = {"failures", "borderline", "status", "spread", "repeats", "responsive"}  # set here, not by median


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _merge(dumps: list[dict[str, Any]], like: dict[str, Any], path: str, spread: dict[str, Spread]) -> dict[str, Any]:
    """`like` (the median run, as data) with every number replaced by its median over `dumps`."""
    merged: dict[str, Any] = {}
    for key, value in like.items():
        here = f"{path}{key}"
        values = [d.get(key) for d in dumps]
        if isinstance(value, dict) and all(isinstance(v, dict) for v in values):
            merged[key] = _merge([v for v in values if isinstance(v, dict)], value, f"{here}.", spread)
        elif values and all(_is_number(v) for v in values):
            numbers: list[float] = [float(v) for v in values if v is not None]
            middle = statistics.median(numbers)
            merged[key] = round(middle) if all(isinstance(v, int) for v in values) else middle
            if min(numbers) != max(numbers):
                spread[here] = Spread(min=min(numbers), max=max(numbers))
        else:  # words, lists, or a figure missing in some run: the median run's
            merged[key] = value
    return merged


def _median_run(runs: Sequence[ScenarioSummary]) -> ScenarioSummary:
    """The run in the middle by mean total time: its lists and words stand for the scenario."""
    ordered = sorted(runs, key=lambda s: s.total_time.avg or 0.0)
    return ordered[(len(ordered) - 1) // 2]


def merge(runs: Sequence[ScenarioSummary], thresholds: Thresholds) -> ScenarioSummary:
    """One scenario's runs (summaries not yet annotated) as one annotated summary."""
    if len(runs) == 1:
        return failures.annotate(runs[0], thresholds)
    like = _median_run(runs)
    spread: dict[str, Spread] = {}
    skip = {key: value for key, value in like.model_dump().items() if key in JUDGED}
    dumps = [{k: v for k, v in s.model_dump().items() if k not in JUDGED} for s in runs]
    merged = _merge(dumps, dumps[runs.index(like)], "", spread)
    failed, borderline, status = failures.judge(
        [failures.checks(s, thresholds) for s in runs], thresholds.borderline_margin
    )
    if any(s.interrupted for s in runs):  # a run cut short was not judged: the scenario did not hold either
        status = "interrupted"
    responsive = [failures.annotate(s, thresholds).responsive for s in runs]
    return ScenarioSummary.model_validate(
        {
            **merged,
            **skip,
            "repeats": len(runs),
            "spread": spread,
            "failures": failed,
            "borderline": borderline,
            "status": status,
            # responsive in every run; a run that was not shows in `borderline` or `failures`
            "responsive": None if None in responsive else all(responsive),
        }
    )
