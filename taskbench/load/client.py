"""The harness's view of the service: plain HTTP, like any client. It never imports `app`."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Mapping
from typing import Any

import aiohttp
import httpx
import psutil

from taskbench import implementations
from taskbench.capacity import Capacity
from taskbench.errors import StackError
from taskbench.load.curl_http import CurlError, CurlHttp
from taskbench.record.results import StatusPoll, Submission
from taskbench_wire.health import BROKER_UNREACHABLE, Health
from taskbench_wire.records import JobBody, JobList, JobRecord

IDLE_TIMEOUT_S = 120.0
CONTROL_TIMEOUT_S = 30.0  # per network operation (connect, each read) of every call but a submission
# Below uvicorn's keep-alive timeout (5 s): otherwise a request sent on an idle connection just as the server
# closes it fails (seen with httpx, ReadError: 1 in 1000 bursts after a pause). aiohttp and libcurl both
# check the expiry when they take a connection from their pool.
KEEPALIVE_EXPIRY_S = 2.0


class ServiceError(httpx.HTTPError):
    """A call other than a submission failed: no connection, a timeout, or an HTTP error status.

    A subclass of `httpx.HTTPError` only so that callers written for the httpx client (the scenario's poll
    loop, which rides out an API that is down for a moment during a fault) still catch it; once they catch
    ServiceError itself, its base can become Exception.
    """


def _timeout(seconds: float) -> aiohttp.ClientTimeout:
    """`seconds` per network operation (connecting, then each read), as httpx's timeout was. The wait for a
    free connection in the pool is not included (`connect` stays None), nor is there a total."""
    return aiohttp.ClientTimeout(total=None, connect=None, sock_connect=seconds, sock_read=seconds)


def _session(connections: int, headers: Mapping[str, str]) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(limit=connections, limit_per_host=0, keepalive_timeout=KEEPALIVE_EXPIRY_S)
    return aiohttp.ClientSession(connector=connector, timeout=_timeout(CONTROL_TIMEOUT_S), headers=headers)


def auth_headers(token: str | None) -> dict[str, str]:
    """The API's bearer token (taskbench_service.guard) as a header; none when the service asks for none."""
    return {"Authorization": f"Bearer {token}"} if token else {}


class ServiceClient:
    """Submissions go over a pool of `max_connections` keep-alive connections; every other call over a
    second pool of the same size, so a poll of the job counts never queues behind a burst.

    Submissions go through libcurl (`taskbench.load.curl_http`), the rest through aiohttp. During a 1000-job
    burst httpx cost the harness ~1.4 ms of CPU per submission, more than the API server spent accepting
    it, so the burst measured the harness; aiohttp cost ~0.4 ms, libcurl less again (benchmarks/README.md,
    "Load generator (issue 13)"). Both pools are made on first use, in the loop that uses them.
    """

    def __init__(
        self,
        base_url: str,
        max_connections: int = 100,
        submit_timeout_s: float = 10.0,
        urls: Mapping[str, str] | None = None,
        token: str | None = None,
    ) -> None:
        """`urls`: the API of each implementation by label (each runs in an environment of its own); a label
        not in it, and every label of a service started by hand (--url), is served at `base_url`. `token`: the
        API's bearer token (the stack's; TASKBENCH_API_TOKEN for a service started by hand)."""
        self.headers = auth_headers(token)
        self.base_url = base_url.rstrip("/")
        self.urls = {label: url.rstrip("/") for label, url in (urls or {}).items()}
        self.max_connections = max_connections
        self.submit_timeout_s = submit_timeout_s
        self._http: aiohttp.ClientSession | None = None
        self._submissions: CurlHttp | None = None

    def url_for(self, label: str) -> str:
        return self.urls.get(label, self.base_url)

    def labels(self) -> list[str]:
        """The implementations this client reaches: those of the stack, or every registered one (--url)."""
        return list(self.urls) or list(implementations.REGISTRY)

    def _path(self, label: str, rest: str) -> str:
        """`celery@5.5.3`, "/jobs" → its API's URL + `/celery/jobs`: routes name the queue, not the release."""
        return f"{self.url_for(label)}/{implementations.plugin_name(label)}{rest}"

    @property
    def http(self) -> aiohttp.ClientSession:
        """The session for everything but submissions."""
        if self._http is None:
            self._http = _session(self.max_connections, self.headers)
        return self._http

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.close()
        if self._submissions is not None:
            self._submissions.close()
        self._http, self._submissions = None, None

    async def _call(
        self, method: str, path: str, *, timeout_s: float | None = None, params: dict[str, Any] | None = None
    ) -> tuple[int, bytes]:
        """Status and body of one call; ServiceError when it could not be made or took too long."""
        timeout = _timeout(timeout_s) if timeout_s is not None else None
        try:
            async with self.http.request(method, path, params=params, timeout=timeout) as response:
                return response.status, await response.read()
        except asyncio.TimeoutError as exc:
            raise ServiceError(f"{method} {path}: timeout") from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise ServiceError(f"{method} {path}: {type(exc).__name__}: {exc}") from exc

    async def _ok(self, method: str, path: str, **kwargs: Any) -> bytes:
        """The body of a call that must succeed (no 4xx or 5xx status), else ServiceError."""
        status, body = await self._call(method, path, **kwargs)
        if status >= 400:
            raise ServiceError(f"{method} {path}: HTTP {status}: {body[:200].decode(errors='replace')}")
        return body

    async def health(self, label: str | None = None) -> Health:
        """`/health` of `label`'s API (of `base_url` for None)."""
        url = self.url_for(label) if label is not None else self.base_url
        status, body = await self._call("GET", f"{url}/health", timeout_s=5.0)
        try:
            return Health.of(json.loads(body))
        except ValueError:  # not /health's JSON (a 500's text): as unanswered, said
            raise ServiceError(f"GET {url}/health: HTTP {status}: {body[:200].decode(errors='replace')}") from None

    async def submit(self, implementation: str, index: int, body: JobBody) -> Submission:
        sent_at = time.time()
        started = time.perf_counter()
        if self._submissions is None:
            self._submissions = CurlHttp(
                self.max_connections,
                self.submit_timeout_s,
                KEEPALIVE_EXPIRY_S,
                [f"{k}: {v}" for k, v in self.headers.items()],
            )
        url = self._path(implementation, "/job")
        try:
            status, content = await self._submissions.post(url, json.dumps(body).encode())
        except CurlError as exc:
            failure = "timeout" if exc.timed_out else str(exc)
            return Submission(index=index, sent_at=sent_at, latency_s=None, error=failure)
        latency = time.perf_counter() - started
        answer = json.loads(content) if status == 202 else {}
        job_id = answer.get("job_id")
        error = None if job_id else f"HTTP {status}: {content.decode(errors='replace')[:200]}"
        return Submission(
            index=index,
            sent_at=sent_at,
            latency_s=latency,
            status_code=status,
            job_id=job_id,
            error=error,
            submitted_at=answer.get("submitted_at"),
        )

    async def poll_statuses(self, implementation: str, job_ids: list[str], in_flight: int = 20) -> list[StatusPoll]:
        """Each job's status once, each on a new connection, as users' clients poll (a browser, another
        service): under several API processes the kernel hands each connection to one of them."""
        connector = aiohttp.TCPConnector(limit=in_flight, force_close=True)
        timeout = _timeout(CONTROL_TIMEOUT_S)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout, headers=self.headers) as session:

            async def poll(job_id: str) -> StatusPoll:
                sent_at, started = time.time(), time.perf_counter()
                try:
                    async with session.get(self._path(implementation, f"/status/{job_id}")) as response:
                        await response.read()
                        code = response.status
                except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
                    return StatusPoll(job_id=job_id, sent_at=sent_at, status_code=None, error=type(exc).__name__)
                return StatusPoll(
                    job_id=job_id, sent_at=sent_at, status_code=code, latency_s=time.perf_counter() - started
                )

            return list(await asyncio.gather(*(poll(job_id) for job_id in job_ids)))

    async def counts(self, implementation: str) -> JobList:
        """Counts by status and in all (no records); one cheap call, polled while a scenario waits."""
        return JobList.model_validate_json(
            await self._ok("GET", self._path(implementation, "/jobs"), params={"limit": 0})
        )

    async def jobs(self, implementation: str) -> list[JobRecord]:
        body = await self._ok("GET", self._path(implementation, "/jobs"), timeout_s=120.0)
        return JobList.model_validate_json(body).jobs

    async def clear(self, implementation: str) -> None:
        await self._ok("DELETE", self._path(implementation, "/jobs"))

    async def local_pids(self) -> dict[str, int]:
        """The API server and the first worker of each implementation that `/health` reports, where they run
        on this machine: a service started by hand still gets its processes sampled."""
        health = await self.health()
        candidates = [("api", health.api.pid, "uvicorn")]
        for name, impl in implementations.REGISTRY.items():
            candidates += [(impl.worker_role, w.pid, name) for w in impl.workers_seen(health)]
        pids: dict[str, int] = {}
        for role, pid, program in candidates:
            if pid is None:
                continue
            with contextlib.suppress(psutil.Error):
                if role not in pids and program in " ".join(psutil.Process(pid).cmdline()):
                    pids[role] = pid
        return pids

    async def busy(self, names: list[str] | None = None) -> int:
        """BackgroundTasks jobs accepted and not finished, plus every queue's jobs queued or held by a
        worker (of `names`, or of all implementations), each from its own API's `/health`."""
        labels = names if names is not None else self.labels()
        return _busy_in(await self._healths(labels), labels)

    async def _healths(self, labels: list[str]) -> dict[str, Health]:
        """Each label's API's `/health`, read once per API (several labels may share one)."""
        by_url: dict[str, Health] = {}
        for label in labels:
            url = self.url_for(label)
            if url not in by_url:
                by_url[url] = await self.health(label)
        return {label: by_url[self.url_for(label)] for label in labels}

    async def reset(self, names: list[str]) -> None:
        """A clean start: records cleared, queue purged, no job of an earlier scenario still running, and each
        queue's broker answering its API again (after a fault that dropped its connections)."""
        deadline = time.monotonic() + IDLE_TIMEOUT_S
        while True:
            for name in names:
                await self.clear(name)
            healths = await self._healths(names)
            unreachable = any(
                healths[name].section(implementations.plugin_name(name)).status == BROKER_UNREACHABLE for name in names
            )
            if not unreachable and not _busy_in(healths, names):
                return
            if time.monotonic() > deadline:
                raise StackError(f"the service stayed busy for {IDLE_TIMEOUT_S:.0f} s after clearing its jobs")
            await asyncio.sleep(0.2)

    async def capacity(
        self, implementation: str, workload: str, jobs: int, concurrency: int, cpu_count: int
    ) -> Capacity:
        """The concurrency the implementation really has for this workload, given what /health reports."""
        health = await self.health(implementation)
        return implementations.get(implementation).capacity(workload, jobs, concurrency, cpu_count, health)


def _busy_in(healths: dict[str, Health], labels: list[str]) -> int:
    """What `busy` counts, from each label's `/health`: each API process's BackgroundTasks in flight once (its
    own, exact; every other process of the server from its heartbeat), and each queue's waiting and held jobs."""
    busy, seen = 0, set()
    for label in labels:
        health = healths[label]
        if id(health) not in seen:
            seen.add(id(health))
            busy += health.api.fastapi_jobs_in_flight
            others = (p for s in health.sections.values() for p in s.processes if p.pid != health.api.pid)
            busy += sum(p.in_flight for p in others)
        queue = health.section(implementations.plugin_name(label))
        busy += queue.queued + sum(w.active + w.reserved for w in queue.workers)
    return busy
