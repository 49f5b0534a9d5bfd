"""The HTTP clients the harness does not use, kept to measure the ones it does against them in the same run.

- `HttpxSubmitter`: the harness's submission client before issue 13 (httpx, 100 connections split into pools of
  10 behind semaphores; `git show 5597431^:taskbench/client.py`), the "before" of the load-generator figures.
- `AiohttpProbeGet`: a probe's `GET` through an aiohttp session, the candidate for replacing the probes'
  hand-written HTTP/1.1 client (`taskbench.probes._Http`) if it costs as little CPU per probe.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import httpx

from taskbench.client import KEEPALIVE_EXPIRY_S
from taskbench.results import Submission

SHARD_CONNECTIONS = 10


class HttpxSubmitter:
    """`submit` as the harness did it with httpx: same connections, same keep-alive expiry, same timeouts."""

    def __init__(self, base_url: str, max_connections: int = 100, submit_timeout_s: float = 10.0) -> None:
        shards = max(1, -(-max_connections // SHARD_CONNECTIONS))
        per_shard = -(-max_connections // shards)
        limits = httpx.Limits(
            max_connections=per_shard, max_keepalive_connections=per_shard, keepalive_expiry=KEEPALIVE_EXPIRY_S
        )
        self._shards = [
            (asyncio.Semaphore(per_shard), httpx.AsyncClient(base_url=base_url, timeout=30.0, limits=limits))
            for _ in range(shards)
        ]
        self.submit_timeout_s = submit_timeout_s

    async def submit(self, implementation: str, index: int, body: dict[str, Any]) -> Submission:
        sent_at = time.time()
        started = time.perf_counter()
        gate, http = self._shards[index % len(self._shards)]
        try:
            async with gate:
                response = await http.post(f"/{implementation}/job", json=body, timeout=self.submit_timeout_s)
        except httpx.TimeoutException:
            return Submission(index=index, sent_at=sent_at, latency_s=None, error="timeout")
        except httpx.HTTPError as exc:
            return Submission(index=index, sent_at=sent_at, latency_s=None, error=f"{type(exc).__name__}: {exc}")
        job_id = response.json().get("job_id") if response.status_code == 202 else None
        return Submission(
            index=index,
            sent_at=sent_at,
            latency_s=time.perf_counter() - started,
            status_code=response.status_code,
            job_id=job_id,
            error=None if job_id else f"HTTP {response.status_code}",
        )

    async def aclose(self) -> None:
        for _, http in self._shards:
            await http.aclose()


class AiohttpProbeGet:
    """A probe's GET (status code, body read and dropped) on an aiohttp session with the harness's settings."""

    def __init__(self, base_url: str) -> None:
        connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=KEEPALIVE_EXPIRY_S)
        self._session = aiohttp.ClientSession(base_url=base_url, connector=connector)

    async def get(self, path: str) -> int:
        async with self._session.get(path) as response:
            await response.read()
            return response.status

    async def aclose(self) -> None:
        await self._session.close()
