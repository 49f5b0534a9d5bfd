"""Performance figures of the service and the harness (issue 6), each against its goal.

One stack (private Redis, API, Celery worker at concurrency 4) serves every section, and every ratio is
measured side by side in the same run: the machine is small and shared, so absolute times say little.

    python benchmarks/perf.py [--section N ...] [--quick] [--output benchmarks/results.json]

The "plain Celery" baselines run in a subprocess of this script (`--publish`), which imports
`app.tasks` with the stack's Redis in its environment and calls `apply_async` in a loop: that is what
one ordinary process reaches without HTTP, records or an event loop in between.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil
from rich.console import Console
from rich.table import Table

from taskbench import environment, faults
from taskbench.client import ServiceClient
from taskbench.probes import Prober
from taskbench.report import files
from taskbench.results import RunResult, RunSettings, ScenarioResult, ScenarioSpec
from taskbench.sampler import Sampler
from taskbench.scenario import ScenarioContext, run_scenario
from taskbench.stack import Stack, StackConfig

IMPLEMENTATIONS = ("celery", "fastapi")
ZERO_JOB = {"duration": 0, "kind": "sleep"}
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
        _, name, value, goal, met = _row(figure)
        console.print(f"  {name}: [bold]{value}[/] (goal {goal}) {met}")

    def rounds(self, full: int, quick: int = 1) -> int:
        return quick if self.quick else full


# --- helpers ---------------------------------------------------------------------------------------------


def pct(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile: with few samples it reports a real observation, not an interpolation."""
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def median(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


class LedgerTail:
    """Reads the execution ledger from where it stood when created: completion times as the job code
    stamped them, so no polling interval leaks into a throughput figure."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = path.stat().st_size if path.exists() else 0
        self.ends: dict[str, float] = {}
        self._partial = b""

    def read(self) -> None:
        if not self.path.exists():
            return
        with self.path.open("rb") as ledger:
            ledger.seek(self.offset)
            chunk = self._partial + ledger.read()
        self.offset += len(chunk) - len(self._partial)
        lines = chunk.split(b"\n")
        self._partial = lines.pop()
        for line in lines:
            if line.strip():
                event = json.loads(line)
                if event["event"] == "end":
                    self.ends[event["job_id"]] = event["t"]

    async def wait_for(self, job_ids: set[str], timeout_s: float) -> float | None:
        """The last end time among `job_ids`, once all have ended; None after `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.read()
            if job_ids <= self.ends.keys():
                return max(self.ends[j] for j in job_ids)
            await asyncio.sleep(0.05)
        return None


def publish_plain(stack: Stack, count: int, prefix: str) -> dict[str, float]:
    """Run `--publish` in a fresh process: the plain-Celery baseline, with its own interpreter and GIL."""
    env = {
        **os.environ,
        "TASKBENCH_REDIS_URL": stack.redis_url,
        "CELERY_BROKER_URL": stack.redis_url,
        "CELERY_RESULT_BACKEND": stack.redis_url,
    }
    argv = [sys.executable, __file__, "--publish", str(count), "--prefix", prefix]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"plain publisher failed: {done.stderr[-2000:]}")
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


async def burst(client: ServiceClient, implementation: str, count: int) -> dict[str, Any]:
    """`count` concurrent submissions (the client's 100 connections); accepted/s over the whole burst."""
    t0 = time.time()
    started = time.perf_counter()
    subs = await asyncio.gather(*(client.submit(implementation, i, ZERO_JOB) for i in range(count)))
    elapsed = time.perf_counter() - started
    latencies = [s.latency_s for s in subs if s.latency_s is not None]
    accepted = [s.job_id for s in subs if s.job_id]
    return {
        "t0": t0,
        "elapsed_s": elapsed,
        "accepted": len(accepted),
        "accepted_per_s": len(accepted) / elapsed,
        "p50_s": pct(latencies, 50) if latencies else None,
        "p99_s": pct(latencies, 99) if latencies else None,
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


# --- sections ----------------------------------------------------------------------------------------------


async def section_1(bench: Bench) -> None:
    """Submission cost against the cheapest async endpoint, interleaved request by request."""
    http = bench.client.http
    per_round = 150 if bench.quick else 300
    calls: dict[str, Callable[[], Awaitable[Any]]] = {
        "health": lambda: http.get("/health"),
        "celery": lambda: http.post("/celery/job", json=ZERO_JOB),
        "fastapi": lambda: http.post("/fastapi/job", json=ZERO_JOB),
    }
    rounds: list[dict[str, dict[str, float]]] = []
    for _ in range(bench.rounds(3)):
        await bench.client.reset(list(IMPLEMENTATIONS))
        times: dict[str, list[float]] = {name: [] for name in calls}
        for i in range(per_round + 20):
            for name, call in calls.items():
                started = time.perf_counter()
                response = await call()
                elapsed = time.perf_counter() - started
                response.raise_for_status()
                if i >= 20:  # warm-up
                    times[name].append(elapsed)
        rounds.append({name: {"p50": pct(t, 50), "p99": pct(t, 99)} for name, t in times.items()})
    stats = {name: {q: median(r[name][q] for r in rounds) for q in ("p50", "p99")} for name in calls}
    for implementation, goal in (("celery", 1.3), ("fastapi", 1.1)):
        ratios = [r[implementation]["p50"] / r["health"]["p50"] for r in rounds]
        detail: dict[str, Any] = {"health_ms": _ms(stats["health"]), f"{implementation}_ms": _ms(stats[implementation])}
        detail["ratio_p99"] = median(r[implementation]["p99"] / r["health"]["p99"] for r in rounds)
        detail["rounds"] = ratios
        bench.add(Figure(1, f"{implementation} submit p50 ÷ health p50", median(ratios), "×", "<=", goal, detail))


async def section_2(bench: Bench) -> None:
    """1000 concurrent submissions per implementation; the plain apply_async rate is measured between."""
    count = 1000
    results: dict[str, list[dict[str, Any]]] = {"celery": [], "fastapi": [], "plain": []}
    for r in range(bench.rounds(3)):
        for implementation in IMPLEMENTATIONS:
            await bench.client.reset(list(IMPLEMENTATIONS))
            outcome = await burst(bench.client, implementation, count)
            outcome.pop("job_ids")
            results[implementation].append(outcome)
        await bench.client.reset(list(IMPLEMENTATIONS))
        results["plain"].append(await asyncio.to_thread(publish_plain, bench.stack, count, f"plain2-{r}"))
    await bench.client.reset(list(IMPLEMENTATIONS))
    plain_rate = median(p["rate"] for p in results["plain"])
    for implementation in IMPLEMENTATIONS:
        runs = results[implementation]
        errors = sum(o["errors"] + o["timeouts"] for o in runs)
        detail = {
            "accepted_per_s": median(o["accepted_per_s"] for o in runs),
            "p50_ms": 1000 * (median(o["p50_s"] for o in runs) or 0),
            "p99_ms": 1000 * (median(o["p99_s"] for o in runs) or 0),
            "errors": sum(o["errors"] for o in runs),
            "timeouts": sum(o["timeouts"] for o in runs),
            "first_error": next((o["first_error"] for o in runs if o["first_error"]), None),
            "plain_apply_async_per_s": plain_rate,
        }
        bench.add(Figure(2, f"{implementation} burst errors+timeouts", errors, "", "==", 0, detail))
        if implementation == "celery" and plain_rate:
            share = detail["accepted_per_s"] / plain_rate
            bench.add(Figure(2, "celery burst accepted/s ÷ plain apply_async/s", share, "×", ">=", 0.5, detail))
        else:
            bench.add(Figure(2, f"{implementation} burst accepted/s", detail["accepted_per_s"], "/s", detail=detail))


async def section_3(bench: Bench) -> None:
    """Submit → completed for 2000 zero-second jobs, end times from the ledger; plain Celery alongside."""
    count = 2000
    rates: dict[str, list[float]] = {"plain": [], "celery": [], "fastapi": []}
    for r in range(bench.rounds(3)):
        await bench.client.reset(list(IMPLEMENTATIONS))
        tail = LedgerTail(bench.stack.ledger_path)
        prefix = f"plain3-{r}-{os.getpid()}"
        published = await asyncio.to_thread(publish_plain, bench.stack, count, prefix)
        last = await tail.wait_for({f"{prefix}-{i}" for i in range(count)}, 300)
        if last is not None:
            rates["plain"].append(count / (last - published["t0"]))
        for implementation in IMPLEMENTATIONS:
            await bench.client.reset(list(IMPLEMENTATIONS))
            tail = LedgerTail(bench.stack.ledger_path)
            outcome = await burst(bench.client, implementation, count)
            last = await tail.wait_for(set(outcome["job_ids"]), 300)
            if last is not None and outcome["accepted"] == count:
                rates[implementation].append(count / (last - outcome["t0"]))
    await bench.client.reset(list(IMPLEMENTATIONS))
    plain = median(rates["plain"])
    for implementation in IMPLEMENTATIONS:
        rate = median(rates[implementation])
        share = rate / plain if rate and plain else None
        detail = {"jobs_per_s": rate, "plain_celery_jobs_per_s": plain, "rounds": rates}
        bench.add(Figure(3, f"{implementation} end-to-end jobs/s ÷ plain Celery", share, "×", ">=", 0.8, detail))


async def section_4_5(bench: Bench) -> None:
    """Fidelity (makespan ÷ ideal, probe rate) and the harness's CPU in the same scenarios, then the
    probes and sampler alone with no burst."""
    cpu: dict[str, float] = {}
    for implementation in IMPLEMENTATIONS:
        runs = [await scenario(bench, implementation, 100, 0.5) for _ in range(bench.rounds(2))]
        summaries = [r.summary for r in runs]
        ratio = median(s["makespan_ratio"] for s in summaries)
        detail = {
            "makespan_s": [s["makespan_s"] for s in summaries],
            "ideal_s": summaries[0]["ideal_makespan_s"],
            "capacity": summaries[0]["capacity"],
            "first_submit_to_first_start_s": [_first_start(r) for r in runs],
            "submission_p99_ms": [1000 * (s["submission"]["p99"] or 0) for s in summaries],
        }
        bench.add(Figure(4, f"{implementation} makespan ÷ ideal (100 × 0.5 s)", ratio, "×", "<=", 1.02, detail))
        rate = median(min(s["probes"][e]["rate_achieved"] for e in ("async", "sync")) for s in summaries)
        bench.add(Figure(4, f"{implementation} probe rate achieved", rate, "", ">=", 0.95))
        cpu[implementation] = median(r.harness["cpu_percent"] for r in runs) or 0.0
    for implementation, value in cpu.items():
        bench.add(Figure(5, f"harness CPU during {implementation} scenario", value, "% core", "<=", 5.0))
    idle = await asyncio.to_thread(_probe_and_sample_alone, bench.stack, 4.0 if bench.quick else 8.0)
    bench.add(Figure(5, "harness CPU, probes + sampler alone", idle, "% core", "<=", 5.0))


def _first_start(result: ScenarioResult) -> float | None:
    starts = [j["started_at"] for j in result.jobs if j.get("started_at")]
    first = min((s.sent_at for s in result.submissions), default=None)
    return min(starts) - first if starts and first is not None else None


def _probe_and_sample_alone(stack: Stack, seconds: float) -> float:
    """The harness's CPU with only the 10 Hz probes and the 4 Hz sampler running."""
    me = psutil.Process()
    sampler = Sampler(stack.pids, 0.25)
    prober = Prober(stack.url, 0.1, 2.0)
    before = me.cpu_times()
    started = time.perf_counter()
    sampler.start()
    prober.start()
    time.sleep(seconds)
    prober.stop()
    sampler.stop()
    after = me.cpu_times()
    return 100 * (after.user + after.system - before.user - before.system) / (time.perf_counter() - started)


async def section_6(bench: Bench) -> None:
    """10 000 zero-second jobs per implementation, and report writing at two sizes to show its growth."""
    sizes = (500, 5000) if bench.quick else (1000, 10000)
    write_s: dict[int, float] = {}
    peaks: dict[str, float] = {}
    for size in sizes:
        results = []
        for implementation in IMPLEMENTATIONS:
            started = time.perf_counter()
            result = await scenario(bench, implementation, size, 0.0)
            wall = time.perf_counter() - started
            results.append(result)
            completed = result.summary["completion"]["completed"]
            peaks[f"{implementation}_{size}"] = _peak_rss_mb()
            if size == sizes[-1]:
                detail = {"completed": completed, "wall_s": wall, "timed_out": result.timed_out}
                detail["submission"] = {k: result.summary["submission"][k] for k in ("accepted", "errors", "timeouts")}
                detail["first_errors"] = [s.error for s in result.submissions if s.error][:3]
                bench.add(Figure(6, f"{implementation} {size} jobs completed", completed, "", "==", size, detail))
        folder = bench.workdir / f"reports_{size}"
        started = time.perf_counter()
        run = RunResult(timestamp=f"perf{size}", settings=results[0].settings, environment={}, scenario_files=[])
        run.scenario_files = [files.write_scenario(folder, run.timestamp, r) for r in results]
        files.finish_run(folder, run, results)
        write_s[size] = time.perf_counter() - started
        del results, run
    small, large = sizes
    growth = write_s[large] / write_s[small]
    detail = {"write_s": write_s, "size_ratio": large / small, "peak_rss_mb_after": peaks}
    bench.add(Figure(6, f"report write time {large} ÷ {small}", growth, "×", "<=", large / small, detail))
    bench.add(Figure(6, "harness peak RSS", _peak_rss_mb(), "MB", detail={"after_each": peaks}))


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _ms(stats: dict[str, float | None]) -> dict[str, float | None]:
    return {k: None if v is None else round(1000 * v, 3) for k, v in stats.items()}


SECTIONS: dict[int, Callable[[Bench], Awaitable[None]]] = {
    1: section_1,
    2: section_2,
    3: section_3,
    4: section_4_5,
    5: section_4_5,
    6: section_6,
}


# --- output ------------------------------------------------------------------------------------------------


def _fmt(value: float | None) -> str:
    if value is None:
        return "—"
    if isinstance(value, int) or float(value).is_integer():
        return f"{value:.0f}"
    return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"


def _row(figure: Figure) -> tuple[str, str, str, str, str]:
    goal = f"{figure.goal_op} {_fmt(figure.goal)}" if figure.goal_op else "—"
    met = {True: "[green]met[/]", False: "[red]missed[/]", None: ""}[figure.met]
    value = f"{_fmt(figure.value)} {figure.unit}".strip()
    return str(figure.section), figure.name, value, goal, met


def print_table(figures: list[Figure], elapsed_s: float) -> None:
    table = Table(title=f"taskbench performance ({elapsed_s:.0f} s)")
    for column in ("§", "figure", "value", "goal", ""):
        table.add_column(column)
    for figure in figures:
        table.add_row(*_row(figure))
    console.print(table)


async def run_sections(stack: Stack, sections: list[int], quick: bool, workdir: Path) -> list[Figure]:
    client = ServiceClient(stack.url)
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
    parser.add_argument("--output", type=Path, default=Path(__file__).with_name("results.json"))
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
        with console.status("starting Redis, the API server and a Celery worker…"):
            stack = Stack(StackConfig(workdir=workdir / "stack", concurrency=CONCURRENCY))
            stack.__enter__()
        try:
            # The worker as every scenario wants it (visibility timeout for short jobs), restarted once now.
            faults.prepare(stack, None, None, 0.0)
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
        "environment": env,
        "figures": [f.as_dict() for f in figures],
    }
    args.output.write_text(json.dumps(output, indent=1, default=str))
    console.print(f"written: {args.output}")
    return 0 if all(f.met is not False for f in figures) else 1


if __name__ == "__main__":
    sys.exit(main())
