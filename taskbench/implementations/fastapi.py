"""BackgroundTasks: jobs run inside the API process, after the response is sent."""

from __future__ import annotations

from typing import Any

from taskbench.capacity import Capacity
from taskbench.implementations.base import Delivery, Implementation

FASTAPI_THREADS = 40  # anyio's default limiter; the run reads the real value from /health


class BackgroundTasksImplementation(Implementation):
    name = "fastapi"
    title = "BackgroundTasks"
    job_process = "api"
    deliveries = (
        Delivery(
            "default",
            "none: a job lives in the API process and dies with it, record included",
            worker_crash="unaffected",
            child_crash="unaffected",
        ),
    )
    faults = ("api-crash", "worker-crash", "worker-child-crash", "redis-restart")

    def capacity(self, workload: str, jobs: int, concurrency: int, cpu_count: int, health: dict[str, Any]) -> Capacity:
        if workload == "async_sleep":
            return Capacity(concurrency=max(jobs, 1), reason="async jobs all run at once on the event loop")
        if workload == "blocking_async":
            return Capacity(concurrency=1, reason="a blocking call in async def holds the one event loop")
        if workload == "cpu":
            return Capacity(concurrency=1, reason="threads share one GIL", cpu_cores=cpu_count)
        tokens = int(health.get("api", {}).get("threadpool_tokens", FASTAPI_THREADS))
        return Capacity(concurrency=tokens, reason=f"Starlette's threadpool: {tokens} threads")

    def settings(self, concurrency: int) -> dict[str, str]:
        return {
            "runner": "BackgroundTasks in the API process (1 uvicorn process)",
            "thread pool": f"anyio default limiter, {FASTAPI_THREADS} threads (shared with sync endpoints)",
            "--concurrency": "not used: BackgroundTasks have no knob",
        }

    def how_it_runs(self, workload: str) -> str:
        if workload in ("async_sleep", "blocking_async"):
            return "async def on the API's event loop"
        return "sync def in Starlette's threadpool"


IMPLEMENTATION = BackgroundTasksImplementation()
