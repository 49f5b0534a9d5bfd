"""Starting and stopping: `taskbench serve` and `taskbench run` leave no process behind, on a signal too,
and an interrupted run keeps what it measured."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil

from taskbench.redis_server import free_port
from tests.conftest import wait_for


def _descendants(pid: int) -> list[psutil.Process]:
    return psutil.Process(pid).children(recursive=True)


def _all_gone(processes: list[psutil.Process]) -> bool:
    return not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in processes)


def test_serve_starts_the_stack_and_sigterm_stops_all_of_it(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "serve.out"
    serve = subprocess.Popen(
        [sys.executable, "-m", "taskbench.cli", "serve", "--port", str(port), "--concurrency", "1",
         "--workdir", str(tmp_path)],
        stdout=log.open("w"), stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        wait_for(lambda: "Ctrl-C stops everything" in log.read_text(), timeout_s=60, interval_s=0.2)
        celery_api = re.search(r"celery: (http://127\.0\.0\.1:\d+)/celery/job", log.read_text())
        assert celery_api, log.read_text()  # the first API (BackgroundTasks') on --port, Celery's on a free port
        health = httpx.get(f"{celery_api.group(1)}/health", timeout=5).json()  # ready once it printed
        assert health["celery"]["workers"] and health["redis"]["status"] == "ok"
        children = _descendants(serve.pid)
        names = " ".join(" ".join(p.cmdline()) for p in children)
        assert "redis-server" in names and "uvicorn" in names and "celery" in names
        serve.send_signal(signal.SIGTERM)
        assert serve.wait(30) == 0
        output = log.read_text()
        assert f"127.0.0.1:{port}" in output and "api.log" in output and "stopping" in output
        wait_for(lambda: _all_gone(children), timeout_s=15)
    finally:
        if serve.poll() is None:
            serve.kill()


def test_ctrl_c_during_a_run_keeps_partial_results_and_stops_every_process(tmp_path: Path) -> None:
    run = subprocess.Popen(
        [sys.executable, "-m", "taskbench.cli", "run", "--jobs", "4", "--duration", "30", "--concurrency", "1",
         "--output", str(tmp_path)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        # the first scenario (4 × 30 s fastapi jobs) is under way once its jobs show in the ledger
        ledger = wait_for(
            lambda: next(tmp_path.glob("*/stack/ledger/fastapi.jsonl"), None), timeout_s=60, interval_s=0.2
        )
        wait_for(lambda: ledger.read_text().count('"start"') >= 4, timeout_s=30, interval_s=0.1)
        children = _descendants(run.pid)
        assert len(children) >= 3
        started = time.monotonic()
        run.send_signal(signal.SIGINT)
        assert run.wait(60) == 0, run.stdout.read() if run.stdout else ""
        assert time.monotonic() - started < 45  # the 30 s jobs were not waited for
        wait_for(lambda: _all_gone(children), timeout_s=20)
    finally:
        if run.poll() is None:
            run.kill()
    (comparison,) = tmp_path.glob("*/comparison_*.json")
    saved = json.loads(comparison.read_text())
    assert saved["interrupted"] is True
    assert len(saved["scenario_files"]) == 1  # the celery scenario never started
    (scenario,) = [json.loads((comparison.parent / name).read_text()) for name in saved["scenario_files"]]
    assert scenario["interrupted"] is True and len(scenario["submissions"]) == 4 and scenario["probes"]
