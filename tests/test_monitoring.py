"""`taskbench serve --flower`: Flower beside the stack, on loopback, answering its API about the stack's workers."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import psutil
import pytest

from taskbench.cli import main as cli
from taskbench.stack.redis_server import free_port
from tests.conftest import wait_for


def test_serve_with_flower_shows_the_celery_worker_and_stops_it_all(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "serve.out"
    serve = subprocess.Popen(
        [sys.executable, "-m", "taskbench", "serve", "--port", str(port), "--concurrency", "1",
         "--implementations", "fastapi,celery", "--flower", "--workdir", str(tmp_path)],
        stdout=log.open("w"), stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        wait_for(lambda: "Ctrl-C stops everything" in log.read_text(), timeout_s=90, interval_s=0.2)
        found = re.search(r"flower\s+(http://127\.0\.0\.1:\d+)", log.read_text())
        assert found, log.read_text()
        flower = found.group(1)
        assert httpx.get(f"{flower}/healthcheck", timeout=5).status_code == 200
        token_file = re.search(r"Token\s+(\S+api\.token)", log.read_text())
        assert token_file, log.read_text()
        token = Path(token_file.group(1)).read_text().strip()
        assert token not in log.read_text()  # its path is printed, never the token
        assert httpx.get(f"{flower}/api/workers", timeout=10).status_code == 401  # Flower asks for a login
        celery_api = re.search(r"celery: (http://127\.0\.0\.1:\d+)/celery/job", log.read_text())
        assert celery_api, log.read_text()
        worker = httpx.get(f"{celery_api.group(1)}/health", timeout=5).json()["celery"]["workers"][0]

        def flower_sees_the_worker() -> bool:
            answer = httpx.get(
                f"{flower}/api/workers", params={"refresh": "true"}, timeout=10, auth=("taskbench", token)
            )
            assert answer.status_code == 200, answer.text
            return worker["hostname"] in answer.json()

        wait_for(flower_sees_the_worker, timeout_s=30, interval_s=0.5)
        children = psutil.Process(serve.pid).children(recursive=True)
        assert any("flower" in p.cmdline() for p in children)
        serve.send_signal(signal.SIGTERM)
        assert serve.wait(30) == 0
        wait_for(lambda: not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in children), 15)
    finally:
        if serve.poll() is None:
            serve.kill()


def test_serve_flower_without_celery_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """Flower is Celery's (installed in Celery's environment): asked for without Celery, it is a mistake."""
    assert cli.main(["serve", "--flower", "--implementations", "fastapi,arq", "--workdir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--flower set Celery's worker: add celery to --implementations" in err, err
    assert not list(tmp_path.iterdir())  # nothing was started
