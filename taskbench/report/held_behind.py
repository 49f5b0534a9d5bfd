"""What a worker's prefetch held behind a long job (the `uneven` workload, taskbench.analysis.hoarding): the
comparison's section and the page of answers' table."""

from __future__ import annotations

from collections.abc import Sequence

from taskbench.analysis.models import AnalysedRun, ScenarioSummary
from taskbench.report.blocks import Block, Cell, Heading, Paragraph, Table

MEANING = (
    "An uneven burst: its first job lasts twice all the others together, so with two slots or more a balanced "
    "schedule runs every short job beside it and the burst ends when it does. Held behind it: the short jobs that "
    "started only once it had ended (in brackets, those its own process started: it had taken them while it ran the "
    "long job, its prefetch, though another slot was free); each adds about its length to the makespan."
)


def table(run: AnalysedRun, summaries: Sequence[ScenarioSummary] | None = None) -> Table:
    rows: list[list[Cell]] = []
    for s in run.summaries if summaries is None else summaries:
        h = s.held_behind
        if h is None:
            continue
        info = run.info(s.implementation)
        prefetch = next((v for k, v in (info.settings if info else {}).items() if "prefetch" in k), "–")
        rows.append(
            [
                run.title(s.implementation),
                f"{s.jobs} jobs: one of {h.long_s:g} s, {h.short_jobs} of {s.duration_s:g} s",
                f"{h.held} of {h.short_jobs} ({h.held_by_its_process})",
                "did not complete" if h.cost_s is None else f"+{h.cost_s:.2f} s over {h.ideal_s:.2f} s",
                prefetch,
            ]
        )
    headers = ["Queue", "Burst", "Held behind the long job (by its process)", "Makespan beyond the ideal"]
    return Table([*headers, "Its prefetch"], rows)


def blocks(run: AnalysedRun) -> list[Block]:
    rows = table(run)
    return [Heading("What a worker holds behind a long job", 3), Paragraph(MEANING), rows] if rows.rows else []
