"""`taskbench run`: the benchmark; its flags (also from `TASKBENCH_RUN_<OPTION>`), checked before anything starts."""

from __future__ import annotations

import argparse
import difflib
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from taskbench import capacity, faults
from taskbench.analysis.models import AnalysedRun
from taskbench.argtypes import bounded
from taskbench.cli.options import (
    DEFAULT_IMPLEMENTATIONS,
    GATE_FAILED,
    IMPL_HELP,
    add_app_flag,
    add_app_labels,
    add_environment_flags,
    add_hosts_flags,
    add_server_flags,
    api_options,
    broker_from,
    check_job_folder,
    container_limits,
    hosts_from,
    no_pickle_on_theirs,
    plugin_options,
    postgres_from,
    postgres_setting,
    project_pins_from,
    read_apps,
    redis_fits,
    worker_flags,
)
from taskbench.cli.target import TARGET_ONLY, add_target_flags, cmd_target
from taskbench.cli.types import (
    LOAD_FOR_S,
    MAX_DURATION_S,
    MAX_RATE,
    MIN_FOR_S,
    Commands,
    Parser,
    choices_list,
    concurrencies,
    factory_source,
    implementation_labels,
    job_counts,
    json_source,
    rates,
    seconds,
)
from taskbench.errors import UsageError
from taskbench.record.results import ApiOptions, ContainerLimits, LoadOptions, PluginOptions, RunSettings, Thresholds
from taskbench.report import content, digest, step_summary, terminal
from taskbench.run import plan
from taskbench.run.run import RunOptions, run
from taskbench.user_job import job_check
from taskbench_wire.enums import MIDDLEWARES
from taskbench_wire.urls import redacted as _redact

ENVIRONMENT_PREFIX = "TASKBENCH_RUN_"  # TASKBENCH_RUN_FAIL_ON=failed is --fail-on failed (flags win)


def defaults_from_environment(command: argparse.ArgumentParser) -> None:
    """Every `run` option also from `TASKBENCH_RUN_<OPTION>`, named after its flag (`--fail-on` →
    `TASKBENCH_RUN_FAIL_ON`, `--json` → `TASKBENCH_RUN_JSON`; a flag given wins), as CI systems pass settings; a
    prefix of its own, so the service's TASKBENCH_* variables never reach the harness's flags. A variable that
    names no option, or a value that does not parse, is one line and exit 2."""
    options = {name: action for action in command._actions if (name := variable(action))}
    for name, value in sorted(os.environ.items()):
        if not name.startswith(ENVIRONMENT_PREFIX):
            continue
        action = options.get(name)
        if action is None:
            near = difflib.get_close_matches(name, options, n=1)
            raise UsageError(f"{name}: no `run` option is named so" + (f" (did you mean {near[0]}?)" if near else ""))
        action.default = _environment_default(name, value, action)


def variable(action: argparse.Action) -> str | None:
    """The environment variable of a `run` option: its long flag, upper-cased (None for --help)."""
    flags = [flag for flag in action.option_strings if flag.startswith("--")]
    if not flags or isinstance(action, argparse._HelpAction):
        return None
    return ENVIRONMENT_PREFIX + flags[0][2:].replace("-", "_").upper()


def _environment_default(name: str, value: str, action: argparse.Action) -> object:
    if isinstance(action, argparse._StoreTrueAction):
        word = value.strip().lower()
        if word not in TRUE_WORDS + FALSE_WORDS:
            raise UsageError(f"{name}={value!r}: give one of {', '.join(TRUE_WORDS + FALSE_WORDS)}")
        return word in TRUE_WORDS
    try:
        parsed = action.type(value) if callable(action.type) else value
    except (argparse.ArgumentTypeError, ValueError) as exc:
        raise UsageError(f"{name}={value!r}: {exc}") from None
    if action.choices is not None and parsed not in action.choices:
        raise UsageError(f"{name}={value!r}: choose from {', '.join(map(str, action.choices))}")
    return [parsed] if isinstance(action, argparse._AppendAction) else parsed


TRUE_WORDS, FALSE_WORDS = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def _load(args: argparse.Namespace) -> LoadOptions | None:
    """--rate, --for, --arrivals, --target-rate and --target-p95 as the run's LoadOptions; None for bursts."""
    if args.rate is None and args.target_rate is None:
        if args.for_s is not None:
            raise UsageError("--for is the length of a --rate step: give --rate (or --target-rate) too")
        return None
    if args.rate is not None and args.target_rate is not None:
        raise UsageError("--rate and --target-rate: give one (--target-rate searches the concurrency at that rate)")
    if args.faults:
        raise UsageError("--faults run on bursts: drop --faults, or --rate/--target-rate")
    if args.workloads == [capacity.UNEVEN]:
        raise UsageError("--workloads uneven is a burst's shape (its first job long): drop --rate/--target-rate")
    for_s = args.for_s if args.for_s is not None else LOAD_FOR_S
    if for_s < MIN_FOR_S:
        raise UsageError(f"--for {for_s:g}: a step needs at least {MIN_FOR_S:g} s (a warm-up, then its steady part)")
    if args.target_rate is not None and len(args.concurrency) > 1:
        raise UsageError("--target-rate searches the concurrency itself: give one --concurrency (its first guess)")
    if args.url and (args.target_rate is not None):
        raise UsageError("--target-rate restarts the workers at each concurrency: drop --url")
    return LoadOptions(
        rates=args.rate or [],
        auto=args.rate == [],
        for_s=for_s,
        arrivals=args.arrivals,
        queue_p95_s=args.queue_p95,
        target_rate=args.target_rate,
    )


def cmd_run(args: argparse.Namespace, console: Console) -> int:
    given = given_flags(args)
    if any(dest in given for dest in TARGET_ONLY):  # your own deployment (taskbench.target), not our stack
        return cmd_target(args, given, console)
    _refuse_what_a_running_service_cannot_do(args)
    checked = _check(args, console)
    folder, result = run(_run_options(args, checked), Console(quiet=True) if args.quiet else console)
    _print_answer(folder, result, console)
    code = _exit_code(result, args.fail_on, console)
    step_summary.append_run(result, folder, code)  # under GitHub Actions: the job's summary page
    if args.json_out:
        text = digest.of(result, folder, code).model_dump_json(indent=2)
        if args.json_out == "-":
            sys.stdout.write(text + "\n")
        else:
            Path(args.json_out).write_text(text + "\n")
    return code


def _refuse_what_a_running_service_cannot_do(args: argparse.Namespace) -> None:
    """--url measures a service someone else started: nothing that sets up or strikes the stack goes with it."""
    for fault in args.faults:
        flag = faults.get(fault).restarts_server
        if flag and getattr(args, flag[2:].replace("-", "_")):
            raise UsageError(f"--faults {fault} strikes the private server taskbench starts: drop {flag} or the fault")
    if not args.url:
        return
    if len(args.concurrency) > 1:
        raise UsageError("a --concurrency sweep restarts the workers: drop --url, or give one --concurrency")
    if args.faults:
        raise UsageError("--faults needs a stack that taskbench started itself: drop --url or --faults")
    if args.middleware != ["none"]:
        raise UsageError("--middleware needs a stack that taskbench started itself: drop --url or --middleware")
    if args.apps:
        raise UsageError("--app runs your app in a stack that taskbench starts: drop --url")
    if not api_options(args).is_default or plugin_options(args):
        raise UsageError("--api-workers, --graceful-timeout and each queue's worker flags set up the stack: drop --url")
    if args.job:
        raise UsageError("--job needs a stack that taskbench started itself (it fixes the function): drop --url")
    if args.calibrate:
        raise UsageError("--calibrate measures the servers taskbench starts itself: drop --url")


@dataclass(frozen=True)
class Checked:
    """What the flags mean once checked against this machine, before anything starts (each mistake: one line)."""

    api: ApiOptions
    options: dict[str, PluginOptions]
    user_jobs: list[job_check.UserJob]
    broker: str
    broker_url: str | None
    postgres_url: str | None
    hosts: int
    link_delay_ms: float | None
    worker_limits: ContainerLimits
    api_limits: ContainerLimits


def _check(args: argparse.Namespace, console: Console) -> Checked:
    add_app_labels(args)  # --app celery=PATH: celery+app beside what --implementations names
    everything = set(args.faults) == set(faults.FAULTS)  # --faults all: what this machine cannot run is left out
    hosts, link_delay_ms = hosts_from(args)
    partitions = [f for f in args.faults if faults.get(f).needs_hosts]
    if partitions and not hosts:
        if not everything:
            raise UsageError(f"--faults {','.join(partitions)} cuts a host off: add --hosts N (as root)")
        args.faults = [f for f in args.faults if f not in partitions]  # `all`: the faults this stack has
        console.print(f"[yellow]{' and '.join(partitions)} left out[/]: they need --hosts N")
    worker_limits, api_limits = container_limits(args, args.faults, everything, console)
    user_jobs = _check_jobs(args)  # before anything starts: a job that cannot run is exit 2, here
    broker, broker_url = broker_from(args)
    postgres_url = postgres_from(args, console)
    no_pickle_on_theirs(args, console)
    redis_fits(args)
    if args.reference is not None and args.reference not in args.implementations:
        raise UsageError(
            f"--reference {args.reference}: not in --implementations; name one of {', '.join(args.implementations)}"
        )
    options = plugin_options(args)
    read_apps(args, options, console)  # before anything starts: an app that cannot run is exit 2, here
    return Checked(
        api=api_options(args), options=options, user_jobs=user_jobs, broker=broker, broker_url=broker_url,
        postgres_url=postgres_url, hosts=hosts, link_delay_ms=link_delay_ms, worker_limits=worker_limits,
        api_limits=api_limits,
    )  # fmt: skip


def _settings(args: argparse.Namespace, checked: Checked) -> RunSettings:
    duration = (
        args.duration if args.duration is not None else (plan.QUICK_DURATION_S if args.quick else plan.SPEC_DURATION_S)
    )
    user_jobs = checked.user_jobs
    return RunSettings(
        implementations=args.implementations,
        workloads=args.workloads if args.workloads is not None else ([] if user_jobs else ["sleep"]),
        jobs=args.jobs,
        noop_jobs=args.noop_jobs or list(plan.QUICK_NOOP_JOBS if args.quick else plan.NOOP_JOBS),
        duration_s=duration,
        memory_mb=args.memory_mb,
        concurrency=args.concurrency[0],
        concurrency_sweep=args.concurrency if len(args.concurrency) > 1 else [],
        reference=args.reference,
        faults=args.faults,
        url=args.url,
        redis="embedded" if not args.redis_url else _redact(args.redis_url),
        broker=checked.broker,
        amqp=None if checked.broker != "amqp" else _redact(checked.broker_url) if checked.broker_url else "embedded",
        postgres=postgres_setting(args.implementations, checked.postgres_url),
        thresholds=Thresholds(
            memory_limit_mb=args.memory_limit_mb,
            responsive_p99_s=args.responsive_p99 or plan.responsive_limit_s(duration),
        ),
        quick=args.quick,
        pause_neighbours=not args.keep_neighbours,
        calibrate=args.calibrate,
        repeat=args.repeat or (plan.QUICK_REPEAT if args.quick else plan.SPEC_REPEAT),
        user_jobs=[job.profile for job in user_jobs],
        job_timeout_s=(args.job_timeout or job_check.default_timeout_s(user_jobs)) if user_jobs else None,
        middleware=args.middleware,
        api=checked.api,
        options=checked.options,
        worker_limits=checked.worker_limits,
        api_limits=checked.api_limits,
        with_packages=args.with_packages,
        requirements_file=str(args.requirements) if args.requirements else None,
        project_pins=list(project_pins_from(args)),
        load=_load(args),
        hosts=checked.hosts,
        link_delay_ms=checked.link_delay_ms,
    )


def _run_options(args: argparse.Namespace, checked: Checked) -> RunOptions:
    return RunOptions(
        settings=_settings(args, checked),
        output=args.output,
        fault_jobs=args.fault_jobs,
        timeout_s=args.timeout,
        redis_url=args.redis_url,
        broker_url=checked.broker_url,
        postgres_url=checked.postgres_url,
        job_args={job.profile.path: job.args for job in checked.user_jobs},
        rebuild_envs=args.rebuild_envs,
    )


def _exit_code(result: AnalysedRun, fail_on: str | None, console: Console) -> int:
    if result.stopped_by is not None:  # cut short by a signal: the shell's convention, 128 + its number
        console.print("[yellow]interrupted[/]: partial results only")
        return 128 + result.stopped_by
    if result.interrupted:
        return 130
    gated = {"failed": ("failed",), "borderline": ("failed", "borderline")}.get(fail_on or "", ())
    caught = [s for s in result.summaries if s.status in gated]
    for s in caught:
        console.print(f"[red]--fail-on {fail_on}[/]: {s.label} {s.status}", markup=True)
    for u in result.unavailable if gated else []:  # an implementation that could not run did not hold either
        console.print(f"[red]--fail-on {fail_on}[/]: {u.implementation} could not run ({u.part}: {u.reason})")
    return GATE_FAILED if caught or (gated and result.unavailable) else 0


def _check_jobs(args: argparse.Namespace) -> list[job_check.UserJob]:
    paths: list[str] = list(dict.fromkeys(args.job))
    if not paths:
        if args.job_sources or args.job_timeout:
            raise UsageError("--job-args, --job-args-from and --job-timeout go with --job package.module:function")
        return []
    sources: list[tuple[str | None, str | None]] = args.job_sources  # in command-line order
    if len(sources) > 1 and len(sources) != len(paths):
        raise UsageError(f"{len(sources)} --job-args/--job-args-from for {len(paths)} --job: give one each, or one")
    pairs = sources * len(paths) if len(sources) == 1 else sources or [(None, None)] * len(paths)
    check_job_folder(Path.cwd())
    checked = []
    for index, (path, (args_json, args_from)) in enumerate(zip(paths, pairs, strict=True)):
        arguments, source = job_check.job_args(args_json, args_from)
        checked.append(job_check.check(path, index, arguments, source, args.job_timeout))
    return checked


def _print_answer(folder: Path, result: AnalysedRun, console: Console) -> None:
    console.print()
    terminal.show(console, content.spec_table(result.summaries), "Results (the spec's table)")
    if any(s.rate for s in result.summaries):
        terminal.show(console, content.rate_table(result.summaries), "Sustained load")
    if result.verdict.decisions:
        terminal.show(console, content.decision_table(result), "Decision")
    if result.verdict.answers:
        console.print(f"\n[bold]Answer, against {result.title(result.verdict.reference)}[/]")
        for answer in result.verdict.answers:
            console.print(f"  • {answer.sentence}", markup=False)
    console.print("\n[bold]Verdict[/]")
    for line in result.verdict.lines:
        console.print(f"  • {line}", markup=False)
    heavy = [s.label for s in result.summaries if s.cpu_shares is not None and s.cpu_shares.harness_over_limit]
    if heavy:
        console.print(
            f"\n[yellow]warning[/]: the harness used more than a tenth of the machine in {', '.join(heavy)}: "
            "it competed with the service it measured (Resources, in the report)"
        )
    console.print(f"\nreports: {folder}")
    html = folder / "report.html"
    if html.exists():
        console.print(f"open {html} in a browser")


def given_flags(args: argparse.Namespace) -> dict[str, str]:
    """The `run` options whose value is not their default (a TASKBENCH_RUN_* value is a default): dest → flag."""
    commands = Parser(prog="taskbench").add_subparsers(parser_class=Parser)
    add_parser(commands)
    actions = commands.choices["run"]._actions
    return {
        a.dest: a.option_strings[0]
        for a in actions
        if a.option_strings
        and not isinstance(a, argparse._HelpAction)
        and getattr(args, a.dest, a.default) != a.default
    }


def add_parser(commands: Commands) -> None:
    run = commands.add_parser("run", help="run the benchmark and write reports into benchmark_results/")
    _add_scenario_flags(run)
    _add_job_flags(run)
    _add_stack_flags(run)
    _add_judging_flags(run)
    _add_load_flags(run)
    _add_gate_flags(run)
    add_target_flags(run)
    add_environment_flags(run)
    defaults_from_environment(run)


def _add_scenario_flags(run: argparse.ArgumentParser) -> None:
    """What each scenario is: its jobs, implementations, workloads and faults."""
    run.add_argument("--quick", action="store_true", help=f"{plan.QUICK_DURATION_S} s jobs: an answer in minutes")
    run.add_argument("--jobs", type=job_counts, default=list(plan.SPEC_JOBS), help="job counts, e.g. 10,50,100")
    run.add_argument(
        "--noop-jobs", type=job_counts, help="job counts of the noop workload (default 1000,10000; --quick: 1000)"
    )
    run.add_argument("--duration", type=bounded(float, 0, MAX_DURATION_S), help="seconds per job (default 30)")
    run.add_argument(
        "--concurrency",
        type=concurrencies,
        default=[4],
        help="each queue's worker concurrency (docs/queues.md); a list (4,16,40) sweeps it: every worker-based "
        "scenario at each value, and the verdict names the smallest that drains as fast as BackgroundTasks",
    )
    run.add_argument("--implementations", type=implementation_labels, default=DEFAULT_IMPLEMENTATIONS, help=IMPL_HELP)
    run.add_argument(
        "--workloads",
        type=choices_list(plan.WORKLOADS, allow_none=True),
        default=None,
        help=f"sleep (default; none with --job), all, or a list of: {', '.join(plan.WORKLOADS)}",
    )
    run.add_argument(
        "--faults",
        type=choices_list(faults.FAULTS, allow_none=True),
        default=[],
        help=f"none (default), all, or a list of: {', '.join(faults.FAULTS)}",
    )


def _add_job_flags(run: argparse.ArgumentParser) -> None:
    """The user's own job and app."""
    run.add_argument(
        "--job",
        action="append",
        default=[],
        metavar="PACKAGE.MODULE:FUNCTION",
        help="your own job function, run as a workload by every implementation (repeatable)",
    )
    run.add_argument(
        "--job-args",
        action="append",
        dest="job_sources",
        type=json_source,
        default=[],
        metavar="JSON",
        help="keyword arguments of --job: one object, or a list of objects to cycle through (one per --job in "
        "command-line order, or one for all)",
    )
    run.add_argument(
        "--job-args-from",
        action="append",
        dest="job_sources",
        type=factory_source,
        default=[],
        metavar="PACKAGE.MODULE:FACTORY",
        help="a callable returning the keyword arguments of job number i (one per --job, or one for all)",
    )
    run.add_argument(
        "--job-timeout",
        type=bounded(float, 0.01, 86_400),
        help="seconds after which a --job run counts as failed (default: 10 × its trial call, 120 × its CPU time "
        "for a GIL shared by 40 threads, at least 5 s)",
    )
    add_app_flag(run)


def _add_stack_flags(run: argparse.ArgumentParser) -> None:
    """The stack the scenarios run on, and where the reports go."""
    run.add_argument("--fault-jobs", type=bounded(int, 1, 10_000), default=20, help="jobs in each fault scenario")
    run.add_argument(
        "--middleware",
        type=choices_list(MIDDLEWARES, all_word=None),
        default=["none"],
        help="none (default), base-http (a do-nothing BaseHTTPMiddleware), or none,base-http: each scenario under both",
    )
    worker_flags(run, "run")
    run.add_argument("--memory-mb", type=bounded(int, 1, 2048), default=50, help="held by each `memory` job")
    run.add_argument("--timeout", type=bounded(float, 1, 86_400), help="deadline per scenario, seconds")
    run.add_argument("--output", type=Path, default=Path("benchmark_results"), help="where each run's folder goes")
    run.add_argument("--url", help="measure an already-running service (the spec's manual flow)")
    run.add_argument(
        "--keep-neighbours",
        action="store_true",
        help="leave the other implementations' APIs and workers running while one is measured (by default they are "
        "paused through each scenario without a fault, so their polling costs the measured one no CPU)",
    )
    run.add_argument(
        "--calibrate",
        action="store_true",
        help="first measure this host's ceilings (what its Redis serves, with redis-benchmark where installed; a "
        "PostgreSQL queue's dequeues a second, with pgbench), every implementation paused: reports show each "
        "queue's no-op rate as a share of its broker's (~5-10 s; taskbench's own servers only)",
    )
    add_server_flags(run)
    add_hosts_flags(run)


def _add_judging_flags(run: argparse.ArgumentParser) -> None:
    """The limits a scenario is judged by, and how often it runs."""
    run.add_argument(
        "--memory-limit-mb",
        type=bounded(float, 1, 1e7),
        default=Thresholds().memory_limit_mb,
        help="the peak memory (MiB) a scenario may reach before it fails (default %(default)s)",
    )
    run.add_argument(
        "--responsive-p99",
        type=bounded(float, 0.001, 60),
        help="probe p99 limit in seconds (default: half a job, within 0.25-0.5 s; --quick: 0.25)",
    )
    run.add_argument(
        "--repeat",
        type=bounded(int, 1, 20),
        help=f"runs of every scenario, interleaved; figures are medians with their spread "
        f"(default {plan.SPEC_REPEAT}; --quick: {plan.QUICK_REPEAT})",
    )
    run.add_argument("--reference", metavar="NAME", help=REFERENCE_HELP)


REFERENCE_HELP = (
    "the implementation the answer states every other against: time to drain, p95, memory and CPU per job as "
    "ratios (one of --implementations; default fastapi, BackgroundTasks, else the first)"
)


def _add_load_flags(run: argparse.ArgumentParser) -> None:
    """Sustained load instead of bursts."""
    load = run.add_argument_group(
        "sustained load", "open-loop steps at a fixed offered rate instead of bursts (docs/running.md: Sustained load)"
    )
    load.add_argument(
        "--rate",
        type=rates,
        help="jobs per second, one step each (4,16), or auto: search each implementation's highest sustained rate",
    )
    load.add_argument(
        "--for", dest="for_s", type=seconds, help=f"each step's length: 20, 90s, 30m (default {LOAD_FOR_S:g} s)"
    )
    load.add_argument("--arrivals", choices=("uniform", "poisson"), default="uniform", help="the schedule's shape")
    load.add_argument(
        "--target-rate",
        type=bounded(float, 0.01, MAX_RATE),
        help="the smallest worker concurrency that sustains this rate, per implementation (a capacity plan)",
    )
    load.add_argument(
        "--target-p95",
        dest="queue_p95",
        type=seconds,
        default=LoadOptions().queue_p95_s,
        help="a sustained step's queue time p95, from each job's due time (default %(default)s s)",
    )


def _add_gate_flags(run: argparse.ArgumentParser) -> None:
    """What CI stops on."""
    gate = run.add_argument_group("in CI", "exit codes: 0 done, 2 a usage mistake, 3 the gate failed, 1 the stack")
    gate.add_argument(
        "--fail-on",
        choices=("failed", "borderline"),
        help=f"exit {GATE_FAILED} when a scenario failed (or, with borderline, came near a limit or failed)",
    )
    gate.add_argument(
        "--json",
        dest="json_out",
        metavar="PATH",
        help="the run's digest as JSON to PATH (- : stdout, the rest to stderr)",
    )
    gate.add_argument(
        "--quiet",
        action="store_true",
        help="no plan and no progress while it runs: the tables and the answer at the end",
    )
