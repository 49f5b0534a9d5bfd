"""The HTTP clients the harness does not use, kept to measure the ones it does against them in the same run.

- `HttpxSubmitter`: the harness's submission client before issue 13 (httpx, 100 connections split into pools of
  10 behind semaphores; `git show 5597431^:taskbench/load/client.py`), the first "before" of the load-generator figures.
- `AiohttpSubmitter`: the one that replaced it, before libcurl (`git show 554b7ac:taskbench/load/client.py`).
- `AiohttpProbeGet`: a probe's `GET` through an aiohttp session, the candidate for replacing the probes'
  hand-written HTTP/1.1 client (`taskbench.measure.probes._Http`) if it costs as little CPU per probe.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Mapping
from typing import Protocol

import aiohttp
import httpx

from taskbench.load.client import KEEPALIVE_EXPIRY_S
from taskbench.load.curl_http import CurlHttp
from taskbench.measure.probes import _Http
from taskbench.record.results import Submission
from taskbench_wire.records import JobBody

SHARD_CONNECTIONS = 10


class HttpxSubmitter:
    """`submit` as the harness did it with httpx: same connections, same keep-alive expiry, same timeouts.

    `urls`: each implementation's API by name (each runs in an environment of its own, as `ServiceClient`'s
    `urls`); `headers`: what every request carries (the stack's bearer token, `Stack.api_headers`)."""

    def __init__(
        self,
        urls: Mapping[str, str],
        headers: Mapping[str, str],
        max_connections: int = 100,
        submit_timeout_s: float = 10.0,
    ) -> None:
        self._urls = {name: url.rstrip("/") for name, url in urls.items()}
        shards = max(1, -(-max_connections // SHARD_CONNECTIONS))
        per_shard = -(-max_connections // shards)
        limits = httpx.Limits(
            max_connections=per_shard, max_keepalive_connections=per_shard, keepalive_expiry=KEEPALIVE_EXPIRY_S
        )
        self._shards = [
            (asyncio.Semaphore(per_shard), httpx.AsyncClient(headers=dict(headers), timeout=30.0, limits=limits))
            for _ in range(shards)
        ]
        self.submit_timeout_s = submit_timeout_s

    async def submit(self, implementation: str, index: int, body: JobBody) -> Submission:
        sent_at = time.time()
        started = time.perf_counter()
        gate, http = self._shards[index % len(self._shards)]
        url = f"{self._urls[implementation]}/{implementation}/job"
        try:
            async with gate:
                response = await http.post(url, json=body, timeout=self.submit_timeout_s)
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


class AiohttpSubmitter:
    """`submit` as the harness did it with aiohttp: 100 keep-alive connections, the wait for one not timed.
    `urls` and `headers` as `HttpxSubmitter`'s."""

    def __init__(
        self,
        urls: Mapping[str, str],
        headers: Mapping[str, str],
        max_connections: int = 100,
        submit_timeout_s: float = 10.0,
    ) -> None:
        self._urls = {name: url.rstrip("/") for name, url in urls.items()}
        connector = aiohttp.TCPConnector(limit=max_connections, limit_per_host=0, keepalive_timeout=KEEPALIVE_EXPIRY_S)
        self._session = aiohttp.ClientSession(connector=connector, headers=dict(headers))
        self._timeout = aiohttp.ClientTimeout(sock_connect=submit_timeout_s, sock_read=submit_timeout_s)

    async def submit(self, implementation: str, index: int, body: JobBody) -> Submission:
        sent_at = time.time()
        started = time.perf_counter()
        try:
            url = f"{self._urls[implementation]}/{implementation}/job"
            async with self._session.post(url, json=body, timeout=self._timeout) as response:
                status, content = response.status, await response.read()
        except asyncio.TimeoutError:
            return Submission(index=index, sent_at=sent_at, latency_s=None, error="timeout")
        except (aiohttp.ClientError, OSError) as exc:
            return Submission(index=index, sent_at=sent_at, latency_s=None, error=f"{type(exc).__name__}: {exc}")
        job_id = json.loads(content).get("job_id") if status == 202 else None
        return Submission(
            index=index,
            sent_at=sent_at,
            latency_s=time.perf_counter() - started,
            status_code=status,
            job_id=job_id,
            error=None if job_id else f"HTTP {status}",
        )

    async def aclose(self) -> None:
        await self._session.close()


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


class CurlProbeGet:
    """A probe's GET through the harness's libcurl client (`taskbench.load.curl_http`), as the prober makes it."""

    def __init__(self, base_url: str) -> None:
        self._base_url = base_url
        self._http: CurlHttp | None = None

    async def get(self, path: str) -> int:
        if self._http is None:
            self._http = CurlHttp(connections=8, timeout_s=2.0, keepalive_s=KEEPALIVE_EXPIRY_S)
        status, _ = await self._http.get(self._base_url + path)
        return status

    async def aclose(self) -> None:
        if self._http is not None:
            self._http.close()


class HandWrittenProbeGet:
    """The probes' hand-written HTTP/1.1 GET (`taskbench.measure.probes._Http`)."""

    def __init__(self, base_url: str) -> None:
        self._http = _Http(base_url)

    async def get(self, path: str) -> int:
        return await self._http.get(path)

    async def aclose(self) -> None:
        self._http.close()


class ProbeGet(Protocol):
    async def get(self, path: str) -> int: ...

    async def aclose(self) -> None: ...


PROBE_CLIENTS: dict[str, Callable[[str], ProbeGet]] = {
    "libcurl": CurlProbeGet,
    "hand-written": HandWrittenProbeGet,
    "aiohttp": AiohttpProbeGet,
}
