"""PNG charts for a run, drawn from the saved data only, so `taskbench report` can redraw them.

Figures are built with `matplotlib.figure.Figure` (no pyplot): no global state to leak between charts and
nothing to close, which keeps a run with dozens of charts fast and memory-flat.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

from matplotlib.axes import Axes
from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from taskbench.results import RunResult, ScenarioResult

IMPLEMENTATION_COLOURS = {"fastapi": "#009688", "celery": "#e4572e"}  # the same everywhere
ENDPOINT_COLOURS = {"async": "#2b5ea7", "sync": "#b8860b"}
ROLE_COLOURS = {"api": "#2b5ea7", "worker": "#c05621", "redis": "#7b4fc4"}
WAITING_COLOUR = "#c9ced6"
FAILED_COLOUR = "#c62828"
LOST_COLOUR = "#a3a3a3"
FAULT_COLOUR = "#c62828"
RECOVERED_COLOUR = "#2e7d32"
BURST_COLOUR = "#fff3c4"
DPI = 100
CHARTS_DIR = "charts"


@dataclass(frozen=True)
class Chart:
    title: str
    path: str  # relative to the run folder, e.g. charts/fastapi_10_jobs_timeline.png


@dataclass
class ChartFiles:
    comparison: list[Chart] = field(default_factory=list)
    scenarios: dict[str, list[Chart]] = field(default_factory=dict)  # scenario stem → its charts


def colour(implementation: str) -> str:
    return IMPLEMENTATION_COLOURS.get(implementation, "#555555")


def _save(fig: Figure, folder: Path, name: str, title: str) -> Chart:
    fig.savefig(folder / CHARTS_DIR / name, dpi=DPI)
    return Chart(title, f"{CHARTS_DIR}/{name}")


def _spans_decades(values: Iterable[float | None], factor: float = 20.0) -> bool:
    positive = [v for v in values if v is not None and v > 0]
    return len(positive) > 1 and max(positive) / min(positive) >= factor


def _mark_events(ax: Axes, result: ScenarioResult, legend: bool = True) -> None:
    """The burst as a shaded band, faults and recoveries as vertical lines: what explains a jump."""
    t0 = result.started_at
    times = {e.name: e.t - t0 for e in reversed(result.events)}  # first occurrence wins
    if "burst_start" in times:
        end = times.get("burst_end", times["burst_start"])
        ax.axvspan(times["burst_start"], max(end, times["burst_start"] + 1e-3), color=BURST_COLOUR, zorder=0,
                   label="submission burst" if legend else None)  # fmt: skip
    for event in result.events:
        if event.name == "fault":
            label = f"fault: {event.detail or 'injected'}" if legend else None
            ax.axvline(event.t - t0, color=FAULT_COLOUR, linestyle="--", linewidth=1.2, label=label, zorder=4)
        elif event.name == "recovered":
            label = "recovered" if legend else None
            ax.axvline(event.t - t0, color=RECOVERED_COLOUR, linestyle=":", linewidth=1.2, label=label, zorder=4)


def _legend(ax: Axes) -> None:
    """Outside the plot, on the right: inside, it would hide the bars and spikes it explains."""
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles, strict=False))
    if unique:
        ax.legend(unique.values(), unique.keys(), fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))


# --- per scenario ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bar:
    row: int
    submitted: float
    started: float | None
    finished: float | None
    state: str  # completed, failed, unfinished, lost


def job_bars(result: ScenarioResult, lost_ids: Sequence[str] = ()) -> list[Bar]:
    """One bar per accepted job, from its API record, else from the execution ledger (records can vanish
    with the process that held them, as FastAPI's do when the API crashes)."""
    t0 = result.started_at
    records = {j["job_id"]: j for j in result.jobs if j.get("job_id")}
    ledger_start: dict[str, float] = {}
    ledger_end: dict[str, float] = {}
    for e in result.executions:
        if e.get("event") == "start":
            ledger_start.setdefault(e["job_id"], e["t"])
        elif e.get("event") == "end" and e.get("ok"):
            ledger_end[e["job_id"]] = e["t"]
    lost = set(lost_ids)
    bars: list[Bar] = []
    for sub in sorted((s for s in result.submissions if s.job_id), key=lambda s: s.sent_at):
        job_id = str(sub.job_id)
        record = records.get(job_id, {})
        submitted = record.get("submitted_at") or sub.sent_at
        started = record.get("started_at") or ledger_start.get(job_id)
        finished = record.get("finished_at") or ledger_end.get(job_id)
        status = record.get("status")
        if status == "failed":
            state = "failed"
        elif job_id in lost or (finished is None and status != "completed"):
            state = "lost" if job_id in lost or not record else "unfinished"
        else:
            state = "completed"
        bars.append(
            Bar(
                row=len(bars),
                submitted=submitted - t0,
                started=None if started is None else started - t0,
                finished=None if finished is None else finished - t0,
                state=state,
            )
        )
    return bars


def killed_attempts(result: ScenarioResult) -> list[tuple[int, float, float]]:
    """Executions that a crash cut short and Celery ran again: every ledger start but a job's last, up to
    the fault (or the next start). The records only keep the last attempt."""
    t0 = result.started_at
    fault_at = next((e.t for e in result.events if e.name == "fault"), None)
    starts: dict[str, list[float]] = {}
    for e in result.executions:
        if e.get("event") == "start":
            starts.setdefault(e["job_id"], []).append(e["t"])
    rows = {
        s.job_id: i for i, s in enumerate(sorted((s for s in result.submissions if s.job_id), key=lambda s: s.sent_at))
    }
    spans = []
    for job_id, times in starts.items():
        times.sort()
        for start, following in itertools.pairwise(times):
            stop = min(following, fault_at) if fault_at is not None and fault_at > start else following
            if job_id in rows:
                spans.append((rows[job_id], start - t0, stop - t0))
    return spans


def _rects(spans: Sequence[tuple[int, float, float]], height: float) -> list[list[tuple[float, float]]]:
    half = height / 2
    return [[(a, r - half), (b, r - half), (b, r + half), (a, r + half)] for r, a, b in spans]


def timeline_chart(result: ScenarioResult, summary: dict[str, Any]) -> Figure:
    """Where each job spent its time: a long grey part is queueing, a missing end is a lost job."""
    bars = job_bars(result, summary.get("executions", {}).get("lost_ids", []))
    end = result.ended_at - result.started_at
    impl_colour = colour(result.spec.implementation)
    waiting: list[tuple[int, float, float]] = []
    running: dict[str, list[tuple[int, float, float]]] = {"completed": [], "failed": [], "unfinished": []}
    open_ended: list[tuple[int, float, float]] = []
    for b in bars:
        waiting.append((b.row, b.submitted, b.started if b.started is not None else end))
        if b.started is None:
            continue
        if b.finished is not None and b.state in ("completed", "failed"):
            running[b.state].append((b.row, b.started, b.finished))
        else:
            open_ended.append((b.row, b.started, b.finished if b.finished is not None else end))
    n = max(len(bars), 1)
    fig = Figure(figsize=(9, min(2.2 + 0.12 * n, 6.5)), layout="constrained")
    ax = fig.add_subplot()
    height = 0.8 if n <= 400 else 1.0
    crisp = n <= 400  # antialiasing turns thousands of sub-pixel bars into mush
    layers = [
        (waiting, WAITING_COLOUR, "waiting (queued)", None),
        (running["completed"], impl_colour, "running → completed", None),
        (running["failed"], FAILED_COLOUR, "running → failed", None),
        (open_ended, LOST_COLOUR, "started, never finished", "//"),
        (killed_attempts(result), LOST_COLOUR, "attempt killed, run again", "xx"),
    ]
    for spans, fill, label, hatch in layers:
        if spans:
            ax.add_collection(PolyCollection(_rects(spans, height), facecolors=fill, edgecolors="none",
                                             antialiased=crisp, hatch=hatch, label=label))  # fmt: skip
    lost_rows = [b for b in bars if b.state in ("lost", "unfinished")]
    if lost_rows:
        ax.scatter([end] * len(lost_rows), [b.row for b in lost_rows], marker="x", color=FAILED_COLOUR,
                   s=18 if n <= 400 else 4, zorder=3, label="lost / never finished")  # fmt: skip
    _mark_events(ax, result)
    ax.set_xlim(0, max(end, 1e-3) * 1.02)
    ax.set_ylim(n - 0.5, -0.5)  # first submitted at the top
    ax.set_xlabel("seconds since scenario start")
    ax.set_ylabel("job (in submission order)")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title(f"Job timeline — {result.spec.label}", fontsize=10)
    if not bars:
        ax.text(0.5, 0.5, "no job was accepted", transform=ax.transAxes, ha="center", va="center")
    _legend(ax)
    return fig


def probes_chart(result: ScenarioResult) -> Figure:
    """Probe latency over time: a stalled event loop shows as a spike or as timeouts on the limit line."""
    t0 = result.started_at
    limit = result.settings.thresholds.probe_timeout_s
    fig = Figure(figsize=(9, 3.6), layout="constrained")
    ax = fig.add_subplot()
    latencies: list[float | None] = []
    for endpoint, marker, lost_marker in (("async", "o", "x"), ("sync", "^", "+")):
        probes = sorted((p for p in result.probes if p.endpoint == endpoint), key=lambda p: p.sent_at)
        answered = [p for p in probes if p.latency_s is not None]
        missing = [p for p in probes if p.latency_s is None]
        latencies += [p.latency_s for p in answered]
        name = "/health (async)" if endpoint == "async" else "/health/sync (sync)"
        if answered:  # NaN where unanswered: the line breaks instead of bridging the outage
            ys = [math.nan if p.latency_s is None else p.latency_s * 1000 for p in probes]
            ax.plot([p.sent_at - t0 for p in probes], ys, marker=marker, markersize=3, linewidth=0.8,
                    color=ENDPOINT_COLOURS[endpoint], label=name)  # fmt: skip
        if missing:
            ax.scatter([p.sent_at - t0 for p in missing], [limit * 1000] * len(missing), marker=lost_marker, s=60,
                       color=ENDPOINT_COLOURS[endpoint], zorder=3, label=f"{name}: unanswered")  # fmt: skip
            latencies.append(limit)
    ax.axhline(
        limit * 1000, color=FAILED_COLOUR, linewidth=0.8, linestyle="-.", alpha=0.7, label=f"timeout ({limit:g} s)"
    )
    p99 = result.settings.thresholds.responsive_p99_s
    ax.axhline(p99 * 1000, color="#888888", linewidth=0.8, linestyle=":", label=f"responsive p99 limit ({p99:g} s)")
    _mark_events(ax, result)
    if _spans_decades([*latencies, limit]):
        ax.set_yscale("log")
    else:
        ax.set_ylim(bottom=0)
    ax.set_xlabel("seconds since scenario start (probe sent)")
    ax.set_ylabel("latency (ms)")
    ax.set_title(f"Probe latency — {result.spec.label}", fontsize=10)
    if not result.probes:
        ax.text(0.5, 0.5, "no probes recorded", transform=ax.transAxes, ha="center", va="center")
    _legend(ax)
    return fig


def resources_chart(result: ScenarioResult) -> Figure:
    """CPU and memory of each process over time, to see which process paid for the jobs."""
    t0 = result.started_at
    fig = Figure(figsize=(9, 5), layout="constrained")
    cpu_ax, mem_ax = fig.subplots(2, 1, sharex=True)
    for role, role_colour in ROLE_COLOURS.items():
        points = [(s.t - t0, s.processes[role]) for s in result.samples if role in s.processes]
        if not points:
            continue
        xs = [t for t, _ in points]
        style = {"color": role_colour, "linewidth": 1.2, "marker": "o" if len(points) < 30 else None, "markersize": 3}
        cpu_ax.plot(xs, [p.get("cpu_percent", math.nan) for _, p in points], label=role, **style)
        mem_ax.plot(xs, [p.get("rss_mb", math.nan) for _, p in points], label=role, **style)
    for ax in (cpu_ax, mem_ax):
        _mark_events(ax, result, legend=ax is cpu_ax)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    cpu_ax.set_ylabel("CPU (% of one core)")
    mem_ax.set_ylabel("RSS (MB)")
    mem_ax.set_xlabel("seconds since scenario start")
    cpu_ax.set_title(f"CPU and memory per process — {result.spec.label}", fontsize=10)
    if not result.samples:
        cpu_ax.text(0.5, 0.5, "no resource samples", transform=cpu_ax.transAxes, ha="center", va="center")
    _legend(cpu_ax)
    return fig


def render_scenario(folder: Path, stem: str, result: ScenarioResult, summary: dict[str, Any]) -> list[Chart]:
    return [
        _save(timeline_chart(result, summary), folder, f"{stem}_timeline.png", "Job timeline"),
        _save(probes_chart(result), folder, f"{stem}_probes.png", "Probe latency over time"),
        _save(resources_chart(result), folder, f"{stem}_resources.png", "CPU and memory per process"),
    ]


# --- comparison --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Metric:
    title: str
    ylabel: str
    value: Callable[[dict[str, Any]], float | None]
    limit: Callable[[RunResult], float | None] = lambda run: None


def _ms(value: float | None) -> float | None:
    return None if value is None else value * 1000


METRICS = [
    Metric("Makespan ÷ ideal", "ratio (1 = ideal)", lambda s: s.get("makespan_ratio"),
           lambda run: run.settings.thresholds.makespan_ratio_limit),
    Metric("Async probe p99", "latency (ms)", lambda s: _ms(s["probes"]["async"]["p99"]),
           lambda run: run.settings.thresholds.responsive_p99_s * 1000),
    Metric("Sync probe p99", "latency (ms)", lambda s: _ms(s["probes"]["sync"]["p99"]),
           lambda run: run.settings.thresholds.responsive_p99_s * 1000),
    Metric("Submission p99", "latency (ms)", lambda s: _ms(s["submission"]["p99"])),
    Metric("Peak memory of the job process", "RSS (MB)", lambda s: s.get("peak_memory_mb"),
           lambda run: run.settings.thresholds.memory_limit_mb),
]  # fmt: skip


def workload_chart(run: RunResult, workload: str, summaries: list[dict[str, Any]]) -> Figure:
    """Each figure against job count, one line per implementation: where the lines part is the answer."""
    fig = Figure(figsize=(11, 6.2), layout="constrained")
    axes = fig.subplots(2, 3).ravel()
    implementations = list(dict.fromkeys(s["implementation"] for s in summaries))
    counts = sorted({s["jobs"] for s in summaries})
    for ax, metric in zip(axes, METRICS, strict=False):
        values: list[float | None] = []
        for impl in implementations:
            rows = sorted((s for s in summaries if s["implementation"] == impl), key=lambda s: s["jobs"])
            ys = [metric.value(s) for s in rows]
            values += ys
            xs = [s["jobs"] for s in rows]
            ax.plot(xs, [math.nan if y is None else y for y in ys], marker="o", color=colour(impl), label=impl)
            failed = [(x, y) for x, y, s in zip(xs, ys, rows, strict=True) if y is not None and s.get("failures")]
            if failed:
                ax.scatter(*zip(*failed, strict=True), s=110, facecolors="none", edgecolors=FAILED_COLOUR,
                           linewidths=1.5, zorder=3, label="failure detected")  # fmt: skip
        limit = metric.limit(run)
        shown = [v for v in values if v is not None]
        if limit is not None and shown and max(shown) >= limit * 0.5:
            ax.axhline(limit, color="#888888", linestyle=":", linewidth=1, label="failure threshold")
        if not shown:
            ax.text(0.5, 0.5, "no data", transform=ax.transAxes, ha="center", va="center", color="#888888")
        if _spans_decades(shown):
            ax.set_yscale("log")
        elif shown:
            ax.set_ylim(bottom=0, top=max(shown) * 1.15 or 1)
        if _spans_decades(counts, 10):
            ax.set_xscale("log")
        ax.set_xticks(counts, [str(c) for c in counts])
        ax.minorticks_off()
        ax.set_title(metric.title, fontsize=10)
        ax.set_xlabel("jobs submitted at once")
        ax.set_ylabel(metric.ylabel)
        ax.grid(alpha=0.3)
    legend_ax = axes[-1]
    legend_ax.axis("off")
    handles = [Line2D([], [], color=colour(i), marker="o", label=i) for i in implementations]
    handles += [
        Line2D([], [], marker="o", linestyle="none", markerfacecolor="none", markeredgecolor=FAILED_COLOUR,
               markersize=10, label="failure detected"),
        Line2D([], [], color="#888888", linestyle=":", label="failure threshold"),
    ]  # fmt: skip
    legend_ax.legend(handles=handles, loc="center", fontsize=10, title="Legend")
    fig.suptitle(f"Workload “{workload}”: FastAPI BackgroundTasks vs Celery by job count", fontsize=12)
    return fig


def faults_chart(summaries: list[dict[str, Any]]) -> Figure:
    """Jobs lost per fault: the durability question in one picture."""
    faults = list(dict.fromkeys((s["fault"], s["variant"]) for s in summaries))
    implementations = list(dict.fromkeys(s["implementation"] for s in summaries))
    fig = Figure(figsize=(max(6.0, 1.6 * len(faults) + 3), 3.8), layout="constrained")
    ax = fig.add_subplot()
    width = 0.8 / max(len(implementations), 1)
    for i, impl in enumerate(implementations):
        for x, fault in enumerate(faults):
            row = next((s for s in summaries if (s["fault"], s["variant"]) == fault and s["implementation"] == impl),
                       None)  # fmt: skip
            if row is None:
                continue
            lost = row["executions"]["lost"]
            pos = x - 0.4 + width * (i + 0.5)
            ax.bar(pos, lost, width * 0.9, color=colour(impl), label=impl)
            ax.annotate(f"{lost}/{row['executions']['accepted']}", (pos, lost), ha="center", va="bottom",
                        fontsize=8, xytext=(0, 2), textcoords="offset points")  # fmt: skip
    ax.set_xticks(range(len(faults)), [f + (f"\n({v})" if v else "") for f, v in faults])
    ax.set_ylabel("jobs lost (accepted, never completed)")
    ax.set_title("Jobs lost per fault", fontsize=10)
    ax.margins(y=0.15)
    ax.set_ylim(bottom=0)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(handles=[Patch(color=colour(i), label=i) for i in implementations], fontsize=8)
    return fig


def render_comparison(folder: Path, run: RunResult) -> list[Chart]:
    charts: list[Chart] = []
    plain = [s for s in run.summaries if not s["fault"]]
    for workload in dict.fromkeys(s["workload"] for s in plain):
        rows = [s for s in plain if s["workload"] == workload]
        fig = workload_chart(run, workload, rows)
        charts.append(_save(fig, folder, f"comparison_{workload}.png", f"Workload {workload}: figures by job count"))
    with_fault = [s for s in run.summaries if s["fault"]]
    if with_fault:
        charts.append(_save(faults_chart(with_fault), folder, "comparison_faults.png", "Jobs lost per fault"))
    return charts


def render_all(folder: Path, run: RunResult, scenarios: list[ScenarioResult]) -> ChartFiles:
    """Every chart of the run into `<folder>/charts/`; `run.summaries` must match `scenarios` in order."""
    from taskbench.report.files import scenario_stem

    (folder / CHARTS_DIR).mkdir(parents=True, exist_ok=True)
    files = ChartFiles(comparison=render_comparison(folder, run))
    for result, summary in zip(scenarios, run.summaries, strict=False):
        stem = scenario_stem(result, run.timestamp)
        files.scenarios[stem] = render_scenario(folder, stem, result, summary)
    return files
