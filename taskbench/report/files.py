"""Every file a run leaves, written here and only here, each once; everything renders from the run's JSON.

A run's folder, `benchmark_results/<timestamp>/`, holds the spec's names:
`{impl}_{N}_jobs_{timestamp}.json` per scenario and beside it `{impl}_{N}_jobs_{timestamp}.history.jsonl` (its
history in Jepsen's operation shape, from that JSON alone: `taskbench.analysis.history`), written as results
arrive (`write_scenario_data`), then at the end (`write_run`) `{impl}_{N}_jobs_{timestamp}.md`,
`comparison_{timestamp}.md/.json`, `charts/*.png` (a scenario's) and `charts/comparison_*.svg`,
`report.html` (self-contained: its charts inlined), `results_{timestamp}.csv` (the spec's table as numbers).
`rerender` repeats the end from the JSON alone, with this version's analysis (and writes each history again).
"""

from __future__ import annotations

import base64
import contextlib
import errno
import json
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import ValidationError

from taskbench.analysis import analyse, history, rejudge
from taskbench.analysis.models import AnalysedRun
from taskbench.errors import SchemaError, UsageError
from taskbench.record.results import RunResult, ScenarioResult, load_run, load_scenario
from taskbench.report import digest, html, markdown, questions
from taskbench.report.blocks import ChartRef
from taskbench.report.names import CHARTS_DIR, REPORT_HTML, comparison_stem, scenario_stem
from taskbench.report.palette import FALLBACK, colours

if TYPE_CHECKING:
    from taskbench.report import charts


@contextlib.contextmanager
def _replacing(path: Path) -> Iterator[Path]:
    """A temporary file beside `path`, renamed over it once written whole: a full disk or a crash mid-write leaves
    the earlier file as it was, never half of a new one."""
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(handle)
    try:
        yield Path(temporary)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def write_text(path: Path, text: str) -> None:
    with _replacing(path) as temporary:
        temporary.write_text(text, encoding="utf-8")


@contextlib.contextmanager
def _disk_errors(folder: Path) -> Iterator[None]:
    """A disk that is full (or read-only) is one line saying what was kept."""
    try:
        yield
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
            raise
        raise UsageError(
            f"cannot write the reports in {folder} ({exc.strerror}): every file written before is kept whole; "
            f"free some space and run `taskbench report {folder}`"
        ) from None


def write_scenario_data(folder: Path, timestamp: str, result: ScenarioResult) -> str:
    """The scenario's raw data, as soon as it is measured; returns the JSON file's name."""
    folder.mkdir(parents=True, exist_ok=True)
    name = f"{scenario_stem(result.spec, timestamp)}.json"
    with _disk_errors(folder):
        write_text(folder / name, result.model_dump_json())
        write_history(folder, timestamp, result)
    return name


def write_history(folder: Path, timestamp: str, result: ScenarioResult) -> str:
    """The scenario's history beside its JSON, from that JSON alone; returns the file's name."""
    name = f"{scenario_stem(result.spec, timestamp)}.history.jsonl"
    write_text(folder / name, history.dumps(history.history(result)))
    return name


def write_run(folder: Path, analysed: AnalysedRun, scenarios: list[ScenarioResult]) -> Path:
    """Every report of the run: per-scenario Markdown, the comparison (.md and .json), the charts and
    `report.html`. `scenarios` in the order of `analysed.scenario_summaries`; returns the comparison .md's path.
    Each file replaces its earlier version whole or not at all (a full disk: one line, the earlier ones kept)."""
    with _disk_errors(folder):
        return _write_run(folder, analysed, scenarios)


def _write_run(folder: Path, analysed: AnalysedRun, scenarios: list[ScenarioResult]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    timestamp = analysed.timestamp
    palette = colours([i.name for i in analysed.implementations])
    from taskbench.report import charts  # matplotlib, imported when a report is drawn: not for `--help`

    comparison_charts = charts.comparison_charts(analysed)
    scenario_charts: dict[str, list[charts.Chart]] = {}
    for result, summary in zip(scenarios, analysed.scenario_summaries, strict=True):
        stem = scenario_stem(result.spec, timestamp)
        colour = palette.get(result.spec.implementation, FALLBACK)
        scenario_charts[stem] = charts.scenario_charts(stem, result, summary, colour)
        refs = [c.ref for c in scenario_charts[stem]]
        write_text(folder / f"{stem}.md", markdown.scenario(result, summary, refs))
    write_text(folder / f"{comparison_stem(timestamp)}.json", analysed.model_dump_json(indent=1))
    path = folder / f"{comparison_stem(timestamp)}.md"
    write_text(path, markdown.comparison(analysed, [c.ref for c in comparison_charts]))
    (folder / CHARTS_DIR).mkdir(exist_ok=True)
    every = [*comparison_charts, *(c for cs in scenario_charts.values() for c in cs)]
    for chart in every:
        with _replacing(folder / chart.ref.path) as temporary:
            chart.draw().savefig(temporary, dpi=charts.DPI, format=Path(chart.name).suffix[1:])
    drawn = {chart.name for chart in every}
    for left in (folder / CHARTS_DIR).glob("*.*"):  # a chart an earlier rendering drew that this one does not
        if left.suffix in (".png", ".svg") and left.name not in drawn:
            left.unlink()
    refs_by_stem: dict[str, list[ChartRef]] = {stem: [c.ref for c in cs] for stem, cs in scenario_charts.items()}
    page = html.report(analysed, scenarios, [c.ref for c in comparison_charts], refs_by_stem)
    write_text(folder / REPORT_HTML, _inline_charts(page, folder))
    write_text(folder / f"results_{timestamp}.csv", digest.csv_table(analysed))
    return path


IMAGE = re.compile(r'src="(charts/[^"]+\.(png|svg))"')
SVG_WIDTH = re.compile(rb'<svg[^>]*\swidth="([\d.]+)pt"')
MEDIA_TYPES = {"png": "image/png", "svg": "image/svg+xml"}


def _inline_charts(page: str, folder: Path) -> str:
    """Each chart as a data: URI, so that report.html copied alone (mailed, attached to a CI job) shows them, with
    its width in CSS pixels (an SVG's points × 4/3)."""

    def data_uri(match: re.Match[str]) -> str:
        path = folder / match.group(1)
        if not path.is_file():
            return match.group(0)
        data = path.read_bytes()
        if match.group(2) == "png":
            width = int.from_bytes(data[16:20], "big")  # the IHDR chunk's width
        else:
            found = SVG_WIDTH.search(data[:2000])
            width = round(float(found.group(1)) * 4 / 3) if found else 640
        media = MEDIA_TYPES[match.group(2)]
        return f'width="{width}" src="data:{media};base64,{base64.b64encode(data).decode()}"'

    return IMAGE.sub(data_uri, page)


def write_side_by_side(path: Path, text: str) -> Path:
    """`taskbench compare`'s output."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def find_comparison(path: Path) -> Path:
    if path.is_file():
        return path
    found = sorted(path.glob("comparison_*.json"))
    if not found:
        raise SchemaError(f"{path}: no comparison_*.json here; pass a run folder written by `taskbench run`")
    return found[-1]


def load(path: Path) -> tuple[Path, RunResult, list[ScenarioResult]]:
    """A run folder (or its comparison JSON): its folder, the run and its scenarios (schema 1 migrated)."""
    comparison = find_comparison(path)
    try:
        run = load_run(comparison)
        scenarios = [load_scenario(comparison.parent / name) for name in run.scenario_files]
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"])
        raise SchemaError(f"{comparison}: cannot read this run: {where}: {error['msg']}") from exc
    except (OSError, json.JSONDecodeError, ValueError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SchemaError(f"{comparison}: cannot read this run: {first_line}") from exc
    return comparison.parent, run, scenarios


def rerender(path: Path, reference: str | None = None) -> Path:
    """`taskbench report PATH`: rebuild every report from the run's JSON with this version's analysis, its
    answer against `reference` when one is named; returns the comparison .md's path."""
    folder, run, scenarios = load(path)
    if reference is not None:
        run = with_reference(run, reference)
    with _disk_errors(folder):
        for result in scenarios:
            write_history(folder, run.timestamp, result)
    return write_run(folder, analyse(run, scenarios), scenarios)


def with_reference(run: RunResult, reference: str) -> RunResult:
    if reference not in run.settings.implementations:
        names = ", ".join(run.settings.implementations)
        raise UsageError(f"--reference {reference}: this run has no such implementation; name one of {names}")
    return run.model_copy(update={"settings": run.settings.model_copy(update={"reference": reference})})


def write_page(run: Path, page: Path, judged_by: str = "") -> Path:
    """`taskbench report RUN --page docs/results/NAME.md`: a measured page for the docs, generated, not pasted.
    Beside it, `NAME.json` keeps the analysed run it renders from (`render_page` renders it again: a test
    checks that every committed page is what its JSON renders to). RUN may be that JSON itself: its figures are
    then judged again with this version's rules, by the revision `judged_by`."""
    if run.is_file() and run.suffix == ".json" and not run.name.startswith("comparison_"):
        analysed = _page_rejudged(run, judged_by)
    else:
        _, recorded, scenarios = load(run)
        analysed = analyse(recorded, scenarios).model_copy(update={"scenario_summaries": []})  # the page shows none
    page.parent.mkdir(parents=True, exist_ok=True)
    page.with_suffix(".json").write_text(analysed.model_dump_json() + "\n")
    page.write_text(render_page(page.with_suffix(".json")))
    return page


def _page_rejudged(page_json: Path, judged_by: str) -> AnalysedRun:
    """A page's own JSON (`taskbench report docs/results/NAME.json --page docs/results/NAME.md`): its figures
    judged again with this version's rules, since a page keeps no raw results to analyse afresh."""
    try:
        recorded = AnalysedRun.model_validate_json(page_json.read_text())
    except (OSError, ValidationError) as exc:
        raise SchemaError(f"{page_json}: not a page's JSON (a run folder, or the NAME.json beside a page)") from exc
    return rejudge(recorded).model_copy(update={"rejudged_by": judged_by})


QUESTIONS_PAGE = "questions"  # a page of this name is the page of answers (taskbench.report.questions)


def render_page(analysed_json: Path) -> str:
    analysed = AnalysedRun.model_validate_json(analysed_json.read_text())
    name = analysed_json.with_suffix(".md").name
    source = f"<!-- generated by `taskbench report RUN --page {name}` from {analysed_json.name}; do not edit -->\n"
    if analysed_json.stem == QUESTIONS_PAGE:
        return source + markdown.document(questions.blocks(analysed))
    return source + markdown.comparison(analysed)
