"""The bench: figures with their goals, the stack they are measured on, and the shared helpers."""

from __future__ import annotations

import asyncio
import json
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from taskbench.analysis.stats import percentile
from taskbench.client import ServiceClient
from taskbench.results import RunSettings, ScenarioResult, ScenarioSpec
from taskbench.scenario import ScenarioContext, run_scenario
from taskbench.stack import Stack

REPO = Path(__file__).resolve().parents[2]
IMPLEMENTATIONS = ("celery", "fastapi")
ZERO_JOB = {"duration": 0, "kind": "sleep"}
NOOP_JOB = {"duration": 0, "kind": "noop"}
CONCURRENCY = 4
console = Console()


@dataclass
class Figure:
    """One measured number, its goal and whether it was met; `detail` keeps what it was computed from."""

    section: int
    name: str
    value: float | None
    unit: str = ""
    goal_op: str = ""  # "<=", ">=", "==" or "" (reported, no goal)
    goal: float | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def met(self) -> bool | None:
        if not self.goal_op or self.goal is None:
            return None
        if self.value is None:
            return False
        return {
            "<=": self.value <= self.goal,
            ">=": self.value >= self.goal,
            "==": self.value == self.goal,
        }[self.goal_op]

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "met": self.met}


@dataclass
class Bench:
    stack: Stack
    client: ServiceClient
    quick: bool
    workdir: Path
    figures: list[Figure] = field(default_factory=list)

    def add(self, figure: Figure) -> None:
        self.figures.append(figure)
        _, name, value, goal, met = row(figure)
        console.print(f"  {name}: [bold]{value}[/] (goal {goal}) {met}")

    def rounds(self, full: int, quick: int = 1) -> int:
        return quick if self.quick else full


# --- helpers ---------------------------------------------------------------------------------------------


def median(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def publish_plain(stack: Stack, count: int, prefix: str) -> dict[str, float]:
    """Run `--publish` in a fresh process: the plain-Celery baseline, with its own interpreter and GIL."""
    env = stack.env("celery")
    argv = [sys.executable, "-m", "benchmarks.perf", "--publish", str(count), "--prefix", prefix]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300, check=False, cwd=REPO)
    if done.returncode != 0:
        raise RuntimeError(f"plain publisher failed: {done.stderr[-2000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def feed_directly(stack: Stack, name: str, count: int, prefix: str) -> dict[str, float]:
    """Run benchmarks.perf.direct in a fresh process: queue NAME fed by its own enqueue API, no HTTP."""
    argv = [sys.executable, "-m", "benchmarks.perf.direct", name, str(count), prefix]
    done = subprocess.run(argv, env=stack.env(name), capture_output=True, text=True, timeout=300, check=False, cwd=REPO)
    if done.returncode != 0:
        raise RuntimeError(f"direct feed of {name} failed: {done.stderr[-2000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def publisher_main(count: int, prefix: str) -> None:
    """The subprocess side: import the app only now, after the environment points at the stack's Redis."""
    from app.tasks import run_job

    run_job.apply_async(args=(f"{prefix}-warm", "sleep", 0.0, 0), task_id=f"{prefix}-warm", retry=False)
    t0 = time.time()
    started = time.perf_counter()
    for i in range(count):
        job_id = f"{prefix}-{i}"
        run_job.apply_async(args=(job_id, "sleep", 0.0, 0), task_id=job_id, retry=False)
    elapsed = time.perf_counter() - started
    print(json.dumps({"t0": t0, "elapsed_s": elapsed, "rate": count / elapsed}))


async def burst(
    client: ServiceClient, implementation: str, count: int, body: dict[str, Any] = ZERO_JOB
) -> dict[str, Any]:
    """`count` concurrent submissions (the client's 100 connections); accepted/s over the whole burst."""
    t0 = time.time()
    started = time.perf_counter()
    subs = await asyncio.gather(*(client.submit(implementation, i, body) for i in range(count)))
    elapsed = time.perf_counter() - started
    latencies = [s.latency_s for s in subs if s.latency_s is not None]
    accepted = [s.job_id for s in subs if s.job_id]
    return {
        "t0": t0,
        "elapsed_s": elapsed,
        "accepted": len(accepted),
        "accepted_per_s": len(accepted) / elapsed,
        "p50_s": percentile(latencies, 50) if latencies else None,
        "p99_s": percentile(latencies, 99) if latencies else None,
        "errors": sum(1 for s in subs if s.error and s.error != "timeout"),
        "timeouts": sum(1 for s in subs if s.error == "timeout"),
        "job_ids": accepted,
        "first_error": next((s.error for s in subs if s.error), None),
    }


def settings_for(implementation: str, jobs: int, duration_s: float) -> RunSettings:
    return RunSettings(
        implementations=[implementation],
        workloads=["sleep"],
        jobs=[jobs],
        duration_s=duration_s,
        memory_mb=0,
        concurrency=CONCURRENCY,
    )


async def scenario(bench: Bench, implementation: str, jobs: int, duration_s: float) -> ScenarioResult:
    spec = ScenarioSpec(implementation=implementation, workload="sleep", jobs=jobs, duration_s=duration_s)
    ctx = ScenarioContext(
        client=bench.client,
        settings=settings_for(implementation, jobs, duration_s),
        environment={},
        stack=bench.stack,
        timeout_s=max(120.0, jobs / 20),  # 0 s jobs make the derived deadline 10 s, whatever N is
    )
    return await run_scenario(ctx, spec, lambda done, total: None)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def ms(stats: dict[str, float | None]) -> dict[str, float | None]:
    return {k: None if v is None else round(1000 * v, 3) for k, v in stats.items()}


# --- output ------------------------------------------------------------------------------------------------


def fmt(value: float | None) -> str:
    if value is None:
        return "—"
    if isinstance(value, int) or float(value).is_integer():
        return f"{value:.0f}"
    return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"


def row(figure: Figure) -> tuple[str, str, str, str, str]:
    goal = f"{figure.goal_op} {fmt(figure.goal)}" if figure.goal_op else "—"
    met = {True: "[green]met[/]", False: "[red]missed[/]", None: ""}[figure.met]
    value = f"{fmt(figure.value)} {figure.unit}".strip()
    return str(figure.section), figure.name, value, goal, met


def print_table(figures: list[Figure], elapsed_s: float) -> None:
    table = Table(title=f"taskbench performance ({elapsed_s:.0f} s)")
    for column in ("§", "figure", "value", "goal", ""):
        table.add_column(column)
    for figure in figures:
        table.add_row(*row(figure))
    console.print(table)
