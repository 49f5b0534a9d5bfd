"""BackgroundTasks: jobs run inside the API process, after the response is sent; under `--api-workers N`
inside whichever of the N uvicorn processes took the request, each with its own thread pool."""

from __future__ import annotations

from taskbench.capacity import Capacity
from taskbench.implementations.base import Delivery, Implementation
from taskbench.record.results import ApiOptions, PluginOptions
from taskbench_wire.health import DEFAULT_THREADPOOL_TOKENS, Beat, Health


def api_processes(health: Health) -> list[Beat]:
    """The live processes of the API server that answered (their heartbeats), at least the one that answered."""
    return health.section("fastapi").processes or [Beat(threadpool_tokens=health.api.threadpool_tokens)]


class BackgroundTasksImplementation(Implementation):
    name = "fastapi"
    title = "BackgroundTasks"
    deliveries = (
        Delivery(
            "default",
            "none: a job lives in the API process and dies with it, record included",
            worker_crash="unaffected",
            child_crash="unaffected",
        ),
    )
    faults = ("api-crash", "api-deploy", "worker-crash", "worker-child-crash", "redis-restart")
    records_in_api_process = True
    packages = ()  # FastAPI and Starlette come with the service
    queue_package = "fastapi"

    def model(self, workload: str, jobs: int, cpu_count: int, workers: list[Beat], health: Health) -> Capacity:
        processes = api_processes(health)
        n = len(processes)
        where = f" in each of {n} API processes" if n > 1 else ""
        if workload == "async_sleep":
            return Capacity(concurrency=max(jobs, 1), reason="async jobs all run at once on the event loop" + where)
        if workload == "blocking_async":
            return Capacity(concurrency=n, reason="a blocking call in async def holds the one event loop" + where)
        if workload == "cpu":
            running = min(n, cpu_count)
            return Capacity(
                concurrency=running, reason=f"threads share one GIL{where}, on {cpu_count} cores", cpu_cores=cpu_count
            )
        tokens = sum(p.threadpool_tokens for p in processes)
        return Capacity(concurrency=tokens, reason=f"Starlette's threadpool: {tokens} threads" + (
            f" ({n} processes × {tokens // n})" if n > 1 else ""))  # fmt: skip

    def settings(self, concurrency: int, options: PluginOptions, api: ApiOptions) -> dict[str, str]:
        n = api.api_workers
        processes = f"{n} uvicorn processes (--workers {n})" if n > 1 else "1 uvicorn process"
        settings = {
            "runner": f"BackgroundTasks in the API process ({processes})",
            "thread pool": f"anyio default limiter, {DEFAULT_THREADPOOL_TOKENS} threads per process "
            "(shared with sync endpoints)",
            "--concurrency": "not used: BackgroundTasks have no knob",
            "graceful shutdown": "no limit (uvicorn's default): a SIGTERMed API waits for every background task"
            if api.graceful_timeout_s is None
            else f"--timeout-graceful-shutdown {api.graceful_timeout_s:g}: then running background tasks are cancelled",
        }
        if n > 1:
            settings["job records"] = (
                "in the memory of the process that took the job: a status request answered by another says 404"
            )
        return settings

    def how_it_runs(self, workload: str, options: PluginOptions) -> str:
        if workload in ("async_sleep", "blocking_async"):
            return "async def on the API's event loop"
        return "sync def in Starlette's threadpool"


IMPLEMENTATION = BackgroundTasksImplementation()
