"""The pieces every report is made of: `content` builds them from the analysis, `markdown` and `html` render them.

Text may use two bits of Markdown, `code` and **bold**; the HTML renderer escapes it and keeps those two.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

Cell = str | list[str]  # a list: one line each, within one cell


@dataclass(frozen=True)
class ChartRef:
    title: str
    path: str  # relative to the run folder, e.g. charts/fastapi_10_jobs_…_timeline.png
    alt: str = ""  # what the chart shows, in numbers, for a reader who cannot see it ("" : its title)


@dataclass(frozen=True)
class Heading:
    text: str
    level: int = 2
    anchor: str = ""


@dataclass(frozen=True)
class Paragraph:
    text: str
    css_class: str = ""


@dataclass(frozen=True)
class Bullet:
    text: str
    children: tuple[str, ...] = ()


@dataclass(frozen=True)
class Bullets:
    items: list[Bullet]
    css_class: str = ""


@dataclass(frozen=True)
class Table:
    headers: list[str]
    rows: list[list[Cell]]
    css_class: str = ""


@dataclass(frozen=True)
class Figures:
    charts: Sequence[ChartRef] = field(default_factory=list)


Block = Heading | Paragraph | Bullets | Table | Figures


def bullets(lines: Sequence[str], css_class: str = "") -> Bullets:
    return Bullets([Bullet(line) for line in lines], css_class)
