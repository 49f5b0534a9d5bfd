"""A CI job's summary page: under GitHub Actions (`GITHUB_STEP_SUMMARY` names a file), `run` appends its answer
and decision, and `compare` its gate's result, as Markdown, so a pull request shows them without opening an
artifact. Elsewhere nothing is written."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from taskbench.analysis.models import AnalysedRun
from taskbench.report import at_a_glance, content, markdown
from taskbench.report.blocks import Block, Heading, Paragraph

VARIABLE = "GITHUB_STEP_SUMMARY"


def _append(text: str) -> Path | None:
    path = os.environ.get(VARIABLE)
    if not path:
        return None
    with Path(path).open("a", encoding="utf-8") as summary:
        summary.write(text)
    return Path(path)


def of_run(run: AnalysedRun, folder: Path, exit_code: int) -> str:
    """The answer (without its chart: the summary page shows no files), the decision and the gate."""
    blocks: list[Block] = [Heading(f"taskbench: {content.run_title(run)} ({run.timestamp})", 2)]
    blocks += [b if not isinstance(b, Heading) else Heading(b.text, 3) for b in at_a_glance.blocks(run)]
    if run.verdict.decisions:
        blocks += [Heading("Decision", 3), content.decision_table(run)]
    outcome = "passed" if exit_code == 0 else f"exit {exit_code} (README: exit codes)"
    blocks.append(Paragraph(f"Exit: **{outcome}**. Reports: `{folder}`."))
    return markdown.document(blocks)


def of_compare(path: Path, worse: Sequence[str], fail_above: float | None) -> str:
    limit = f" by more than {fail_above * 100:g}%" if fail_above is not None else ""
    lines = [f"## taskbench compare: {'worse' if worse else 'no figure worse'}{limit}", ""]
    lines += [f"- worse: {line}" for line in worse]
    lines += ["", f"Side by side: `{path}`.", ""]
    return "\n".join(lines)


def append_run(run: AnalysedRun, folder: Path, exit_code: int) -> Path | None:
    return _append(of_run(run, folder, exit_code))


def append_compare(path: Path, worse: Sequence[str], fail_above: float | None) -> Path | None:
    return _append(of_compare(path, worse, fail_above))
