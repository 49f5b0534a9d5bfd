"""`taskbench serve`'s one port: the spec's `curl -X POST http://localhost:8000/celery/job` beside `/fastapi/job`.

Each implementation runs its own API in its own environment, each on its own port; a user following the spec's
three terminals expects one. This small reverse proxy (aiohttp's server and client, already the harness's) forwards
`/{name}/…` to that implementation's API as it came (method, body, `Authorization`, `Host`: the API itself checks
the token, the Host and the JSON body), and answers `/`, `/health` and `/metrics` from every API at once. Measured
runs never go through it: the harness talks to each API directly, so no extra hop is timed.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping
from typing import Any

import aiohttp
from aiohttp import web

from taskbench.errors import StackError

HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers", "transfer-encoding",
     "upgrade", "content-length"}
)  # fmt: skip
MAX_BODY_BYTES = 64 * 1024  # the APIs take 16 KiB; above this the front door answers 413 itself
TIMEOUT_S = 30.0  # a sync endpoint of a loaded API may be slow; never a hang
MERGED = ("/", "/health", "/metrics")


def _passed_on(headers: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k.lower() not in HOP_BY_HOP}


class FrontDoor:
    """One port for every implementation's API, served on a thread of `serve` (so it dies with it)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.apis: dict[str, str] = {}  # implementation name → its API's base URL, set once the stack is up
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._serve, name="front-door", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> None:
        """Bind the port (a port in use is one line now, before the stack starts) and serve."""
        self._thread.start()
        self._ready.wait(30)
        if self._error is not None:
            raise StackError(f"--port {self.port}: cannot listen on {self.host}:{self.port}: {self._error}")

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def _serve(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reported by start(): the thread has no one else to tell
            self._error = exc
            self._ready.set()

    async def _main(self) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        timeout = aiohttp.ClientTimeout(total=TIMEOUT_S)
        async with aiohttp.ClientSession(timeout=timeout, auto_decompress=False) as session:
            app = web.Application(client_max_size=MAX_BODY_BYTES)
            app["session"] = session
            for path in MERGED:
                app.router.add_get(path, self._merged)
            app.router.add_route("*", "/{name}/{tail:.*}", self._forward)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            try:
                await web.TCPSite(runner, self.host, self.port).start()
                self._ready.set()
                await self._stop.wait()
            finally:
                await runner.cleanup()

    async def _forward(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        base = self.apis.get(name)
        if base is None:
            known = ", ".join(self.apis) or "none yet (the stack is starting)"
            return web.json_response({"detail": f"no implementation {name!r} here; these are: {known}"}, status=404)
        session: aiohttp.ClientSession = request.app["session"]
        try:
            async with session.request(
                request.method, base + request.path_qs, headers=_passed_on(request.headers), data=await request.read()
            ) as answer:
                body = await answer.read()
                return web.Response(status=answer.status, body=body, headers=_passed_on(answer.headers))
        except (aiohttp.ClientError, TimeoutError) as exc:
            detail = f"{name}'s API at {base} did not answer: {exc or type(exc).__name__}"
            return web.json_response({"detail": detail}, status=503)

    async def _merged(self, request: web.Request) -> web.Response:
        """`/`, `/health`, `/metrics` from every API at once, in the shape one API answers (so `run --url` and
        scripts read it as they read one), each API's own answer under `apis`; the worst status wins."""
        session: aiohttp.ClientSession = request.app["session"]
        headers = _passed_on(request.headers)

        async def ask(name: str, base: str) -> tuple[str, int, dict[str, Any]]:
            try:
                async with session.get(base + request.path, headers=headers) as answer:
                    return name, answer.status, await answer.json(content_type=None)
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                return name, 503, {"detail": f"{name}'s API at {base} did not answer: {exc or type(exc).__name__}"}

        answers = await asyncio.gather(*(ask(n, b) for n, b in self.apis.items()))
        if not answers:
            return web.json_response({"detail": "the stack is starting"}, status=503)
        status = max(s for _, s, _ in answers)
        merged = dict(answers[0][2])  # the machine-wide parts (system, redis) are the same for every API
        for name, _, body in answers:
            if name in body:  # /health: each implementation's section is its own API's
                merged[name] = body[name]
        if "implementations" in merged:  # /: every API's
            merged["implementations"] = {k: v for _, _, b in answers for k, v in b.get("implementations", {}).items()}
        if "endpoints" in merged:
            merged["endpoints"] = sorted({e for _, _, body in answers for e in body.get("endpoints", [])})
        if "status" in merged:
            merged["status"] = "ok" if status < 300 else "unavailable"
        merged["apis"] = {name: body for name, _, body in answers}
        merged["front_door"] = self.url
        return web.json_response(merged, status=status)
