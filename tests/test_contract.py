"""The contracts between harness and service: environment variables, the registries, each implementation's
environment, Celery's private hook."""

from __future__ import annotations

import pytest

from taskbench import implementations as harness_side
from taskbench.record.results import ApiOptions
from taskbench_service import settings
from taskbench_wire import env as contract
from tests.conftest import run_in_env


def test_harness_sets_exactly_the_variables_the_service_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    written = contract.ServiceEnv(
        redis_url="redis://127.0.0.1:1/3", ledger_path="/tmp/ledger", concurrency=7, delivery="acks_late",
        redelivery_timeout_s=9.0, restore_interval_s=0.5, redis_timeout_s=1.5, jobs=["a.b:c"], job_timeout_s=4.0,
        middleware="base-http", implementations=["celery"], telemetry_url="redis://:pw@127.0.0.1:2/0",
        telemetry_ledger="taskbench:ledger:celery", host_label="host-b",
    ).variables()  # fmt: skip
    assert set(written) == {*contract.ENV_VARS, *contract.CELERY_ENV_VARS}
    for name, value in written.items():
        monkeypatch.setenv(name, value)
    read = settings.load()
    assert (read.redis_url, read.broker_url, read.ledger_path, read.concurrency, read.delivery) == (
        "redis://127.0.0.1:1/3", "redis://127.0.0.1:1/3", "/tmp/ledger", 7, "acks_late",
    )  # fmt: skip
    assert (read.redelivery_timeout_s, read.restore_interval_s, read.redis_timeout_s) == (9.0, 0.5, 1.5)
    assert (read.jobs, read.job_timeout_s, read.middleware, read.implementations) == (
        ("a.b:c",), 4.0, "base-http", ("celery",),
    )  # fmt: skip
    assert (read.telemetry_url, read.telemetry_ledger, read.host_label) == (
        "redis://:pw@127.0.0.1:2/0", "taskbench:ledger:celery", "host-b",
    )  # fmt: skip


@pytest.mark.parametrize("name", list(harness_side.REGISTRY))
def test_each_environment_serves_its_implementation_alone(name: str) -> None:
    """Both registries name the same implementations, and each one's environment imports its service module."""
    code = (
        "from taskbench_service import implementations as s, main\n"
        f"assert list(s.REGISTRY) == {list(harness_side.REGISTRY)!r}\n"
        "print(','.join(i.name for i in main.IMPLEMENTATIONS))"
    )
    assert run_in_env(name, code) == name


def test_every_implementation_states_its_settings_deliveries_and_how_workloads_run() -> None:
    for impl in harness_side.REGISTRY.values():
        assert impl.settings(4, {}, ApiOptions()) and impl.deliveries and impl.title and impl.queue_package
        assert all(impl.how_it_runs(w, {}) for w in ("sleep", "async_sleep", "blocking_async", "cpu", "memory"))


def test_celery_still_has_the_private_hook_the_api_relies_on() -> None:
    """taskbench_service.implementations.celery.never_join_results_here calls it; if Celery drops it, fail loudly
    here (in Celery's own environment, at the release users install)."""
    assert run_in_env("celery", "import celery._state as s; print(callable(s._set_task_join_will_block))") == "True"


def test_the_plan_estimates_every_implementation_workload_and_fault_before_the_stack_is_up() -> None:
    from taskbench import faults
    from taskbench.record.results import RunSettings
    from taskbench.run import plan

    settings = RunSettings(
        implementations=list(harness_side.REGISTRY), workloads=list(plan.WORKLOADS), jobs=[10], noop_jobs=[100],
        duration_s=0.5, memory_mb=1, concurrency=4, faults=list(faults.FAULTS),
    )  # fmt: skip
    specs = plan.scenarios(settings, fault_jobs=5)
    assert {s.implementation for s in specs} == set(harness_side.REGISTRY)
    for spec in specs:
        assert plan.expected_capacity(spec, 4, 2).concurrency >= 1, spec.label
        assert plan.estimate_s(spec, 4, 2) > 0, spec.label
        fault = faults.of(spec)
        assert 0 <= fault.expected_s(spec) <= fault.allowance_s(spec), spec.label
    deploy = next(s for s in specs if s.fault == "worker-deploy" and s.variant == "long-grace")
    # expected to end with its jobs (0.5 s), not after Kubernetes' 30 s grace, which only a stuck worker uses
    assert faults.of(deploy).allowance_s(deploy) - faults.of(deploy).expected_s(deploy) >= 25


def test_harness_offers_the_middlewares_the_service_knows() -> None:
    from taskbench_service.middleware import MIDDLEWARES
    from taskbench_wire.enums import MIDDLEWARES as OFFERED

    assert OFFERED == MIDDLEWARES
