"""Performance figures of the service and the harness (issue 6), each against its goal.

One stack of the spec's two (private Redis; FastAPI's API; Celery's API and worker at concurrency 4, each
implementation's API in its own environment) serves every section but § 7 and § 11, which measure every queue on a
stack of them all, started after it. Every ratio is measured side by side in the same run: the machine is small
and shared, so absolute times say little.

    python -m benchmarks.perf [--section N ...] [--quick | --smoke] [--output benchmarks/results.json]

`--smoke` runs each section once at the smallest sizes that still take it through its code, all on one stack of
the spec's two (§ 7 and § 11 then measure Celery alone): what tests/test_perf_smoke.py runs so that the suite keeps
working. Its figures mean nothing, and its exit code ignores the goals. Exit codes: 0, 1 when a goal is missed,
2 when a section raised (the others still run; its traceback is in the JSON's `errors`).

The "plain Celery" baselines run in a process of their own in Celery's environment (`benchmarks.perf.publish`),
which imports `taskbench_service.implementations.celery` with the stack's Redis in its environment and calls
`apply_async` in a loop: that is what one ordinary process reaches without HTTP, records or an event loop in
between.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path

from benchmarks.perf.bench import CONCURRENCY, REPO, Bench, Figure, console, print_table
from benchmarks.perf.sections import SECTIONS
from taskbench import faults, implementations
from taskbench.load.client import ServiceClient
from taskbench.record.results import RunEnvironment, ScenarioSpec
from taskbench.run import provenance
from taskbench.stack.stack import Stack, StackConfig

# The sections that measure every queue: on a stack of them all. The others measure the spec's two, on a stack of
# those alone, so that no other queue's worker polls beside them.
EVERY_QUEUE = frozenset({7, 11})


def stacks_for(sections: list[int], profile: str) -> list[tuple[tuple[str, ...], list[int]]]:
    """Which stack (its implementations) runs which of `sections`, in order. The smoke runs every section on the
    spec's two: § 7 and § 11 then measure Celery alone."""
    if profile == "smoke":
        return [(implementations.DEFAULT, sections)]
    spec = [n for n in sections if n not in EVERY_QUEUE]
    every = [n for n in sections if n in EVERY_QUEUE]
    groups = ((implementations.DEFAULT, spec), (tuple(implementations.REGISTRY), every))
    return [(names, numbers) for names, numbers in groups if numbers]


async def run_sections(
    stack: Stack, sections: list[int], profile: str, workdir: Path, errors: dict[int, str]
) -> list[Figure]:
    """Each section in turn; one that raises is reported (its traceback in `errors`) and the others still run."""
    client = ServiceClient(stack.url, urls=stack.urls(), token=stack.api_token)  # each implementation's own API
    bench = Bench(stack=stack, client=client, profile=profile, workdir=workdir)
    try:
        done: set[Callable[[Bench], Awaitable[None]]] = set()
        for number in sections:
            section = SECTIONS[number]
            if section in done:
                continue
            done.add(section)
            console.rule(f"section {number}: {(section.__doc__ or '').splitlines()[0]}")
            started = time.perf_counter()
            try:
                await section(bench)
            except Exception:
                errors[number] = traceback.format_exc()
                console.print(f"[red]section {number} failed:[/]\n{errors[number]}")
            console.print(f"  [dim]{time.perf_counter() - started:.1f} s[/]")
    finally:
        await client.aclose()
    return bench.figures


def described(stack: Stack, so_far: RunEnvironment | None) -> RunEnvironment:
    """The servers' and every environment's packages, as a run's reports record them, added to those of an earlier
    stack of the same run."""
    env = provenance.environment(stack.redis_url, stack.amqp_url, stack.postgres_url, stack.environments)
    if so_far is None:
        return env
    return so_far.model_copy(
        update={"versions": so_far.versions | env.versions, "environments": so_far.environments | env.environments}
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--section", type=int, action="append", choices=sorted(SECTIONS), help="repeatable")
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="fewer rounds and smaller sizes")
    size.add_argument("--smoke", action="store_true", help="each section once at tiny sizes: the code runs (~40 s)")
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks" / "results.json")
    args = parser.parse_args(argv)
    sections = sorted(set(args.section or SECTIONS))
    profile = "smoke" if args.smoke else "quick" if args.quick else "full"
    figures: list[Figure] = []
    errors: dict[int, str] = {}
    env: RunEnvironment | None = None
    started = time.perf_counter()
    # The workers as every scenario wants them (redelivery timeout for short jobs) from the start.
    spec = ScenarioSpec(implementation="celery", workload="sleep", jobs=1, duration_s=0)
    state = faults.of(spec).state(spec)
    with tempfile.TemporaryDirectory(prefix="taskbench-perf-") as tmp:
        workdir = Path(tmp)
        for i, (names, numbers) in enumerate(stacks_for(sections, profile)):
            config = StackConfig(
                workdir=workdir / f"stack-{i}", concurrency=CONCURRENCY, implementations=names, state=state
            )
            with console.status(f"starting Redis, the API servers and the workers of {', '.join(names)}…"):
                stack = Stack(config)
                stack.__enter__()
            try:
                env = described(stack, env)
                figures += asyncio.run(run_sections(stack, numbers, profile, workdir, errors))
            finally:
                stack.stop()
    elapsed = time.perf_counter() - started
    print_table(figures, elapsed)
    output = {
        "generated_at": time.strftime("%Y-%m-%d %H:%M:%S"),
        "quick": args.quick,
        "profile": profile,
        "sections": sections,
        "elapsed_s": elapsed,
        "environment": env.model_dump() if env is not None else {},
        "errors": {str(number): text for number, text in errors.items()},  # the sections that raised
        "figures": [f.as_dict() for f in figures],
    }
    args.output.write_text(json.dumps(output, indent=1, default=str))
    console.print(f"written: {args.output}")
    for number in errors:
        console.print(f"[red]section {number} raised[/] (its traceback is above and in the JSON's errors)")
    if errors:
        return 2
    return 0 if args.smoke or all(f.met is not False for f in figures) else 1


if __name__ == "__main__":
    sys.exit(main())
