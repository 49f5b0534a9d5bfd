"""Figures from raw scenario data: percentiles, completion, responsiveness, resources, executions.

Pure functions of a `ScenarioResult`, so `taskbench report` recomputes every figure from saved JSON.
"""

from __future__ import annotations

import bisect
import itertools
import math
import statistics
from collections import Counter
from collections.abc import Iterable, Sequence

from taskbench import implementations
from taskbench.analysis import history, hoarding, order, rates
from taskbench.analysis.models import (
    ENDPOINTS,
    HARNESS_SHARE_LIMIT_PERCENT,
    BrokerKept,
    Completion,
    CpuShares,
    CutSubmissions,
    DepthSeen,
    Distribution,
    Endpoint,
    Executions,
    ProbeSummary,
    ProcessResources,
    ScenarioSummary,
    StatusPollSummary,
    SubmissionSummary,
    SystemResources,
)
from taskbench.record.results import CommandCount, EventName, LoadOptions, Probe, ScenarioResult


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear interpolation between closest ranks (numpy's default), q in [0, 100]."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def _present(values: Iterable[float | None]) -> list[float]:
    return [v for v in values if v is not None]


def distribution(values: Iterable[float | None]) -> Distribution:
    return Distribution(**_distribution_fields(_present(values)))


def _distribution_fields(present: list[float]) -> dict[str, float | int | None]:
    return {
        "count": len(present),
        "avg": sum(present) / len(present) if present else None,
        "p50": percentile(present, 50),
        "p95": percentile(present, 95),
        "p99": percentile(present, 99),
        "max": max(present) if present else None,
    }


def longest_silence(probes: Sequence[Probe], start: float, end: float) -> float:
    """The longest stretch in [start, end] during which no probe got an answer."""
    answers = sorted(p.sent_at + p.latency_s for p in probes if p.latency_s is not None)
    marks = [start, *(t for t in answers if start <= t <= end), end]
    return max((b - a for a, b in itertools.pairwise(marks)), default=0.0)


def probe_summary(probes: Sequence[Probe], start: float, end: float, interval_s: float) -> ProbeSummary:
    answered = [p.latency_s for p in probes if p.latency_s is not None]
    span = max(end - start, 1e-9)
    return ProbeSummary(
        **_distribution_fields(answered),
        sent=len(probes),
        answered=len(answered),
        timeouts=sum(p.error == "timeout" for p in probes),
        errors=sum(p.latency_s is None and p.error != "timeout" for p in probes),
        server_errors=sum((p.status_code or 0) >= 500 for p in probes),
        longest_silence_s=longest_silence(probes, start, end),
        # 1.0 = every scheduled probe was sent: n probes span n - 1 intervals
        rate_achieved=len(probes) / (span / interval_s + 1),
    )


def submission_summary(result: ScenarioResult) -> SubmissionSummary:
    subs = result.submissions
    return SubmissionSummary(
        **_distribution_fields(_present(s.latency_s for s in subs)),
        attempted=len(subs),
        accepted=sum(1 for s in subs if s.job_id),
        timeouts=sum(s.error == "timeout" for s in subs),
        errors=sum(1 for s in subs if s.error and s.error != "timeout"),
    )


def max_concurrent(intervals: Iterable[tuple[float, float]]) -> int:
    events = sorted(e for start, end in intervals for e in ((start, 1), (end, -1)))
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    return peak


def cpu_seconds(times: Sequence[float], percents: Sequence[float]) -> float:
    """CPU-seconds of one process: each reading is its CPU since the one before, so it counts for that interval
    (the first reading has none before it)."""
    return sum(p / 100 * (t - before) for before, t, p in zip(times, times[1:], percents[1:], strict=False))


def process_resources(result: ScenarioResult) -> dict[str, ProcessResources]:
    roles = sorted({role for s in result.samples for role in s.processes})
    out: dict[str, ProcessResources] = {}
    for role in roles:
        readings = [s.processes[role] for s in result.samples if role in s.processes]
        times = [s.t for s in result.samples if role in s.processes]
        cpu = [r.cpu_percent for r in readings]
        rss = [r.rss_mb for r in readings]
        pss = [r.pss_mb for r in readings if r.pss_mb is not None]
        connections = [r.connections for r in readings if r.connections is not None]
        out[role] = ProcessResources(
            samples=len(readings),
            cpu_peak=max(cpu),
            cpu_avg=sum(cpu) / len(cpu),
            rss_peak_mb=max(rss),
            rss_avg_mb=sum(rss) / len(rss),
            pss_peak_mb=max(pss) if pss else None,
            pss_avg_mb=sum(pss) / len(pss) if pss else None,
            connections_peak=max(connections) if connections else None,
            cpu_s=cpu_seconds(times, cpu),
            rss_first_mb=rss[0],
            rss_last_mb=rss[-1],
        )
    return out


def system_resources(result: ScenarioResult) -> SystemResources | None:
    readings = [s.system for s in result.samples]
    if not readings:
        return None
    cpu = [r.cpu_percent for r in readings]
    memory = [r.memory_percent for r in readings]
    return SystemResources(
        samples=len(readings),
        cpu_peak=max(cpu),
        cpu_avg=sum(cpu) / len(cpu),
        memory_peak_percent=max(memory),
        memory_avg_percent=sum(memory) / len(memory),
        memory_used_peak_mb=max(r.memory_used_mb for r in readings),
    )


DRIFT_SAMPLES = 40  # samples with jobs waiting that a drift of what the broker misses needs (10 per quarter)
SERVICE_ROLES = ("api", "redis")  # with the scenario's own worker: the service under test, not its idle neighbours


def cpu_shares(result: ScenarioResult, resources: dict[str, ProcessResources], worker_role: str) -> CpuShares | None:
    """The harness's and the service's average CPU as % of the machine (its cores, as recorded in the run's
    environment). Both from the sampler's readings, so they cover the same instants in the same way."""
    cores = result.environment.machine.cpu_count
    if not cores or "harness" not in resources:
        return None
    store = ("postgres",) if result.delivery and result.delivery.broker == "postgres" else ()  # where its jobs wait
    roles = [role for role in (*SERVICE_ROLES, *store, worker_role) if role in resources]
    harness = resources["harness"].cpu_avg / cores
    return CpuShares(
        cores=int(cores),
        harness_percent=harness,
        service_percent=sum(resources[role].cpu_avg for role in roles) / cores,
        service_roles=roles,
        harness_over_limit=harness > HARNESS_SHARE_LIMIT_PERCENT,
    )


def execution_summary(result: ScenarioResult, fault_at: float | None) -> Executions:
    """Per accepted job: completed once, more than once, or never (lost), from the ledger when there is
    one, else from the job records."""
    accepted = [s.job_id for s in result.submissions if s.job_id]
    if result.executions:
        ok_ends = [e for e in result.executions if e.event == "end" and e.ok]
        ends = Counter(e.job_id for e in ok_ends)
        starts = Counter(e.job_id for e in result.executions if e.event == "start")
        last_end = {e.job_id: e.t for e in ok_ends}
        any_end = Counter(e.job_id for e in result.executions if e.event == "end")
        source = "ledger"
    else:
        done = [j for j in result.jobs if j.status == "completed"]
        ends = Counter(j.job_id for j in done)
        starts = Counter(j.job_id for j in result.jobs if j.started_at)
        last_end = {j.job_id: j.finished_at or 0.0 for j in done}
        any_end = Counter(j.job_id for j in result.jobs if j.finished_at)
        source = "records"
    redelivered_at = [
        e.t
        for e in result.executions
        if e.event == "start" and fault_at is not None and e.t > fault_at and starts[e.job_id] > 1
    ]
    restored_at = next((e.t for e in result.events if e.name == EventName.restored), None)
    resumed_at = [e.t for e in result.executions if e.event == "start" and e.t > (restored_at or float("inf"))]
    cut = None
    if result.spec.fault == "api-partition" and fault_at is not None and restored_at is not None:
        cut = cut_submissions(result, fault_at, restored_at)
        resumed_at = [  # the API taking jobs again, not its workers (they were never cut off)
            s.sent_at + s.latency_s
            for s in result.submissions
            if s.job_id and s.latency_s is not None and s.sent_at >= restored_at
        ]
    lost = [job_id for job_id in accepted if ends[job_id] == 0]
    duplicated = [job_id for job_id in accepted if ends[job_id] > 1]
    recovered = (
        [job_id for job_id in accepted if fault_at is not None and starts[job_id] > 1 and ends[job_id] >= 1]
        if source == "ledger"
        else []
    )
    return Executions(
        source=source,
        accepted=len(accepted),
        completed_once=sum(ends[j] == 1 for j in accepted),
        duplicated=len(duplicated),
        lost=len(lost),
        cut_off=sum(1 for job_id in lost if starts[job_id] and not any_end[job_id]),
        never_started=sum(1 for job_id in lost if not starts[job_id]),
        recovered=len(recovered),
        lost_ids=lost,
        duplicated_ids=duplicated,
        recovered_ids=recovered,
        completed_after_fault=sum(1 for j in accepted if fault_at is not None and last_end.get(j, 0) > fault_at),
        attempts_max=max((starts[j] for j in accepted), default=0),
        # from the fault to the first job started again: the redelivery timeout (which runs from the
        # delivery, shortly before the fault) plus up to one restore sweep
        redelivery_delay_s=(min(redelivered_at) - fault_at) if redelivered_at and fault_at is not None else None,
        resumed_after_s=(min(resumed_at) - restored_at) if resumed_at and restored_at is not None else None,
        cut=cut,
    )


def cut_submissions(result: ScenarioResult, fault_at: float, restored_at: float) -> CutSubmissions:
    during = [s for s in result.submissions if fault_at <= s.sent_at < restored_at]
    answered = [s.latency_s for s in during if s.latency_s is not None]
    accepted = {s.job_id for s in result.submissions if s.job_id}
    return CutSubmissions(
        sent=len(during),
        accepted=sum(1 for s in during if s.job_id),
        refused=sum(1 for s in during if s.status_code is not None and not s.job_id),
        no_answer=sum(1 for s in during if s.status_code is None),
        answered_max_s=max(answered, default=None),
        ran_unaccepted=len({e.job_id for e in result.executions if e.event == "start"} - accepted),
    )


def max_running_by_pid(result: ScenarioResult) -> dict[int, int]:
    """The most jobs seen running at once in each process that ran them (several API processes)."""
    by_pid: dict[int, list[tuple[float, float]]] = {}
    for j in result.jobs:
        if j.started_at and j.pid:
            by_pid.setdefault(j.pid, []).append((j.started_at, j.finished_at or result.ended_at))
    return {pid: max_concurrent(intervals) for pid, intervals in sorted(by_pid.items())}


def status_poll_summary(result: ScenarioResult) -> StatusPollSummary | None:
    polls = result.status_polls
    if not polls:
        return None
    answered = [p for p in polls if p.status_code is not None]
    not_found = sum(p.status_code == 404 for p in answered)
    return StatusPollSummary(
        sent=len(polls), answered=len(answered), not_found=not_found, other=len(polls) - not_found - sum(
            p.status_code == 200 for p in answered)
    )  # fmt: skip


def job_process(implementation: str) -> str:
    """The sampled role whose CPU and memory are those of the process that ran the jobs."""
    if implementations.known(implementation):
        return implementations.job_process(implementation)
    return f"{implementation}-worker"  # the convention for queues with a worker


def submission_span(result: ScenarioResult) -> float | None:
    """First send to last accepted answer: the jobs reach the service over this span, not at once."""
    answered = [s for s in result.submissions if s.job_id and s.latency_s is not None]
    if not answered:
        return None
    return max(s.sent_at + (s.latency_s or 0.0) for s in answered) - min(s.sent_at for s in result.submissions)


def submission_rate(result: ScenarioResult) -> float | None:
    span = submission_span(result)
    accepted = sum(1 for s in result.submissions if s.job_id and s.latency_s is not None)
    return accepted / span if span else None


def figures_of(result: ScenarioResult) -> ScenarioSummary:
    """Every figure of one scenario; `responsive` and `failures` are left for `failures.annotate`."""
    spec = result.spec
    subs, jobs = result.submissions, result.jobs
    statuses = Counter(j.status.value for j in jobs)
    sent_at = {s.job_id: s.sent_at for s in subs if s.job_id}
    accepted = sum(1 for s in subs if s.job_id)
    done = rates.finished_at(result)  # on the harness's clock (a remote host's own may be off)
    finished = list(done.values())
    first_submit = min((s.sent_at for s in subs), default=result.started_at)
    makespan = (max(finished) - first_submit) if finished and statuses["completed"] == spec.jobs else None
    span = submission_span(result)
    # The capacity model's waves, and no less than the burst's own arrival plus one job: a burst of short
    # jobs cannot finish before its last job has even been accepted.
    ideal = max(result.ideal_makespan_s, (span or 0.0) + spec.duration_s)
    fault_at = next((e.t for e in result.events if e.name == EventName.fault), None)
    intervals = [(j.started_at, j.finished_at or result.ended_at) for j in jobs if j.started_at]
    resources = process_resources(result)
    role = job_process(spec.implementation)
    worker_role = f"{spec.implementation}-worker"
    probes = _probe_summaries(result)
    how, settings = _how_it_ran(result)
    return ScenarioSummary(
        rate=rates.summarise(result, probes, result.settings.load or LoadOptions()),
        label=spec.label,
        implementation=spec.implementation,
        workload=spec.workload,
        jobs=spec.jobs,
        duration_s=spec.duration_s,
        memory_mb=spec.memory_mb,
        fault=spec.fault,
        variant=spec.variant,
        middleware=spec.middleware,
        interrupted=result.interrupted,
        died=[e.detail for e in result.events if e.name == EventName.died],
        how_it_runs=how,
        settings=settings,
        concurrency=spec.concurrency,
        submission=submission_summary(result),
        probes=probes,
        completion=_completion(result, statuses, accepted),
        queue_time=distribution(j.queue_time for j in jobs),
        execution_time=distribution(j.execution_time for j in jobs),
        total_time=distribution(j.total_time for j in jobs),
        client_total_time=distribution(
            done[j.job_id] - sent_at[j.job_id] for j in jobs if j.job_id in done and j.job_id in sent_at
        ),
        makespan_s=makespan,
        throughput_jobs_per_s=(statuses["completed"] / (max(finished) - first_submit))
        if finished and max(finished) > first_submit
        else None,
        submission_rate_per_s=submission_rate(result),
        submission_span_s=span,
        model_makespan_s=result.ideal_makespan_s,
        ideal_makespan_s=ideal,
        makespan_ratio=(makespan / ideal) if makespan is not None and ideal > 0 else None,
        capacity=result.capacity,
        max_running=max_concurrent(intervals),
        fifo=order.fifo(result),
        resources=resources,
        system=system_resources(result),
        cpu_shares=cpu_shares(result, resources, worker_role),
        job_process=role,
        worker_role=worker_role if worker_role in resources else None,
        peak_cpu_percent=resources[role].cpu_peak if role in resources else None,
        peak_memory_mb=resources[role].memory_peak_mb if role in resources else None,
        executions=execution_summary(result, fault_at),
        history=history.check_scenario(result),
        fault_at=fault_at,
        delivery=result.delivery,
        harness=result.harness,
        api_processes=result.settings.api.api_workers,
        max_running_by_pid=max_running_by_pid(result) if result.records_from == "ledger" else {},
        status_polls=status_poll_summary(result),
        records_from=result.records_from,
        hosts=result.hosts,
        broker=broker_kept(result, statuses["completed"]),
        redis_commands_per_job=per_job(result.redis_commands, statuses["completed"]),
        postgres_statements_per_job=per_job(result.postgres_statements, statuses["completed"]),
        postgres_rows_per_job=per_job(result.postgres_statements, statuses["completed"], rows=True),
        depth_seen=depth_seen(result),
        held_behind=hoarding.held_behind(spec, subs, result.executions, result.capacity.concurrency, makespan),
        job_processes=len({e.pid for e in result.executions if e.event == "start" and e.pid}) or None,
        neighbours_paused=any(e.name == EventName.neighbours_paused for e in result.events),
        responsive=None,
    )


def depth_seen(result: ScenarioResult) -> DepthSeen | None:
    """The broker's count of waiting jobs (result.broker_depth) against the jobs really waiting at each sample:
    accepted (the API answered) and not yet started (the ledger's first start of each)."""
    if not result.broker_depth or not result.executions:
        return None
    answered = sorted(s.sent_at + s.latency_s for s in result.submissions if s.job_id and s.latency_s is not None)
    first_start: dict[str, float] = {}
    for e in result.executions:
        if e.event == "start":
            first_start[e.job_id] = min(e.t, first_start.get(e.job_id, e.t))
    started = sorted(first_start.values())
    waiting = [
        max(bisect.bisect_right(answered, d.t) - bisect.bisect_right(started, d.t), 0) for d in result.broker_depth
    ]
    busy = [(w, d.queued) for w, d in zip(waiting, result.broker_depth, strict=True) if w > 0]
    unseen = [w - min(q, w) for w, q in busy]  # in time order
    quarter = len(unseen) // 4
    return DepthSeen(
        samples=len(waiting),
        peak_waiting=max(waiting),
        peak_unseen=max(unseen, default=0),
        median_unseen=statistics.median(unseen) if unseen else None,
        seen_share=sum(min(q, w) for w, q in busy) / sum(w for w, _ in busy) if busy else None,
        first_unseen=statistics.median(unseen[:quarter]) if len(unseen) >= DRIFT_SAMPLES else None,
        last_unseen=statistics.median(unseen[-quarter:]) if len(unseen) >= DRIFT_SAMPLES else None,
    )


def per_job(readings: Sequence[CommandCount], completed: int, rows: bool = False) -> float | None:
    """The broker's commands (or, with `rows`, PostgreSQL's rows) the burst and its drain took per completed job:
    the count from the burst to its last job, less what the stack sends idle (probes, heartbeats, the queue's own
    polling) at the rate read just before the burst. On Redis everything the stack sent counts: the queue's, and
    taskbench's own record of each job (10 commands; BackgroundTasks keep theirs in the API's memory)."""
    if len(readings) != 3 or not completed:
        return None
    base, start, end = (float((r.rows or 0) if rows else r.calls) for r in readings)
    idle_per_s = (start - base) / (readings[1].t - readings[0].t) if readings[1].t > readings[0].t else 0.0
    used = end - start - idle_per_s * (readings[2].t - readings[1].t)
    return max(used, 0.0) / completed


def broker_kept(result: ScenarioResult, completed: int) -> BrokerKept | None:
    held = result.broker_bytes
    if held is None:
        return None
    kept = held.grown if held.grown is not None else held.after - held.before
    return BrokerKept(kept_bytes=kept, kept_per_1000_bytes=kept / completed * 1000 if completed else None)


def _how_it_ran(result: ScenarioResult) -> tuple[str, dict[str, str]]:
    """How the workload ran and the settings it ran on, as recorded; a run recorded before that was kept: as this
    version's registry describes it."""
    spec = result.spec
    if result.described is not None:
        return result.described.how_it_runs.get(spec.workload, ""), result.described.settings
    if not implementations.known(spec.implementation):
        return "", {}
    implementation, given = implementations.get(spec.implementation), result.settings
    options = given.options_of(spec.implementation)
    concurrency = spec.concurrency or given.concurrency
    settings = implementation.settings_on(concurrency, given.broker, options, given.api, given.external_servers)
    return implementation.how_it_runs(spec.model_workload, options), settings


def _probe_summaries(result: ScenarioResult) -> dict[Endpoint, ProbeSummary]:
    start = min((p.sent_at for p in result.probes), default=result.started_at)
    end = max((p.sent_at for p in result.probes), default=result.ended_at)
    interval = result.settings.probe_interval_s
    return {
        endpoint: probe_summary([p for p in result.probes if p.endpoint == endpoint], start, end, interval)
        for endpoint in ENDPOINTS
    }


def _completion(result: ScenarioResult, statuses: Counter[str], accepted: int) -> Completion:
    return Completion(
        completed=statuses["completed"],
        failed=statuses["failed"],
        pending=statuses["queued"] + statuses["running"],
        missing_records=max(accepted - len(result.jobs), 0),
        timed_out=result.timed_out,
        unfinished=next((e.detail for e in result.events if e.name == EventName.unfinished), None),
    )
