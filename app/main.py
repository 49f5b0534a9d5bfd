"""The FastAPI app: `/fastapi/*` and `/celery/*` jobs, plus `/`, `/metrics` and `/health`."""

from __future__ import annotations

import json
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio.to_thread
import redis
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from kombu.utils.url import maybe_sanitize_url as _redacted  # hides a password in a URL

from app import celery_jobs, fastapi_jobs, metrics
from app.limits import BodySizeLimit
from app.settings import MAX_BODY_BYTES, MAX_DURATION_S, settings
from app.tasks import WORKERS_KEY

WORKER_STALE_S = 5.0  # a worker whose heartbeat is older than this is not counted as seen


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    yield
    celery_jobs.publisher.shutdown(wait=False, cancel_futures=True)
    await celery_jobs.store.redis.aclose()


app = FastAPI(
    title="taskbench service",
    description="FastAPI BackgroundTasks and Celery, side by side, under the same jobs.",
    lifespan=lifespan,
)
app.add_middleware(BodySizeLimit, max_bytes=MAX_BODY_BYTES)
app.include_router(fastapi_jobs.router)
app.include_router(celery_jobs.router)


@app.exception_handler(redis.RedisError)
async def redis_unavailable(_: Request, exc: redis.RedisError) -> JSONResponse:
    message = f"Redis is unreachable at {_redacted(settings.redis_url)}: {exc}"
    return JSONResponse({"detail": message}, status_code=503)


@app.exception_handler(celery_jobs.BrokerUnavailable)
async def broker_unavailable(_: Request, exc: celery_jobs.BrokerUnavailable) -> JSONResponse:
    message = f"the Celery broker at {_redacted(settings.broker_url)} is unavailable: {exc}"
    return JSONResponse({"detail": message}, status_code=503)


def _threadpool_tokens() -> int:
    return int(anyio.to_thread.current_default_thread_limiter().total_tokens)


@app.get("/")
async def info() -> dict[str, Any]:
    return {
        "name": "taskbench service",
        "pid": os.getpid(),
        "implementations": {
            "fastapi": {"runner": "BackgroundTasks", "threadpool_tokens": _threadpool_tokens()},
            "celery": {
                "broker": _redacted(settings.broker_url),
                "backend": _redacted(settings.result_backend),
            },
        },
        "limits": {"max_duration_s": MAX_DURATION_S, "max_body_bytes": MAX_BODY_BYTES},
        "endpoints": sorted(
            f"{method.upper()} {path}" for path, ops in app.openapi()["paths"].items() for method in ops
        ),
    }


@app.get("/metrics")
async def system_metrics() -> dict[str, Any]:
    return metrics.snapshot()


def _api_component() -> dict[str, Any]:
    return {"status": "ok", "pid": os.getpid(), "fastapi_jobs_in_flight": fastapi_jobs.store.in_flight}


@app.get("/health")
async def health() -> JSONResponse:
    """Cheap by design (one pipelined Redis round trip, no broadcast): the harness probes it at 10 Hz."""
    limiter = anyio.to_thread.current_default_thread_limiter()
    api = {
        **_api_component(),
        "threadpool_tokens": limiter.total_tokens,
        "threadpool_borrowed": limiter.borrowed_tokens,
    }
    body: dict[str, Any] = {"status": "ok", "api": api}
    started = time.perf_counter()
    try:
        async with celery_jobs.store.redis.pipeline(transaction=False) as pipe:
            pipe.ping()
            pipe.hgetall(WORKERS_KEY)
            pipe.llen("celery")
            _, beats, queued = await pipe.execute()
    except redis.RedisError as exc:
        body["status"] = "unavailable"
        body["redis"] = {"status": "unreachable", "url": _redacted(settings.redis_url), "error": str(exc)}
        body["celery"] = {"status": "unknown", "workers": []}
        return JSONResponse(body, status_code=503)
    now = time.time()
    workers = [w for w in map(json.loads, beats.values()) if now - w["t"] < WORKER_STALE_S]
    body["redis"] = {"status": "ok", "latency_ms": (time.perf_counter() - started) * 1000}
    body["celery"] = {"status": "ok" if workers else "no workers", "queued": queued, "workers": workers}
    return JSONResponse(body)


@app.get("/health/sync")
def health_sync() -> dict[str, Any]:
    """The same liveness answer from a sync endpoint: it needs a threadpool thread, so it shows starvation."""
    return {"status": "ok", "api": _api_component()}
