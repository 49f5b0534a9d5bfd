"""How a run shows its progress: a rich progress bar with an ETA in a terminal, and one plain line per scenario
(started, with the run's ETA; finished, with its status) when stdout is a log (CI), where a live bar would show
nothing until the end."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Protocol

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

OnProgress = Callable[[int, int], None]  # (jobs done, jobs in all) of the scenario under way


class RunProgress(Protocol):
    def scenario(self, label: str, jobs: int) -> OnProgress: ...
    def scenario_done(self, label: str, outcome: str) -> None: ...
    def advance(self, estimate_s: float) -> None: ...


class LiveBar:
    """In a terminal: one bar for the whole run (its ETA from the plan's estimates), one for the scenario."""

    def __init__(self, progress: Progress, total_s: float) -> None:
        self.progress = progress
        self.overall = progress.add_task("all scenarios", total=total_s)
        self.current: TaskID | None = None

    def scenario(self, label: str, jobs: int) -> OnProgress:
        task = self.progress.add_task(label, total=jobs)
        self.current = task

        def update(done: int, total: int) -> None:
            self.progress.update(task, completed=done, total=total)

        return update

    def scenario_done(self, label: str, outcome: str) -> None:
        if self.current is not None:
            self.progress.update(self.current, visible=False)
        self.progress.console.print(f"  {label}: {outcome}", markup=False, highlight=False)

    def advance(self, estimate_s: float) -> None:
        self.progress.update(self.overall, advance=estimate_s)


class PlainLines:
    """In a log: a line when a scenario starts (with the run's ETA) and one when it ends (its time, outcome)."""

    def __init__(self, console: Console, total_s: float) -> None:
        self.console = console
        self.total_s, self.done_s = total_s, 0.0
        self.started = time.monotonic()
        self.count = 0
        self.scenario_started = self.started

    def scenario(self, label: str, jobs: int) -> OnProgress:
        self.count += 1
        self.scenario_started = time.monotonic()
        elapsed = self.scenario_started - self.started
        left = max(self.total_s - self.done_s, 0.0)
        scale = elapsed / self.done_s if self.done_s > 0 else 1.0  # the plan's estimates, corrected as it goes
        self.console.print(
            f"[{self.count}] {label}: {jobs} jobs; {elapsed / 60:.1f} min so far, ETA {left * scale / 60:.1f} min",
            markup=False,
            highlight=False,
        )
        return lambda done, total: None

    def scenario_done(self, label: str, outcome: str) -> None:
        took = time.monotonic() - self.scenario_started
        self.console.print(f"[{self.count}] {label}: {outcome} in {took:.1f} s", markup=False, highlight=False)

    def advance(self, estimate_s: float) -> None:
        self.done_s += estimate_s


@contextmanager
def shown(console: Console, total_s: float) -> Iterator[RunProgress]:
    if not console.is_terminal:
        yield PlainLines(console, total_s)
        return
    columns = (
        TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(), TimeElapsedColumn(), TextColumn("ETA"),
        TimeRemainingColumn(),
    )  # fmt: skip
    with Progress(*columns, console=console) as progress:
        yield LiveBar(progress, total_s)
