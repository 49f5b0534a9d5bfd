"""An idle taskiq worker keeps its processes: redis-py 8 gives a connection a 5 s socket_timeout unless told
None, which ended taskiq-redis' BRPOP (timeout 0) with TimeoutError after ~21 s (4 tries × 5 s) and killed
every idle worker process (taskiq's ProcessManager restarted them: ~3 s without a heartbeat each time)."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import httpx
import psutil

from taskbench.envs import environment
from taskbench.stack.stack import Stack, StackConfig
from tests.conftest import wait_for

IDLE_S = 30.0  # > one BRPOP timeout cycle of the bug (~21 s)


def test_taskiq_worker_connections_have_no_read_timeout() -> None:
    env = environment.prepare(["taskiq"])["taskiq"]
    code = (
        "from taskbench_service.implementations.taskiq import worker_broker\n"
        "print(repr(worker_broker().connection_pool.make_connection().socket_timeout))"
    )
    out = subprocess.run(
        [env.python, "-c", code], env={**os.environ, "TASKBENCH_REDIS_URL": "redis://127.0.0.1:1/0"},
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert out.stdout.strip() == "None"


def test_an_idle_taskiq_worker_keeps_its_processes(tmp_path: Path) -> None:
    with Stack(StackConfig(workdir=tmp_path, implementations=("taskiq",), concurrency=2)) as stack:
        url = stack.url_for("taskiq")
        worker = stack.workers["taskiq"]

        def children() -> set[int]:
            return {child.pid for child in psutil.Process(worker.pid).children()}

        def beating() -> set[int]:
            health = httpx.get(f"{url}/health", timeout=5).json()["taskiq"]
            return {beat["pid"] for beat in health["workers"]}

        before = children()
        assert before
        wait_for(lambda: beating() == before, timeout_s=30, interval_s=0.5)  # each child beats once it has started
        # one long async job: its process' prefetcher idles in BRPOP beside it for the whole wait
        job = httpx.post(
            f"{url}/taskiq/job",
            json={"duration": IDLE_S - 5, "kind": "async_sleep"},
            timeout=5,
            headers=stack.api_headers,
        ).json()
        deadline = time.monotonic() + IDLE_S
        while time.monotonic() < deadline:
            assert children() == before and beating() == before  # never a restart, never a gap in the beats
            time.sleep(1)
        status = httpx.get(f"{url}/taskiq/status/{job['job_id']}", timeout=5, headers=stack.api_headers).json()
        assert status["status"] == "completed", status
        log = (tmp_path / "logs" / "taskiq-worker.log").read_text()
        assert "is dead. Scheduling reload" not in log and "TimeoutError" not in log
