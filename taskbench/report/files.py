"""Where reports go and how they are rebuilt: everything renders from the run's JSON files.

A run's folder, `benchmark_results/<timestamp>/`, holds the spec's names:
`{impl}_{N}_jobs_{timestamp}.md/.json` per scenario, `comparison_{timestamp}.md/.json`, and
`report.html` with its charts.
"""

from __future__ import annotations

import json
from pathlib import Path

from taskbench import failures, verdict
from taskbench.report import markdown
from taskbench.results import RunResult, ScenarioResult, SchemaError, load_run, load_scenario


def scenario_stem(result: ScenarioResult, timestamp: str) -> str:
    return f"{result.spec.file_stem}_{timestamp}"


def write_scenario(folder: Path, timestamp: str, result: ScenarioResult) -> str:
    """Write the scenario's JSON and Markdown; returns the JSON file's name."""
    folder.mkdir(parents=True, exist_ok=True)
    stem = scenario_stem(result, timestamp)
    (folder / f"{stem}.json").write_text(result.model_dump_json())
    (folder / f"{stem}.md").write_text(markdown.scenario(result, result.summary))  # charts come at the end
    return f"{stem}.json"


def finish_run(folder: Path, run: RunResult, scenarios: list[ScenarioResult]) -> Path:
    """Summaries, verdict, comparison files, charts and HTML for the scenarios written so far."""
    run.summaries = [r.summary for r in scenarios]
    run.verdict = verdict.compute(run.summaries)
    (folder / f"comparison_{run.timestamp}.json").write_text(run.model_dump_json(indent=1))
    path = folder / f"comparison_{run.timestamp}.md"
    path.write_text(markdown.comparison(run))  # already readable should charts fail; rewritten with them below
    render_extras(folder, run, scenarios)
    return path


def render_extras(folder: Path, run: RunResult, scenarios: list[ScenarioResult]) -> Path:
    """Charts, the Markdown files again with the charts embedded, and `report.html`; returns the HTML's path.

    `run.summaries` must already be computed, in the order of `scenarios`."""
    from taskbench.report import charts, html

    chart_files = charts.render_all(folder, run, scenarios)
    for result, summary in zip(scenarios, run.summaries, strict=True):
        stem = scenario_stem(result, run.timestamp)
        embedded = [(c.title, c.path) for c in chart_files.scenarios.get(stem, [])]
        (folder / f"{stem}.md").write_text(markdown.scenario(result, summary, embedded))
    embedded = [(c.title, c.path) for c in chart_files.comparison]
    (folder / f"comparison_{run.timestamp}.md").write_text(markdown.comparison(run, embedded))
    return html.write(folder, run, scenarios, chart_files)


def find_comparison(path: Path) -> Path:
    if path.is_file():
        return path
    found = sorted(path.glob("comparison_*.json"))
    if not found:
        raise SchemaError(f"{path}: no comparison_*.json here; pass a run folder written by `taskbench run`")
    return found[-1]


def load(path: Path) -> tuple[Path, RunResult, list[ScenarioResult]]:
    comparison = find_comparison(path)
    try:
        run = load_run(comparison)
        scenarios = [load_scenario(comparison.parent / name) for name in run.scenario_files]
    except (OSError, json.JSONDecodeError, ValueError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SchemaError(f"{comparison}: cannot read this run: {first_line}") from exc
    return comparison.parent, run, scenarios


def rerender(path: Path) -> Path:
    """`taskbench report PATH`: rebuild every Markdown, chart and HTML file from the run's JSON."""
    folder, run, scenarios = load(path)
    for result in scenarios:
        result.summary = failures.evaluate(result)  # figures and rules of this version, not the recorded ones
        write_scenario(folder, run.timestamp, result)
    return finish_run(folder, run, scenarios)
