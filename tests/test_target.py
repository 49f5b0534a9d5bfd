"""`taskbench run --target URL --scenario FILE`: a deployment of the user's own (tests/fixtures/target_app, a FastAPI
app with an in-process queue, not taskbench's service), measured through a scenario file, by the real CLI.

Assertions are on counts, never on timings: this must hold on a loaded 2-core machine.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from taskbench.cli.main import main
from taskbench.stack.redis_server import free_port
from taskbench.target.target import JobTrace, TargetRun, TargetSettings, TargetSubmission, Transition, Trial
from taskbench.target.target_report import summarise

REPO = Path(__file__).resolve().parents[1]
APP = REPO / "tests" / "fixtures" / "target_app"

SCENARIO = """
import itertools

numbers = itertools.count()  # call 0 is taskbench's trial call


async def submit(client):
    n = next(numbers)
    response = await client.post("/orders", json={{"fail": {fail}, "hang": {hang}}})
    response.raise_for_status()
    return response.json()["id"]


async def status(client, job_id):
    response = await client.get(f"/orders/{{job_id}}")
    response.raise_for_status()
    return response.json()["status"]
"""


@pytest.fixture(scope="module")
def app_url() -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "app:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        cwd=APP,
        env={**os.environ, "WORKERS": "6", "JOB_S": "0.2"},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None, "the app exited"
            assert time.monotonic() < deadline, "the app did not answer within 60 s"
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(10)


def scenario(folder: Path, fail: str = "False", hang: str = "False") -> Path:
    path = folder / "orders_scenario.py"
    path.write_text(SCENARIO.format(fail=fail, hang=hang))
    return path


def taskbench_run(*args: str) -> subprocess.CompletedProcess[str]:
    """The run, in a process of its own; one that hangs is stopped by SIGABRT, which Python's faulthandler turns
    into every thread's stack on stderr, and the test fails with it (a hang was seen once in CI)."""
    command = [sys.executable, "-m", "taskbench", "run", *args]
    env = {**os.environ, "PYTHONFAULTHANDLER": "1"}
    with subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as run:
        try:
            stdout, stderr = run.communicate(timeout=180)
        except subprocess.TimeoutExpired:
            run.send_signal(signal.SIGABRT)
            stdout, stderr = run.communicate(timeout=30)
            raise AssertionError(f"taskbench run hung for 180 s; stdout:\n{stdout}\nstderr:\n{stderr}") from None
    return subprocess.CompletedProcess(command, run.returncode, stdout, stderr)


def record(output: Path) -> tuple[dict[str, Any], str]:
    (folder,) = output.iterdir()
    (data,) = folder.glob("target_*.json")
    return json.loads(data.read_text()), data.with_suffix(".md").read_text()


def test_a_sustained_rate_against_your_deployment(app_url: str, tmp_path: Path) -> None:
    path, output = scenario(tmp_path), tmp_path / "out"
    target = app_url.replace("http://", "http://shop:s3cret@")  # a password in the URL never reaches the record
    out = taskbench_run(
        "--target", target, "--scenario", str(path), "--rate", "10", "--for", "3", "--probe", "/health",
        "--output", str(output),
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    print(out.stdout)
    data, report = record(output)
    summary = data["summary"]
    assert summary["sent"] == summary["accepted"] == 30
    assert (summary["done"], summary["failed"], summary["lost"]) == (30, 0, 0)
    for figure in ("submit", "queue", "total"):
        assert summary[figure]["count"] >= 25 and None not in (summary[figure][p] for p in ("p50", "p95", "p99"))
    assert summary["latency_from"] == "due"
    assert summary["keeping_up"]["verdict"] in ("kept up", "fell behind", "inconclusive")
    assert summary["probe"]["sent"] > 10 and summary["probe"]["answered"] > 0 and summary["probe"]["p99"] is not None
    settings = data["settings"]
    assert settings["target"] == app_url.replace("http://", "http://shop:**@")
    assert settings["scenario_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert "s3cret" not in json.dumps(data) + report + out.stdout
    assert all(s["due_at"] and s["sent_at"] and s["answered_at"] and s["job_id"] for s in data["submissions"])
    assert all(j["transitions"][-1]["status"] == "done" for j in data["jobs"])
    assert "30 of 30 submissions accepted" in report and "30 done, 0 failed, 0 lost" in report
    assert "Did completions keep up with arrivals?" in report and "GET /health" in report
    assert "30 of 30 submissions accepted" in " ".join(out.stdout.split())


def test_a_burst_with_a_fault_command_failed_and_lost_jobs(app_url: str, tmp_path: Path) -> None:
    path, output = scenario(tmp_path, fail="n % 10 == 3", hang="n == 15"), tmp_path / "out"
    helper = subprocess.Popen(["sleep", "120"])  # what the user's fault command stops
    try:
        out = taskbench_run(
            "--target", app_url, "--scenario", str(path), "--jobs", "20", "--timeout", "10",
            "--fault-cmd", f"restart=kill -TERM {helper.pid}", "--output", str(output),
        )  # fmt: skip
        assert out.returncode == 0, out.stdout + out.stderr
        assert helper.wait(10) == -signal.SIGTERM
    finally:
        helper.kill()
    print(out.stdout)
    data, report = record(output)
    summary = data["summary"]
    assert summary["accepted"] == 20 and summary["latency_from"] == "sent"
    assert (summary["done"], summary["failed"], summary["lost"]) == (17, 2, 1)  # jobs 3 and 13 fail, 15 hangs
    assert summary["lost_last_seen"] == {"running": 1}
    assert summary["total"]["count"] == 17 and summary["keeping_up"] is None
    (fault,) = data["faults"]
    assert fault["name"] == "restart" and fault["exit_code"] == 0 and fault["note"] is None
    assert data["sending_from"] <= fault["started_at"] <= fault["ended_at"] <= data["waited_until"]
    assert "17 done, 2 failed, 1 lost" in report and "## Fault commands" in report and "restart" in report


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(["run", *args])
    return code, capsys.readouterr().err.strip()


def test_what_cannot_run_is_one_line_and_exit_2(
    app_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "out"
    no_status = tmp_path / "no_status.py"
    no_status.write_text("async def submit(client):\n    return 'x'\n")
    raising = tmp_path / "raising.py"
    raising.write_text(
        textwrap.dedent("""
        async def submit(client):
            (await client.post("/no-such-path", json={})).raise_for_status()

        async def status(client, job_id):
            return "done"
        """)
    )
    good = scenario(tmp_path)
    cases = {
        "status is missing: define `async def status(client, job_id)`": ["--target", app_url, "--scenario",
                                                                           str(no_status), "--jobs", "3"],
        "the trial call submit(client) raised HTTPStatusError": ["--target", app_url, "--scenario", str(raising),
                                                                 "--jobs", "3"],
        "nothing answers there": ["--target", f"http://127.0.0.1:{free_port()}", "--scenario", str(good), "--jobs",
                                  "3"],
        "--implementations is for taskbench's own stack": ["--target", app_url, "--scenario", str(good), "--jobs", "3",
                                                           "--implementations", "fastapi"],
        "add --target URL": ["--scenario", str(good), "--jobs", "3"],
    }  # fmt: skip
    for expected, args in cases.items():
        code, err = run_cli(capsys, *args, "--output", str(output))
        assert code == 2, (expected, err)
        assert expected in err and "\n" not in err, err
    assert not output.exists() or not any(output.iterdir())  # nothing measured, no folder left


@pytest.mark.pure
def test_the_rule_sees_completions_falling_behind() -> None:
    """10/s offered for 10 s against a deployment that finishes 5 a second: fell behind, the backlog growing."""
    start = 1_000_000.0
    settings = TargetSettings(
        target="http://x", scenario="s.py", scenario_sha256="0", mode="rate", jobs=100, rate_per_s=10, for_s=10,
        taskbench_version="0",
    )  # fmt: skip
    subs, jobs = [], []
    for i in range(100):
        due = start + i / 10
        subs.append(TargetSubmission(index=i, due_at=due, sent_at=due, answered_at=due + 0.01, job_id=f"j{i}"))
        began = start + i / 5
        jobs.append(
            JobTrace(
                job_id=f"j{i}",
                index=i,
                transitions=[
                    Transition(status="running", seen_at=began),
                    Transition(status="done", seen_at=began + 0.2),
                ],
            )
        )
    run = TargetRun(
        settings=settings, started_at=start, trial=Trial(job_id="t", status="queued", at=start, submit_s=0, status_s=0),
        sending_from=start, sending_to=start + 10, waited_until=start + 21, finished_at=start + 21,
        submissions=subs, jobs=jobs,
    )  # fmt: skip
    summary = summarise(run)
    assert summary.keeping_up is not None
    assert summary.keeping_up.verdict == "fell behind"
    assert summary.keeping_up.backlog_slope_per_s is not None and summary.keeping_up.backlog_slope_per_s > 4
    assert (summary.done, summary.lost) == (100, 0)
