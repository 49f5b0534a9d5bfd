"""Where BackgroundTasks break, shown with real processes and short jobs."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from taskbench.analysis import summarise
from taskbench.analysis.models import ScenarioSummary
from taskbench.load.client import ServiceClient
from taskbench.record.results import RunEnvironment, RunSettings, ScenarioSpec, Thresholds
from taskbench.run.scenario import ScenarioContext, run_scenario
from taskbench.stack.stack import Stack, StackConfig

THRESHOLDS = Thresholds(responsive_p99_s=0.3)


@pytest.fixture(scope="module")
def own_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A stack of this module's own: the faults below kill and restart its processes."""
    with Stack(StackConfig(workdir=tmp_path_factory.mktemp("faults"), concurrency=2)) as stack:
        yield stack


def scenario(stack: Stack, implementation: str, workload: str, jobs: int, duration: float,
             fault: str | None = None, variant: str | None = None) -> ScenarioSummary:  # fmt: skip
    spec = ScenarioSpec(implementation=implementation, workload=workload, jobs=jobs, duration_s=duration,
                        fault=fault, variant=variant)  # fmt: skip
    settings = RunSettings(implementations=[implementation], workloads=[workload], jobs=[jobs], duration_s=duration,
                           memory_mb=0, concurrency=2, thresholds=THRESHOLDS)  # fmt: skip

    async def go() -> ScenarioSummary:
        client = ServiceClient(stack.url, urls=stack.urls(), token=stack.api_token)
        try:
            ctx = ScenarioContext(client=client, settings=settings, environment=RunEnvironment(), stack=stack)
            result = await run_scenario(ctx, spec, lambda done, total: None)
        finally:
            await client.aclose()
        assert not result.timed_out, result.events
        return summarise(result)

    return asyncio.run(go())


def rules(summary: ScenarioSummary) -> list[str]:
    return [f.rule for f in summary.failures]


def test_blocking_async_stalls_the_event_loop_and_async_sleep_does_not(own_stack: Stack) -> None:
    blocking = scenario(own_stack, "fastapi", "blocking_async", jobs=3, duration=0.8)
    polite = scenario(own_stack, "fastapi", "async_sleep", jobs=3, duration=0.8)
    assert "server unresponsive (async endpoint)" in rules(blocking)
    assert (blocking.probes["async"].max or 0) >= 0.5
    assert blocking.max_running == 1  # one at a time: the loop runs nothing else
    assert not any(r.startswith("server unresponsive") for r in rules(polite)), polite.failures
    assert polite.max_running == 3
    assert polite.completion.completed == blocking.completion.completed == 3


def test_cpu_jobs_slow_the_api_under_fastapi_not_under_celery(own_stack: Stack) -> None:
    fastapi = scenario(own_stack, "fastapi", "cpu", jobs=3, duration=0.6)
    celery = scenario(own_stack, "celery", "cpu", jobs=3, duration=0.6)
    assert (fastapi.probes["async"].p99 or 0) > 2 * (celery.probes["async"].p99 or 0), (
        fastapi.probes["async"],
        celery.probes["async"],
    )
    assert fastapi.completion.completed == celery.completion.completed == 3


def test_api_crash_loses_fastapi_jobs_in_flight_and_no_celery_job(own_stack: Stack) -> None:
    fastapi = scenario(own_stack, "fastapi", "sleep", jobs=5, duration=1.0, fault="api-crash")
    celery = scenario(own_stack, "celery", "sleep", jobs=5, duration=1.0, fault="api-crash")
    assert fastapi.executions.source == "ledger"
    assert fastapi.executions.lost == 5 and len(fastapi.executions.lost_ids) == 5
    assert "jobs not completed" in rules(fastapi)
    assert celery.executions.lost == 0 and celery.completion.completed == 5
    assert celery.executions.completed_after_fault >= 1  # the worker went on while the API was down


def test_ledger_lives_outside_redis_and_the_api(own_stack: Stack) -> None:
    assert Path(own_stack.ledger_path).is_file()


def test_after_a_redis_restart_the_api_reconnects_without_failing_a_submission(own_stack: Stack) -> None:
    import httpx

    async def burst() -> list[int]:
        async with httpx.AsyncClient(base_url=own_stack.url, timeout=10, headers=own_stack.api_headers) as http:
            responses = await asyncio.gather(*(http.post("/celery/job", json={"duration": 0}) for _ in range(40)))
        return [r.status_code for r in responses]

    assert asyncio.run(burst()) == [202] * 40  # fills the API's Redis pool with connections the restart drops
    own_stack.restart_redis(persistent=False)
    assert asyncio.run(burst()) == [202] * 40
