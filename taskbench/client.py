"""The harness's view of the service: plain HTTP, like any client. It never imports `app`."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import httpx
import psutil

from taskbench import implementations
from taskbench.capacity import Capacity
from taskbench.errors import StackError
from taskbench.results import JobData, Submission

IDLE_TIMEOUT_S = 120.0
SHARD_CONNECTIONS = 10  # connections per submission pool; see ServiceClient
# Below uvicorn's keep-alive timeout (5 s, httpx's default expiry too): otherwise a request sent on an idle
# connection just as the server closes it fails with ReadError (seen: 1 in 1000 bursts after a pause).
KEEPALIVE_EXPIRY_S = 2.0


class _Shard:
    """A small httpx pool for submissions, with a gate so requests queue here, not in httpcore."""

    def __init__(self, base_url: str, connections: int) -> None:
        self.gate = asyncio.Semaphore(connections)
        limits = httpx.Limits(
            max_connections=connections, max_keepalive_connections=connections, keepalive_expiry=KEEPALIVE_EXPIRY_S
        )
        self.http = httpx.AsyncClient(base_url=base_url, timeout=httpx.Timeout(30.0), limits=limits)


class ServiceClient:
    """Submissions go over `max_connections` connections split into pools of SHARD_CONNECTIONS.

    httpcore's pool does O(connections²) work, plus O(queued × connections), on every request event
    (`_assign_requests_to_connections`); with one pool of 100 connections and a 1000-job burst queued
    in it, the harness spent ~7 ms of CPU per submission and became the bottleneck it measures.
    """

    def __init__(self, base_url: str, max_connections: int = 100, submit_timeout_s: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.submit_timeout_s = submit_timeout_s
        self.http = httpx.AsyncClient(
            base_url=self.base_url,
            timeout=httpx.Timeout(30.0),
            limits=httpx.Limits(
                max_connections=max_connections,
                max_keepalive_connections=max_connections,
                keepalive_expiry=KEEPALIVE_EXPIRY_S,
            ),
        )
        shards = max(1, -(-max_connections // SHARD_CONNECTIONS))
        self._shards = [_Shard(self.base_url, -(-max_connections // shards)) for _ in range(shards)]

    async def aclose(self) -> None:
        await self.http.aclose()
        for shard in self._shards:
            await shard.http.aclose()

    async def health(self) -> dict[str, Any]:
        response = await self.http.get("/health", timeout=5.0)
        return dict(response.json())

    async def submit(self, implementation: str, index: int, body: dict[str, Any]) -> Submission:
        sent_at = time.time()
        started = time.perf_counter()
        shard = self._shards[index % len(self._shards)]
        try:
            # The wait for a connection counts in the latency but not in the timeout: a request queued in
            # httpcore's pool also waited on its connection with no deadline (a 10 000-job burst had no
            # timeouts), so the timeout stays what it was: per network operation, once on the wire.
            async with shard.gate:
                response = await shard.http.post(f"/{implementation}/job", json=body, timeout=self.submit_timeout_s)
        except httpx.TimeoutException:
            return Submission(index=index, sent_at=sent_at, latency_s=None, error="timeout")
        except httpx.HTTPError as exc:
            return Submission(index=index, sent_at=sent_at, latency_s=None, error=f"{type(exc).__name__}: {exc}")
        latency = time.perf_counter() - started
        job_id = response.json().get("job_id") if response.status_code == 202 else None
        error = None if job_id else f"HTTP {response.status_code}: {response.text[:200]}"
        return Submission(
            index=index,
            sent_at=sent_at,
            latency_s=latency,
            status_code=response.status_code,
            job_id=job_id,
            error=error,
        )

    async def counts(self, implementation: str) -> dict[str, int]:
        """Counts by status and in all; one cheap call, polled while a scenario waits."""
        response = await self.http.get(f"/{implementation}/jobs", params={"limit": 0})
        response.raise_for_status()
        data = response.json()
        return {**data["counts"], "count": data["count"]}

    async def jobs(self, implementation: str) -> list[JobData]:
        response = await self.http.get(f"/{implementation}/jobs", timeout=120.0)
        response.raise_for_status()
        return [JobData.model_validate(job) for job in response.json()["jobs"]]

    async def clear(self, implementation: str) -> None:
        response = await self.http.delete(f"/{implementation}/jobs")
        response.raise_for_status()

    async def local_pids(self) -> dict[str, int]:
        """The API server and the first worker of each implementation that `/health` reports, where they run
        on this machine: a service started by hand still gets its processes sampled."""
        health = await self.health()
        candidates = [("api", health["api"]["pid"], "uvicorn")]
        for name, impl in implementations.REGISTRY.items():
            candidates += [(impl.worker_role, w["pid"], name) for w in impl.workers_seen(health)]
        pids: dict[str, int] = {}
        for role, pid, program in candidates:
            with contextlib.suppress(psutil.Error):
                if role not in pids and program in " ".join(psutil.Process(pid).cmdline()):
                    pids[role] = pid
        return pids

    async def busy(self, names: list[str] | None = None) -> int:
        """BackgroundTasks jobs accepted and not finished, plus every queue's jobs queued or held by a
        worker (of `names`, or of all implementations)."""
        health = await self.health()
        busy = int(health["api"]["fastapi_jobs_in_flight"])
        for name in names if names is not None else list(implementations.REGISTRY):
            queue = health.get(name, {})
            busy += int(queue.get("queued", 0))
            busy += sum(int(w.get("active", 0)) + int(w.get("reserved", 0)) for w in queue.get("workers", []))
        return busy

    async def reset(self, names: list[str]) -> None:
        """A clean start: records cleared, queue purged, no job of an earlier scenario still running."""
        deadline = time.monotonic() + IDLE_TIMEOUT_S
        while True:
            for name in names:
                await self.clear(name)
            if not await self.busy(names):
                return
            if time.monotonic() > deadline:
                raise StackError(f"the service stayed busy for {IDLE_TIMEOUT_S:.0f} s after clearing its jobs")
            await asyncio.sleep(0.2)

    async def capacity(
        self, implementation: str, workload: str, jobs: int, concurrency: int, cpu_count: int
    ) -> Capacity:
        """The concurrency the implementation really has for this workload, given what /health reports."""
        health = await self.health()
        return implementations.get(implementation).capacity(workload, jobs, concurrency, cpu_count, health)
