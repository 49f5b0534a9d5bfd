"""The harness's libcurl client against a real HTTP server on loopback."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pycurl
import pytest
from aiohttp import web

from taskbench.load.curl_http import CurlError, CurlHttp

pytestmark = pytest.mark.pure  # the fast tier: `pytest -m pure`


class Server:
    """An aiohttp app: `/echo` answers a POST with its JSON body, `/slow?s=…` answers after `s` seconds."""

    def __init__(self) -> None:
        self.in_flight = 0
        self.most_in_flight = 0
        self.connections: set[tuple[str, int]] = set()
        self.url = ""

    async def echo(self, request: web.Request) -> web.Response:
        self.connections.add(request.transport.get_extra_info("peername"))  # type: ignore[union-attr]
        return web.json_response({"got": await request.json(), "method": request.method}, status=202)

    async def slow(self, request: web.Request) -> web.Response:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await asyncio.sleep(float(request.query["s"]))
        finally:
            self.in_flight -= 1
        return web.Response(text="done")


@asynccontextmanager
async def serving() -> AsyncIterator[Server]:
    server = Server()
    app = web.Application()
    app.router.add_post("/echo", server.echo)
    app.router.add_get("/slow", server.slow)
    runner = web.AppRunner(app, shutdown_timeout=0.1)  # handlers still asleep are cancelled at the end
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    server.url = f"http://127.0.0.1:{port}"
    try:
        yield server
    finally:
        await runner.cleanup()


def test_a_post_and_a_get_come_back_with_status_and_body_over_kept_alive_connections() -> None:
    async def test() -> None:
        async with serving() as server:
            http = CurlHttp(connections=2, timeout_s=5.0, keepalive_s=2)
            try:
                answers = [await http.post(f"{server.url}/echo", json.dumps({"i": i}).encode()) for i in range(5)]
                status, body = await http.get(f"{server.url}/slow?s=0")
            finally:
                http.close()
        assert [s for s, _ in answers] == [202] * 5
        assert [json.loads(b) for _, b in answers] == [{"got": {"i": i}, "method": "POST"} for i in range(5)]
        assert (status, body) == (200, b"done")
        assert len(server.connections) == 1  # one after the other: the same connection each time

    asyncio.run(test())


def test_a_burst_waits_for_a_free_connection_and_the_wait_is_not_a_timeout() -> None:
    async def test() -> None:
        async with serving() as server:
            http = CurlHttp(connections=2, timeout_s=0.6, keepalive_s=2)
            try:
                started = time.perf_counter()
                answers = await asyncio.gather(*(http.get(f"{server.url}/slow?s=0.25") for _ in range(8)))
                elapsed = time.perf_counter() - started
            finally:
                http.close()
        assert [status for status, _ in answers] == [200] * 8
        assert server.most_in_flight == 2
        assert elapsed >= 4 * 0.25  # four rounds of two: the last waited ~0.75 s, more than the 0.6 s timeout

    asyncio.run(test())


def test_a_timeout_and_a_refused_connection_are_told_apart() -> None:
    async def test() -> None:
        with socket.socket() as unused:
            unused.bind(("127.0.0.1", 0))
            closed_port = unused.getsockname()[1]
        async with serving() as server:
            http = CurlHttp(connections=4, timeout_s=0.3, keepalive_s=2)
            try:
                with pytest.raises(CurlError) as slow:
                    await http.get(f"{server.url}/slow?s=2")
                with pytest.raises(CurlError) as refused:
                    await http.post(f"http://127.0.0.1:{closed_port}/echo", b"{}")
                status, _ = await http.get(f"{server.url}/slow?s=0")  # the pool still works after both
            finally:
                http.close()
        assert slow.value.timed_out and slow.value.code != pycurl.E_COULDNT_CONNECT
        assert refused.value.code == pycurl.E_COULDNT_CONNECT and not refused.value.timed_out
        assert status == 200

    asyncio.run(test())


def test_a_cancelled_request_gives_its_connection_to_the_next_and_close_ends_the_waiting() -> None:
    async def test() -> None:
        async with serving() as server:
            http = CurlHttp(connections=1, timeout_s=10.0, keepalive_s=2)
            try:
                stalled = asyncio.ensure_future(http.get(f"{server.url}/slow?s=5"))
                queued = asyncio.ensure_future(http.get(f"{server.url}/slow?s=5"))
                await asyncio.sleep(0.2)
                stalled.cancel()
                queued.cancel()
                started = time.perf_counter()
                status, _ = await asyncio.wait_for(http.get(f"{server.url}/slow?s=0"), 2.0)
                elapsed = time.perf_counter() - started
                left = asyncio.ensure_future(http.get(f"{server.url}/slow?s=5"))
                await asyncio.sleep(0.1)
            finally:
                http.close()
            with pytest.raises(asyncio.CancelledError):
                await left
        assert status == 200 and elapsed < 1.0
        assert stalled.cancelled() and queued.cancelled()

    asyncio.run(test())
