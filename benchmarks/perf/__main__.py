"""Performance figures of the service and the harness (issue 6), each against its goal.

One stack (private Redis, API, Celery worker at concurrency 4) serves every section, and every ratio is
measured side by side in the same run: the machine is small and shared, so absolute times say little.

    python -m benchmarks.perf [--section N ...] [--quick] [--output benchmarks/results.json]

The "plain Celery" baselines run in a subprocess of this script (`--publish`, in Celery's environment), which
imports `taskbench_service.implementations.celery` with the stack's Redis in its environment and calls
`apply_async` in a loop: that is what
one ordinary process reaches without HTTP, records or an event loop in between.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from benchmarks.perf.bench import CONCURRENCY, REPO, Bench, Figure, console, print_table, publisher_main
from benchmarks.perf.sections import SECTIONS
from taskbench import environment, faults, implementations
from taskbench.client import ServiceClient
from taskbench.results import ScenarioSpec
from taskbench.stack import Stack, StackConfig


async def run_sections(stack: Stack, sections: list[int], quick: bool, workdir: Path) -> list[Figure]:
    client = ServiceClient(stack.url, urls=stack.urls(), token=stack.api_token)  # each implementation's own API
    bench = Bench(stack=stack, client=client, quick=quick, workdir=workdir)
    try:
        done: set[Callable[[Bench], Awaitable[None]]] = set()
        for number in sections:
            section = SECTIONS[number]
            if section in done:
                continue
            done.add(section)
            console.rule(f"section {number}: {(section.__doc__ or '').splitlines()[0]}")
            started = time.perf_counter()
            await section(bench)
            console.print(f"  [dim]{time.perf_counter() - started:.1f} s[/]")
    finally:
        await client.aclose()
    return bench.figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--section", type=int, action="append", choices=sorted(SECTIONS), help="repeatable")
    parser.add_argument("--quick", action="store_true", help="fewer rounds and smaller sizes (~3 min)")
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks" / "results.json")
    parser.add_argument("--publish", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--prefix", default="plain", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.publish is not None:
        publisher_main(args.publish, args.prefix)
        return 0
    sections = args.section or sorted(SECTIONS)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="taskbench-perf-") as tmp:
        workdir = Path(tmp)
        # Sections 7 and 11 measure every queue; the others the spec's two, with no other worker idling beside them.
        names = tuple(implementations.REGISTRY) if {7, 11} & set(sections) else implementations.DEFAULT
        with console.status("starting Redis, the API server and the workers…"):
            stack = Stack(StackConfig(workdir=workdir / "stack", concurrency=CONCURRENCY, implementations=names))
            stack.__enter__()
        try:
            # The worker as every scenario wants it (redelivery timeout for short jobs), restarted once now.
            stack.apply(faults.state_for(ScenarioSpec(implementation="celery", workload="sleep", jobs=1, duration_s=0)))
            env = environment.describe(stack.redis_url)
            figures = asyncio.run(run_sections(stack, sections, args.quick, workdir))
        finally:
            stack.stop()
    elapsed = time.perf_counter() - started
    print_table(figures, elapsed)
    output = {
        "generated_at": time.strftime("%Y-%m-%d %H:%M:%S"),
        "quick": args.quick,
        "sections": sections,
        "elapsed_s": elapsed,
        "environment": env.model_dump(),
        "figures": [f.as_dict() for f in figures],
    }
    args.output.write_text(json.dumps(output, indent=1, default=str))
    console.print(f"written: {args.output}")
    return 0 if all(f.met is not False for f in figures) else 1


if __name__ == "__main__":
    sys.exit(main())
