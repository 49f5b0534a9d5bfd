"""The PostgreSQL queues on a private PostgreSQL: the connections each process holds are measured, and a restart
of PostgreSQL is a fault the stack recovers from (every queue takes and runs jobs again afterwards)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import httpx
import pytest

from taskbench import implementations
from taskbench.record.results import RunSettings, ScenarioResult, ScenarioSpec
from taskbench.stack.stack import Stack, StackConfig
from tests.conftest import run_on

QUEUES = tuple(name for name, impl in implementations.REGISTRY.items() if impl.needs_postgres)
JOBS, DURATION_S, CONCURRENCY = 4, 1.0, 2

pytestmark = pytest.mark.skipif(not QUEUES, reason="no PostgreSQL queue in the registry (TASKBENCH_TEST_ONLY)")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    config = StackConfig(workdir=tmp_path_factory.mktemp("pg"), concurrency=CONCURRENCY, implementations=QUEUES)
    with Stack(config) as running:
        yield running


def scenario(stack: Stack, name: str, fault: str | None, timeout_s: float | None = None) -> ScenarioResult:
    spec = ScenarioSpec(implementation=name, workload="sleep", jobs=JOBS, duration_s=DURATION_S, fault=fault)
    settings = RunSettings(implementations=[name], workloads=["sleep"], jobs=[JOBS], duration_s=DURATION_S,
                           memory_mb=0, concurrency=CONCURRENCY)  # fmt: skip
    stack.select(name)
    return run_on(stack, spec, settings, timeout_s=timeout_s)


@pytest.mark.parametrize("name", QUEUES)
def test_the_connections_each_process_holds_are_measured(stack: Stack, name: str) -> None:
    result = scenario(stack, name, None)
    done = Counter(e.job_id for e in result.executions if e.event == "end" and e.ok)
    assert len(done) == JOBS and set(done.values()) == {1}
    for role in ("api", implementations.worker_role(name)):
        held = [s.processes[role].connections for s in result.samples if role in s.processes]
        assert held and max(c or 0 for c in held) >= 1, (role, held)  # each talks to PostgreSQL over TCP
    assert "redis" in result.samples[-1].processes and "postgres" in result.samples[-1].processes


@pytest.mark.parametrize("name", QUEUES)
def test_a_postgres_restart_is_a_fault_the_stack_recovers_from(stack: Stack, name: str) -> None:
    port = stack.postgres_url.rsplit(":", 1)[1]
    result = scenario(stack, name, "postgres-restart", timeout_s=15.0)  # not the run's allowance for redelivery
    names = [e.name for e in result.events]
    assert "fault" in names and "recovered" in names
    assert stack.postgres_url.rsplit(":", 1)[1] == port  # the same server, on the same port
    # Whatever the restart did to the jobs in flight (each queue's finding), the queue works afterwards.
    after = scenario(stack, name, None)
    done = {e.job_id for e in after.executions if e.event == "end" and e.ok}
    accepted = {s.job_id for s in after.submissions if s.job_id}
    assert len(accepted) == JOBS and accepted <= done, after.events


@pytest.mark.parametrize("name", QUEUES)
def test_postgres_ending_every_session_is_a_fault_every_queue_rides_out_or_reports(stack: Stack, name: str) -> None:
    """postgres-connections-killed: every client backend ended (the API's pool, the worker's connections), the
    server up. The jobs queued at the cut are taken and run, or the worker's death is in the scenario's events (a
    finding: PgQueuer 1.6's worker exits on it); either way the queue works again afterwards."""
    result = scenario(stack, name, "postgres-connections-killed", timeout_s=20.0)
    ended = next(e.detail for e in result.events if e.name == "fault")
    assert int(ended.split(": ")[1].split()[0]) >= 2, ended  # the API's and the worker's at least
    fault_at = next(e.t for e in result.events if e.name == "fault")
    started_before = {e.job_id for e in result.executions if e.event == "start" and e.t <= fault_at}
    done = {e.job_id for e in result.executions if e.event == "end" and e.ok}
    queued = {s.job_id for s in result.submissions if s.job_id} - started_before
    died = [e.detail for e in result.events if e.name == "died"]
    assert queued <= done or died, (queued - done, result.events)  # (a loaded machine may strike when all started)
    # Its API's sessions ended again, its next /health is JSON: ok, or 503 saying the broker (never a 500)
    stack.drop_postgres_connections()
    health = httpx.get(f"{stack.url_for(name)}/health", headers=stack.api_headers, timeout=10)
    assert health.status_code in (200, 503) and "status" in health.json(), health.text[:300]
    after = scenario(stack, name, None)
    accepted = {s.job_id for s in after.submissions if s.job_id}
    assert len(accepted) == JOBS and accepted <= {e.job_id for e in after.executions if e.event == "end" and e.ok}
