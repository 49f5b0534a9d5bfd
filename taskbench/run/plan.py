"""What a run will do: the scenario list from the options, and how long it should take."""

from __future__ import annotations

import os

from taskbench import capacity, faults, implementations
from taskbench.hosts import cgroups
from taskbench.load import arrivals
from taskbench.record.results import LoadOptions, RunSettings, ScenarioSpec
from taskbench_wire import enums
from taskbench_wire.health import Beat, Health, Section

WORKLOADS = enums.BUILT_IN_WORKLOADS
SPEC_JOBS = (10, 50, 100)
NOOP_JOBS = (1000, 10000)  # short jobs: what the queue itself costs, in jobs per second
QUICK_NOOP_JOBS = (1000,)
SPEC_DURATION_S = 30.0
QUICK_DURATION_S = 0.5
FAULT_OVERHEAD_S = 3.0
# --quick repeats every scenario: its 0.5 s jobs make single runs noisy, and three runs show the spread
# and mark a rule that fires in some runs only as borderline. The spec's 30 s profile runs once.
QUICK_REPEAT = 3
SPEC_REPEAT = 1
RESPONSIVE_P99_MAX_S = 0.5  # what a user still calls responsive
RESPONSIVE_P99_MIN_S = 0.25  # below this a 2-core machine's own load under a burst reads as unresponsive


def responsive_limit_s(duration_s: float) -> float:
    """The probe p99 limit for jobs of `duration_s`: at most half a job, so that a probe which waited for a
    job to free a thread (up to one job duration) is judged unresponsive, not found on the limit's edge
    (0.5 s jobs against a 0.5 s limit measured 478 ms: a coin toss); within [0.25, 0.5] s."""
    return min(RESPONSIVE_P99_MAX_S, max(RESPONSIVE_P99_MIN_S, duration_s / 2))


def scenarios(settings: RunSettings, fault_jobs: int) -> list[ScenarioSpec]:
    """Every scenario, once under each API middleware (grouped, so the API restarts once per middleware), and
    `settings.repeat` times, interleaved: the whole list, then again (A B A B, never A A B B), so that drift on
    a shared machine does not favour one implementation."""
    once = _swept(_scenarios_once(settings, fault_jobs), settings.concurrency_sweep)
    each = [spec.model_copy(update={"middleware": middleware}) for middleware in settings.middleware for spec in once]
    return [spec.model_copy(update={"repeat": repeat}) for repeat in range(settings.repeat) for spec in each]


def left_out(settings: RunSettings) -> dict[str, list[str]]:
    """Each fault asked for, and the implementations of the run it does not apply to (the plan leaves them out)."""
    out = {
        fault: [
            impl
            for impl in settings.implementations
            if not faults.get(fault).applies(implementations.get(impl), settings.options_of(impl))
        ]
        for fault in settings.faults
    }
    return {fault: impls for fault, impls in out.items() if impls}


def _swept(specs: list[ScenarioSpec], values: list[int]) -> list[ScenarioSpec]:
    """With `--concurrency 4,16,40`, every scenario of an implementation with a worker once per value, the
    values in order (one worker restart each); the others (BackgroundTasks) once, with the first."""
    if not values:
        return specs
    swept = []
    for value in values:
        for spec in specs:
            if implementations.get(spec.implementation).has_worker and not spec.fault:
                swept.append(spec.model_copy(update={"concurrency": value}))
            elif value == values[0]:
                swept.append(spec)
    return swept


def _scenarios_once(settings: RunSettings, fault_jobs: int) -> list[ScenarioSpec]:
    if settings.load is not None:
        return _rate_steps(settings, settings.load)
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
            plugin, implementation = faults.get(fault), implementations.get(impl)
            if not plugin.applies(implementation, settings.options_of(impl)):
                continue
            for variant in plugin.variants(implementation):
                spec = ScenarioSpec(
                    implementation=impl, workload="sleep", jobs=fault_jobs,
                    duration_s=settings.duration_s, fault=fault, variant=variant,
                )  # fmt: skip
                specs.append(plugin.shaped(spec, settings))  # worker-oom: memory jobs above the worker's limit
    return specs


def _rate_steps(settings: RunSettings, load: LoadOptions) -> list[ScenarioSpec]:
    """Sustained load: every implementation and workload at each rate, the rates in order. Under --rate auto
    or --target-rate, the first step of each search (`taskbench.run.search` chooses the next from its verdicts)."""
    workloads = [
        (w, 0.0 if w == "noop" else settings.duration_s, None, None, settings.memory_mb if w == "memory" else 0)
        for w in settings.workloads
        if w != capacity.UNEVEN  # a burst's shape: its first job long
    ] + [(j.path, j.duration_s, j.index, j.behaves_like, 0) for j in settings.user_jobs]
    specs = [
        ScenarioSpec(
            implementation=impl, workload=workload, jobs=0, duration_s=duration, memory_mb=memory_mb,
            job_index=index, behaves_like=like, arrivals=load.arrivals, for_s=load.for_s,
        )
        for workload, duration, index, like, memory_mb in workloads
        for impl in settings.implementations
    ]  # fmt: skip
    if load.target_rate:
        return [rate_step(spec, load.target_rate, load) for spec in specs]
    if load.auto:
        return [rate_step(spec, search_start(spec, settings, load), load) for spec in specs]
    return [rate_step(spec, rate, load) for rate in load.rates for spec in specs]


SEARCH_STEPS_EXPECTED = 6  # a search's usual length: two or three steps up, three or four to bisect
NOOP_START_RATE = 50.0  # jobs/s: --rate auto's first step for 0 s jobs, which the capacity model cannot size


def search_start(spec: ScenarioSpec, settings: RunSettings, load: LoadOptions) -> float:
    """--rate auto's first rate: the one given, else a quarter of what the capacity model says the
    implementation can run (jobs at once ÷ job duration), to one significant digit: the search doubles from there
    and needs few steps to pass the saturation point."""
    if load.start_rate is not None:
        return load.start_rate
    if spec.duration_s <= 0:
        return NOOP_START_RATE
    slots = expected_capacity(spec, settings.concurrency, os.cpu_count() or 1, settings).concurrency
    return float(f"{max(slots / spec.duration_s / 4, 0.1):.1g}")


def rate_step(spec: ScenarioSpec, rate: float, load: LoadOptions) -> ScenarioSpec:
    """`spec` at `rate`: its job count is what the schedule holds (Poisson: drawn with the run's seed)."""
    jobs = len(arrivals.schedule(rate, load.for_s, load.arrivals, load.seed))
    return spec.model_copy(update={"rate": rate, "for_s": load.for_s, "arrivals": load.arrivals, "jobs": jobs})


def expected_capacity(
    spec: ScenarioSpec, concurrency: int, cpu_count: int, settings: RunSettings | None = None
) -> capacity.Capacity:
    """The capacity model before the stack is up: the service's /health refines it at run time."""
    concurrency = spec.concurrency or concurrency
    impl = implementations.get(spec.implementation)
    cpu_count = cgroups.cores_for(settings, spec.implementation, cpu_count, impl.has_worker)  # a CPU limit
    options = settings.options_of(spec.implementation) if settings else {}
    workers = impl.nominal_workers(concurrency, cpu_count, options)
    api_processes = [Beat()] * (settings.api.api_workers if settings else 1)  # each API process' heartbeat
    health = Health(sections={impl.name: Section(workers=workers, processes=api_processes)})
    return impl.capacity(spec.model_workload, spec.jobs, concurrency, cpu_count, health)


def estimate_s(spec: ScenarioSpec, concurrency: int, cpu_count: int, settings: RunSettings | None = None) -> float:
    running = expected_capacity(spec, concurrency, cpu_count, settings).concurrency
    estimate = capacity.estimate_s(spec.jobs, running, spec.duration_s, spec.workload)
    if spec.for_s is not None:  # a sustained-load step: its length and a drain, more when it saturates
        estimate = max(estimate, spec.for_s + spec.duration_s + capacity.SCENARIO_OVERHEAD_S)
        load = settings.load if settings else None
        if load is not None and (load.auto or load.target_rate):
            estimate *= SEARCH_STEPS_EXPECTED  # a search: its steps, each a scenario like this one
    if spec.fault:
        estimate += spec.duration_s / 2 + FAULT_OVERHEAD_S
        estimate += faults.of(spec).expected_s(spec)  # the redelivery it may wait for, the time a host is cut off
    return estimate
