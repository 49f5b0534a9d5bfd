"""The report's first screen: the headline, then every workload's answer against the reference as a compact
table (ratios in words, the reference's own figures in its column), then the chart of absolute drain times."""

from __future__ import annotations

from collections.abc import Sequence

from taskbench.analysis import answer
from taskbench.analysis.models import AnalysedRun, AnswerCell, WorkloadAnswer
from taskbench.report.blocks import Block, Cell, ChartRef, Figures, Heading, Paragraph, Table, bullets

ANSWER_CHART = "comparison_answer.svg"


def _cell(c: AnswerCell, jobs: int, is_reference: bool) -> Cell:
    lines = [f"**{c.status}**" + (f" from {c.fails_at} jobs" if c.fails_at is not None else "")]
    if c.deciding:
        lines.append(c.deciding.split(":")[0])
    lines += answer.reference_figures(c, jobs) if is_reference else answer.figures(c)
    if c.cheapest:
        lines.append("★ cheapest (CPU per job)" if c.cpu_s_per_1000 is not None else "★ cheapest (memory)")
    return lines


def answer_table(run: AnalysedRun, answers: Sequence[WorkloadAnswer]) -> Table:
    """Workloads × implementations, the reference's column first with its own figures, every other cell as
    ratios to it."""
    reference = answers[0].reference
    names = [reference, *(i.name for i in run.implementations if i.name != reference)]
    rows: list[list[Cell]] = []
    for a in answers:
        cells = {c.implementation: c for c in a.cells}
        row: list[Cell] = [f"`{a.workload}`, {a.jobs} jobs"]
        row += [_cell(cells[n], a.jobs, n == reference) if n in cells else "–" for n in names]
        rows.append(row)
    headers = ["Workload", f"{run.title(reference)} (reference)", *(run.title(n) for n in names[1:])]
    return Table(headers, rows, "answer")


def meaning(run: AnalysedRun) -> str:
    reference = run.title(run.verdict.answers[0].reference)
    return (
        f"Each workload at the largest job count run with {reference}: held, borderline or failed over every "
        f"count, then time to drain the burst, p95 total time, peak memory of the process that ran the jobs and "
        f"CPU-seconds of the implementation's own processes per job, each as a ratio to the reference's (its column "
        "gives its figures; a range in brackets spans the repeats). “At once to match”: the concurrency that would "
        "drain as fast, from the capacity model. ★ cheapest: the least CPU per job among two or more that held at "
        "every count. `taskbench report RUN --reference NAME` states it against another."
    )


def blocks(run: AnalysedRun, charts: Sequence[ChartRef] = ()) -> list[Block]:
    """The headline, the table and its chart; nothing when no workload was run by the reference and another."""
    answers = run.verdict.answers
    if not answers:
        return []
    chart = [c for c in charts if c.path.endswith(ANSWER_CHART)]
    return [
        Heading("Answer"),
        *([bullets(run.verdict.headline)] if run.verdict.headline else []),
        answer_table(run, answers),
        Paragraph(meaning(run), "muted"),
        *([Figures(chart)] if chart else []),
    ]
