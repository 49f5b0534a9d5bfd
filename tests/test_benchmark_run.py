"""A tiny real run, end to end: the spec's reports exist, parse, and hold sane figures."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from taskbench.analysis import summarise
from taskbench.envs import environment
from taskbench.record.results import load_run, load_scenario
from taskbench.stack.redis_server import find_redis_server, free_port, redis_command
from taskbench_wire.env import IMPLEMENTATIONS
from tests.conftest import wait_for

REPO = Path(__file__).resolve().parents[1]


def _run_folder(output: Path) -> Path:
    (folder,) = [p for p in output.iterdir() if p.is_dir()]
    return folder


def check_run(folder: Path, jobs: list[int], embedded: bool) -> None:
    (comparison,) = folder.glob("comparison_*.json")
    stamp = comparison.stem.removeprefix("comparison_")
    report = (folder / f"comparison_{stamp}.md").read_text()
    assert report.count("| Jobs | Implementation | Completed |") == 1
    sections = [line for line in report.splitlines() if line.startswith("## ")]
    assert sections[:3] == ["## Answer", "## Decision", "## Results (the spec's table)"]
    assert sections[-1] == "## Verdict"
    assert "## When BackgroundTasks fail" in sections
    assert "Harness / service CPU avg (of the machine)" in report
    run = load_run(comparison)
    assert len(run.scenario_files) == 2 * len(jobs)
    for implementation in ("fastapi", "celery"):
        for n in jobs:
            assert (folder / f"{implementation}_{n}_jobs_{stamp}.md").exists()
            result = load_scenario(folder / f"{implementation}_{n}_jobs_{stamp}.json")
            summary = summarise(result)
            assert summary.completion.completed == n and summary.completion.failed == 0
            assert len(result.jobs) == n and len(result.submissions) == n
            assert all((j.queue_time or 0) >= 0 for j in result.jobs)
            assert summary.model_makespan_s == result.ideal_makespan_s  # the capacity model's, stored with it
            assert (summary.makespan_s or 0) >= result.ideal_makespan_s <= summary.ideal_makespan_s
            assert summary.probes["async"].answered > 0 and summary.probes["sync"].answered > 0
            roles = set().union(*(s.processes for s in result.samples))
            # started by hand: the API and the worker are still found through /health when they run here
            expected = {"api", "celery-worker", "harness"}
            assert roles >= (expected | {"redis"} if embedded else expected)
            assert result.environment.versions["celery"] and result.settings.jobs == jobs
            assert summary.max_running <= result.capacity.concurrency
            shares = summary.cpu_shares  # the harness's share of the machine beside the service's (issue 13)
            assert shares is not None and shares.cores == result.environment.machine.cpu_count
            assert "api" in shares.service_roles and shares.service_percent >= 0 <= shares.harness_percent
    assert json.loads(comparison.read_text())["verdict"]["lines"]


def test_taskbench_run_writes_the_spec_reports(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "taskbench", "run", "--jobs", "3,6", "--duration", "0.3", "--concurrency", "2",
         "--output", str(tmp_path), "--quiet"],
        capture_output=True, text=True, timeout=180, cwd=tmp_path,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Verdict" in out.stdout and "| Jobs | Implementation |" in out.stdout
    assert "Answer, against BackgroundTasks" in out.stdout and "sleep, 6 jobs, against BackgroundTasks" in out.stdout
    assert "so far, ETA" not in out.stdout and "stack up" not in out.stdout  # --quiet: no progress, the answer
    check_run(_run_folder(tmp_path), [3, 6], embedded=True)


@contextlib.contextmanager
def started_by_hand(tmp_path: Path) -> Iterator[str]:
    """The spec's terminals 1 and 2, from the repository's root: `uvicorn app.main:app` and `celery -A
    app.celery_app worker`, with an interpreter that has FastAPI and Celery (Celery's environment), on a private
    Redis. Yields the API's URL."""
    python = environment.prepare(["celery"])["celery"].python
    tmp_path.mkdir(parents=True, exist_ok=True)
    redis_port, api_port = free_port(), free_port()
    env = {**os.environ, "TASKBENCH_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0", "PYTHONUNBUFFERED": "1"}
    env.pop(IMPLEMENTATIONS, None)
    commands = [
        redis_command(find_redis_server(), redis_port, tmp_path, persistent=False),
        [python, "-m", "uvicorn", "app.main:app", "--port", str(api_port)],
        [python, "-m", "celery", "-A", "app.celery_app", "worker", "--loglevel=info", "--concurrency=2"],
    ]
    log = (tmp_path / "by-hand.log").open("ab")
    processes = [
        subprocess.Popen(argv, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        for argv in commands
    ]
    url = f"http://127.0.0.1:{api_port}"
    try:
        wait_for(lambda: _celery_worker_seen(url), timeout_s=60, interval_s=0.2)
        yield url
    finally:
        for process in processes:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        log.close()


def _celery_worker_seen(url: str) -> bool:
    try:
        return bool(httpx.get(f"{url}/health", timeout=1).json()["celery"]["workers"])
    except (httpx.HTTPError, KeyError, ValueError):
        return False


def test_spec_entry_point_measures_a_stack_started_by_hand(tmp_path: Path) -> None:
    """`python tests/benchmark.py` against the spec's three terminals, started by hand from the repository."""
    with started_by_hand(tmp_path / "stack") as url:
        info = httpx.get(f"{url}/").json()
        assert list(info["implementations"]) == ["fastapi", "celery"]  # all this environment has of the queues
        out = subprocess.run(
            [sys.executable, str(REPO / "tests" / "benchmark.py"), "--url", url, "--jobs", "4", "--duration", "0.2",
             "--output", str(tmp_path / "out")],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    check_run(_run_folder(tmp_path / "out"), [4], embedded=False)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "--jobs", "ten"], "--jobs"),
        (["run", "--jobs", "0"], "between 1 and"),
        (["run", "--duration", "-1"], "out of range"),
        (["run", "--workloads", "dance"], "choose from"),
        (["run", "--url", "http://127.0.0.1:9", "--faults", "all"], "--faults needs"),
        (["report", "/nonexistent-run"], "no comparison_"),
        (["serve", "--port", "70000"], "out of range"),
        (["run", "--redis-url", "notaurl"], "is not a Redis URL"),
        (["run", "--output", "/proc/taskbench-nope", "--jobs", "1"], "--output /proc/taskbench-nope: cannot create"),
        (["serve", "--workdir", "/proc/taskbench-nope"], "--workdir /proc/taskbench-nope: cannot create"),
        (["compare", "a", "b", "--output", "gate.json"], "--output gate.json: compare writes Markdown (.md) or HTML"),
        (["run", "--reference", "arq"], "--reference arq: not in --implementations; name one of fastapi, celery"),
        (["run", "--workloads", "uneven", "--rate", "5"], "--workloads uneven is a burst's shape"),
    ],
)
def test_cli_mistake_is_one_line_and_exit_2(args: list[str], message: str) -> None:
    out = subprocess.run([sys.executable, "-m", "taskbench", *args], capture_output=True, text=True, timeout=30)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], out.stderr


def test_runs_started_in_the_same_second_never_share_a_folder(tmp_path: Path) -> None:
    from taskbench.run.run import claim_folder

    first, second = (claim_folder(tmp_path, "20261204_120000", "--output") for _ in range(2))
    assert first != second and first.is_dir() and second.is_dir() and second.name == "20261204_120000-2"
