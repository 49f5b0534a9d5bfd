"""PNG charts for a run, drawn from the saved data and its analysis only, so `taskbench report` can redraw them.

Renderers only: each chart is a `Chart` (title, file name, and a function that draws its figure);
`taskbench.report.files` draws and saves them one at a time. Figures are built with `matplotlib.figure.Figure`
(no pyplot): no global state to leak between charts and nothing to close, which keeps a run with dozens of
charts fast and memory-flat.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from functools import partial

import matplotlib

matplotlib.use("Agg")

from matplotlib.axes import Axes
from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from taskbench import implementations
from taskbench.analysis import order
from taskbench.analysis.models import AnalysedRun, Rule, ScenarioSummary
from taskbench.record.results import EventName, ScenarioResult, Thresholds
from taskbench.report import alt_text, at_a_glance
from taskbench.report.blocks import ChartRef
from taskbench.report.content import job_memory
from taskbench.report.names import chart_path
from taskbench.report.palette import FALLBACK, colours

ENDPOINT_COLOURS = {"async": "#2b5ea7", "sync": "#b8860b"}
ROLE_COLOURS = {"api": "#2b5ea7", "redis": "#7b4fc4"}  # workers take theirs from WORKER_COLOURS
WORKER_COLOURS = ("#c05621", "#2e7d32", "#d81b60", "#6d4c41")
UNPLOTTED_ROLES = ("harness",)  # the harness's own cost is in the resources table
WAITING_COLOUR = "#c9ced6"
FAILED_COLOUR = "#c62828"
BORDERLINE_COLOUR = "#ef8f00"
LOST_COLOUR = "#a3a3a3"
FAULT_COLOUR = "#c62828"
RECOVERED_COLOUR = "#2e7d32"
BURST_COLOUR = "#fff3c4"
DPI = 100  # pixels per inch of a scenario's figure (PNG); the comparison's are SVG


@dataclass(frozen=True)
class Chart:
    """One chart of the run: `draw()` builds its figure when it is saved (not before: figures are large)."""

    title: str
    # file name in charts/, its suffix its format: .svg for the comparison's few charts (sharp on any screen, and
    # small: a few bars and lines), .png for a scenario's many (a timeline of thousands of jobs is smaller so)
    name: str
    draw: Callable[[], Figure]
    alt: str = ""  # what it shows in numbers (`alt_text`)

    @property
    def ref(self) -> ChartRef:
        return ChartRef(self.title, chart_path(self.name), self.alt)


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
    if EventName.fault in times and EventName.restored in times:  # network-partition: the time the host was cut off
        ax.axvspan(times[EventName.fault], times[EventName.restored], color=FAULT_COLOUR, alpha=0.08, zorder=0,
                   label="host cut off" if legend else None)  # fmt: skip
    for event in result.events:
        if event.name == EventName.fault:
            label = f"fault: {event.detail or 'injected'}" if legend else None
            ax.axvline(event.t - t0, color=FAULT_COLOUR, linestyle="--", linewidth=1.2, label=label, zorder=4)
        elif event.name == EventName.recovered:
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
    with the process that held them, as BackgroundTasks' do when the API crashes)."""
    t0 = result.started_at
    records = {j.job_id: j for j in result.jobs if j.job_id}
    ledger_start: dict[str, float] = {}
    ledger_end: dict[str, float] = {}
    for e in result.executions:
        if e.event == "start":
            ledger_start.setdefault(e.job_id, e.t)
        elif e.event == "end" and e.ok:
            ledger_end[e.job_id] = e.t
    lost = set(lost_ids)
    accepted = order.accepted_at(result)
    bars: list[Bar] = []
    for job_id in order.acceptance_order(result):
        record = records.get(job_id)
        submitted = (record.submitted_at if record else None) or accepted[job_id]
        started = (record.started_at if record else None) or ledger_start.get(job_id)
        finished = (record.finished_at if record else None) or ledger_end.get(job_id)
        status = record.status if record else None
        if status == "failed":
            state = "failed"
        elif job_id in lost or (finished is None and status != "completed"):
            state = "lost" if job_id in lost or record is None else "unfinished"
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
    """Executions that a crash cut short and the queue ran again: every ledger start but a job's last, up to
    the fault (or the next start). The records only keep the last attempt."""
    t0 = result.started_at
    fault_at = next((e.t for e in result.events if e.name == EventName.fault), None)
    starts: dict[str, list[float]] = {}
    for e in result.executions:
        if e.event == "start":
            starts.setdefault(e.job_id, []).append(e.t)
    rows = {job_id: i for i, job_id in enumerate(order.acceptance_order(result))}
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


def timeline_chart(result: ScenarioResult, lost_ids: Sequence[str] = (), colour: str = FALLBACK) -> Figure:
    """Where each job spent its time: a long grey part is queueing, a missing end is a lost job."""
    bars = job_bars(result, lost_ids)
    end = result.ended_at - result.started_at
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
        (running["completed"], colour, "running → completed", None),
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
    ax.set_ylim(n - 0.5, -0.5)  # first accepted at the top
    ax.set_xlabel("seconds since scenario start")
    ax.set_ylabel("job (in the order the service accepted them)")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title(f"Job timeline — {result.run_label}", fontsize=10)
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
    ax.set_title(f"Probe latency — {result.run_label}", fontsize=10)
    if not result.probes:
        ax.text(0.5, 0.5, "no probes recorded", transform=ax.transAxes, ha="center", va="center")
    _legend(ax)
    return fig


def role_colours(roles: Iterable[str]) -> dict[str, str]:
    """The API and Redis in fixed colours, every worker role in the next worker colour."""
    plotted = [r for r in dict.fromkeys(roles) if r not in UNPLOTTED_ROLES]
    ordered = [r for r in ROLE_COLOURS if r in plotted] + [r for r in plotted if r not in ROLE_COLOURS]
    workers = itertools.cycle(WORKER_COLOURS)
    return {role: ROLE_COLOURS.get(role) or next(workers) for role in ordered}


def resources_chart(result: ScenarioResult) -> Figure:
    """CPU and memory of each process over time, to see which process paid for the jobs."""
    t0 = result.started_at
    fig = Figure(figsize=(9, 5), layout="constrained")
    cpu_ax, mem_ax = fig.subplots(2, 1, sharex=True)
    # One memory definition per chart: the job process's own measure (PSS, or USS) where it was read, which is the
    # one the tables report; RSS for every process only in runs that read no other.
    proportional = any(r.pss_mb is not None for s in result.samples for r in s.processes.values())
    for role, role_colour in role_colours(r for s in result.samples for r in s.processes).items():
        points = [(s.t - t0, s.processes[role]) for s in result.samples if role in s.processes]
        xs = [t for t, _ in points]
        marker = "o" if len(points) < 30 else None
        cpu_ax.plot(xs, [p.cpu_percent for _, p in points], label=role, color=role_colour, linewidth=1.2,
                    marker=marker, markersize=3)  # fmt: skip
        memory = [p.pss_mb if proportional else p.rss_mb for _, p in points]
        if any(m is not None for m in memory):
            mem_ax.plot(xs, [math.nan if m is None else m for m in memory], label=role, color=role_colour,
                        linewidth=1.2, marker=marker, markersize=3)  # fmt: skip
    for ax in (cpu_ax, mem_ax):
        _mark_events(ax, result, legend=ax is cpu_ax)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    cpu_ax.set_ylabel("CPU (% of one core)")
    measure = result.environment.machine.job_memory.upper() if proportional else "RSS"
    mem_ax.set_ylabel(f"{measure} (MB)" + (", the job process" if proportional else ""))
    mem_ax.set_xlabel("seconds since scenario start")
    cpu_ax.set_title(f"CPU and memory per process — {result.run_label}", fontsize=10)
    if not result.samples:
        cpu_ax.text(0.5, 0.5, "no resource samples", transform=cpu_ax.transAxes, ha="center", va="center")
    _legend(cpu_ax)
    return fig


def depth_chart(result: ScenarioResult) -> Figure:
    """A sustained-load step: jobs queued and running over time, the offered rate's span shaded."""
    fig = Figure(figsize=(10, 3.2), layout="constrained")
    ax = fig.subplots()
    t0 = result.started_at
    xs = [d.t - t0 for d in result.depth]
    ax.stackplot(xs, [d.running for d in result.depth], [d.queued for d in result.depth],
                 labels=["running", "queued"], colors=["#2e7d32", WAITING_COLOUR])  # fmt: skip
    start = next((e.t for e in result.events if e.name == EventName.rate_start), None)
    if start is not None and result.spec.for_s:
        ax.axvspan(start - t0, start - t0 + result.spec.for_s, color=BURST_COLOUR, alpha=0.5, zorder=0,
                   label=f"offered {result.spec.rate:g}/s")  # fmt: skip
    if not result.depth:
        ax.text(0.5, 0.5, "no job counts sampled", transform=ax.transAxes, ha="center", va="center")
    ax.set_xlabel("seconds since the scenario started")
    ax.set_ylabel("jobs")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    _legend(ax)
    return fig


def scenario_charts(stem: str, result: ScenarioResult, summary: ScenarioSummary, colour: str = FALLBACK) -> list[Chart]:
    """A scenario's charts, named after its files (`stem`); a sustained-load step adds its queue depth."""
    lost = summary.executions.lost_ids
    alt = alt_text.scenario(summary)
    found = [
        Chart("Job timeline", f"{stem}_timeline.png", lambda: timeline_chart(result, lost, colour), alt["timeline"]),
        Chart("Probe latency over time", f"{stem}_probes.png", lambda: probes_chart(result), alt["probes"]),
        Chart("CPU and memory per process", f"{stem}_resources.png", lambda: resources_chart(result), alt["resources"]),
    ]
    if result.spec.rate is not None:
        found.append(Chart("Queue depth over time", f"{stem}_depth.png", lambda: depth_chart(result), alt["depth"]))
    return found


# --- comparison --------------------------------------------------------------------------------------------


def _ms(value: float | None) -> float | None:
    return None if value is None else value * 1000


@dataclass(frozen=True)
class Metric:
    title: str
    ylabel: str
    value: Callable[[ScenarioSummary], float | None]
    limit: Callable[[Thresholds], float | None] = lambda thresholds: None
    path: str = ""  # the figure's key in `ScenarioSummary.spread`, for its range over repeats
    scale: float = 1.0  # from the summary's unit to the chart's
    rule: Rule | None = None  # the failure rule this figure decides: only its own failures are ringed on its panel
    samples: Callable[[ScenarioSummary], int] | None = None  # how many values a percentile was read from

    def status(self, summary: ScenarioSummary) -> str | None:
        """ "failed" or "borderline" when this figure's own rule was, else None."""
        if any(f.rule == self.rule for f in summary.failures):
            return "failed"
        if any(f.rule == self.rule for f in summary.borderline):
            return "borderline"
        return None

    def error(self, summary: ScenarioSummary, value: float | None) -> tuple[float, float]:
        """Distance from the median down to the smallest run and up to the largest (0, 0 without repeats)."""
        over = summary.spread.get(self.path)
        if over is None or value is None:
            return 0.0, 0.0
        return max(value - over.min * self.scale, 0.0), max(over.max * self.scale - value, 0.0)


def _responsive_ms(thresholds: Thresholds) -> float | None:
    return thresholds.responsive_p99_s * 1000


METRICS = [
    Metric("Makespan ÷ ideal", "ratio (1 = ideal)", lambda s: s.makespan_ratio, lambda t: t.makespan_ratio_limit,
           "makespan_ratio", rule=Rule.makespan_over_ideal),
    Metric("Async probe p99", "latency (ms)", lambda s: _ms(s.probes["async"].p99), _responsive_ms,
           "probes.async.p99", 1000, Rule.unresponsive_async, lambda s: s.probes["async"].count),
    Metric("Sync probe p99", "latency (ms)", lambda s: _ms(s.probes["sync"].p99), _responsive_ms,
           "probes.sync.p99", 1000, Rule.unresponsive_sync, lambda s: s.probes["sync"].count),
    Metric("Submission p99", "latency (ms)", lambda s: _ms(s.submission.p99), path="submission.p99", scale=1000,
           rule=Rule.submission_timeouts, samples=lambda s: s.submission.count),
    Metric("Peak memory of the job process", "PSS (MB)", lambda s: s.peak_memory_mb, lambda t: t.memory_limit_mb,
           "peak_memory_mb", rule=Rule.resource_exhaustion),
]  # fmt: skip


def answer_chart(run: AnalysedRun) -> Figure:
    """Each workload's time to drain its largest burst, in seconds, one bar per implementation, each labelled with
    its ratio to the reference's: absolute, so an 8× difference shows as one (a ratio to each bar's own ideal
    would hide it). Hatched: failed on that workload."""
    answers = run.verdict.answers
    names = list(dict.fromkeys(c.implementation for a in answers for c in a.cells))
    palette = colours([i.name for i in run.implementations])
    fig = Figure(figsize=(max(6.5, 1.1 + (0.35 * len(names) + 0.5) * len(answers)), 3.9), layout="constrained")
    ax = fig.add_subplot()
    width = 0.8 / max(len(names), 1)
    drained: list[float] = []
    for x, a in enumerate(answers):
        for cell in a.cells:
            if cell.makespan_s is None:
                continue
            pos = x - 0.4 + width * (names.index(cell.implementation) + 0.5)
            failed = cell.status == "failed"
            ax.bar(pos, cell.makespan_s, width * 0.9, color=palette.get(cell.implementation, FALLBACK),
                   hatch="//" if failed else None, edgecolor=FAILED_COLOUR if failed else "none")  # fmt: skip
            label = "ref" if cell.implementation == a.reference else f"×{cell.drain.value:.2g}" if cell.drain else ""
            ax.annotate(label, (pos, cell.makespan_s), ha="center", va="bottom", fontsize=7, xytext=(0, 2),
                        textcoords="offset points")  # fmt: skip
            drained.append(cell.makespan_s)
    ax.set_xticks(range(len(answers)), [f"{a.workload}\n{a.jobs} jobs" for a in answers])
    if _spans_decades(drained):
        ax.set_yscale("log")
    else:
        ax.set_ylim(bottom=0, top=max(drained, default=1.0) * 1.15)
    ax.set_ylabel("time to drain the burst (s)")
    ax.set_title(f"Time to drain, each ratio to {run.title(answers[0].reference)} (hatched: failed)", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(handles=[Patch(color=palette.get(n, FALLBACK), label=run.title(n)) for n in names], fontsize=8)
    return fig


def workload_chart(run: AnalysedRun, workload: str, summaries: list[ScenarioSummary]) -> Figure:
    """Each figure against job count, one line per implementation: where the lines part is the answer."""
    fig = Figure(figsize=(11, 6.2), layout="constrained")
    axes = fig.subplots(2, 3).ravel()
    palette = colours([i.name for i in run.implementations])
    implementations = list(dict.fromkeys(s.implementation for s in summaries))
    counts = sorted({s.jobs for s in summaries})
    for ax, metric in zip(axes, METRICS, strict=False):
        values: list[float | None] = []
        tops: list[float] = []  # each point with its range over repeats: the axis shows the whole bar
        for impl in implementations:
            rows = sorted((s for s in summaries if s.implementation == impl), key=lambda s: s.jobs)
            ys = [metric.value(s) for s in rows]
            values += ys
            xs = [s.jobs for s in rows]
            errors = [metric.error(s, y) for s, y in zip(rows, ys, strict=True)]
            ax.errorbar(xs, [math.nan if y is None else y for y in ys], yerr=list(zip(*errors, strict=True)),
                        marker="o", color=palette.get(impl, FALLBACK), label=run.title(impl), capsize=3)  # fmt: skip
            tops += [y + up for y, (_, up) in zip(ys, errors, strict=True) if y is not None]
            for status, colour in (("failed", FAILED_COLOUR), ("borderline", BORDERLINE_COLOUR)):
                marked = [
                    (x, y) for x, y, s in zip(xs, ys, rows, strict=True) if y is not None and metric.status(s) == status
                ]
                if marked:
                    ax.scatter(*zip(*marked, strict=True), s=110, facecolors="none", edgecolors=colour,
                               linewidths=1.5, zorder=3)  # fmt: skip
        limit = metric.limit(run.settings.thresholds)
        shown = [v for v in values if v is not None]
        if limit is not None and shown and max(shown) >= limit * 0.5:
            ax.axhline(limit, color="#888888", linestyle=":", linewidth=1, label="failure threshold")
        if not shown:
            ax.text(0.5, 0.5, "no data", transform=ax.transAxes, ha="center", va="center", color="#888888")
        if _spans_decades(shown):
            ax.set_yscale("log")
        elif shown:
            ax.set_ylim(bottom=0, top=max([*shown, *tops]) * 1.15 or 1)
        if _spans_decades(counts, 10):
            ax.set_xscale("log")
        ax.set_xticks(counts, [str(c) for c in counts])
        ax.minorticks_off()
        counted = [metric.samples(s) for s in summaries] if metric.samples else []
        low, high = min(counted, default=0), max(counted, default=0)
        n = "" if not counted else f" (of {low} values)" if low == high else f" (of {low}–{high} values)"
        ax.set_title(metric.title + n, fontsize=10)
        ax.set_xlabel("jobs submitted at once")
        ax.set_ylabel(metric.ylabel.replace("PSS", job_memory(run)))
        ax.grid(alpha=0.3)
    _workload_legend(axes[-1], run, palette, implementations)
    titles = " vs ".join(run.title(i) for i in implementations)
    fig.suptitle(f"Workload “{workload}”: {titles} by job count", fontsize=12)
    return fig


def _workload_legend(legend_ax: Axes, run: AnalysedRun, palette: dict[str, str], implementations: list[str]) -> None:
    """The last panel: the implementations' colours and what the marks mean."""
    legend_ax.axis("off")
    handles = [Line2D([], [], color=palette.get(i, FALLBACK), marker="o", label=run.title(i)) for i in implementations]
    handles += [
        Line2D([], [], marker="o", linestyle="none", markerfacecolor="none", markeredgecolor=FAILED_COLOUR,
               markersize=10, label="this figure's rule failed"),
        Line2D([], [], marker="o", linestyle="none", markerfacecolor="none", markeredgecolor=BORDERLINE_COLOUR,
               markersize=10, label="borderline"),
        Line2D([], [], color="#555555", marker="_", markersize=10, label="range over repeats (bars)"),
        Line2D([], [], color="#888888", linestyle=":", label="failure threshold"),
    ]  # fmt: skip
    legend_ax.legend(handles=handles, loc="center", fontsize=10, title="Legend")


def faults_chart(run: AnalysedRun, summaries: list[ScenarioSummary]) -> Figure:
    """Jobs lost per fault, one bar per implementation: the durability question in one picture."""
    faults = list(dict.fromkeys(s.fault_label for s in summaries))
    implementations = list(dict.fromkeys(s.implementation for s in summaries))
    palette = colours([i.name for i in run.implementations])
    fig = Figure(figsize=(max(6.0, (0.8 + 0.4 * len(implementations)) * len(faults) + 3), 3.8), layout="constrained")
    ax = fig.add_subplot()
    width = 0.8 / max(len(implementations), 1)
    for i, impl in enumerate(implementations):
        for x, fault in enumerate(faults):
            row = next((s for s in summaries if s.fault_label == fault and s.implementation == impl), None)
            if row is None:
                continue
            lost = row.executions.lost
            pos = x - 0.4 + width * (i + 0.5)
            ax.bar(pos, lost, width * 0.9, color=palette.get(impl, FALLBACK), label=impl)
            ax.annotate(f"{lost}/{row.executions.accepted}", (pos, lost), ha="center", va="bottom",
                        fontsize=8, xytext=(0, 2), textcoords="offset points")  # fmt: skip
    ax.set_xticks(range(len(faults)), [f.replace(" (", "\n(").replace(" [", "\n[") for f in faults])
    ax.set_ylabel("jobs lost (accepted, never completed)")
    ax.set_title("Jobs lost per fault", fontsize=10)
    ax.margins(y=0.15)
    ax.set_ylim(bottom=0)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(handles=[Patch(color=palette.get(i, FALLBACK), label=run.title(i)) for i in implementations], fontsize=8)
    return fig


def sweep_chart(run: AnalysedRun, workload: str, jobs: int) -> Figure:
    """Makespan and memory against concurrency, one line per worker-based implementation; BackgroundTasks'
    makespan as the line to reach."""
    fig = Figure(figsize=(10, 4), layout="constrained")
    time_ax, memory_ax = fig.subplots(1, 2)
    palette = colours([i.name for i in run.implementations])
    results = [r for r in run.verdict.sweeps if (r.workload, r.jobs) == (workload, jobs)]
    for r in results:
        xs = [p.concurrency for p in r.points]
        colour = palette.get(r.implementation, FALLBACK)
        time_ax.plot(xs, [math.nan if p.makespan_s is None else p.makespan_s for p in r.points], marker="o",
                     color=colour, label=run.title(r.implementation))  # fmt: skip
        memory_ax.plot(xs, [math.nan if p.peak_memory_mb is None else p.peak_memory_mb for p in r.points],
                       marker="o", color=colour, label=run.title(r.implementation))  # fmt: skip
        if r.smallest is not None:
            time_ax.axvline(r.smallest, color=colour, linestyle=":", linewidth=1)
    target = next((r.baseline_makespan_s for r in results if r.baseline_makespan_s), None)
    if target:
        time_ax.axhline(target, color=palette.get(implementations.BASELINE, FALLBACK), linestyle="--", linewidth=1,
                        label=f"{run.title(implementations.BASELINE)} ({target:.1f} s)")  # fmt: skip
    for ax, title, ylabel in ((time_ax, "Time to drain the burst", "makespan (s)"),
                              (memory_ax, "Peak memory of the job process", f"{job_memory(run)} (MB)")):  # fmt: skip
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("--concurrency")
        ax.set_ylabel(ylabel)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"Workload “{workload}”, {jobs} jobs: concurrency sweep", fontsize=12)
    return fig


def knee_chart(run: AnalysedRun, workload: str) -> Figure:
    """Sustained load: completions per second and total latency (p50, p99, from the due time) against the
    offered rate, one line per implementation; where throughput leaves the diagonal, the queue saturated."""
    fig = Figure(figsize=(10, 4), layout="constrained")
    rate_ax, latency_ax = fig.subplots(1, 2)
    palette = colours([i.name for i in run.implementations])
    steps = [s for s in run.summaries if s.rate and s.workload_key == workload and not s.interrupted]
    for (name, concurrency), group in itertools.groupby(
        sorted(steps, key=lambda s: (s.implementation, s.concurrency or 0, s.rate.offered_per_s if s.rate else 0)),
        key=lambda s: (s.implementation, s.concurrency),
    ):
        rows = [s.rate for s in group if s.rate]
        label = run.title(name) + ("" if concurrency is None else f" (concurrency {concurrency})")
        colour = palette.get(name, FALLBACK)
        xs = [r.offered_per_s for r in rows]
        rate_ax.plot(xs, [math.nan if r.throughput_per_s is None else r.throughput_per_s for r in rows],
                     marker="o", color=colour, label=label)  # fmt: skip
        for r in rows:
            if r.verdict != "sustained":
                rate_ax.plot([r.offered_per_s], [r.throughput_per_s or 0], marker="x", color=FAILED_COLOUR)
        latency_ax.plot(xs, [math.nan if r.total.p99 is None else r.total.p99 for r in rows], marker="o",
                        color=colour, label=f"{label} p99")  # fmt: skip
        latency_ax.plot(xs, [math.nan if r.total.p50 is None else r.total.p50 for r in rows], marker=".",
                        linestyle=":", color=colour, label=f"{label} p50")  # fmt: skip
    top = max((s.rate.offered_per_s for s in steps if s.rate), default=1.0)
    rate_ax.plot([0, top], [0, top], linestyle="--", color=LOST_COLOUR, linewidth=1, label="offered")
    rate_ax.set_title("Completions per second (steady part); × not sustained", fontsize=10)
    rate_ax.set_ylabel("jobs/s")
    latency_ax.set_title("Total time from the due time", fontsize=10)
    latency_ax.set_ylabel("seconds")
    if _spans_decades(s.rate.total.p99 for s in steps if s.rate):
        latency_ax.set_yscale("log")
    for ax in (rate_ax, latency_ax):
        ax.set_xlabel("offered rate (jobs/s)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    rate_ax.set_ylim(bottom=0)
    fig.suptitle(f"Workload “{workload}”: sustained load", fontsize=12)
    return fig


def comparison_charts(run: AnalysedRun) -> list[Chart]:
    """Every chart of the comparison, each an SVG."""
    return [
        replace(chart, name=chart.name.removesuffix(".png").removesuffix(".svg") + ".svg")
        for chart in _comparison_charts(run)
    ]


def _comparison_charts(run: AnalysedRun) -> list[Chart]:
    """One chart per workload (figures by job count), one per swept workload and job count, one for faults;
    under sustained load, one knee chart per workload instead."""
    charts: list[Chart] = []
    if any(s.rate for s in run.summaries):
        for workload in dict.fromkeys(s.workload_key for s in run.summaries if s.rate):
            stem = workload.replace(" [", "_").rstrip("]")
            title = f"Workload {workload}: throughput and latency against the offered rate"
            draw = partial(knee_chart, run, workload)
            charts.append(Chart(title, f"comparison_{stem}_knee.png", draw, alt_text.knee(run, workload)))
        return charts
    if run.verdict.answers:
        title = f"Time to drain each workload's largest burst, against {run.title(run.verdict.answers[0].reference)}"
        charts.append(Chart(title, at_a_glance.ANSWER_CHART, partial(answer_chart, run), alt_text.answer(run)))
    for workload, jobs in dict.fromkeys((r.workload, r.jobs) for r in run.verdict.sweeps):
        title = f"Workload {workload}, {jobs} jobs: makespan and memory against concurrency"
        draw = partial(sweep_chart, run, workload, jobs)
        charts.append(
            Chart(title, f"comparison_{workload}_{jobs}_sweep.png", draw, alt_text.sweep(run, workload, jobs))
        )
    plain = [s for s in run.summaries if not s.fault and s.concurrency in (None, run.settings.concurrency)]
    for workload in dict.fromkeys(s.workload_key for s in plain):
        rows = [s for s in plain if s.workload_key == workload]
        charts.append(
            Chart(
                f"Workload {workload}: figures by job count",
                f"comparison_{workload.replace(' [', '_').rstrip(']')}.png",
                partial(workload_chart, run, workload, rows),
                alt_text.workload(run, workload, rows),
            )
        )
    with_fault = [s for s in run.summaries if s.fault]
    if with_fault:
        draw_faults = partial(faults_chart, run, with_fault)
        charts.append(Chart("Jobs lost per fault", "comparison_faults.png", draw_faults, alt_text.faults(with_fault)))
    return charts
