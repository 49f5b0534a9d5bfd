"""The report's tables for a terminal: rich tables with bold where the Markdown has it; in a log (no terminal)
the Markdown itself, which reads as plain text and pastes into a pull request."""

from __future__ import annotations

import re

from rich.console import Console
from rich.markup import escape
from rich.table import Table as RichTable

from taskbench.report import markdown
from taskbench.report.blocks import Cell, Table

BOLD = re.compile(r"\*\*(.+?)\*\*")


def _markup(cell: Cell) -> str:
    text = "\n".join(cell) if isinstance(cell, list) else cell
    return BOLD.sub(r"[bold]\1[/bold]", escape(text.replace("`", "")))


def show(console: Console, table: Table, title: str = "") -> None:
    if not console.is_terminal:
        if title:
            console.print(f"\n{title}", markup=False, highlight=False)
        console.print(markdown.table(table), markup=False, soft_wrap=True, highlight=False)
        return
    rich = RichTable(title=title or None, title_justify="left", show_lines=False)
    for header in table.headers:
        rich.add_column(header, overflow="fold")
    for row in table.rows:
        rich.add_row(*(_markup(cell) for cell in row))
    console.print(rich)
