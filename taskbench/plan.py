"""What a run will do: the scenario list from the options, and how long it should take."""

from __future__ import annotations

import math

from taskbench import faults
from taskbench.results import RunSettings, ScenarioSpec

WORKLOADS = ("sleep", "async_sleep", "blocking_async", "cpu", "memory")
IMPLEMENTATIONS = ("fastapi", "celery")
SPEC_JOBS = (10, 50, 100)
SPEC_DURATION_S = 30.0
QUICK_DURATION_S = 0.5
FASTAPI_THREADS = 40  # anyio's default limiter; the run reads the real value from /health
SCENARIO_OVERHEAD_S = 2.0


def scenarios(settings: RunSettings, fault_jobs: int) -> list[ScenarioSpec]:
    specs = [
        ScenarioSpec(
            implementation=impl, workload=workload, jobs=jobs, duration_s=settings.duration_s,
            memory_mb=settings.memory_mb if workload == "memory" else 0,
        )
        for workload in settings.workloads
        for jobs in settings.jobs
        for impl in settings.implementations
    ]  # fmt: skip
    for fault in settings.faults:
        for impl in settings.implementations:
            for variant in faults.variants(fault, impl):
                specs.append(
                    ScenarioSpec(
                        implementation=impl, workload="sleep", jobs=fault_jobs,
                        duration_s=settings.duration_s, fault=fault, variant=variant,
                    )
                )  # fmt: skip
    return specs


def expected_concurrency(spec: ScenarioSpec, celery_concurrency: int, cpu_count: int) -> int:
    if spec.implementation == "celery":
        return min(celery_concurrency, cpu_count) if spec.workload == "cpu" else celery_concurrency
    return {"async_sleep": spec.jobs, "blocking_async": 1, "cpu": 1}.get(spec.workload, FASTAPI_THREADS)


def estimate_s(spec: ScenarioSpec, celery_concurrency: int, cpu_count: int) -> float:
    waves = math.ceil(spec.jobs / max(expected_concurrency(spec, celery_concurrency, cpu_count), 1))
    estimate = waves * spec.duration_s + SCENARIO_OVERHEAD_S
    if spec.fault:
        estimate += spec.duration_s / 2 + 3
        if spec.fault in faults.WORKER_FAULTS and spec.implementation == "celery":
            estimate += faults.visibility_timeout_for(spec.duration_s) + 4
    return estimate
