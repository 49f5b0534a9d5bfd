"""`taskbench run --target URL --scenario FILE`: the flags and checks of measuring the user's own deployment."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from taskbench.argtypes import bounded
from taskbench.cli.types import LOAD_FOR_S, MIN_FOR_S, fault_command, probe_path, target_url
from taskbench.errors import UsageError
from taskbench.target.target import (
    DEFAULT_DEADLINE_S,
    DEFAULT_POLL_CONCURRENCY,
    DEFAULT_POLL_INTERVAL_S,
    FaultCommand,
    TargetOptions,
)
from taskbench.target.target_report import run as run_target
from taskbench.target.target_script import load as load_scenario

TARGET_ONLY = ("target", "scenario", "probe", "fault_cmds", "poll_interval", "poll_concurrency")


WITH_TARGET = {*TARGET_ONLY, "jobs", "rate", "for_s", "arrivals", "output", "timeout"}


def add_target_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "your deployment",
        "measure a deployment you run, through your own scenario file, instead of taskbench's stack "
        "(docs/your-deployment.md); with --jobs N (one burst) or --rate R --for S, --output and --timeout",
    )
    group.add_argument(
        "--target",
        type=target_url,
        metavar="URL",
        help="your running deployment's base URL: jobs are submitted and followed through --scenario's functions; "
        "nothing there is started, purged, restarted or sampled (--timeout: how long after the last submission "
        f"its jobs may take, default {DEFAULT_DEADLINE_S:g} s)",
    )
    group.add_argument(
        "--scenario",
        type=Path,
        metavar="FILE",
        help="with --target: a Python file defining `async def submit(client) -> str` (the job's id) and `async def "
        "status(client, job_id) -> str` (queued, running, done or failed), client an httpx.AsyncClient on the "
        "target; it runs in taskbench's process, as a locustfile does",
    )
    group.add_argument(
        "--probe", type=probe_path, metavar="PATH", help="with --target: GET this path 10 times a second (/health)"
    )
    group.add_argument(
        "--fault-cmd",
        dest="fault_cmds",
        action="append",
        type=fault_command,
        default=[],
        metavar="NAME=COMMAND",
        help="with --target: a shell command run once when half the accepted jobs are running or finished, its "
        "times, exit code and output recorded (repeatable): worker-crash='kubectl delete pod -l app=worker'",
    )
    group.add_argument(
        "--poll-interval",
        type=bounded(float, 0.01, 60),
        default=DEFAULT_POLL_INTERVAL_S,
        metavar="SECONDS",
        help="with --target: seconds between two status calls of one job, the precision of every job time",
    )
    group.add_argument(
        "--poll-concurrency",
        type=bounded(int, 1, 1000),
        default=DEFAULT_POLL_CONCURRENCY,
        metavar="N",
        help="with --target: status calls in flight at most",
    )


def cmd_target(args: argparse.Namespace, given: dict[str, str], console: Console) -> int:
    """--target: its flags checked (one line and exit 2 for any mistake), the scenario file loaded, then the run."""
    if args.target is None:
        flags = [flag for dest, flag in given.items() if dest in TARGET_ONLY]
        raise UsageError(f"{', '.join(flags)} measure your own deployment: add --target URL")
    if args.scenario is None:
        raise UsageError(
            "--target needs --scenario FILE: a Python file defining async submit(client) and status(client, job_id)"
        )
    stack_only = [flag for dest, flag in given.items() if dest not in WITH_TARGET]
    if stack_only:
        one = len(stack_only) == 1
        named = stack_only[0] if one else f"{', '.join(stack_only[:-1])} and {stack_only[-1]}"
        raise UsageError(
            f"--target measures your deployment as it runs: {named} {'is' if one else 'are'} for taskbench's own "
            f"stack; drop {'it' if one else 'them'}"
        )
    names = [name for name, _ in args.fault_cmds]
    if len(set(names)) != len(names):
        raise UsageError(f"--fault-cmd: each NAME once ({', '.join(sorted({n for n in names if names.count(n) > 1}))})")
    for_s = None
    if args.rate is not None:
        if "jobs" in given:
            raise UsageError("--jobs and --rate: give one (a burst, or a sustained step)")
        if len(args.rate) != 1:
            raise UsageError("--target runs one sustained step: give one rate (--rate R), not a list or auto")
        for_s = args.for_s if args.for_s is not None else LOAD_FOR_S
        if for_s < MIN_FOR_S:
            raise UsageError(
                f"--for {for_s:g}: a step needs at least {MIN_FOR_S:g} s (a warm-up, then its steady part)"
            )
    else:
        if args.for_s is not None or "arrivals" in given:
            raise UsageError("--for and --arrivals shape a --rate step: give --rate R too")
        if "jobs" not in given or len(args.jobs) != 1:
            raise UsageError("--target runs one burst (--jobs N, one count) or one sustained step (--rate R --for S)")
    options = TargetOptions(
        target=args.target,
        scenario=load_scenario(args.scenario),
        jobs=None if args.rate is not None else args.jobs[0],
        rate=args.rate[0] if args.rate is not None else None,
        for_s=for_s,
        arrivals=args.arrivals,
        probe=args.probe,
        fault_commands=[FaultCommand(name=name, command=command) for name, command in args.fault_cmds],
        deadline_s=args.timeout if args.timeout is not None else DEFAULT_DEADLINE_S,
        poll_interval_s=args.poll_interval,
        poll_concurrency=args.poll_concurrency,
    )
    _, record = run_target(options, args.output, console)
    return 128 + record.stopped_by if record.stopped_by is not None else 0
