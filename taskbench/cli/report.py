"""`taskbench report` and `taskbench compare`: reports rebuilt from recorded runs, and two runs side by side."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from taskbench.cli.options import GATE_FAILED
from taskbench.cli.types import Commands, choices_list, percent
from taskbench.errors import UsageError
from taskbench.report import files, step_summary
from taskbench.report.compare import DEFAULT_GATED, GATED_FIGURES, compare
from taskbench.run import provenance


def cmd_report(args: argparse.Namespace, console: Console) -> int:
    if args.page is not None:
        console.print(
            f"wrote {files.write_page(args.path, args.page, provenance.git_revision() or provenance.version())}"
        )
        return 0
    path = files.rerender(args.path, args.reference)
    console.print(f"rebuilt {path.parent}")
    return 0


COMPARE_FORMATS = (".md", ".html", ".htm")


def cmd_compare(args: argparse.Namespace, console: Console) -> int:
    output: Path | None = args.output
    if output is not None and not output.is_dir() and output.suffix.lower() not in COMPARE_FORMATS:
        raise UsageError(f"--output {output}: compare writes Markdown (.md) or HTML (.html); name one of those")
    path, worse = compare(args.run_a, args.run_b, args.output, args.figures, args.fail_above, args.allow_different)
    console.print(f"wrote {path}")
    step_summary.append_compare(path, worse, args.fail_above)
    for line in worse:
        console.print(f"worse: {line}", markup=False)
    return GATE_FAILED if worse and args.fail_above is not None else 0


def add_report_parser(commands: Commands) -> None:
    report = commands.add_parser("report", help="rebuild a run's Markdown, charts and HTML from its JSON")
    report.add_argument(
        "path", type=Path, help="a run folder or its comparison_*.json; with --page, also a page's own NAME.json"
    )
    report.add_argument(
        "--page",
        type=Path,
        help="instead, write a docs page (PAGE.md, and PAGE.json it renders from) of this run; a page named "
        "questions.md is the page of answers to the questions queue users ask. Given a page's NAME.json, its "
        "figures are judged again with this version's rules (the page says so)",
    )
    report.add_argument(
        "--reference", metavar="NAME", help="state the answer against this implementation of the run instead"
    )


def add_compare_parser(commands: Commands) -> None:
    compare = commands.add_parser("compare", help="put two runs side by side")
    compare.add_argument("run_a", type=Path)
    compare.add_argument("run_b", type=Path)
    compare.add_argument(
        "--output", type=Path, help="where to write the comparison: a .md, an .html or a folder (default: beside RUN_B)"
    )
    compare.add_argument(
        "--fail-above",
        type=percent,
        metavar="PCT",
        help=f"exit {GATE_FAILED} when a figure of a scenario in both runs got worse by more than this (10%%)",
    )
    compare.add_argument(
        "--figures",
        type=choices_list(tuple(GATED_FIGURES), all_word="all"),
        default=list(DEFAULT_GATED),
        help=f"the figures --fail-above watches: {', '.join(GATED_FIGURES)} or all (default %(default)s)",
    )
    compare.add_argument(
        "--allow-different",
        action="store_true",
        help="compare runs whose figures were measured differently (job duration, memory measure, broker)",
    )
