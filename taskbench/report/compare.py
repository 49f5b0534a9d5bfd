"""`taskbench compare RUN_A RUN_B`: two runs side by side, to see what a change to the code or machine did.

Both runs are analysed by this version (`taskbench.analysis.analyse`); scenarios are matched by label
(implementation · workload · jobs · fault), for whatever implementations either run has.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from taskbench.analysis import analyse
from taskbench.analysis.models import AnalysedRun, ScenarioSummary
from taskbench.errors import UsageError
from taskbench.report import files, html, markdown
from taskbench.report.blocks import Block, Cell, Heading, Paragraph, Table, bullets
from taskbench.report.content import broker_text, topology_text
from taskbench.report.fmt import mb, ms, ratio, seconds, yes_no

Value = float | int | bool | None
NOISE = 0.10  # relative changes below this are not called better or worse: run-to-run noise


@dataclass(frozen=True)
class KeyFigure:
    name: str
    value: Callable[[ScenarioSummary], Value]
    show: Callable[[Value], str]
    lower_is_better: bool = True
    key: str = ""  # what `compare --figures` calls it; only keyed figures can gate


def _count(value: Value) -> str:
    return "–" if value is None else str(value)


def _yes_no(value: Value) -> str:
    return yes_no(None if value is None else bool(value))


def _number(show: Callable[[float | None], str]) -> Callable[[Value], str]:
    return lambda value: show(None if value is None else float(value))


FIGURES = [
    KeyFigure("Makespan ÷ ideal", lambda s: s.makespan_ratio, _number(ratio), key="makespan"),
    KeyFigure("Async probe p99", lambda s: s.probes["async"].p99, _number(ms), key="async-p99"),
    KeyFigure("Sync probe p99", lambda s: s.probes["sync"].p99, _number(ms), key="sync-p99"),
    KeyFigure("Submission p99", lambda s: s.submission.p99, _number(ms), key="submission-p99"),
    KeyFigure("Peak memory (job process)", lambda s: s.peak_memory_mb, _number(mb), key="memory"),
    KeyFigure("Completed", lambda s: s.completion.completed, _count, lower_is_better=False, key="completed"),
    KeyFigure("Failed", lambda s: s.completion.failed, _count),
    KeyFigure("Lost", lambda s: s.executions.lost, _count, key="lost"),
    KeyFigure("Redelivered", lambda s: s.executions.recovered, _count, lower_is_better=False),
    KeyFigure(
        "Redelivery delay (fault → first start again)",
        lambda s: s.executions.redelivery_delay_s,
        _number(lambda v: seconds(v, 1)),
    ),
    KeyFigure("Responsive", lambda s: s.responsive, _yes_no, lower_is_better=False),
    KeyFigure("Failures detected", lambda s: len(s.failures), _count),
]


FIGURES.append(
    KeyFigure("Total time p95", lambda s: s.total_time.p95, _number(lambda v: seconds(v, 2)), key="total-p95")
)
GATED_FIGURES = {f.key: f for f in FIGURES if f.key}
DEFAULT_GATED = ("makespan", "submission-p99", "memory", "completed")


def worsened(figure: KeyFigure, a: Value, b: Value) -> float | None:
    """How much worse B is than A, as a share of A (0.25: 25 % worse); None when not worse or not comparable."""
    if a is None or b is None or isinstance(a, bool) or isinstance(b, bool) or a == 0:
        return None
    share = (b - a) / abs(a) * (1 if figure.lower_is_better else -1)
    return share if share > 0 else None


def regressions(a: AnalysedRun, b: AnalysedRun, keys: Sequence[str], limit: float) -> list[str]:
    """Each figure of a scenario in both runs that got worse by more than `limit` (a share), in words."""
    found = []
    by_label_a = {s.label: s for s in a.summaries}
    for sb in b.summaries:
        sa = by_label_a.get(sb.label)
        if sa is None:
            continue
        for key in keys:
            figure = GATED_FIGURES[key]
            va, vb = figure.value(sa), figure.value(sb)
            share = worsened(figure, va, vb)
            if share is not None and share > limit:
                found.append(
                    f"{sb.label}: {figure.name} {figure.show(va)} → {figure.show(vb)} "
                    f"({share:.0%} worse, limit {limit:.0%})"
                )
    return found


def measured_differently(a: AnalysedRun, b: AnalysedRun) -> list[str]:
    """What makes the two runs' figures mean different things: then a change says nothing about the code."""
    differences = []
    pairs = {
        "job duration": (a.settings.duration_s, b.settings.duration_s),
        "memory measure": (a.environment.machine.job_memory, b.environment.machine.job_memory),
        "broker": (a.settings.broker, b.settings.broker),
        "sustained load": (a.settings.load is not None, b.settings.load is not None),
        "API processes": (a.settings.api.api_workers, b.settings.api.api_workers),
    }
    for what, (va, vb) in pairs.items():
        if va != vb:
            differences.append(f"{what}: {va} in A, {vb} in B")
    return differences


def change(figure: KeyFigure, a: Value, b: Value) -> str:
    """B relative to A, in the figure's own unit, with the relative change for measured values."""
    if a is None or b is None:
        return "–" if a is None and b is None else "only in " + ("B" if a is None else "A")
    if isinstance(a, bool) or isinstance(b, bool):
        return "same" if a == b else f"{_yes_no(a)} → {_yes_no(b)}"
    delta = b - a
    if delta == 0:
        return "same"
    if isinstance(a, int) and isinstance(b, int):
        return f"{delta:+d}"
    shown = figure.show(abs(delta))
    if shown == figure.show(0.0):
        return "≈ same"
    text = ("+" if delta > 0 else "−") + shown
    relative = delta / abs(a) if a else None
    if relative is not None:
        text += f" ({relative * 100:+.0f}%)".replace("-", "−")
    if relative is None or abs(relative) >= NOISE:
        text += " better" if (delta < 0) == figure.lower_is_better else " worse"
    return text


def scenario_table(a: ScenarioSummary | None, b: ScenarioSummary | None) -> Table:
    rows: list[list[Cell]] = []
    for figure in FIGURES:
        va = figure.value(a) if a else None
        vb = figure.value(b) if b else None
        rows.append([figure.name, figure.show(va), figure.show(vb), change(figure, va, vb)])
    return Table(["Figure", "A", "B", "Change (B vs A)"], rows)


def _described(run: AnalysedRun, names: list[str]) -> dict[str, str]:
    s, env = run.settings, run.environment
    machine = env.machine
    described = {
        "Implementations": ", ".join(s.implementations),
        "Workloads": ", ".join(s.workloads),
        "Job counts": ", ".join(map(str, s.jobs)),
        "Job duration": f"{s.duration_s} s",
        "Concurrency": str(s.concurrency),
        "Faults": ", ".join(s.faults) or "none",
        "Topology": topology_text(s).removeprefix("Topology: "),
        "API middleware": ", ".join(s.middleware),
        "Redis": s.redis,
        "Broker": broker_text(s),
        "Thresholds": ", ".join(f"{k} {v}" for k, v in s.thresholds.model_dump().items()),
        "Machine": f"{machine.platform}, {machine.cpu_count or '?'} cores, "
        f"{machine.memory_gb or 0:.1f} GB; Python {machine.python}",
        "Versions": ", ".join(f"{k} {v}" for k, v in env.versions.items()),
    }
    infos = {i.name: i for i in run.implementations}
    for name in names:
        info = infos.get(name)
        settings = "; ".join(f"{k}: {v}" for k, v in info.settings.items()) if info else ""
        described[f"Settings of {name}"] = settings or "–"
    return described


def settings_table(a: AnalysedRun, b: AnalysedRun) -> Table:
    names = list(dict.fromkeys([*(i.name for i in a.implementations), *(i.name for i in b.implementations)]))
    da, db = _described(a, names), _described(b, names)
    rows: list[list[Cell]] = [[key, da[key], db[key], "same" if da[key] == db[key] else "differs"] for key in da]
    return Table(["Setting", "A", "B", ""], rows)


def side_by_side(path_a: Path, a: AnalysedRun, path_b: Path, b: AnalysedRun) -> list[Block]:
    by_label_a = {s.label: s for s in a.summaries}
    by_label_b = {s.label: s for s in b.summaries}
    blocks: list[Block] = [
        Heading(f"taskbench: run {a.timestamp} (A) vs run {b.timestamp} (B)", 1),
        bullets([f"A: `{path_a}`", f"B: `{path_b}`"]),
        Heading("Verdict of A"),
        bullets(a.verdict.lines or ["none"]),
        Heading("Verdict of B"),
        bullets(b.verdict.lines or ["none"]),
        Heading("Scenarios"),
        Paragraph(
            "Matched by label. Lower latency, memory and makespan count as better; changes under "
            f"{NOISE:.0%} are shown without a judgement (run-to-run noise)."
        ),
    ]
    for label in dict.fromkeys([*by_label_a, *by_label_b]):
        sa, sb = by_label_a.get(label), by_label_b.get(label)
        where = "" if sa and sb else " (only in A)" if sa else " (only in B)"
        blocks += [Heading(f"{label}{where}", 3), scenario_table(sa, sb)]
    return [*blocks, Heading("Settings"), settings_table(a, b)]


def default_output(folder_b: Path, a: AnalysedRun, b: AnalysedRun) -> Path:
    return folder_b.parent / f"compare_{a.timestamp}_vs_{b.timestamp}.md"


def compare(
    run_a: Path,
    run_b: Path,
    output: Path | None = None,
    gated: Sequence[str] = DEFAULT_GATED,
    limit: float | None = None,
    allow_different: bool = False,
) -> tuple[Path, list[str]]:
    """Write the side-by-side Markdown (or HTML when `output` ends in .html); its path, and the figures of `gated`
    that got worse by more than `limit` (none when no limit). Runs measured differently are refused (UsageError)
    unless `allow_different`: their changes would not be the code's."""
    folder_a, a = _analysed(run_a)
    folder_b, b = _analysed(run_b)
    differences = measured_differently(a, b)
    if differences and not allow_different:
        raise UsageError(
            "these runs were measured differently, so their figures do not compare ("
            + "; ".join(differences)
            + "); add --allow-different to put them side by side anyway"
        )
    if output is None:
        output = default_output(folder_b, a, b)
    elif output.is_dir():
        output = output / default_output(folder_b, a, b).name
    blocks = side_by_side(folder_a, a, folder_b, b)
    if differences:
        blocks.insert(2, Paragraph("> **Measured differently** (--allow-different): " + "; ".join(differences) + "."))
    worse = regressions(a, b, gated, limit) if limit is not None else []
    if limit is not None:
        blocks.insert(2, Heading(f"Gate: figures worse by more than {limit:.0%}"))
        blocks.insert(3, bullets(worse or ["none"]))
    if output.suffix.lower() in (".html", ".htm"):
        text = html.document(f"taskbench: {a.timestamp} vs {b.timestamp}", blocks)
    else:
        text = markdown.document(blocks)
    return files.write_side_by_side(output, text), worse


def _analysed(path: Path) -> tuple[Path, AnalysedRun]:
    folder, run, scenarios = files.load(path)
    return folder, analyse(run, scenarios)
