"""`taskbench compare RUN_A RUN_B`: two runs side by side, to see what a change to the code or machine did.

Works from the saved summaries only; scenarios are matched by label (implementation · workload · jobs · fault).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from taskbench.report import files
from taskbench.report.fmt import mb, ms, ratio, table
from taskbench.results import RunResult

Value = float | int | bool | None
NOISE = 0.10  # relative changes below this are not called better or worse: run-to-run noise


@dataclass(frozen=True)
class KeyFigure:
    name: str
    value: Callable[[dict[str, Any]], Value]
    show: Callable[[Any], str]
    lower_is_better: bool = True


def _count(value: Any) -> str:
    return "–" if value is None else str(value)


def _yes_no(value: Any) -> str:
    return "–" if value is None else "✓" if value else "✗"


FIGURES = [
    KeyFigure("Makespan ÷ ideal", lambda s: s.get("makespan_ratio"), ratio),
    KeyFigure("Async probe p99", lambda s: s["probes"]["async"]["p99"], ms),
    KeyFigure("Sync probe p99", lambda s: s["probes"]["sync"]["p99"], ms),
    KeyFigure("Submission p99", lambda s: s["submission"]["p99"], ms),
    KeyFigure("Peak memory (job process)", lambda s: s.get("peak_memory_mb"), mb),
    KeyFigure("Completed", lambda s: s["completion"]["completed"], _count, lower_is_better=False),
    KeyFigure("Failed", lambda s: s["completion"]["failed"], _count),
    KeyFigure("Lost", lambda s: s["executions"]["lost"], _count),
    KeyFigure("Responsive", lambda s: s.get("responsive"), _yes_no, lower_is_better=False),
    KeyFigure("Failures detected", lambda s: len(s.get("failures", [])), _count),
]


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


def scenario_table(a: dict[str, Any] | None, b: dict[str, Any] | None) -> str:
    rows = []
    for figure in FIGURES:
        va = figure.value(a) if a else None
        vb = figure.value(b) if b else None
        rows.append([figure.name, figure.show(va), figure.show(vb), change(figure, va, vb)])
    return table(["Figure", "A", "B", "Change (B vs A)"], rows)


def settings_rows(a: RunResult, b: RunResult) -> list[list[str]]:
    def described(run: RunResult) -> dict[str, str]:
        s, env = run.settings, run.environment
        machine = env.get("machine", {})
        return {
            "Implementations": ", ".join(s.implementations),
            "Workloads": ", ".join(s.workloads),
            "Job counts": ", ".join(map(str, s.jobs)),
            "Job duration": f"{s.duration_s} s",
            "Celery concurrency": str(s.concurrency),
            "Faults": ", ".join(s.faults) or "none",
            "Redis": s.redis,
            "Thresholds": ", ".join(f"{k} {v}" for k, v in s.thresholds.model_dump().items()),
            "Machine": f"{machine.get('platform', '?')}, {machine.get('cpu_count', '?')} cores, "
            f"{machine.get('memory_gb', 0):.1f} GB; Python {machine.get('python', '?')}",
            "Versions": ", ".join(f"{k} {v}" for k, v in env.get("versions", {}).items()),
        }

    da, db = described(a), described(b)
    return [[key, da[key], db[key], "same" if da[key] == db[key] else "differs"] for key in da]


def render(path_a: Path, a: RunResult, path_b: Path, b: RunResult) -> str:
    by_label_a = {s["label"]: s for s in a.summaries}
    by_label_b = {s["label"]: s for s in b.summaries}
    labels = list(dict.fromkeys([*by_label_a, *by_label_b]))
    parts = [
        f"# taskbench: run {a.timestamp} (A) vs run {b.timestamp} (B)",
        f"- A: `{path_a}`\n- B: `{path_b}`",
        "## Verdict of A",
        "\n".join(f"- {line}" for line in a.verdict.get("lines", [])) or "- none",
        "## Verdict of B",
        "\n".join(f"- {line}" for line in b.verdict.get("lines", [])) or "- none",
        "## Scenarios",
        "Matched by label. Lower latency, memory and makespan count as better; changes under "
        f"{NOISE:.0%} are shown without a judgement (run-to-run noise).",
    ]
    for label in labels:
        sa, sb = by_label_a.get(label), by_label_b.get(label)
        where = "" if sa and sb else " (only in A)" if sa else " (only in B)"
        parts += [f"### {label}{where}", scenario_table(sa, sb)]
    parts += ["## Settings", table(["Setting", "A", "B", ""], settings_rows(a, b))]
    return "\n\n".join(parts) + "\n"


def default_output(folder_b: Path, a: RunResult, b: RunResult) -> Path:
    return folder_b.parent / f"compare_{a.timestamp}_vs_{b.timestamp}.md"


def compare(run_a: Path, run_b: Path, output: Path | None = None) -> Path:
    """Write the side-by-side Markdown (or HTML when `output` ends in .html); returns its path."""
    folder_a, a, _ = files.load(run_a)
    folder_b, b, _ = files.load(run_b)
    if output is None:
        output = default_output(folder_b, a, b)
    elif output.is_dir():
        output = output / default_output(folder_b, a, b).name
    text = render(folder_a, a, folder_b, b)
    output.parent.mkdir(parents=True, exist_ok=True)
    if output.suffix.lower() in (".html", ".htm"):
        from taskbench.report import html

        output.write_text(html.page_from_markdown(f"taskbench: {a.timestamp} vs {b.timestamp}", text))
    else:
        output.write_text(text)
    return output
