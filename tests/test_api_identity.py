"""An API counts as ready only when the process answering on its port is the one the stack started: two picks of a
free port can be the same (seen in CI: huey's API answered for pgqueuer's, whose uvicorn could not bind)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import httpx

from taskbench.stack.redis_server import free_port
from taskbench.stack.services import Service
from taskbench.stack.stack import Stack, StackConfig

# An API stand-in: answers the probes and /health with its own pid, as the service does.
ANSWERS = """
import http.server, json, os, sys
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"api": {"pid": os.getpid()}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
"""


def test_an_api_answered_for_by_another_process_is_not_ready(tmp_path: Path) -> None:
    port = free_port()
    stack = Stack(StackConfig(workdir=tmp_path, implementations=("fastapi",), port=port))
    ready = lambda s: stack._api_answers("fastapi", s)  # noqa: E731
    answering = Service("first", [sys.executable, "-c", ANSWERS, str(port)], os.environ, tmp_path / "1.log", ready, "")
    started = Service("second", [sys.executable, "-c", "import time; time.sleep(60)"], os.environ, tmp_path / "2.log",
                      ready, "")  # fmt: skip
    with answering:  # ready: it answers on the port as itself
        started.process.start()
        try:
            assert not stack._api_answers("fastapi", started)  # the port answers, but not as this process
        finally:
            started.stop()


def test_an_api_whose_port_was_taken_before_it_bound_starts_on_another(tmp_path: Path) -> None:
    """Its port is picked when the stack is made and bound seconds later: another stack may take it in between
    (seen in CI: taskiq's API could not bind, and the tests of the shared stack reached another stack's API)."""
    stack = Stack(StackConfig(workdir=tmp_path, implementations=("fastapi",)))
    taken = stack.ports["fastapi"]
    ready = lambda s: stack._answers_200(f"http://127.0.0.1:{taken}/")  # noqa: E731
    squatter = Service("other", [sys.executable, "-c", ANSWERS, str(taken)], os.environ, tmp_path / "o.log", ready, "")
    with squatter, stack:
        assert not stack.unavailable
        assert stack.ports["fastapi"] != taken
        health = httpx.get(f"{stack.url_for('fastapi')}/health", timeout=5).json()
        assert health["api"]["pid"] == stack.apis["fastapi"].pid
