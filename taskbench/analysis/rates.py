"""Sustained load: one step's figures, and whether the service sustained the rate it was offered.

A step is **sustained** when, over its steady part (the step after its warm-up share):
- completions keep up with arrivals: at least (1 − margin) of the jobs due in that part (shifted by the median
  execution time, the delay of a job that never waits) completed in it, less one job for counting whole jobs;
- the backlog does not grow: the least-squares slope of queued + running jobs, sampled every 0.5 s, is at most
  margin × rate and adds less than one job over the steady part;
- queue time stays bounded: its p95, counted from each job's due time, is at most `queue_p95_s`;
- the API takes every submission and stays responsive (the probes' rule of every scenario).
It is **saturated** when any of these fails, and **inconclusive** when the harness could not offer the rate
(it sent late: schedule lag p99 over `MAX_LAG_S`, or fewer than the schedule had) or the step was cut short:
then the figures are taskbench's, not the queue's.

Latencies are counted from the due time (coordinated omission corrected, as wrk2 and k6 do) and their
percentiles read from an HDR histogram.
"""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from hdrh.histogram import HdrHistogram

from taskbench.analysis.failures import is_responsive
from taskbench.analysis.models import Endpoint, Latency, ProbeSummary, RateStep
from taskbench.record.results import EventName, LoadOptions, ScenarioResult, Submission
from taskbench_wire.records import JobRecord

MAX_LAG_S = 0.1  # the harness sent this late (p99) or later: it could not hold the rate
SEND_RATE_SHARE = 0.95  # or it sent at under this share of a uniform schedule's rate
HIGHEST_US = 24 * 3600 * 1_000_000  # the histogram's range: 1 µs to a day
PER_HOUR = 3600.0


def latency(values: Iterable[float]) -> Latency:
    """Percentiles of `values` (seconds) from an HDR histogram of microseconds."""
    histogram = HdrHistogram(1, HIGHEST_US, 3)
    count = 0
    for value in values:
        histogram.record_value(min(max(1, round(value * 1_000_000)), HIGHEST_US))
        count += 1
    if not count:
        return Latency()

    def at(q: float) -> float:
        return float(histogram.get_value_at_percentile(q)) / 1_000_000

    return Latency(
        count=count,
        mean=histogram.get_mean_value() / 1_000_000,
        p50=at(50),
        p90=at(90),
        p99=at(99),
        p999=at(99.9),
        max=float(histogram.get_max_value()) / 1_000_000,
    )


def slope(points: Sequence[tuple[float, float]]) -> float | None:
    """Least-squares slope of y over x; None under two distinct x."""
    if len({x for x, _ in points}) < 2:
        return None
    fit = statistics.linear_regression([x for x, _ in points], [y for _, y in points])
    return fit.slope


def step_start(result: ScenarioResult) -> float:
    return next((e.t for e in result.events if e.name == EventName.rate_start), result.started_at)


def _answered_at(s: Submission) -> float | None:
    return None if s.latency_s is None else s.sent_at + s.latency_s


def finished_at(result: ScenarioResult) -> dict[str, float]:
    """When each finished job finished, on the harness's clock, for the end-to-end figures (makespan, latency from
    the send or due time, throughput): a job that ended on another host (`taskbench worker --join`) at its end
    event's arrival on the harness's machine (taskbench.measure.telemetry), as that host's clock may be off; every
    other job at its record's own stamp, as before hosts (one machine, one clock)."""
    done = {j.job_id: j.finished_at for j in result.jobs if j.finished_at is not None}
    remote = {h.host for h in result.hosts if not h.local}
    if remote:
        for e in result.executions:
            if e.event == "end" and e.host in remote and e.received_at is not None and e.job_id in done:
                done[e.job_id] = e.received_at
    return done


def summarise(result: ScenarioResult, probes: Mapping[Endpoint, ProbeSummary], load: LoadOptions) -> RateStep | None:
    """The step's figures and verdict; None for a burst."""
    spec = result.spec
    if spec.rate is None or spec.for_s is None:
        return None
    start = step_start(result)
    steady_from, steady_to = start + load.warmup_share * spec.for_s, start + spec.for_s
    window = steady_to - steady_from
    subs = result.submissions
    due_at = {s.job_id: s.due_at for s in subs if s.job_id and s.due_at is not None}
    jobs: list[JobRecord] = [j for j in result.jobs if j.job_id in due_at]
    done = finished_at(result)

    sending = send_rate(s.sent_at for s in subs)
    lags = latency(s.sent_at - s.due_at for s in subs if s.due_at is not None)

    execution = latency(j.execution_time for j in jobs if j.execution_time is not None)
    shift = execution.p50 or 0.0
    steady_due = [j for j in jobs if steady_from <= due_at[j.job_id] < steady_to]
    finished_in = sum(1 for j in jobs if j.job_id in done and steady_from <= done[j.job_id] < steady_to)
    due_in = sum(1 for t in due_at.values() if steady_from - shift <= t < steady_to - shift)
    depth = [(d.t - start, d.queued + d.running) for d in result.depth if steady_from <= d.t <= steady_to]
    running = [d.running for d in result.depth if steady_from <= d.t <= steady_to]
    depth_slope = slope(depth)
    queue = latency(j.started_at - due_at[j.job_id] for j in steady_due if j.started_at is not None)
    queue_p95 = _p95(j.started_at - due_at[j.job_id] for j in steady_due if j.started_at is not None)
    total_points = [(due_at[j.job_id] - start, done[j.job_id] - due_at[j.job_id]) for j in jobs if j.job_id in done]
    drift = slope(total_points)

    accepted = sum(1 for s in subs if s.job_id)
    inconclusive = _inconclusive(result, sending, lags.p99)
    steady = Steady(window, finished_in, due_in, depth_slope, queue_p95, refused=len(subs) - accepted)
    reasons = _saturated(result, probes, load, steady)
    verdict = "inconclusive" if inconclusive else "saturated" if reasons else "sustained"
    return RateStep(
        offered_per_s=spec.rate,
        for_s=spec.for_s,
        arrivals=spec.arrivals,
        due=spec.jobs,
        sent=len(subs),
        accepted=accepted,
        send_rate_per_s=sending,
        schedule_lag_p99_s=lags.p99,
        schedule_lag_max_s=lags.max,
        steady_from_s=steady_from - start,
        steady_to_s=steady_to - start,
        throughput_per_s=finished_in / window if window > 0 else None,
        expected_per_s=due_in / window if window > 0 else None,
        depth_slope_per_s=depth_slope,
        depth_max=max((d.queued + d.running for d in result.depth), default=0),
        mean_running=statistics.fmean(running) if running else None,
        submission=latency(a - due_at[s.job_id] for s in subs if s.job_id and (a := _answered_at(s)) is not None),
        queue=queue,
        queue_p95_s=queue_p95,
        execution=execution,
        total=latency(done[j.job_id] - due_at[j.job_id] for j in jobs if j.job_id in done),
        latency_drift_s_per_min=None if drift is None else drift * 60,
        memory_trend_mb_per_h=_memory_trends(result, start),
        api_cpu_ms_per_job=_cpu_ms_per_job(result, "api", accepted),
        worker_cpu_ms_per_job=_cpu_ms_per_job(result, f"{spec.implementation}-worker", accepted),
        queue_p95_limit_s=load.queue_p95_s,
        throughput_margin=load.throughput_margin,
        verdict=verdict,
        reasons=inconclusive or reasons,
    )


def _p95(values: Iterable[float]) -> float | None:
    ordered = sorted(values)
    if not ordered:
        return None
    return ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]


def _cpu_ms_per_job(result: ScenarioResult, role: str, jobs: int) -> float | None:
    """The role's CPU over the scenario (each sample's % of a core × the time since the previous one), per job."""
    points = [(s.t, s.processes[role].cpu_percent) for s in result.samples if role in s.processes]
    if len(points) < 2 or not jobs:
        return None
    seconds = sum(percent / 100 * (t - before) for (before, _), (t, percent) in itertools.pairwise(points))
    return 1000 * seconds / jobs


def _memory_trends(result: ScenarioResult, start: float) -> dict[str, float]:
    """Each sampled process's memory trend over the step (PSS where read, else RSS), in MB per hour: a soak
    (`--for 30m`) shows a leak, or memory that `--max-tasks-per-child` gives back."""
    by_role: dict[str, list[tuple[float, float]]] = {}
    for sample in result.samples:
        for role, reading in sample.processes.items():
            memory = reading.pss_mb if reading.pss_mb is not None else reading.rss_mb
            by_role.setdefault(role, []).append((sample.t - start, memory))
    trends = {role: slope(points) for role, points in by_role.items()}
    return {role: trend * PER_HOUR for role, trend in trends.items() if trend is not None}


@dataclass(frozen=True)
class Steady:
    """What the rule reads of the steady part of a step."""

    window_s: float
    finished: int  # jobs finished (done or failed) in it
    due: int  # accepted jobs due in it, shifted by the median execution
    depth_slope: float | None  # the backlog's trend, jobs/s
    queue_p95: float | None  # from each job's due time
    refused: int  # submissions refused or timed out, over the whole step


def _inconclusive(result: ScenarioResult, send_rate: float | None, lag_p99: float | None) -> list[str]:
    """Why the step cannot judge the queue: the harness did not offer the load it planned."""
    spec = result.spec
    cut = ["the step was cut short"] if result.interrupted else []
    uniform = spec.arrivals == "uniform"
    return cut + harness_shortfalls(len(result.submissions), spec.jobs, lag_p99, send_rate, spec.rate or 0.0, uniform)


def harness_shortfalls(
    sent: int, planned: int, lag_p99: float | None, send_rate: float | None, rate: float, uniform: bool
) -> list[str]:
    """Where the harness did not offer the load it planned (a step of taskbench's stack, or of `run --target`)."""
    reasons = []
    if sent < planned:
        reasons.append(f"the harness sent {sent} of {planned} submissions")
    if lag_p99 is not None and lag_p99 > MAX_LAG_S:
        reasons.append(f"the harness sent late: schedule lag p99 {lag_p99:.3f} s (limit {MAX_LAG_S:g} s)")
    if uniform and send_rate is not None and send_rate < SEND_RATE_SHARE * rate:
        reasons.append(f"the harness sent {send_rate:.1f}/s of the {rate:g}/s offered")
    return reasons


def send_rate(sent_at: Iterable[float]) -> float | None:
    """Submissions a second, first to last sent."""
    times = sorted(sent_at)
    return (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 and times[-1] > times[0] else None


def _saturated(
    result: ScenarioResult, probes: Mapping[Endpoint, ProbeSummary], load: LoadOptions, steady: Steady
) -> list[str]:
    """Why the queue did not sustain the rate (none: it did)."""
    rate, reasons = result.spec.rate or 0.0, []
    if steady.refused:
        reasons.append(f"{steady.refused} of {len(result.submissions)} submissions were refused or timed out")
    if steady.finished < (1 - load.throughput_margin) * steady.due - 1:
        reasons.append(
            f"completions fell behind: {steady.finished} in the steady {steady.window_s:.1f} s against "
            f"{steady.due} due (margin {load.throughput_margin:.0%})"
        )
    slope_ = steady.depth_slope
    if slope_ is not None and slope_ > load.throughput_margin * rate and slope_ * steady.window_s > 1:
        reasons.append(f"the backlog grew {slope_:.2f} jobs/s over the steady part")
    if steady.queue_p95 is None:
        reasons.append("no job of the steady part started")
    elif steady.queue_p95 > load.queue_p95_s:
        reasons.append(f"queue time p95 {steady.queue_p95:.2f} s from the due time (limit {load.queue_p95_s:g} s)")
    for endpoint, probe in probes.items():
        if probe.sent and not is_responsive(probe, result.settings.thresholds):
            reasons.append(f"the API stopped answering promptly ({endpoint} probe p99 {probe.p99 or 0:.3f} s)")
    return reasons
