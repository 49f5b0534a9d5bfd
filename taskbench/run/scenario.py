"""One scenario: clean start, a burst of N jobs over HTTP, probes and samples throughout, a bounded wait,
and every record collected."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpx
import psutil

from taskbench import capacity, faults, implementations
from taskbench.capacity import Capacity
from taskbench.faults.base import CUT_RECOVERY_S, DEADLINE_SLACK_S, redelivery_timeout_for
from taskbench.hosts import cgroups
from taskbench.load import arrivals
from taskbench.load.client import ServiceClient, ServiceError
from taskbench.measure import records, retention
from taskbench.measure.ledger import LedgerTail
from taskbench.measure.probes import Prober
from taskbench.measure.sampler import Sampler
from taskbench.measure.telemetry import RemoteSamples
from taskbench.record.results import (
    BrokerBytes,
    BrokerDepth,
    CommandCount,
    DepthSample,
    Event,
    EventName,
    Execution,
    Probe,
    Reading,
    RunEnvironment,
    RunSettings,
    Sample,
    ScenarioResult,
    ScenarioSpec,
    StatusPoll,
    Submission,
)
from taskbench.run import provenance
from taskbench.run.started_by_hand import StartedByHand
from taskbench.stack.stack import Stack
from taskbench.user_job.job_check import JobArgs
from taskbench_wire.enums import JobStatus
from taskbench_wire.records import JobBody, JobRecord

POLL_INTERVAL_S = 0.25
DEPTH_INTERVAL_S = 0.5  # sustained load: how often the job counts are read for the queue-depth chart
BROKER_DEPTH_INTERVAL_S = 0.25  # a burst: how often its broker's count of waiting jobs is read (_broker_depth)
LEDGER_SETTLE_S = 1.0  # the longest the scenario waits for the end events of jobs whose records say they ended
# A fault strikes once the jobs it should catch have started (the ledger says so), however long a loaded worker
# takes to start them; after this long it strikes anyway and says so.
FAULT_START_WAIT_S = 30.0
CUT_SUBMIT_INTERVAL_S = 0.5  # api-partition: a submission this often while the API is cut off from its servers
PROGRESS_WINDOW_S = 10.0  # a deadline moves on while a job finished within this; the end's completion rate
EXTENSION_LIMIT = 2.0  # ... by at most this many times the time the scenario was allowed after its burst

Progress = Callable[[int, int], None]  # (jobs finished, jobs in all)


@dataclass
class ScenarioContext:
    client: ServiceClient
    settings: RunSettings
    environment: RunEnvironment
    stack: Stack | StartedByHand  # StartedByHand: a service someone else started (--url)
    timeout_s: float | None = None  # overrides the deadline derived from the ideal makespan
    cpu_count: int = field(default_factory=lambda: os.cpu_count() or 1)
    stop: asyncio.Event = field(default_factory=asyncio.Event)  # set by Ctrl-C: finish early, keep the data
    job_args: dict[str, JobArgs] = field(default_factory=dict)  # a user job's path → arguments of job i


def request_body(ctx: ScenarioContext, spec: ScenarioSpec, i: int) -> JobBody:
    """What job number i asks for: a built-in kind, or the user's function by its number and arguments."""
    if spec.job_index is not None:
        arguments = ctx.job_args.get(spec.workload)
        return JobBody(duration=spec.duration_s, kind="job", memory_mb=spec.memory_mb, job=spec.job_index,
                       args=arguments(i) if arguments else {})  # fmt: skip
    duration = capacity.job_duration_s(spec.workload, spec.jobs, spec.duration_s, i)
    return JobBody(duration=duration, kind=spec.workload, memory_mb=spec.memory_mb)


def deadline_for(spec: ScenarioSpec, ideal_s: float, timeout_s: float | None) -> float:
    if timeout_s is not None:
        return timeout_s
    allowance = faults.of(spec).allowance_s(spec)
    return capacity.deadline_s(spec.jobs, ideal_s, allowance + DEADLINE_SLACK_S if spec.fault else 0.0)


@dataclass
class Watch:
    """What the wait for the jobs reads: the ledger's lines so far (kept for the result) and, when several API
    processes each hold their own records, the accepted job ids it waits for in the ledger instead."""

    ledger: LedgerTail
    executions: list[Execution] = field(default_factory=list)
    accepted_ids: set[str] | None = None  # set: records per API process, so completion comes from the ledger

    def read(self) -> list[Execution]:
        self.executions += self.ledger.read()
        return self.executions

    async def started(self, job_ids: set[str], want: int, timeout_s: float) -> float | None:
        """When the `want`-th of `job_ids` started (the worker's stamp, ledger order); None after `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            starts = sorted(e.t for e in self.read() if e.event == "start" and e.job_id in job_ids)
            if len(starts) >= want:
                return starts[want - 1]
            await asyncio.sleep(0.02)
        return None

    async def await_ends(self, job_ids: set[str], timeout_s: float = LEDGER_SETTLE_S) -> None:
        """Until every job in `job_ids` has its end event: a job stamps its record, then sends the event to the
        telemetry Redis, so the last ones can be a moment behind the records the scenario has just read."""
        if not self.ledger.known:
            return
        deadline = time.monotonic() + timeout_s
        self.read()
        while not job_ids <= self.ledger.ends.keys() and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
            self.read()


async def _until_running(
    spec: ScenarioSpec, submissions: list[Submission], watch: Watch, concurrency: int, events: list[Event]
) -> None:
    """Hold a fault until it catches jobs halfway through, others still queued: halfway through a job after as
    many started as the implementation runs at once. A fixed delay from the burst would strike before a loaded
    worker started any (or, for Celery's early acknowledgement, between a job's start and its ack). worker-oom
    needs no wait: its jobs are the fault."""
    if not faults.of(spec).strikes_running_jobs:
        return
    ids = {s.job_id for s in submissions if s.job_id}
    want = max(1, min(concurrency, len(ids)))
    started_at = await watch.started(ids, want, FAULT_START_WAIT_S)
    if started_at is None:
        events.append(Event(t=time.time(), name=EventName.no_start, detail=f"{want} jobs had not started after "
                            f"{FAULT_START_WAIT_S:.0f} s: the fault strikes anyway"))  # fmt: skip
        return
    await asyncio.sleep(max(0.0, started_at + max(0.2, spec.duration_s / 2) - time.time()))


def _recovery_s(events: list[Event]) -> float:
    """From the fault to the stack answering again (0 without a fault or a recovery)."""
    fault = next((e.t for e in events if e.name == EventName.fault), None)
    recovered = next((e.t for e in events if e.name == EventName.recovered), None)
    return max(0.0, recovered - fault) if fault is not None and recovered is not None else 0.0


@dataclass
class CompletionWatch:
    """Jobs finished as the polls see them: when the count last grew, so that the deadline extends while a slow
    queue still completes jobs (slow is not lost), and at what rate they were completing at the end."""

    finished: int = 0
    grew_at: float = field(default_factory=time.monotonic)
    seen: deque[tuple[float, int]] = field(default_factory=deque)  # the polls of the last PROGRESS_WINDOW_S

    def note(self, finished: int) -> None:
        now = time.monotonic()
        if finished > self.finished:
            self.finished, self.grew_at = finished, now
        self.seen.append((now, finished))
        while now - self.seen[0][0] > PROGRESS_WINDOW_S:
            self.seen.popleft()

    def rate_per_s(self, window_s: float = PROGRESS_WINDOW_S) -> float:
        """Jobs finished per second over the last `window_s` of polls."""
        if len(self.seen) < 2:
            return 0.0
        end_t, end_n = self.seen[-1]
        start_t, start_n = next((t, n) for t, n in self.seen if t >= end_t - window_s)
        return (end_n - start_n) / (end_t - start_t) if end_t > start_t else 0.0


async def _wait_until_done(
    ctx: ScenarioContext,
    spec: ScenarioSpec,
    accepted: int,
    deadline: float,
    events: list[Event],
    progress: Progress,
    watch: Watch,
) -> bool:
    """Poll job counts until nothing is queued or running, or a process of the implementation died outside a
    fault (nothing more will finish); True if the deadline (on the monotonic clock: a step of the wall clock
    neither fails a scenario nor lets it run on) passed first. A deadline that passes while jobs still complete
    (one finished in the last PROGRESS_WINDOW_S) moves on, up to EXTENSION_LIMIT more of the time allowed."""
    completion = CompletionWatch()

    def noted(finished: int, total: int) -> None:
        completion.note(finished)
        progress(finished, total)

    limit = deadline + EXTENSION_LIMIT * max(0.0, deadline - time.monotonic())
    while not ctx.stop.is_set():
        if not spec.fault and ctx.stack.dead_parts(spec.implementation):
            return False
        if isinstance(ctx.stack, Stack):  # as an orchestrator would (worker-oom: a restart)
            faults.of(spec).tend(ctx.stack, spec, events)
        try:  # a poll before any judgement: a burst that outlasted its deadline still says how far its jobs got
            if watch.accepted_ids is not None:
                if await _finished_in_ledger(ctx, spec, events, noted, watch, watch.accepted_ids):
                    return False
            elif await _finished(ctx, spec, accepted, events, noted):
                return False
        except (httpx.HTTPError, KeyError, ValueError):  # the API may be down for a moment during a fault
            pass
        now = time.monotonic()
        if now >= deadline:
            if spec.fault or now >= limit or now - completion.grew_at > PROGRESS_WINDOW_S:
                rate = completion.rate_per_s()
                detail = f"{completion.finished} of {spec.jobs} jobs finished, completing at {rate:.1f}/s at the end"
                events.append(Event(t=time.time(), name=EventName.unfinished, detail=detail))
                return True
            if not any(e.name == EventName.deadline_extended for e in events):
                events.append(Event(t=time.time(), name=EventName.deadline_extended, detail="jobs still complete"))
            deadline = min(limit, now + PROGRESS_WINDOW_S)
        await asyncio.sleep(POLL_INTERVAL_S)
    return True  # stopped (Ctrl-C) before the jobs were done


async def _finished_in_ledger(
    ctx: ScenarioContext, spec: ScenarioSpec, events: list[Event], progress: Progress, watch: Watch, ids: set[str]
) -> bool:
    """Every accepted job ended (the ledger, written by the job code in whichever process ran it); or, once the
    fault's redelivery had its chance, no process of the live server has a job in flight (their heartbeats: a dead
    server's do not count)."""
    watch.read()
    ended = ids & watch.ledger.ends.keys()
    progress(len(ended), spec.jobs)
    if ended == ids:
        return True
    return _redelivery_had_its_chance(ctx, spec, events) and not await ctx.client.busy([spec.implementation])


async def _finished(
    ctx: ScenarioContext, spec: ScenarioSpec, accepted: int, events: list[Event], progress: Progress
) -> bool:
    counts = await ctx.client.counts(spec.implementation)
    progress(counts.finished, spec.jobs)
    idle = counts.pending == 0
    if spec.fault is None:
        return idle and counts.count >= accepted
    # A fault can wipe records (the API's memory, Redis without persistence) while their jobs still run
    # elsewhere: fewer records is a finding, so ask the service whether anything still runs.
    if idle and not await ctx.client.busy([spec.implementation]):
        return True
    return _redelivery_had_its_chance(ctx, spec, events) and await _only_orphans_left(ctx, spec)


def _redelivery_had_its_chance(ctx: ScenarioContext, spec: ScenarioSpec, events: list[Event]) -> bool:
    """The fault is over (`Fault.over_at`) and the queue's own bound for a redelivery has passed since: its
    timeout, its sweep, and any fixed wait it adds (SAQ's 5 s per aborted job, when a job is in no list)."""
    over_at = faults.of(spec).over_at(events)
    if over_at is None:
        return False
    impl = implementations.get(spec.implementation)
    if not impl.has_worker:  # BackgroundTasks: nothing redelivers a job its API process lost
        return True
    timeout = redelivery_timeout_for(spec.duration_s)
    slots = spec.concurrency or ctx.settings.concurrency
    bound = impl.redelivery_bound_on(ctx.settings.broker, timeout, slots, slots)
    return time.time() >= over_at + max(bound, timeout + 3)


async def _only_orphans_left(ctx: ScenarioContext, spec: ScenarioSpec) -> bool:
    """After a crash, jobs whose process died stay "running" forever unless the queue redelivers them: once it had
    its chance, if nothing is queued or active anywhere and every unfinished record names a dead process, waiting
    longer cannot change the outcome."""
    if await ctx.client.busy([spec.implementation]):
        return False
    unfinished = [j for j in await ctx.client.jobs(spec.implementation) if j.status in ("queued", "running")]
    return all(j.status == "running" and j.pid and not psutil.pid_exists(j.pid) for j in unfinished)


async def run_scenario(ctx: ScenarioContext, spec: ScenarioSpec, progress: Progress) -> ScenarioResult:
    """The phases in order: prepare the stack, pause the neighbours, start the instruments, offer the load, strike,
    wait, collect; the neighbours resumed whatever happens."""
    prepared = await _prepare(ctx, spec)
    run = Running(prepared.deadline_s)
    paused = await _pause_neighbours(ctx, spec, run.events)
    # Redis's commands counted with the neighbours paused (running, their polling would count too), and not for a
    # sustained-load step, whose depth is read from the API's count of its records all along
    run.count_commands = paused is not None and spec.rate is None
    try:
        return await _measure(ctx, spec, prepared, run, progress)
    finally:
        if paused:
            await asyncio.to_thread(paused.resume_neighbours)


async def _pause_neighbours(ctx: ScenarioContext, spec: ScenarioSpec, events: list[Event]) -> Stack | None:
    """Without a fault, the other implementations wait paused (Stack.pause_neighbours); a fault strikes servers
    they share, and they live through it as they would in production."""
    stack = ctx.stack
    if spec.fault or not ctx.settings.pause_neighbours or not isinstance(stack, Stack):
        return None
    paused = await asyncio.to_thread(stack.pause_neighbours)
    events.append(Event(t=time.time(), name=EventName.neighbours_paused, detail=", ".join(paused)))
    return stack


async def _measure(
    ctx: ScenarioContext, spec: ScenarioSpec, prepared: Prepared, run: Running, progress: Progress
) -> ScenarioResult:
    instruments = await _instruments(ctx, spec)
    instruments.start()
    counting = [asyncio.create_task(_broker_depth(ctx, spec, run.broker_depth))]
    if spec.rate is not None:
        counting.append(asyncio.create_task(_count_over_time(ctx, spec, run.depth)))
    try:
        await _count_commands(ctx, spec, run)
        await asyncio.sleep(0.3)  # a baseline before the burst
        await _count_commands(ctx, spec, run)
        run.load_started = time.monotonic()
        run.submissions = await (
            _sustain(ctx, spec, run.events) if spec.rate is not None else _burst(ctx, spec, run.events)
        )
        # With a fault, the records must be asked for before it strikes; else once every figure is measured, so
        # the polls load neither the jobs, the probes nor the samples.
        if instruments.split_records and spec.fault:
            run.status_polls = await _poll_statuses(ctx, spec, run.submissions, run.events)
        await _strike(ctx, spec, run, instruments.watch, prepared.expected.concurrency)
        await _wait(ctx, spec, run, instruments, progress)
        await _count_commands(ctx, spec, run)
        run.jobs = await _collect(ctx, spec, run, instruments)
        run.broker_sizes_after = await asyncio.to_thread(ctx.stack.broker_sizes, spec.implementation)
    finally:
        for task in counting:
            task.cancel()
        instruments.stop()
    if instruments.split_records and not spec.fault:
        run.status_polls = await _poll_statuses(ctx, spec, run.submissions, run.events)
    return _result(ctx, spec, prepared, instruments, run)


async def _count_commands(ctx: ScenarioContext, spec: ScenarioSpec, run: Running) -> None:
    """What the broker has served so far: Redis's commands, or PostgreSQL's statements and rows."""
    if run.count_commands and isinstance(ctx.stack, Stack):
        calls = await asyncio.to_thread(ctx.stack.redis_commands, spec.implementation)
        if calls is not None:
            run.commands.append(CommandCount(t=time.time(), calls=calls))
        statements = await asyncio.to_thread(ctx.stack.postgres_statements, spec.implementation)
        if statements is not None:
            run.statements.append(CommandCount(t=time.time(), calls=statements[0], rows=statements[1]))


@dataclass
class Prepared:
    """What the scenario knows before its first job: the concurrency the service has for it, the ideal makespan
    and the deadline (counted from the start of its load: a loaded machine's slow start of the instruments does
    not eat the jobs' time)."""

    expected: Capacity
    ideal_s: float
    deadline_s: float
    broker_sizes: dict[str, int] | None  # what the queue holds in its broker before the burst, by key or table


async def _prepare(ctx: ScenarioContext, spec: ScenarioSpec) -> Prepared:
    """The scenario's implementation selected, what an earlier one left cleared, its fault's stack state applied."""
    settings, stack = ctx.settings, ctx.stack
    stack.select(spec.implementation)
    if isinstance(stack, Stack):
        # What an earlier scenario left (a dead worker's stalled jobs) goes before a restart can take it up: a
        # worker that retries stalled jobs as it starts (procrastinate's retry-stalled) would run them in this one.
        with contextlib.suppress(ServiceError):  # an API the kernel killed: `apply` starts it again
            await ctx.client.clear(spec.implementation)
    stack.apply(faults.of(spec).state(spec))  # on this thread: see Fault.inject
    await ctx.client.reset([spec.implementation])
    stack.limit_memory()
    has_worker = implementations.get(spec.implementation).has_worker
    cores = cgroups.cores_for(settings, spec.implementation, ctx.cpu_count, has_worker)  # under a CPU limit: fewer
    expected = await ctx.client.capacity(
        spec.implementation, spec.model_workload, spec.jobs, spec.concurrency or settings.concurrency, cores
    )
    ideal = capacity.ideal_makespan_s(
        spec.jobs, expected.concurrency, spec.duration_s, spec.for_s or 0.0, spec.workload
    )
    held = await asyncio.to_thread(stack.broker_sizes, spec.implementation)
    return Prepared(expected, ideal, deadline_for(spec, ideal, ctx.timeout_s), held)


@dataclass
class Instruments:
    """What watches the scenario from outside the service: the ledger, the samples of every process (and of the
    workers joined from other hosts), the probes, and the harness's own CPU and memory."""

    watch: Watch
    sampler: Sampler
    prober: Prober
    remote: RemoteSamples | None
    split_records: bool  # the API's records split over several processes: completion comes from the ledger
    harness: psutil.Process = field(default_factory=psutil.Process)
    started_at: float = 0.0
    ended_at: float = 0.0
    cpu_s: float = 0.0  # the harness's CPU time over the scenario
    probes: list[Probe] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)

    def start(self) -> None:
        times = self.harness.cpu_times()
        self.cpu_s = -(times.user + times.system)
        self.started_at = time.time()
        self.sampler.start()
        self.prober.start()

    def stop(self) -> None:
        self.probes, self.samples = self.prober.stop(), self.sampler.stop()
        self.ended_at = time.time()
        times = self.harness.cpu_times()
        self.cpu_s += times.user + times.system

    def harness_reading(self) -> Reading:
        return Reading(
            cpu_percent=100 * self.cpu_s / max(self.ended_at - self.started_at, 1e-9),
            rss_mb=self.harness.memory_info().rss / 2**20,
        )


async def _instruments(ctx: ScenarioContext, spec: ScenarioSpec) -> Instruments:
    settings, stack = ctx.settings, ctx.stack
    watch = Watch(stack.ledger_tail(spec.implementation))
    # Samples from workers on other hosts (taskbench worker --join), through the stack's telemetry Redis
    remote = RemoteSamples(stack.telemetry_url) if stack.telemetry_url else None
    api_processes = stack.api_processes
    connection_ports: frozenset[int] = frozenset()
    if implementations.get(spec.implementation).needs_postgres and stack.postgres_url:
        connection_ports = frozenset({urlsplit(stack.postgres_url).port or 5432})
    sampler = Sampler(
        await stack.pid_source(),
        settings.sample_interval_s,
        split=frozenset({"api"}) if api_processes > 1 else frozenset(),
        pss_roles=frozenset({implementations.job_process(spec.implementation)}),
        connection_ports=connection_ports,
        remote=remote.readings if remote is not None else None,
    )
    prober = Prober(
        ctx.client.url_for(spec.implementation), settings.probe_interval_s, settings.thresholds.probe_timeout_s
    )
    split_records = implementations.get(spec.implementation).records_in_api_process and api_processes > 1
    return Instruments(watch, sampler, prober, remote, split_records)


@dataclass
class Running:
    """What the scenario gathers as it runs: its submissions, events, job-count samples, status polls, records."""

    deadline_s: float
    submissions: list[Submission] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    depth: list[DepthSample] = field(default_factory=list)
    broker_depth: list[BrokerDepth] = field(default_factory=list)
    status_polls: list[StatusPoll] = field(default_factory=list)
    jobs: list[JobRecord] = field(default_factory=list)
    timed_out: bool = False
    broker_sizes_after: dict[str, int] | None = None
    count_commands: bool = False
    load_started: float = 0.0  # monotonic: when the first job was sent (the deadline counts from it)
    commands: list[CommandCount] = field(default_factory=list)
    statements: list[CommandCount] = field(default_factory=list)

    @property
    def accepted(self) -> int:
        return sum(1 for s in self.submissions if s.job_id)


async def _strike(ctx: ScenarioContext, spec: ScenarioSpec, run: Running, watch: Watch, concurrency: int) -> None:
    """The scenario's fault, once the jobs it should catch run; through it, the submissions it lets go on."""
    stack = ctx.stack
    if not spec.fault or not isinstance(stack, Stack) or ctx.stop.is_set():  # --url: the CLI refuses --faults
        return
    await _until_running(spec, run.submissions, watch, concurrency, run.events)
    fault = faults.of(spec)
    if fault.submits_during:
        striking = asyncio.to_thread(fault.inject, stack, spec, run.events)
        run.submissions += await _submit_through(ctx, spec, run.events, striking)
    else:
        fault.inject(stack, spec, run.events)


async def _wait(
    ctx: ScenarioContext, spec: ScenarioSpec, run: Running, instruments: Instruments, progress: Progress
) -> None:
    """Until the jobs are done or the deadline passes; then what died and what the fault says at its end."""
    watch = instruments.watch
    # Completion from the ledger (the telemetry Redis) when the records are split over API processes, or when the
    # private Redis's commands are counted: the API's count of its records reads every record, a poll's worth of
    # commands per job, which would count as the queue's.
    if instruments.split_records or run.count_commands:
        watch.accepted_ids = {s.job_id for s in run.submissions if s.job_id}
    # The time the harness took to bring a crashed part back does not count: nothing can be redelivered
    # before a worker is back, and a loaded machine may take tens of seconds to start one.
    run.deadline_s += _recovery_s(run.events)
    deadline = run.load_started + run.deadline_s
    run.timed_out = await _wait_until_done(ctx, spec, run.accepted, deadline, run.events, progress, watch)
    if run.timed_out:
        run.events.append(Event(t=time.time(), name=EventName.deadline, detail=f"{run.deadline_s:.1f} s passed"))
    # A process of the implementation that died outside a fault (a job's os._exit, the OOM killer) is a
    # finding of this scenario; the stack starts it again before the next one (Stack.apply).
    for part in ctx.stack.dead_parts(spec.implementation):
        run.events.append(Event(t=time.time(), name=EventName.died, detail=part))
    if isinstance(ctx.stack, Stack):
        faults.of(spec).conclude(ctx.stack, spec, run.events)


async def _collect(ctx: ScenarioContext, spec: ScenarioSpec, run: Running, instruments: Instruments) -> list[JobRecord]:
    """Every record: from the API, or rebuilt from the ledger when no one process holds them all."""
    watch = instruments.watch
    if instruments.split_records:
        return records.rebuild(spec, run.submissions, watch.read())
    try:
        jobs = await ctx.client.jobs(spec.implementation)
    except httpx.HTTPError as exc:  # its API is gone, and the records in its memory or Redis with it
        run.events.append(Event(t=time.time(), name=EventName.records_lost, detail=str(exc)))
        return []
    await watch.await_ends({j.job_id for j in jobs if j.finished_at is not None})
    return jobs


def _result(
    ctx: ScenarioContext, spec: ScenarioSpec, prepared: Prepared, instruments: Instruments, run: Running
) -> ScenarioResult:
    stack, settings = ctx.stack, ctx.settings
    name = implementations.plugin_name(spec.implementation)
    executions = [e for e in instruments.watch.read() if e.implementation == name]
    remote = instruments.remote
    return ScenarioResult(
        spec=spec,
        settings=settings,
        environment=ctx.environment,
        capacity=prepared.expected,
        ideal_makespan_s=prepared.ideal_s,
        started_at=instruments.started_at,
        ended_at=instruments.ended_at,
        deadline_s=run.deadline_s,
        timed_out=run.timed_out and not ctx.stop.is_set(),
        interrupted=ctx.stop.is_set(),
        submissions=run.submissions,
        jobs=run.jobs,
        executions=executions,
        probes=instruments.probes,
        samples=instruments.samples,
        events=run.events,
        delivery=stack.delivery_record(spec.implementation),
        status_polls=run.status_polls,
        depth=run.depth,
        broker_depth=run.broker_depth,
        described=provenance.describe(spec.implementation, settings, spec.concurrency)
        if implementations.known(spec.implementation)
        else None,
        records_from="ledger" if instruments.split_records else "api",
        hosts=remote.clocks(executions, stack.local_hosts()) if remote is not None else [],
        harness=instruments.harness_reading(),
        broker_bytes=_broker_bytes(prepared.broker_sizes, run.broker_sizes_after),
        redis_commands=run.commands if len(run.commands) == 3 else [],
        postgres_statements=run.statements if len(run.statements) == 3 else [],
    )


def _broker_bytes(before: dict[str, int] | None, after: dict[str, int] | None) -> BrokerBytes | None:
    if before is None or after is None:
        return None
    return BrokerBytes(before=sum(before.values()), after=sum(after.values()), grown=retention.grown(before, after))


async def _burst(ctx: ScenarioContext, spec: ScenarioSpec, events: list[Event]) -> list[Submission]:
    """Every job at once; `uneven`'s long job first, answered before the others go, so that it is the first a
    worker takes (concurrent requests reach a queue in any order: arq's took it tenth)."""
    events.append(Event(t=time.time(), name=EventName.burst_start, detail=f"{spec.jobs} submissions"))
    long_first = spec.workload == capacity.UNEVEN
    first = [await ctx.client.submit(spec.implementation, 0, request_body(ctx, spec, 0))] if long_first else []
    submissions = await asyncio.gather(
        *(ctx.client.submit(spec.implementation, i, request_body(ctx, spec, i)) for i in range(len(first), spec.jobs))
    )
    events.append(Event(t=time.time(), name=EventName.burst_end))
    return [*first, *submissions]


async def _submit_through(
    ctx: ScenarioContext, spec: ScenarioSpec, events: list[Event], fault: Awaitable[None]
) -> list[Submission]:
    """While `fault` runs (api-partition), a client keeps submitting, one every CUT_SUBMIT_INTERVAL_S, each
    answered or timed out on its own; once it ends, one at a time until the API accepts one again (at most
    CUT_RECOVERY_S): what clients meet during the cut, and when the API takes jobs again."""
    cut = asyncio.ensure_future(fault)
    while not cut.done() and not any(e.name == EventName.fault for e in events):  # the cut in place
        await asyncio.sleep(0.005)
    index = spec.jobs
    sent: list[asyncio.Task[Submission]] = []
    while not cut.done() and not ctx.stop.is_set():
        sent.append(asyncio.create_task(ctx.client.submit(spec.implementation, index, request_body(ctx, spec, index))))
        index += 1
        await asyncio.wait([cut], timeout=CUT_SUBMIT_INTERVAL_S)
    await cut
    after: list[Submission] = []
    deadline = time.monotonic() + CUT_RECOVERY_S
    while time.monotonic() < deadline and not ctx.stop.is_set():
        after.append(await ctx.client.submit(spec.implementation, index, request_body(ctx, spec, index)))
        index += 1
        if after[-1].job_id:
            break
        await asyncio.sleep(CUT_SUBMIT_INTERVAL_S / 2)
    during = list(await asyncio.gather(*sent))
    accepted = sum(1 for s in (*during, *after) if s.job_id)
    detail = f"{len(during)} sent during the cut, {len(after)} after it; {accepted} accepted"
    events.append(Event(t=time.time(), name=EventName.cut_submissions, detail=detail))
    return during + after


async def _sustain(ctx: ScenarioContext, spec: ScenarioSpec, events: list[Event]) -> list[Submission]:
    """One sustained-load step: `spec.rate` jobs per second for `spec.for_s` seconds, open loop."""
    assert spec.rate is not None and spec.for_s is not None
    seed = ctx.settings.load.seed if ctx.settings.load else 0  # the plan counted the jobs with the same
    due = arrivals.schedule(spec.rate, spec.for_s, spec.arrivals, seed)
    start = time.time() + 0.05
    detail = f"{spec.rate:g}/s for {spec.for_s:g} s: {len(due)} submissions, {spec.arrivals} arrivals"
    events.append(Event(t=start, name=EventName.rate_start, detail=detail))

    async def send(i: int, due_at: float) -> Submission:
        return await ctx.client.submit(spec.implementation, i, request_body(ctx, spec, i))

    submissions = await arrivals.fire(due, start, send, ctx.stop)
    events.append(Event(t=time.time(), name=EventName.rate_end, detail=f"{len(submissions)} sent"))
    return submissions


async def _count_over_time(ctx: ScenarioContext, spec: ScenarioSpec, depth: list[DepthSample]) -> None:
    """Queued, running and finished jobs every DEPTH_INTERVAL_S, from the step's start until its jobs drain."""
    while True:
        with contextlib.suppress(ServiceError, ValueError):  # the API busy or restarting: a gap in the chart
            counts = await ctx.client.counts(spec.implementation)
            depth.append(
                DepthSample(
                    t=time.time(),
                    queued=counts.counts.get(JobStatus.queued, 0),
                    running=counts.counts.get(JobStatus.running, 0),
                    finished=counts.finished,
                )
            )
        await asyncio.sleep(DEPTH_INTERVAL_S)


async def _broker_depth(ctx: ScenarioContext, spec: ScenarioSpec, depth: list[BrokerDepth]) -> None:
    """A queue's broker count of waiting jobs through a burst or a sustained step without a fault (what an
    autoscaler reads, against the jobs really waiting: taskbench.analysis.stats.depth_seen); every
    BROKER_DEPTH_INTERVAL_S in a burst, every DEPTH_INTERVAL_S at a rate (a step may last hours)."""
    if spec.fault or not implementations.known(spec.implementation):
        return
    if not implementations.get(spec.implementation).has_worker:
        return  # BackgroundTasks: no broker
    name = implementations.plugin_name(spec.implementation)
    while True:
        with contextlib.suppress(ServiceError, ValueError):
            health = await ctx.client.health(spec.implementation)
            depth.append(BrokerDepth(t=time.time(), queued=health.section(name).queued))
        await asyncio.sleep(BROKER_DEPTH_INTERVAL_S if spec.rate is None else DEPTH_INTERVAL_S)


async def _poll_statuses(
    ctx: ScenarioContext, spec: ScenarioSpec, submissions: list[Submission], events: list[Event]
) -> list[StatusPoll]:
    """Each accepted job's status once, on a new connection each, as its user's client would ask for it."""
    ids = [s.job_id for s in submissions if s.job_id]
    polls = await ctx.client.poll_statuses(spec.implementation, ids)
    missing = sum(p.status_code == 404 for p in polls)
    events.append(Event(t=time.time(), name=EventName.status_polls, detail=f"{missing} of {len(polls)} answered 404"))
    return polls
