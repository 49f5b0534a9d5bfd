"""The bench: figures with their goals, the stack they are measured on, and the shared helpers."""

from __future__ import annotations

import asyncio
import heapq
import json
import os
import resource
import statistics
import subprocess
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

import psutil
from rich.console import Console
from rich.table import Table

from taskbench.analysis.stats import percentile
from taskbench.load.client import ServiceClient
from taskbench.record.results import RunEnvironment, RunSettings, ScenarioResult, ScenarioSpec, Submission
from taskbench.run.scenario import ScenarioContext, run_scenario
from taskbench.stack.stack import Stack
from taskbench_wire.records import JobBody

REPO = Path(__file__).resolve().parents[2]
IMPLEMENTATIONS = ("celery", "fastapi")
ZERO_JOB = JobBody(duration=0, kind="sleep")
NOOP_JOB = JobBody(duration=0, kind="noop")
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
    note: str = ""  # printed beside the value: what else was measured with it (e.g. CPU of harness and service)

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


T = TypeVar("T")


@dataclass
class Bench:
    """What a section runs on. `profile` says how big: "full", "quick" (fewer rounds, smaller sizes), or "smoke"
    (one round at the smallest sizes that still take every section through its code, for tests/test_perf_smoke.py;
    its figures mean nothing)."""

    stack: Stack
    client: ServiceClient
    profile: str
    workdir: Path
    figures: list[Figure] = field(default_factory=list)

    @property
    def smoke(self) -> bool:
        return self.profile == "smoke"

    def add(self, figure: Figure) -> None:
        self.figures.append(figure)
        _, name, value, goal, met = row(figure)
        note = f"  [dim]{figure.note}[/]" if figure.note else ""
        console.print(f"  {name}: [bold]{value}[/] (goal {goal}) {met}{note}")

    async def reset(self, names: list[str]) -> None:
        """A clean start (`ServiceClient.reset`). In the smoke, the last burst's few jobs are first let finish (3 s
        at most): clearing Celery records that are still queued asks its workers what they hold, a broadcast that
        waits out its 1 s timeout, and a dozen of those would be a third of the smoke."""
        if self.smoke:
            deadline = time.monotonic() + 3.0
            while time.monotonic() < deadline and any([(await self.client.counts(n)).pending for n in names]):
                await asyncio.sleep(0.05)
        await self.client.reset(names)

    @property
    def ledger_wait_s(self) -> float:
        """How long a section waits for its jobs' end events in the ledger: a smoke whose jobs never end fails soon."""
        return self.size(300.0, 300.0, 60.0)

    def rounds(self, full: int, quick: int = 1) -> int:
        """Rounds to measure: `full`, `quick`, or one in the smoke."""
        return self.size(full, quick, 1)

    def size(self, full: T, quick: T, smoke: T) -> T:
        """A section's size (jobs, requests, seconds) in this profile."""
        return {"full": full, "quick": quick, "smoke": smoke}[self.profile]


# --- helpers ---------------------------------------------------------------------------------------------


def median(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def env_with_benchmarks(stack: Stack, name: str) -> dict[str, str]:
    """What NAME's API and worker read (`Stack.env`), with this repository on the path: an implementation's
    environment has taskbench's service installed, not `benchmarks`, and the stack's services run with
    PYTHONSAFEPATH (`python -m` does not put the working directory on the path)."""
    env = stack.env(name)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH", "")]))
    return env


def publish_plain(stack: Stack, count: int, prefix: str) -> dict[str, float]:
    """Run benchmarks.perf.publish in a fresh process of Celery's environment: the plain-Celery baseline, with its
    own interpreter and GIL."""
    env = env_with_benchmarks(stack, "celery")
    argv = [stack.python("celery"), "-m", "benchmarks.perf.publish", str(count), prefix]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300, check=False, cwd=REPO)
    if done.returncode != 0:
        raise RuntimeError(f"plain publisher failed: {done.stderr[-2000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def feed_directly(stack: Stack, name: str, count: int, prefix: str) -> dict[str, float]:
    """Run benchmarks.perf.direct in a fresh process of NAME's environment: fed by its own enqueue API, no HTTP."""
    argv = [stack.python(name), "-m", "benchmarks.perf.direct", name, str(count), prefix]
    env = env_with_benchmarks(stack, name)
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300, check=False, cwd=REPO)
    if done.returncode != 0:
        raise RuntimeError(f"direct feed of {name} failed: {done.stderr[-2000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


class Submitter(Protocol):
    """What a burst needs of a client: the harness's `ServiceClient`, or the httpx one it replaced."""

    async def submit(self, implementation: str, index: int, body: JobBody) -> Submission: ...


async def burst(client: Submitter, implementation: str, count: int, body: JobBody = ZERO_JOB) -> dict[str, Any]:
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


def cpu_seconds(stack: Stack) -> dict[str, float]:
    """CPU time (user + system) used so far by this process (`harness`, every thread) and by each process of
    the stack by role (a worker with its live children): take it before and after, and subtract."""
    out = {"harness": _cpu(psutil.Process())}
    for role, pid in stack.pids().items():
        try:
            root = psutil.Process(pid)
            tree = [root, *root.children(recursive=True)] if role.endswith("-worker") else [root]
            out[role] = sum(_cpu(process) for process in tree)
        except psutil.Error:
            continue
    return out


def _cpu(process: psutil.Process) -> float:
    try:
        times = process.cpu_times()
    except psutil.Error:
        return 0.0  # a child that ended between listing and reading
    return float(times.user + times.system)


def cpu_used(before: dict[str, float], after: dict[str, float], implementation: str) -> dict[str, float]:
    """Seconds of CPU between two `cpu_seconds` readings: the harness, the API, and the service (the API, this
    implementation's worker and Redis)."""
    used = {role: after[role] - before[role] for role in after.keys() & before.keys()}
    service = sum(used.get(role, 0.0) for role in ("api", "redis", f"{implementation}-worker"))
    return {"harness": used.get("harness", 0.0), "api": used.get("api", 0.0), "service": service}


def cpu_note(used: dict[str, float], elapsed_s: float) -> str:
    """`harness 45 % · service 120 % of a core`: what each used during a measured span."""
    harness, service = (100 * used[role] / elapsed_s for role in ("harness", "service"))
    return f"CPU during it: harness {harness:.0f} % · service {service:.0f} % of a core"


def ideal_with_arrivals(arrivals: list[float], slots: int, duration_s: float, since: float) -> float:
    """The shortest makespan (from `since`, the first send) that `slots` runners could reach for jobs of
    `duration_s` that reached the service at `arrivals`, first come first served: the ideal with the measured
    submission span in it, since no job can start before the API has it."""
    free = [since] * max(slots, 1)
    end = since
    for arrival in sorted(arrivals):
        start = max(arrival, heapq.heappop(free))
        heapq.heappush(free, start + duration_s)
        end = max(end, start + duration_s)
    return end - since


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
        environment=RunEnvironment(),
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
    met = {True: "[green]PASS[/]", False: "[red]FAIL[/]", None: ""}[figure.met]
    value = f"{fmt(figure.value)} {figure.unit}".strip()
    return str(figure.section), figure.name, value, goal, met


def print_table(figures: list[Figure], elapsed_s: float) -> None:
    table = Table(title=f"taskbench performance ({elapsed_s:.0f} s)")
    for column in ("§", "figure", "value", "goal", "", "beside it"):
        table.add_column(column)
    for figure in figures:
        table.add_row(*row(figure), figure.note)
    console.print(table)
