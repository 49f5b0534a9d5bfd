"""Responsiveness probes: `GET /health` (async endpoint) and `GET /health/sync` (needs a threadpool thread).

They run on a thread with an event loop of their own, so a burst of submissions in the harness cannot
delay them; each probe is fired on schedule without waiting for the previous one, so a stalled server
shows as a row of unanswered probes rather than as a slower probe rate.

Each probe is a bare HTTP/1.1 GET on a kept-alive asyncio stream rather than a client library's request:
httpx cost ~0.85 ms of CPU per request, which at 20 probes/s was most of the harness's own 5 % budget;
libcurl, which the submissions use, costs ~1.6× as much per probe as this GET, and aiohttp ~2×
(`python benchmarks/perf.py --section 9`; benchmarks/README.md, "Load generator (issue 13)").
"""

from __future__ import annotations

import asyncio
import threading
import time
from urllib.parse import urlsplit

from taskbench.record.results import Probe

ENDPOINTS = {"async": "/health", "sync": "/health/sync"}


class Prober:
    def __init__(self, base_url: str, interval_s: float, timeout_s: float) -> None:
        self.base_url = base_url
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self.probes: list[Probe] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="taskbench-probes", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> list[Probe]:
        self._stop.set()
        self._thread.join(self.timeout_s + 5)
        return sorted(self.probes, key=lambda p: p.sent_at)

    def _run(self) -> None:
        asyncio.run(self._loop())

    async def _loop(self) -> None:
        http = _Http(self.base_url)
        pending: set[asyncio.Task[None]] = set()
        next_at = time.perf_counter()
        try:
            while not self._stop.is_set():
                for endpoint in ENDPOINTS:
                    task = asyncio.create_task(self._probe(http, endpoint))
                    pending.add(task)
                    task.add_done_callback(pending.discard)
                next_at += self.interval_s
                await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
            if pending:
                await asyncio.wait(pending, timeout=self.timeout_s + 1)
        finally:
            http.close()

    async def _probe(self, http: _Http, endpoint: str) -> None:
        sent_at = time.time()
        started = time.perf_counter()
        try:
            status = await asyncio.wait_for(http.get(ENDPOINTS[endpoint]), self.timeout_s)
        except asyncio.TimeoutError:
            probe = Probe(endpoint=endpoint, sent_at=sent_at, latency_s=None, error="timeout")
        except (OSError, asyncio.IncompleteReadError, ValueError, IndexError) as exc:
            error = "ConnectError" if isinstance(exc, ConnectionRefusedError) else type(exc).__name__
            probe = Probe(endpoint=endpoint, sent_at=sent_at, latency_s=None, error=error)
        else:
            latency = time.perf_counter() - started
            probe = Probe(endpoint=endpoint, sent_at=sent_at, latency_s=latency, status_code=status)
        self.probes.append(probe)


class _Http:
    """Just enough HTTP/1.1 for a probe: GET, status code, body read by Content-Length and discarded.

    A connection goes back to the idle list only after a complete answer, so one that timed out or
    failed halfway is closed, never reused.
    """

    def __init__(self, base_url: str) -> None:
        url = urlsplit(base_url)
        self.host = url.hostname or "127.0.0.1"
        self.port = url.port or 80
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.open: set[asyncio.StreamWriter] = set()

    async def get(self, path: str) -> int:
        while self.idle:  # a kept-alive connection the server has closed meanwhile: try the next, as httpx does
            reader, writer = self.idle.pop()
            try:
                return await self._exchange(reader, writer, path)
            except (ConnectionError, asyncio.IncompleteReadError):
                continue
        reader, writer = await asyncio.open_connection(self.host, self.port)
        self.open.add(writer)
        return await self._exchange(reader, writer, path)

    async def _exchange(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, path: str) -> int:
        try:
            writer.write(f"GET {path} HTTP/1.1\r\nHost: {self.host}\r\n\r\n".encode())
            status_line = await reader.readline()
            if not status_line:
                raise asyncio.IncompleteReadError(b"", None)  # closed before answering
            status = int(status_line.split(b" ", 2)[1])
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            await reader.readexactly(length)
        except BaseException:
            writer.close()
            self.open.discard(writer)
            raise
        self.idle.append((reader, writer))
        return status

    def close(self) -> None:
        for writer in self.open:
            writer.close()
