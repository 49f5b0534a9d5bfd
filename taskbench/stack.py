"""Start, check and stop the stack: Redis (unless a URL is given), the API server and a Celery worker.

Every process started here has this object as its owner; `stop()` (also on Ctrl-C, via the context
manager) ends all of them.
"""

from __future__ import annotations

import os
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType

import httpx
import redis

from taskbench.errors import StackError
from taskbench.processes import ManagedProcess
from taskbench.redis_server import find_redis_server, free_port, redis_command

READY_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Delivery:
    """Celery's delivery settings, switched by the worker-crash fault."""

    acks_late: bool = False
    reject_on_worker_lost: bool = False
    visibility_timeout_s: float = 3600.0

    @property
    def name(self) -> str:
        if self.acks_late and self.reject_on_worker_lost:
            return "acks_late+reject_on_worker_lost"
        return "acks_late" if self.acks_late else "default"


@dataclass(frozen=True)
class StackConfig:
    workdir: Path
    host: str = "127.0.0.1"
    port: int = 0  # 0: a free port
    concurrency: int = 4
    redis_url: str | None = None  # None: a private redis-server
    redis_persistent: bool = False
    delivery: Delivery = Delivery()
    start_worker: bool = True


class Stack:
    def __init__(self, config: StackConfig) -> None:
        self.config = config
        self.port = config.port or free_port(config.host)
        self.redis: ManagedProcess | None = None
        self.api: ManagedProcess | None = None
        self.worker: ManagedProcess | None = None
        self.redis_url = config.redis_url or ""
        self.ledger_path = config.workdir / "ledger.jsonl"

    @property
    def url(self) -> str:
        return f"http://{self.config.host}:{self.port}"

    @property
    def embedded_redis(self) -> bool:
        return self.config.redis_url is None

    def logs(self) -> dict[str, str]:
        return {p.name: str(p.log_path) for p in (self.redis, self.api, self.worker) if p is not None}

    def pids(self) -> dict[str, int]:
        return {p.name: p.pid for p in (self.api, self.worker, self.redis) if p is not None and p.pid and p.alive()}

    # --- lifecycle -------------------------------------------------------------------------------------

    def __enter__(self) -> Stack:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *_: object | TracebackType) -> None:
        self.stop()

    def start(self) -> None:
        self.config.workdir.mkdir(parents=True, exist_ok=True)
        if self.embedded_redis:
            self.start_redis()
        self.check_redis()
        self.start_api()
        if self.config.start_worker:
            self.start_worker()

    def stop(self) -> None:
        for process in (self.worker, self.api, self.redis):
            if process is not None:
                process.stop()

    # --- Redis -----------------------------------------------------------------------------------------

    def start_redis(self) -> None:
        if self.redis is None:
            port = free_port()
            self.redis_url = f"redis://127.0.0.1:{port}/0"
            argv = redis_command(find_redis_server(), port, self.config.workdir, self.config.redis_persistent)
            self.redis = ManagedProcess("redis", argv, os.environ, self.config.workdir / "logs" / "redis.log")
        self.redis.start()
        self._wait(self.redis, self._redis_answers, "redis-server")

    def restart_redis(self, persistent: bool) -> None:
        """Stop the private Redis (SHUTDOWN, which writes the AOF when on) and start it again on its port."""
        assert self.redis is not None, "only a private Redis can be restarted"
        self.redis.stop()
        port = int(self.redis_url.rsplit(":", 1)[1].split("/")[0])
        self.redis.argv = redis_command(self.redis.argv[0], port, self.config.workdir, persistent)
        self.start_redis()
        if self.worker is not None and self.worker.alive():
            self.wait_for_worker()

    def wait_for_worker(self) -> None:
        """After a Redis restart the worker reconnects on its own (every 2 s); wait until it is back."""
        assert self.worker is not None
        self._wait(self.worker, self._worker_seen, "the Celery worker")

    def _redis_answers(self) -> bool:
        try:
            return bool(redis.Redis.from_url(self.redis_url, socket_connect_timeout=0.5).ping())
        except redis.RedisError:
            return False

    def check_redis(self) -> None:
        if not self._redis_answers():
            raise StackError(f"Redis does not answer at {self.redis_url}: start it or pass another --redis-url")

    # --- API and worker --------------------------------------------------------------------------------

    def _env(self) -> dict[str, str]:
        delivery = self.config.delivery
        return {
            **os.environ,
            "TASKBENCH_REDIS_URL": self.redis_url,
            "CELERY_BROKER_URL": self.redis_url,
            "CELERY_RESULT_BACKEND": self.redis_url,
            "TASKBENCH_LEDGER": str(self.ledger_path),
            "TASKBENCH_ACKS_LATE": "1" if delivery.acks_late else "0",
            "TASKBENCH_REJECT_ON_WORKER_LOST": "1" if delivery.reject_on_worker_lost else "0",
            "TASKBENCH_VISIBILITY_TIMEOUT": str(delivery.visibility_timeout_s),
            "TASKBENCH_RESTORE_INTERVAL": "1",
            "PYTHONUNBUFFERED": "1",
        }

    def start_api(self) -> None:
        argv = [
            sys.executable, "-m", "uvicorn", "app.main:app",
            "--host", self.config.host, "--port", str(self.port),
            "--log-level", "warning", "--no-access-log",
            "--timeout-graceful-shutdown", "3",
        ]  # fmt: skip
        self.api = ManagedProcess("api", argv, self._env(), self.config.workdir / "logs" / "api.log")
        self.api.start()
        self._wait(self.api, self._api_answers, "the API server")

    def start_worker(self, delivery: Delivery | None = None) -> None:
        if delivery is not None:
            self.config = replace(self.config, delivery=delivery)
        argv = [
            sys.executable, "-m", "celery", "-A", "app.celery_app", "worker",
            "--loglevel", "info", "--concurrency", str(self.config.concurrency),
            "--without-gossip", "--without-mingle",
            "-n", f"taskbench-{uuid.uuid4().hex[:6]}@%h",
        ]  # fmt: skip
        self.worker = ManagedProcess("worker", argv, self._env(), self.config.workdir / "logs" / "worker.log")
        self.worker.start()
        self.wait_for_worker()

    def _api_answers(self) -> bool:
        try:
            return httpx.get(f"{self.url}/health/sync", timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

    def _worker_seen(self) -> bool:
        try:
            health = httpx.get(f"{self.url}/health", timeout=1.0).json()
        except (httpx.HTTPError, ValueError):
            return False
        workers = health.get("celery", {}).get("workers", [])
        return any(w.get("pid") == (self.worker.pid if self.worker else None) for w in workers)

    def _wait(self, process: ManagedProcess, ready: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if not process.alive():
                raise StackError(
                    f"{what} exited while starting; last lines of {process.log_path}:\n{process.log_tail()}"
                )
            if ready():
                return
            time.sleep(0.1)
        raise StackError(f"{what} was not ready within {READY_TIMEOUT_S:.0f} s; see {process.log_path}")
