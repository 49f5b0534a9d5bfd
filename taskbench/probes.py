"""Responsiveness probes: `GET /health` (async endpoint) and `GET /health/sync` (needs a threadpool thread).

They run on a thread with an event loop of their own, so a burst of submissions in the harness cannot
delay them; each probe is fired on schedule without waiting for the previous one, so a stalled server
shows as a row of unanswered probes rather than as a slower probe rate.
"""

from __future__ import annotations

import asyncio
import threading
import time

import httpx

from taskbench.results import Probe

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
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=20)
        async with httpx.AsyncClient(base_url=self.base_url, limits=limits) as http:
            pending: set[asyncio.Task[None]] = set()
            next_at = time.perf_counter()
            while not self._stop.is_set():
                for endpoint in ENDPOINTS:
                    task = asyncio.create_task(self._probe(http, endpoint))
                    pending.add(task)
                    task.add_done_callback(pending.discard)
                next_at += self.interval_s
                await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
            if pending:
                await asyncio.wait(pending, timeout=self.timeout_s + 1)

    async def _probe(self, http: httpx.AsyncClient, endpoint: str) -> None:
        sent_at = time.time()
        started = time.perf_counter()
        try:
            response = await http.get(ENDPOINTS[endpoint], timeout=self.timeout_s)
        except httpx.TimeoutException:
            probe = Probe(endpoint=endpoint, sent_at=sent_at, latency_s=None, error="timeout")
        except httpx.HTTPError as exc:
            probe = Probe(endpoint=endpoint, sent_at=sent_at, latency_s=None, error=type(exc).__name__)
        else:
            latency = time.perf_counter() - started
            probe = Probe(endpoint=endpoint, sent_at=sent_at, latency_s=latency, status_code=response.status_code)
        self.probes.append(probe)
