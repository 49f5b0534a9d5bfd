"""The contracts between harness and service: environment variables, the registries, Celery's private hook."""

from __future__ import annotations

import celery._state

from app import implementations as service_side
from app import settings
from taskbench import implementations as harness_side
from taskbench.service_env import ServiceEnv


def test_harness_sets_exactly_the_variables_the_service_reads() -> None:
    written = set(ServiceEnv(redis_url="redis://127.0.0.1:1/0", ledger_path="/tmp/ledger").variables())
    assert written == {*settings.ENV_VARS, *settings.CELERY_ENV_VARS}


def test_both_registries_name_the_same_implementations() -> None:
    assert list(service_side.REGISTRY) == list(harness_side.REGISTRY)
    for name in service_side.REGISTRY:
        assert service_side.load(name).name == harness_side.get(name).name == name


def test_every_implementation_states_its_settings_deliveries_and_how_workloads_run() -> None:
    for impl in harness_side.REGISTRY.values():
        assert impl.settings(4) and impl.deliveries and impl.title
        assert all(impl.how_it_runs(w) for w in ("sleep", "async_sleep", "blocking_async", "cpu", "memory"))


def test_celery_still_has_the_private_hook_the_api_relies_on() -> None:
    """app.implementations.celery.never_join_results_here calls it; if Celery drops it, fail loudly here."""
    assert callable(celery._state._set_task_join_will_block)  # type: ignore[attr-defined]


def test_the_plan_estimates_every_implementation_workload_and_fault_before_the_stack_is_up() -> None:
    from taskbench import faults, plan
    from taskbench.results import RunSettings

    settings = RunSettings(
        implementations=list(harness_side.REGISTRY), workloads=list(plan.WORKLOADS), jobs=[10], noop_jobs=[100],
        duration_s=0.5, memory_mb=1, concurrency=4, faults=list(faults.FAULTS),
    )  # fmt: skip
    specs = plan.scenarios(settings, fault_jobs=5)
    assert {s.implementation for s in specs} == set(harness_side.REGISTRY)
    for spec in specs:
        assert plan.expected_capacity(spec, 4, 2).concurrency >= 1, spec.label
        assert plan.estimate_s(spec, 4, 2) > 0, spec.label


def test_harness_offers_the_middlewares_the_service_knows() -> None:
    from app.middleware import MIDDLEWARES
    from taskbench.cli import MIDDLEWARES as OFFERED

    assert OFFERED == MIDDLEWARES
