"""The file names of a run folder, the spec's: one definition, used by every renderer that links to them."""

from __future__ import annotations

from taskbench.record.results import ScenarioSpec

CHARTS_DIR = "charts"
REPORT_HTML = "report.html"


def scenario_stem(spec: ScenarioSpec, timestamp: str) -> str:
    """`fastapi_10_jobs_{timestamp}`; the scenario's `.json`, `.md` and charts share it."""
    return f"{spec.file_stem}_{timestamp}"


def comparison_stem(timestamp: str) -> str:
    return f"comparison_{timestamp}"


def chart_path(name: str) -> str:
    """Where a chart named `name` is, relative to the run folder (and so to every report in it)."""
    return f"{CHARTS_DIR}/{name}"
