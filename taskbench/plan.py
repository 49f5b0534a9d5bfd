"""What a run will do: the scenario list from the options, and how long it should take."""

from __future__ import annotations

from typing import Any

from taskbench import capacity, faults, implementations
from taskbench.results import RunSettings, ScenarioSpec, WorkerOptions

WORKLOADS = ("sleep", "async_sleep", "blocking_async", "cpu", "memory", "noop")
SPEC_JOBS = (10, 50, 100)
NOOP_JOBS = (1000, 10000)  # short jobs: what the queue itself costs, in jobs per second
QUICK_NOOP_JOBS = (1000,)
SPEC_DURATION_S = 30.0
QUICK_DURATION_S = 0.5
FAULT_OVERHEAD_S = 3.0


def scenarios(settings: RunSettings, fault_jobs: int) -> list[ScenarioSpec]:
    """Every scenario, once under each API middleware (grouped, so the API restarts once per middleware)."""
    return [
        spec.model_copy(update={"middleware": middleware})
        for middleware in settings.middleware
        for spec in _scenarios(settings, fault_jobs)
    ]


def _scenarios(settings: RunSettings, fault_jobs: int) -> list[ScenarioSpec]:
    specs = [
        ScenarioSpec(
            implementation=impl, workload=workload, jobs=jobs,
            duration_s=0.0 if workload == "noop" else settings.duration_s,
            memory_mb=settings.memory_mb if workload == "memory" else 0,
        )
        for workload in settings.workloads
        for jobs in (settings.noop_jobs if workload == "noop" else settings.jobs)
        for impl in settings.implementations
    ]  # fmt: skip
    specs += [
        ScenarioSpec(
            implementation=impl, workload=job.path, jobs=jobs, duration_s=job.duration_s,
            job_index=job.index, behaves_like=job.behaves_like,
        )
        for job in settings.user_jobs
        for jobs in settings.jobs
        for impl in settings.implementations
    ]  # fmt: skip
    for fault in settings.faults:
        for impl in settings.implementations:
            if not faults.applies(fault, impl, settings.worker):
                continue
            for variant in faults.variants(fault, impl):
                specs.append(
                    ScenarioSpec(
                        implementation=impl, workload="sleep", jobs=fault_jobs,
                        duration_s=settings.duration_s, fault=fault, variant=variant,
                    )
                )  # fmt: skip
    return specs


def expected_capacity(
    spec: ScenarioSpec, concurrency: int, cpu_count: int, worker: WorkerOptions | None = None
) -> capacity.Capacity:
    """The capacity model before the stack is up: the service's /health refines it at run time."""
    impl = implementations.get(spec.implementation)
    pool = {"pool": worker.pool} if worker else {}
    api_processes: list[dict[str, Any]] = [{}] * (
        worker.api_workers if worker else 1
    )  # what each API process' heartbeat would say
    workers = [w | pool for w in impl.nominal_workers(concurrency, cpu_count)]
    health = {impl.name: {"workers": workers, "processes": api_processes}}
    return impl.capacity(spec.model_workload, spec.jobs, concurrency, cpu_count, health)


def estimate_s(spec: ScenarioSpec, concurrency: int, cpu_count: int, worker: WorkerOptions | None = None) -> float:
    running = expected_capacity(spec, concurrency, cpu_count, worker).concurrency
    estimate = capacity.estimate_s(spec.jobs, running, spec.duration_s)
    if spec.fault:
        estimate += spec.duration_s / 2 + FAULT_OVERHEAD_S
        if spec.fault in faults.WORKER_FAULTS and implementations.get(spec.implementation).has_worker:
            estimate += faults.redelivery_timeout_for(spec.duration_s) + 4
    return estimate
