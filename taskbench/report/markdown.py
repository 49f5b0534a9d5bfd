"""The Markdown reports, rendered from `content` blocks: one per scenario, and the comparison."""

from __future__ import annotations

from collections.abc import Sequence

from taskbench.analysis.models import AnalysedRun, ScenarioSummary
from taskbench.record.results import ScenarioResult
from taskbench.report import content
from taskbench.report.blocks import Block, Bullets, Cell, ChartRef, Heading, Paragraph, Table


def cell(value: Cell) -> str:
    text = value if isinstance(value, str) else "<br>".join(value)
    return text.replace("|", "\\|").replace("\n", " ")


def table(t: Table) -> str:
    lines = ["| " + " | ".join(t.headers) + " |", "|" + "|".join("---" for _ in t.headers) + "|"]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in t.rows]
    return "\n".join(lines)


def bullets(b: Bullets) -> str:
    lines = []
    for item in b.items:
        lines.append(f"- {item.text}")
        lines += [f"  - {child}" for child in item.children]
    return "\n".join(lines)


def block(b: Block) -> str:
    if isinstance(b, Heading):
        return "#" * b.level + " " + b.text
    if isinstance(b, Paragraph):
        return b.text
    if isinstance(b, Bullets):
        return bullets(b)
    if isinstance(b, Table):
        return table(b)
    return "\n\n".join(f"![{c.title}]({c.path})" for c in b.charts)


def document(blocks: Sequence[Block]) -> str:
    return "\n\n".join(text for text in map(block, blocks) if text) + "\n"


def spec_table(summaries: list[ScenarioSummary]) -> str:
    """The spec's table (the CLI prints it): one row per implementation per job count."""
    return table(content.spec_table(summaries))


def decision_table(run: AnalysedRun) -> str:
    """The decision table, as the top of the comparison shows it (the CLI prints it too)."""
    return table(content.decision_table(run))


def comparison(run: AnalysedRun, charts: Sequence[ChartRef] = ()) -> str:
    return document(content.comparison(run, charts))


def scenario(result: ScenarioResult, summary: ScenarioSummary, charts: Sequence[ChartRef] = ()) -> str:
    return document(content.scenario(result, summary, charts))
