"""The FastAPI app: `/{name}/*` for every registered implementation, plus `/`, `/metrics` and `/health`."""

from __future__ import annotations

import asyncio
import math
import os
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import cache
from importlib import metadata
from typing import Any

import anyio.to_thread
import redis
import redis.asyncio as aredis
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from taskbench_service import implementations, metrics, workloads
from taskbench_service.guard import Guard
from taskbench_service.implementations.base import BrokerUnavailable, job_router
from taskbench_service.implementations.fastapi import IMPLEMENTATION as BACKGROUND_TASKS
from taskbench_service.limits import BodySizeLimit
from taskbench_service.middleware import MIDDLEWARES, PassThrough
from taskbench_service.settings import MAX_BODY_BYTES, MAX_DURATION_S, settings
from taskbench_wire.health import BROKER_UNREACHABLE, Api, Section
from taskbench_wire.urls import redacted as _redacted  # hides a password in a URL

IMPLEMENTATIONS = implementations.load_all(settings.implementations)
_redis: dict[str, aredis.Redis] = {}  # the /health ping's client, created at start-up


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    workloads.calibrate()
    _redis["health"] = aredis.Redis.from_url(
        settings.redis_url, socket_connect_timeout=settings.redis_timeout_s, socket_timeout=settings.redis_timeout_s
    )
    for impl in IMPLEMENTATIONS:
        await impl.startup()
    yield
    for impl in IMPLEMENTATIONS:
        await impl.shutdown()
    await _redis["health"].aclose()


app = FastAPI(
    title="taskbench service",
    description="FastAPI BackgroundTasks and job queues, side by side, under the same jobs.",
    lifespan=lifespan,
)
app.add_middleware(BodySizeLimit, max_bytes=MAX_BODY_BYTES)
app.add_middleware(Guard, token=settings.api_token, allowed_hosts=settings.allowed_hosts)  # outside the body cap
if settings.middleware not in MIDDLEWARES:
    raise ValueError(f"TASKBENCH_MIDDLEWARE={settings.middleware!r}: choose from {', '.join(MIDDLEWARES)}")
if settings.middleware == "base-http":
    app.add_middleware(PassThrough)  # the outermost, as a logging or auth middleware usually is
for _impl in IMPLEMENTATIONS:
    app.include_router(job_router(_impl))


def _json_safe(value: Any) -> Any:
    """NaN and ±Infinity as text: JSON has neither, and an answer that holds one cannot be sent."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


@app.exception_handler(RequestValidationError)
async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
    """FastAPI's own 422, safe for a body that held NaN or Infinity (its handler answered 500 for those)."""
    return JSONResponse({"detail": _json_safe(jsonable_encoder(exc.errors()))}, status_code=422)


@app.exception_handler(redis.RedisError)
async def redis_unavailable(_: Request, exc: redis.RedisError) -> JSONResponse:
    message = f"Redis is unreachable at {_redacted(settings.redis_url)}: {exc}"
    return JSONResponse({"detail": message}, status_code=503)


@app.exception_handler(BrokerUnavailable)
async def broker_unavailable(request: Request, exc: BrokerUnavailable) -> JSONResponse:
    name = request.url.path.strip("/").split("/")[0]
    url = next((impl.broker_url for impl in IMPLEMENTATIONS if impl.name == name), settings.broker_url)
    message = f"the {name} broker at {_redacted(url)} is unavailable: {exc}"
    return JSONResponse({"detail": message}, status_code=503)


@cache
def installed_packages() -> dict[str, str]:
    """Every distribution this process can import, with its version: what a report of a service started by
    hand records (a stack taskbench started records its environments itself)."""
    names = {dist.metadata["Name"]: dist.version for dist in metadata.distributions() if dist.metadata["Name"]}
    return {re.sub(r"[-_.]+", "-", name).lower(): version for name, version in sorted(names.items())}


@app.get("/")
async def info() -> dict[str, Any]:
    return {
        "name": "taskbench service",
        "pid": os.getpid(),
        "middleware": settings.middleware,
        "implementations": {impl.name: impl.describe() for impl in IMPLEMENTATIONS},
        "limits": {"max_duration_s": MAX_DURATION_S, "max_body_bytes": MAX_BODY_BYTES},
        "packages": installed_packages(),
        "endpoints": sorted(
            f"{method.upper()} {path}" for path, ops in app.openapi()["paths"].items() for method in ops
        ),
    }


@app.get("/metrics")
async def system_metrics() -> dict[str, Any]:
    return metrics.snapshot()


def _api() -> Api:
    return Api(pid=os.getpid(), fastapi_jobs_in_flight=BACKGROUND_TASKS.in_flight)


@app.get("/health")
async def health() -> JSONResponse:
    """Cheap by design (a Redis ping and one read per queue, no broadcast): the harness probes it at 10 Hz.
    Its shape (`api`, then a `Section` per implementation under its name) is `taskbench_wire.health`."""
    limiter = anyio.to_thread.current_default_thread_limiter()  # on the loop: a sync endpoint cannot read it
    api = _api().model_copy(
        update={"threadpool_tokens": int(limiter.total_tokens), "threadpool_borrowed": limiter.borrowed_tokens}
    )
    body: dict[str, Any] = {"status": "ok", "api": api.model_dump()}
    started = time.perf_counter()
    try:
        await _redis["health"].ping()
        latency_ms = (time.perf_counter() - started) * 1000
        sections = await asyncio.gather(*(impl.health() for impl in IMPLEMENTATIONS))
    except redis.RedisError as exc:
        body["status"] = "unavailable"
        body["redis"] = {"status": "unreachable", "url": _redacted(settings.redis_url), "error": str(exc)}
        for impl in IMPLEMENTATIONS:
            body[impl.name] = Section(status="unknown").model_dump()
        return JSONResponse(body, status_code=503)
    body["redis"] = {"status": "ok", "latency_ms": latency_ms}
    body["broker"] = {"kind": settings.broker, "url": _redacted(settings.broker_url)}  # Celery's and Dramatiq's
    body |= {impl.name: section.model_dump() for impl, section in zip(IMPLEMENTATIONS, sections, strict=True)}
    if any(section.status == BROKER_UNREACHABLE for section in sections):
        body["status"] = "unavailable"
        return JSONResponse(body, status_code=503)
    return JSONResponse(body)


@app.get("/health/sync")
def health_sync() -> dict[str, Any]:
    """The same liveness answer from a sync endpoint: it needs a threadpool thread, so it shows starvation."""
    return {"status": "ok", "api": _api().model_dump()}
