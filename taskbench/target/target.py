"""`taskbench run --target URL --scenario FILE`: measure the user's own running deployment, from outside, like a client.

Nothing of taskbench's stack is involved: no process is started, purged, restarted or sampled, no ledger is read.
The user's scenario file (`taskbench.target.target_script`) says how to submit a job and how to read its status;
the harness
 1. loads it, checks that the target answers at all, and makes one trial call of `submit` and `status` of its id
    (any failure: one line, exit 2, before anything is measured);
 2. sends the jobs: a burst (`--jobs N`, all due at once) or an open-loop step (`--rate R --for S`, due times from
    `taskbench.load.arrivals`, each submission sent at its due time whether or not earlier ones have answered);
 3. follows every accepted job by polling `status` (every `--poll-interval` s per job, at most `--poll-concurrency`
    calls in flight), stamping each change of status on the harness's clock when the answer arrives: the times are
    as precise as the poll interval;
 4. probes `--probe PATH` (a GET, 10 a second, on a thread and event loop of its own so the load cannot delay it);
 5. runs each `--fault-cmd NAME=COMMAND` once, in a shell, when half the accepted jobs have been seen past `queued`,
    recording its start, end, exit code and output;
 6. waits for the jobs until `--timeout` s after the last submission answered; an accepted job never seen done or
    failed by then is lost.
The record (`TargetRun`) holds what was measured, raw; `taskbench.target.target_report` computes the figures and
writes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import signal
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import httpx
from pydantic import BaseModel, Field
from rich.console import Console

from taskbench.errors import UsageError
from taskbench.load import arrivals
from taskbench.load.client import KEEPALIVE_EXPIRY_S
from taskbench.record.results import LoadOptions, Submission
from taskbench.run import provenance
from taskbench.target.target_script import TERMINAL, Scenario, job_id, one_line, status_of
from taskbench_wire.urls import redacted

SCHEMA = "taskbench-target/1"
CANCEL_GRACE_S = 5.0  # how long the run waits for its cancelled follows and fault command to end
SUBMIT_TIMEOUT_S = 10.0  # a submit or status call that takes longer counts as a timeout
PROBE_INTERVAL_S = 0.1
PROBE_TIMEOUT_S = 2.0  # a probe unanswered this long is a timeout (the stack's probes use the same)
CHECK_TIMEOUT_S = 5.0  # the first request, which only asks whether anything answers at the URL
DEFAULT_DEADLINE_S = 300.0
DEFAULT_POLL_INTERVAL_S = 0.1
DEFAULT_POLL_CONCURRENCY = 16
FAULT_OUTPUT_CHARS = 4000  # the last characters of a fault command's output kept in the record
CONNECTIONS = 1000  # the submit client's pool: open loop means many calls in flight when the target stalls

T = TypeVar("T")


# ── the record ────────────────────────────────────────────────────────────────────────────────────────────────────


class FaultCommand(BaseModel):
    name: str
    command: str


class TargetSettings(BaseModel):
    target: str  # the URL, its password redacted
    scenario: str  # the scenario file's absolute path
    scenario_sha256: str
    mode: Literal["burst", "rate"]
    jobs: int  # the burst's job count, or the submissions a --rate step schedules
    rate_per_s: float | None = None
    for_s: float | None = None
    arrivals: Literal["uniform", "poisson"] = "uniform"
    seed: int = 0
    warmup_share: float = LoadOptions().warmup_share  # --rate: the steady part starts after this share of the step
    throughput_margin: float = LoadOptions().throughput_margin  # --rate: how far completions may fall short
    probe: str | None = None  # the path probed, if any
    probe_interval_s: float = PROBE_INTERVAL_S
    probe_timeout_s: float = PROBE_TIMEOUT_S
    poll_interval_s: float = DEFAULT_POLL_INTERVAL_S
    poll_concurrency: int = DEFAULT_POLL_CONCURRENCY
    call_timeout_s: float = SUBMIT_TIMEOUT_S
    deadline_s: float = DEFAULT_DEADLINE_S  # after the last submission answered
    fault_commands: list[FaultCommand] = Field(default_factory=list)
    taskbench_version: str
    git_revision: str | None = None
    command_line: str = ""


class Trial(BaseModel):
    """The one call of `submit` and `status` made before anything is measured (its job is not in the figures)."""

    job_id: str
    status: str
    at: float
    submit_s: float
    status_s: float


class TargetSubmission(BaseModel):
    index: int
    due_at: float  # when the schedule said to send it (a burst: its start); --rate latencies count from here
    sent_at: float
    answered_at: float | None = None  # when submit returned or raised; None: it timed out
    job_id: str | None = None
    error: str | None = None  # "timeout", or the exception (or what submit returned instead of an id)


class Transition(BaseModel):
    status: str  # queued | running | done | failed
    seen_at: float  # the harness's clock when the first poll that answered it returned


class JobTrace(BaseModel):
    job_id: str
    index: int  # its submission's
    transitions: list[Transition] = Field(default_factory=list)
    polls: int = 0  # status calls that answered
    poll_errors: int = 0  # status calls that raised, timed out or answered something else
    last_error: str | None = None
    first_poll_at: float | None = None
    last_poll_at: float | None = None

    def first(self, status: str) -> float | None:
        return next((t.seen_at for t in self.transitions if t.status == status), None)

    @property
    def last_status(self) -> str | None:
        return self.transitions[-1].status if self.transitions else None

    @property
    def finished(self) -> bool:
        return self.last_status in TERMINAL


class ProbeResult(BaseModel):
    sent_at: float
    latency_s: float | None  # None: no answer (timeout or error)
    status_code: int | None = None
    error: str | None = None


class FaultRun(BaseModel):
    name: str
    command: str
    started_at: float | None = None
    ended_at: float | None = None
    exit_code: int | None = None  # None: not run, or still running at the end of the run (then stopped)
    output: str = ""  # its stdout and stderr, the last FAULT_OUTPUT_CHARS characters
    trigger: str = ""  # how far the jobs were when it started ("10 of 20 accepted jobs seen past queued")
    note: str | None = None  # why it did not run, or that it was stopped


class Percentiles(BaseModel):
    count: int = 0
    p50: float | None = None
    p95: float | None = None
    p99: float | None = None
    max: float | None = None


class ProbeFigures(BaseModel):
    path: str
    sent: int
    answered: int
    timeouts: int
    errors: int  # no answer, for another reason than a timeout
    server_errors: int  # answered with an HTTP status of 500 or more (their latency counts)
    p50: float | None = None
    p99: float | None = None
    max: float | None = None
    longest_silence_s: float = 0.0


class KeepingUp(BaseModel):
    """--rate: whether completions kept up with arrivals over the step's steady part (target_report states the rule)."""

    offered_per_s: float
    send_rate_per_s: float | None = None
    schedule_lag_p99_s: float | None = None
    steady_from_s: float
    steady_to_s: float
    shift_s: float  # the median execution seen (running → done), by which the due window is shifted
    due_in_steady: int
    done_in_steady: int
    completion_per_s: float
    expected_per_s: float
    backlog_slope_per_s: float | None = None  # least squares of accepted − finished, every 0.5 s
    backlog_max: int = 0
    verdict: Literal["kept up", "fell behind", "inconclusive"]
    reasons: list[str] = Field(default_factory=list)


class TargetSummary(BaseModel):
    scheduled: int
    sent: int
    accepted: int
    refused: int  # submissions that raised, timed out, or returned no id
    errors: dict[str, int] = Field(default_factory=dict)  # the most frequent submission errors
    latency_from: Literal["due", "sent"]
    submit: Percentiles
    queue: Percentiles  # origin → first seen running
    total: Percentiles  # origin → first seen done
    execution: Percentiles  # first seen running → first seen done
    never_seen_running: int  # done jobs that went from queued to done between two polls (not in `queue`)
    done: int
    failed: int
    lost: int  # accepted, not seen done or failed by the deadline (0 when interrupted: see `unfinished`)
    lost_last_seen: dict[str, int] = Field(default_factory=dict)  # lost jobs by the last status seen
    unfinished: int = 0  # an interrupted run's jobs not seen done or failed when it stopped (not counted lost)
    throughput_per_s: float | None = None  # done ÷ (first origin → last done seen)
    polls: int = 0
    poll_errors: int = 0
    poll_gap_s: float | None = None  # the median gap between two polls of one job: the precision of every time
    probe: ProbeFigures | None = None
    keeping_up: KeepingUp | None = None
    answer: str = ""


class TargetRun(BaseModel):
    schema_version: str = SCHEMA
    settings: TargetSettings
    started_at: float
    trial: Trial
    sending_from: float
    sending_to: float
    waited_until: float
    finished_at: float
    interrupted: bool = False
    stopped_by: int | None = None  # the signal that cut the run short
    submissions: list[TargetSubmission]
    jobs: list[JobTrace]
    probes: list[ProbeResult] = Field(default_factory=list)
    faults: list[FaultRun] = Field(default_factory=list)
    summary: TargetSummary | None = None  # the figures, computed from the above (taskbench.target.target_report)


# ── the driver ────────────────────────────────────────────────────────────────────────────────────────────────────


@dataclass
class TargetOptions:
    target: str  # as given (with any password: the client uses it; the record keeps it redacted)
    scenario: Scenario
    jobs: int | None = None  # a burst
    rate: float | None = None  # or an open-loop step
    for_s: float | None = None
    arrivals: arrivals.Arrivals = "uniform"
    probe: str | None = None
    fault_commands: list[FaultCommand] = field(default_factory=list)
    deadline_s: float = DEFAULT_DEADLINE_S
    poll_interval_s: float = DEFAULT_POLL_INTERVAL_S
    poll_concurrency: int = DEFAULT_POLL_CONCURRENCY


def measure(options: TargetOptions, console: Console) -> TargetRun:
    """The whole measurement; UsageError (exit 2) when the target does not answer or the trial call fails."""
    return asyncio.run(_Run(options, console).main())


def _client(url: str, connections: int) -> httpx.AsyncClient:
    limits = httpx.Limits(
        max_connections=connections,
        max_keepalive_connections=min(connections, 100),
        keepalive_expiry=KEEPALIVE_EXPIRY_S,
    )
    return httpx.AsyncClient(base_url=url, timeout=SUBMIT_TIMEOUT_S, limits=limits)


async def _timed(call: Awaitable[T]) -> tuple[T, float]:
    started = time.perf_counter()
    value = await asyncio.wait_for(call, SUBMIT_TIMEOUT_S)
    return value, time.perf_counter() - started


class _Run:
    def __init__(self, options: TargetOptions, console: Console) -> None:
        self.options = options
        self.console = console
        self.scenario = options.scenario
        self.stop = asyncio.Event()
        self.stopped_by: int | None = None
        self.traces: list[JobTrace] = []
        self.follows: list[asyncio.Task[None]] = []
        self.sending = True
        self.due = (
            arrivals.schedule(options.rate, options.for_s or 0.0, options.arrivals)
            if options.rate is not None
            else [0.0] * (options.jobs or 0)
        )

    async def main(self) -> TargetRun:
        started_at = time.time()
        await self._answers()
        submit_client = _client(self.options.target, CONNECTIONS)
        status_client = _client(self.options.target, self.options.poll_concurrency)
        try:
            trial = await self._trial(submit_client, status_client)
            return await self._measure(started_at, trial, submit_client, status_client)
        finally:
            await submit_client.aclose()
            await status_client.aclose()

    async def _answers(self) -> None:
        """Anything answering at the URL (any HTTP status will do); else one line, exit 2."""
        path = self.options.probe or "/"
        try:
            async with httpx.AsyncClient(base_url=self.options.target, timeout=CHECK_TIMEOUT_S) as client:
                await client.get(path)
        except httpx.TransportError as exc:
            raise UsageError(
                f"--target {redacted(self.options.target)}: nothing answers there (GET {path}: {one_line(exc)}): "
                "start your deployment or fix the URL"
            ) from None

    async def _trial(self, submit_client: httpx.AsyncClient, status_client: httpx.AsyncClient) -> Trial:
        flag = f"--scenario {self.scenario.path}"
        at = time.time()
        job, submit_s = await _trial_call(flag, "submit(client)", self.scenario.submit(submit_client), job_id)
        status, status_s = await _trial_call(
            flag, f"status(client, {job!r})", self.scenario.status(status_client, job), status_of
        )
        self.console.print(
            f"trial call: submit → {job!r} in {submit_s * 1000:.0f} ms, status → {status} in {status_s * 1000:.0f} ms",
            markup=False,
        )
        return Trial(job_id=job, status=status, at=at, submit_s=submit_s, status_s=status_s)

    async def _measure(
        self, started_at: float, trial: Trial, submit_client: httpx.AsyncClient, status_client: httpx.AsyncClient
    ) -> TargetRun:
        options = self.options
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, self._interrupt, signum)
        probe = _Prober(options.target, options.probe) if options.probe else None
        if probe:
            probe.start()
        semaphore = asyncio.Semaphore(options.poll_concurrency)
        faults = [
            FaultRun(name=f.name, command=f.command, note="not run: the run ended before half its jobs got that far")
            for f in options.fault_commands
        ]
        fault_task = asyncio.create_task(self._faults(faults)) if faults else None

        async def send(index: int, due_at: float) -> Submission:
            return await self._send(index, submit_client, status_client, semaphore)

        what = (
            f"{len(self.due)} jobs at {options.rate:g}/s for {options.for_s:g} s"
            if options.rate is not None
            else f"a burst of {len(self.due)} jobs"
        )
        self.console.print(f"sending {what} to {redacted(options.target)}…", markup=False)
        start = time.time() + 0.05
        sent = await arrivals.fire(self.due, start, send, self.stop)
        sending_to = time.time()
        self.sending = False
        self.console.print(
            f"sent {len(sent)}, {sum(1 for s in sent if s.job_id)} accepted; waiting for the jobs "
            f"(at most {options.deadline_s:g} s)…",
            markup=False,
        )
        waited_until = await self._wait_for_jobs([*self.follows, *([fault_task] if fault_task else [])])
        probes = probe.stop() if probe else []
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        return TargetRun(
            settings=self._settings(),
            started_at=started_at,
            trial=trial,
            sending_from=start,
            sending_to=sending_to,
            waited_until=waited_until,
            finished_at=time.time(),
            interrupted=self.stopped_by is not None,
            stopped_by=self.stopped_by,
            submissions=[_recorded(s, start) for s in sent],
            jobs=sorted(self.traces, key=lambda t: t.index),
            probes=probes,
            faults=faults,
        )

    async def _send(
        self,
        index: int,
        submit_client: httpx.AsyncClient,
        status_client: httpx.AsyncClient,
        semaphore: asyncio.Semaphore,
    ) -> Submission:
        """One submission through the scenario's `submit`; an accepted job is followed from then on."""
        sent_at, started = time.time(), time.perf_counter()
        try:
            job = job_id(await asyncio.wait_for(self.scenario.submit(submit_client), SUBMIT_TIMEOUT_S))
        except (asyncio.TimeoutError, httpx.TimeoutException):
            return Submission(index=index, sent_at=sent_at, latency_s=None, error="timeout")
        except Exception as exc:
            latency = time.perf_counter() - started
            return Submission(index=index, sent_at=sent_at, latency_s=latency, error=one_line(exc, 200))
        latency = time.perf_counter() - started
        trace = JobTrace(job_id=job, index=index)
        self.traces.append(trace)
        self.follows.append(asyncio.create_task(self._follow(trace, status_client, semaphore)))
        return Submission(index=index, sent_at=sent_at, latency_s=latency, job_id=job)

    async def _wait_for_jobs(self, waiting: list[asyncio.Task[None]]) -> float:
        """Until every followed job and fault command is done, Ctrl-C, or the deadline; when the wait ended."""
        stop_wait = asyncio.create_task(self.stop.wait())
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(_all_or_stop(waiting, stop_wait), self.options.deadline_s)
        waited_until = time.time()
        stop_wait.cancel()
        for task in waiting:
            task.cancel()
        # Bounded: a task whose HTTP call does not take its cancellation at once must not hold the run past its
        # deadline (a --target run was seen to hang here or after, once in three CI runs)
        await asyncio.wait([*waiting, stop_wait], timeout=CANCEL_GRACE_S)
        return waited_until

    def _settings(self) -> TargetSettings:
        options = self.options
        return TargetSettings(
            target=redacted(options.target),
            scenario=str(self.scenario.path.resolve()),
            scenario_sha256=self.scenario.sha256,
            mode="rate" if options.rate is not None else "burst",
            jobs=len(self.due),
            rate_per_s=options.rate,
            for_s=options.for_s if options.rate is not None else None,
            arrivals=options.arrivals,
            probe=options.probe,
            poll_interval_s=options.poll_interval_s,
            poll_concurrency=options.poll_concurrency,
            deadline_s=options.deadline_s,
            fault_commands=options.fault_commands,
            taskbench_version=provenance.version(),
            git_revision=provenance.git_revision(),
            command_line=provenance.command_line(),
        )

    def _interrupt(self, signum: int) -> None:
        if self.stopped_by is None:
            self.console.print("[yellow]interrupted[/]: stopping; what was measured is kept")
        self.stopped_by = signum
        self.stop.set()

    async def _follow(self, trace: JobTrace, client: httpx.AsyncClient, semaphore: asyncio.Semaphore) -> None:
        """Poll the job's status until done or failed (the run cancels it at its deadline)."""
        interval = self.options.poll_interval_s
        while True:
            status: str | None = None
            async with semaphore:
                try:
                    answer = await asyncio.wait_for(self.scenario.status(client, trace.job_id), SUBMIT_TIMEOUT_S)
                    status = status_of(answer)
                except (asyncio.TimeoutError, httpx.TimeoutException):
                    trace.poll_errors += 1
                    trace.last_error = "timeout"
                except Exception as exc:
                    trace.poll_errors += 1
                    trace.last_error = one_line(exc, 200)
            now = time.time()
            if status is not None:
                trace.polls += 1
                trace.first_poll_at = trace.first_poll_at or now
                trace.last_poll_at = now
                if status != trace.last_status:
                    trace.transitions.append(Transition(status=status, seen_at=now))
                if status in TERMINAL:
                    return
            await asyncio.sleep(interval)

    def _past_queued(self) -> int:
        return sum(1 for t in self.traces if any(x.status != "queued" for x in t.transitions))

    async def _faults(self, faults: list[FaultRun]) -> None:
        """Each fault command once, in command-line order, when half the accepted jobs are running or finished
        (half of those scheduled while submissions are still going out)."""
        while True:
            threshold = math.ceil((len(self.due) if self.sending else len(self.traces)) / 2)
            seen = self._past_queued()
            if threshold and seen >= threshold:
                break
            if not self.sending and not self.traces:
                for fault in faults:
                    fault.note = "not run: no job was accepted"
                return
            await asyncio.sleep(self.options.poll_interval_s)
        trigger = f"{seen} of {len(self.traces)} accepted jobs seen running or finished"
        for fault in faults:
            fault.trigger = trigger
            fault.note = "not run: the run ended first"
        for fault in faults:
            await _run_command(fault, self.console)


async def _all_or_stop(tasks: list[asyncio.Task[None]], stop: asyncio.Task[bool]) -> None:
    """Until every task is done, or `stop` is."""
    pending: set[asyncio.Task[object]] = {*tasks, stop}
    while pending - {stop}:
        done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        if stop in done:
            return


async def _run_command(fault: FaultRun, console: Console) -> None:
    """The user's shell command, in a session of its own (so what is left of it can be stopped at the end)."""
    console.print(f"fault {fault.name}: running `{fault.command}` ({fault.trigger})", markup=False)
    fault.note = None
    fault.started_at = time.time()
    process = await asyncio.create_subprocess_shell(
        fault.command,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
    )
    chunks: list[bytes] = []
    try:
        assert process.stdout is not None
        while chunk := await process.stdout.read(65536):
            chunks.append(chunk)
        fault.exit_code = await process.wait()
    except asyncio.CancelledError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        fault.note = "still running when the run ended: stopped (SIGKILL to its process group)"
        raise
    finally:
        fault.ended_at = time.time()
        fault.output = b"".join(chunks).decode(errors="replace")[-FAULT_OUTPUT_CHARS:]
    console.print(
        f"fault {fault.name}: exit {fault.exit_code} after {fault.ended_at - fault.started_at:.2f} s", markup=False
    )


class _Prober:
    """GET the probe path every PROBE_INTERVAL_S on a thread with an event loop of its own, each probe on schedule
    without waiting for the previous one (as taskbench.measure.probes does for the stack), so a stall shows as a row of
    unanswered probes, and the harness's own load on the main loop cannot delay them."""

    def __init__(self, base_url: str, path: str) -> None:
        self.base_url = base_url
        self.path = path
        self.probes: list[ProbeResult] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._loop()), name="taskbench-target-probe")
        self._thread.daemon = True

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> list[ProbeResult]:
        self._stop.set()
        self._thread.join(PROBE_TIMEOUT_S + 5)
        return sorted(self.probes, key=lambda p: p.sent_at)

    async def _loop(self) -> None:
        limits = httpx.Limits(max_connections=100, max_keepalive_connections=10, keepalive_expiry=KEEPALIVE_EXPIRY_S)
        async with httpx.AsyncClient(base_url=self.base_url, timeout=PROBE_TIMEOUT_S, limits=limits) as client:
            pending: set[asyncio.Task[None]] = set()
            next_at = time.perf_counter()
            while not self._stop.is_set():
                task = asyncio.create_task(self._probe(client))
                pending.add(task)
                task.add_done_callback(pending.discard)
                next_at += PROBE_INTERVAL_S
                await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
            if pending:
                await asyncio.wait(pending, timeout=PROBE_TIMEOUT_S + 1)

    async def _probe(self, client: httpx.AsyncClient) -> None:
        sent_at, started = time.time(), time.perf_counter()
        try:
            response = await client.get(self.path)
        except httpx.TimeoutException:
            self.probes.append(ProbeResult(sent_at=sent_at, latency_s=None, error="timeout"))
        except httpx.HTTPError as exc:
            self.probes.append(ProbeResult(sent_at=sent_at, latency_s=None, error=one_line(exc, 200)))
        else:
            latency = time.perf_counter() - started
            self.probes.append(ProbeResult(sent_at=sent_at, latency_s=latency, status_code=response.status_code))


def _recorded(s: Submission, start: float) -> TargetSubmission:
    return TargetSubmission(
        index=s.index,
        due_at=s.due_at if s.due_at is not None else start,
        sent_at=s.sent_at,
        answered_at=None if s.latency_s is None else s.sent_at + s.latency_s,
        job_id=s.job_id,
        error=s.error,
    )


async def _trial_call(flag: str, call: str, awaitable: Awaitable[Any], read: Callable[[Any], T]) -> tuple[T, float]:
    """One call of the user's scenario before the load, its answer read; any failure is one line and exit 2."""
    try:
        value, took_s = await _timed(awaitable)
        return read(value), took_s
    except asyncio.TimeoutError:
        raise UsageError(f"{flag}: the trial call {call} did not return within {SUBMIT_TIMEOUT_S:g} s") from None
    except Exception as exc:
        raise UsageError(f"{flag}: the trial call {call} raised {one_line(exc)}") from None
