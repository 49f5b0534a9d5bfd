"""A whole run: plan, stack, every scenario with a progress bar, reports written as results arrive.

Ctrl-C once finishes the current scenario early and keeps everything measured so far; the stack is
stopped either way.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from rich.console import Console

from taskbench import analysis, faults, implementations
from taskbench.analysis import analyse
from taskbench.analysis.models import AnalysedRun, ScenarioSummary
from taskbench.envs import environment, venvs
from taskbench.errors import StackError, UsageError
from taskbench.load.client import ServiceClient, auth_headers
from taskbench.record.results import (
    HostCeilings,
    LoadOptions,
    RunEnvironment,
    RunResult,
    RunSettings,
    ScenarioResult,
    ScenarioSpec,
)
from taskbench.report import content, files
from taskbench.run import plan, progress, provenance, search
from taskbench.run.scenario import Progress, ScenarioContext, run_scenario
from taskbench.run.started_by_hand import StartedByHand
from taskbench.stack import ceilings
from taskbench.stack.stack import Stack, StackConfig, StackState
from taskbench.user_job.job_check import JobArgs
from taskbench_wire.env import API_TOKEN
from taskbench_wire.urls import redacted


@dataclass
class RunOptions:
    settings: RunSettings
    output: Path
    fault_jobs: int
    timeout_s: float | None = None
    redis_url: str | None = None
    broker_url: str | None = None  # --broker amqp: this RabbitMQ; None: a private one
    postgres_url: str | None = None  # --postgres-url; None: a private PostgreSQL where a queue needs one
    job_args: dict[str, JobArgs] = field(default_factory=dict)  # a user job's path → arguments of job i
    rebuild_envs: bool = False  # --rebuild-envs: build every implementation's environment again


def timestamp() -> str:
    return time.strftime("%Y%m%d_%H%M%S")


def claim_folder(parent: Path, name: str, flag: str) -> Path:
    """A folder of this run's own, created here and never shared: two runs started in the same second get
    `name` and `name-2`. One that cannot be created is a usage error naming the flag."""
    try:
        parent.mkdir(parents=True, exist_ok=True)
        for attempt in range(1, 100):
            folder = parent / (name if attempt == 1 else f"{name}-{attempt}")
            try:
                folder.mkdir()
                return folder
            except FileExistsError:
                continue
    except OSError as exc:
        raise UsageError(
            f"{flag} {parent}: cannot create a folder there ({exc.strerror}); pass one you can write to"
        ) from exc
    raise UsageError(f"{flag} {parent}: 99 runs started in the same second already have folders there")


def _drop_if_empty(folder: Path) -> None:
    with contextlib.suppress(OSError):
        folder.rmdir()  # only when nothing was written: a failed start's logs stay


def run(options: RunOptions, console: Console) -> tuple[Path, AnalysedRun]:
    """Run every scenario; return the run's folder and its results."""
    stamp = timestamp()
    folder = claim_folder(options.output, stamp, "--output")
    try:
        return _run(options, console, stamp, folder)
    finally:
        _drop_if_empty(folder)


def _run(options: RunOptions, console: Console, stamp: str, folder: Path) -> tuple[Path, AnalysedRun]:
    specs = plan.scenarios(options.settings, options.fault_jobs)
    console.print(f"[bold]taskbench[/]: {len(specs)} scenarios → {folder}")
    for fault, impls in plan.left_out(options.settings).items():
        names = ", ".join(implementations.title(impl) for impl in impls)
        console.print(f"{fault} does not apply to {names} (docs/workloads-and-faults.md says why): left out")
    _print_plan(console, specs, options.settings)
    stack: Stack | None = None
    envs: dict[str, venvs.Env] = {}
    try:
        if options.settings.url is None:
            with console.status("preparing each implementation's environment…"):
                envs = environment.prepare(
                    options.settings.implementations,
                    options.settings.with_packages,
                    options.settings.options,
                    rebuild=options.rebuild_envs,
                    say=console.print,
                    project=options.settings.project_pins,
                )
            stack = _start_stack(_stack_config(options, folder, envs), options.settings, console)
        url = options.settings.url or (stack.url if stack else "")
        served = _check_server(url, options.settings.implementations) if stack is None else None
        env = provenance.environment(
            stack.redis_url if stack else None,
            stack.amqp_url if stack else None,
            stack.postgres_url if stack else None,
            envs,
            served,
        )
        return asyncio.run(_run_all(options, specs, url, stack, env, folder, stamp, console))
    finally:
        if stack is not None:
            with console.status("stopping the stack…"):
                stack.stop()


def _stack_config(options: RunOptions, folder: Path, envs: dict[str, venvs.Env]) -> StackConfig:
    settings = options.settings
    return StackConfig(
        workdir=folder / "stack",
        concurrency=settings.concurrency,
        redis_url=options.redis_url,
        broker=settings.broker,
        broker_url=options.broker_url,
        postgres_url=options.postgres_url,
        implementations=tuple(settings.implementations),
        jobs=tuple(job.path for job in settings.user_jobs),
        job_timeout_s=settings.job_timeout_s or 60.0,
        # on the path only for --job and --app (an implementation's option `app`: the user's own app)
        job_dir=Path.cwd() if settings.user_jobs or any(o.get("app") for o in settings.options.values()) else None,
        state=StackState(middleware=settings.middleware[0]),
        api=settings.api,
        options=settings.options,
        environments=envs,
        worker_limits=settings.worker_limits,
        api_limits=settings.api_limits,
        # worker-oom: its scenarios set the worker's memory limit
        contained=any(faults.get(f).needs_cgroups for f in settings.faults),
        hosts=settings.hosts,
        link_delay_ms=settings.link_delay_ms,
    )


def _start_stack(config: StackConfig, settings: RunSettings, console: Console) -> Stack:
    """The stack up, and where each part of it is (the caller stops it)."""
    with console.status("starting Redis, the API servers and the workers…"):
        stack = Stack(config)
        stack.__enter__()
    settings.topology = stack.topology()  # --hosts: which part on which address
    for part, where in settings.topology.items():
        console.print(f"  {part}: {where}", markup=False)
    rabbitmq = f", RabbitMQ {redacted(stack.amqp_url)}" if stack.amqp_url else ""
    rabbitmq += f", PostgreSQL {redacted(stack.postgres_url)}" if stack.postgres_url else ""
    apis = ", ".join(f"{label} {url}" for label, url in stack.urls().items())
    console.print(
        f"stack up: APIs {apis}; Redis {redacted(stack.redis_url)}{rabbitmq}; logs in {config.workdir / 'logs'}"
    )
    return stack


def _check_server(url: str, labels: list[str]) -> dict[str, dict[str, str]]:
    """A service started by hand answers; what it has installed, recorded for each implementation it serves."""
    try:
        httpx.get(f"{url}/health/sync", timeout=5).raise_for_status()
        info = httpx.get(f"{url}/", timeout=5, headers=auth_headers(os.environ.get(API_TOKEN))).json()
        installed = {str(k): str(v) for k, v in info.get("packages", {}).items()}
        return {label: installed for label in labels}
    except (httpx.HTTPError, ValueError) as exc:
        raise StackError(
            f"ERROR: Server is not running at {url} ({exc}); start it with `uvicorn taskbench_service.main:app` "
            "and a worker with `celery -A taskbench_service.implementations.celery:celery_app worker` (from "
            "taskbench's repository: `app.main:app`, `app.celery_app`), or drop --url to let taskbench start them"
        ) from exc


def _print_plan(console: Console, specs: list[ScenarioSpec], settings: RunSettings) -> None:
    cpus = provenance.this_machine().cpu_count or 1
    estimates = [plan.estimate_s(s, settings.concurrency, cpus, settings) for s in specs]
    load = settings.load
    for spec, estimate in zip(specs, estimates, strict=True):
        if spec.repeat:
            continue
        if load is not None and load.auto:
            what = f"{spec.implementation} · {spec.workload}: --rate auto from {spec.rate:g}/s, {spec.for_s:g} s a step"
        elif load is not None and load.target_rate:
            what = f"{spec.label}: the smallest concurrency that sustains it"
        else:
            what = spec.label
        console.print(f"  • {what} (~{estimate:.0f} s)")
    if settings.repeat > 1:
        console.print(
            f"each scenario runs {settings.repeat} times, interleaved (the list above, then again): figures are "
            "medians with their spread, and a rule that fires in some runs only is borderline (--repeat)"
        )
    total = sum(estimates)
    console.print(f"estimated time: ~{total / 60:.1f} min")


CAPACITY_OVERHEAD_S = 0.05  # per job, beside its duration, in Little's law's first guess: the queue's own time


def _outcome(summary: ScenarioSummary) -> str:
    """A scenario's status in a few words, for a log line."""
    rules = "; ".join(f.rule for f in summary.failures)
    return summary.status + (f" ({rules})" if rules else "")


RunOne = Callable[[ScenarioSpec], Awaitable[ScenarioSummary | None]]


async def _run_or_give_up(ctx: ScenarioContext, spec: ScenarioSpec, progress: Progress) -> ScenarioResult | None:
    """The scenario. When the stack fails its implementation (a worker the service no longer sees, an API that
    does not come back), that implementation's API and worker start again once and the scenario runs again; if it
    fails again, the implementation is given up (a finding in the report) and the run goes on: None."""
    stack = ctx.stack
    label = spec.implementation
    when = f"before {spec.label}"
    for attempt in (1, 2):
        try:
            return await run_scenario(ctx, spec, progress)
        except StackError as exc:
            if not isinstance(stack, Stack) or ctx.stop.is_set():
                raise
            if attempt == 2 or not stack.revive(label, when):
                if label not in stack.unavailable:
                    stack.give_up(label, stack.part_of(label), exc, when)
                if not stack.labels:
                    raise StackError(f"no implementation can run any more ({exc})") from exc
                return None
    return None


def _why_not(stack: Stack | StartedByHand, spec: ScenarioSpec) -> str:
    gone = stack.unavailable.get(spec.implementation)
    return f"{gone.part}: {gone.reason}" if gone is not None else "given up"


async def _search(first: ScenarioSpec, load: LoadOptions, ctx: ScenarioContext, run_one: RunOne) -> None:
    """--rate auto: step the rate up, then bisect (taskbench.run.search). --target-rate: the same over the worker's
    concurrency at the target rate; BackgroundTasks, which has no worker, runs the target rate once."""
    steps: list[search.Step] = []
    if load.target_rate is not None and not implementations.get(first.implementation).has_worker:
        await run_one(first)
        return
    guess = search.littles_law_concurrency(load.target_rate or 0.0, first.duration_s + CAPACITY_OVERHEAD_S)
    while not ctx.stop.is_set():
        if load.target_rate is None:
            rate = search.next_rate(steps, first.rate or 1.0, load.search_resolution, load.search_steps)
            spec = None if rate is None else plan.rate_step(first, rate, load)
        else:
            concurrency = search.next_concurrency(steps, first.concurrency or guess, load.search_steps)
            spec = None if concurrency is None else first.model_copy(update={"concurrency": concurrency})
        if spec is None:
            return
        summary = await run_one(spec)
        if summary is None:
            return
        step = summary.rate
        value = float(spec.rate or 0.0) if load.target_rate is None else float(spec.concurrency or 0)
        steps.append((value, step.verdict if step else "inconclusive"))


async def _run_all(
    options: RunOptions,
    specs: list[ScenarioSpec],
    url: str,
    stack: Stack | None,
    env: RunEnvironment,
    folder: Path,
    stamp: str,
    console: Console,
) -> tuple[Path, AnalysedRun]:
    settings = options.settings
    urls = stack.urls() if stack is not None else None
    token = stack.api_token if stack is not None else os.environ.get(API_TOKEN)  # --url: the user's service's
    client = ServiceClient(url, submit_timeout_s=settings.thresholds.submit_timeout_s, urls=urls, token=token)
    ctx = ScenarioContext(
        client=client, settings=settings, environment=env, stack=stack or StartedByHand(client),
        timeout_s=options.timeout_s, job_args=options.job_args,
    )  # fmt: skip
    run_result = _run_record(settings, env, stamp)
    if settings.calibrate and stack is not None:
        run_result.ceilings = await _calibrate(stack, console)
    results: list[ScenarioResult] = []
    try:
        with _stopped_by_signals(ctx, run_result, console):
            await _run_each(ctx, specs, run_result, results, Written(folder, stamp), console)
    except BaseException:
        run_result.interrupted = True  # keep what was measured, then let the error through
        if results:
            files.write_run(folder, analyse(run_result, results), results)
        raise
    finally:
        await client.aclose()
    run_result.interrupted = ctx.stop.is_set()
    analysed = analyse(run_result, results)
    files.write_run(folder, analysed, results)
    return folder, analysed


async def _calibrate(stack: Stack, console: Console) -> HostCeilings:
    """--calibrate: this host's ceilings first; one that cannot be measured is said, and the run goes on."""
    with console.status("measuring this host's ceilings (every implementation paused)…"):
        measured = await asyncio.to_thread(ceilings.measure, stack)
    for line in content.ceiling_lines(measured):
        console.print(f"  {line}", markup=False)
    return measured


def _run_record(settings: RunSettings, env: RunEnvironment, stamp: str) -> RunResult:
    """The run's own record: what was asked, where and with what it ran; its scenario files are added as written."""
    return RunResult(
        timestamp=stamp,
        settings=settings,
        environment=env,
        scenario_files=[],
        taskbench=provenance.version(),
        git_revision=provenance.git_revision(),
        command=provenance.command_line(),
        described={
            label: provenance.describe(label, settings)
            for label in settings.implementations
            if implementations.known(label)
        },
    )


@contextlib.contextmanager
def _stopped_by_signals(ctx: ScenarioContext, run_result: RunResult, console: Console) -> Iterator[None]:
    """Ctrl-C or SIGTERM (a CI's timeout, `kill`): finish this scenario early and keep what was measured; a second
    one stops at once."""
    loop = asyncio.get_running_loop()

    def interrupt(signum: int) -> None:
        if ctx.stop.is_set():  # a second Ctrl-C: stop now
            raise KeyboardInterrupt
        name = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
        console.print(f"[yellow]{name}: finishing this scenario early and writing what was measured…[/]")
        run_result.stopped_by = signum
        ctx.stop.set()

    with contextlib.suppress(NotImplementedError):
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, interrupt, signum)
    try:
        yield
    finally:
        with contextlib.suppress(NotImplementedError):
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)


@dataclass(frozen=True)
class Written:
    """Where each scenario's file goes as soon as it is measured."""

    folder: Path
    stamp: str


async def _run_each(
    ctx: ScenarioContext,
    specs: list[ScenarioSpec],
    run_result: RunResult,
    results: list[ScenarioResult],
    written: Written,
    console: Console,
) -> None:
    """Every scenario in the plan's order (a search's steps in its place), with the progress bar."""
    settings, stack = ctx.settings, ctx.stack
    estimates = [
        plan.estimate_s(s, settings.concurrency, ctx.environment.machine.cpu_count or 1, settings) for s in specs
    ]
    with progress.shown(console, sum(estimates)) as shown:

        async def run_one(spec: ScenarioSpec) -> ScenarioSummary | None:
            run_of = f" (run {spec.repeat + 1} of {settings.repeat})" if settings.repeat > 1 else ""
            on_progress = shown.scenario(spec.label + run_of, spec.jobs)
            result = await _run_or_give_up(ctx, spec, on_progress)
            run_result.unavailable = list(stack.unavailable.values())
            if result is None:
                shown.scenario_done(spec.label + run_of, f"not run: {_why_not(stack, spec)}")
                return None
            results.append(result)
            run_result.scenario_files.append(files.write_scenario_data(written.folder, written.stamp, result))
            summary = analysis.summarise(result)
            shown.scenario_done(spec.label + run_of, _outcome(summary))
            return summary

        run_result.unavailable = list(stack.unavailable.values())
        for spec, estimate in zip(specs, estimates, strict=True):
            if ctx.stop.is_set():
                break
            if spec.implementation in stack.unavailable:
                shown.advance(estimate)  # a finding already: the report says which part failed and why
                continue
            if settings.load is not None and (settings.load.auto or settings.load.target_rate):
                await _search(spec, settings.load, ctx, run_one)
            else:
                await run_one(spec)
            shown.advance(estimate)
