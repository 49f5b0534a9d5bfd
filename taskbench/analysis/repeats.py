"""The runs of one scenario (`--repeat`) as one summary: the median of every figure, its spread, and the
rules judged over all runs (`failures.judge`: fired in every run → failed; in some, or near the limit →
borderline).

Medians are taken figure by figure through the summaries' typed fields (models, mappings, numbers), so a
figure added to `ScenarioSummary` is covered without a line here; lists (ids) and words come from the median
run. `spread` names each figure that varied by its path (`probes.async.p99`), as the reports look it up.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import TypeVar, cast

from pydantic import BaseModel

from taskbench.analysis import failures
from taskbench.analysis.models import ScenarioSummary, Spread
from taskbench.record.results import Thresholds

JUDGED = {"failures", "borderline", "status", "spread", "repeats", "responsive"}  # set here, not by median


Figure = TypeVar("Figure")


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _median(values: list[Figure], like: Figure, name: str, spread: dict[str, Spread]) -> Figure:
    """`like` (the median run's value of figure `name`) with every number in it replaced by its median over
    `values` (that figure in every run): through a model's fields and a mapping's keys, down to the numbers."""
    if isinstance(like, BaseModel) and all(isinstance(v, type(like)) for v in values):
        update = {
            field: _median([getattr(v, field) for v in values], getattr(like, field), f"{name}{field}.", spread)
            for field in type(like).model_fields
            if field not in JUDGED
        }
        return like.model_copy(update=update)
    if isinstance(like, dict):
        mappings = [v for v in values if isinstance(v, dict) and v.keys() == like.keys()]
        if len(mappings) == len(values):
            merged = {k: _median([m[k] for m in mappings], item, f"{name}{k}.", spread) for k, item in like.items()}
            return cast(Figure, merged)
    if _is_number(like) and all(_is_number(v) for v in values):
        numbers = [float(cast(float, v)) for v in values]
        middle = statistics.median(numbers)
        figure = name.removesuffix(".")
        if min(numbers) != max(numbers):
            spread[figure] = Spread(min=min(numbers), max=max(numbers))
        return cast(Figure, round(middle) if all(isinstance(v, int) for v in values) else middle)
    return like  # words, lists, or a figure missing in some run: the median run's


def _median_run(runs: Sequence[ScenarioSummary]) -> ScenarioSummary:
    """The run in the middle by mean total time: its lists and words stand for the scenario."""
    ordered = sorted(runs, key=lambda s: s.total_time.avg or 0.0)
    return ordered[(len(ordered) - 1) // 2]


def merge(runs: Sequence[ScenarioSummary], thresholds: Thresholds) -> ScenarioSummary:
    """One scenario's runs (summaries not yet annotated) as one annotated summary."""
    if len(runs) == 1:
        return failures.annotate(runs[0], thresholds)
    spread: dict[str, Spread] = {}
    merged = _median(list(runs), _median_run(runs), "", spread)
    failed, borderline, status = failures.judge(
        [failures.checks(s, thresholds) for s in runs], thresholds.borderline_margin
    )
    if any(s.interrupted for s in runs):  # a run cut short was not judged: the scenario did not hold either
        status = "interrupted"
    responsive = [failures.annotate(s, thresholds).responsive for s in runs]
    return merged.model_copy(
        update={
            "repeats": len(runs),
            "spread": spread,
            "failures": failed,
            "borderline": borderline,
            "status": status,
            # responsive in every run; a run that was not shows in `borderline` or `failures`
            "responsive": None if None in responsive else all(responsive),
        }
    )
