"""Production topologies (issue 12): the API behind a BaseHTTPMiddleware, Celery's worker pools and their
settings, on real processes with short jobs."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import psutil
import pytest

from taskbench.analysis import analyse, summarise
from taskbench.analysis.models import ScenarioSummary
from taskbench.implementations import celery, taskiq
from taskbench.load.client import ServiceClient
from taskbench.record.results import (
    ApiOptions,
    PluginOptions,
    RunSettings,
    ScenarioResult,
    ScenarioSpec,
    load_scenario,
)
from taskbench.report import content, files
from taskbench.run import plan
from taskbench.stack.stack import Stack, StackConfig
from taskbench_wire.health import Beat, Health
from tests.conftest import run_on, wait_for


def _settings(**changes: object) -> RunSettings:
    base = RunSettings(implementations=["fastapi", "celery"], workloads=["sleep"], jobs=[2], duration_s=0.1,
                       memory_mb=1, concurrency=2, faults=["api-crash"])  # fmt: skip
    return base.model_copy(update=changes)


def test_every_scenario_runs_under_each_middleware_grouped_and_labelled() -> None:
    specs = plan.scenarios(_settings(middleware=["none", "base-http"]), fault_jobs=3)
    middlewares = [s.middleware for s in specs]
    assert middlewares == sorted(middlewares, key=["none", "base-http"].index)  # one API restart, not one each
    plain = [s for s in specs if s.middleware == "none"]
    behind = [s for s in specs if s.middleware == "base-http"]
    assert [s.model_copy(update={"middleware": "none"}) for s in behind] == plain
    assert all(s.label.endswith("· base-http") for s in behind)
    assert all(s.file_stem.startswith(f"{s.implementation}_base-http") for s in behind)
    assert len({s.file_stem for s in specs}) == len(specs)


def test_cli_runs_each_scenario_with_and_without_base_http_middleware(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "taskbench", "run", "--implementations", "fastapi", "--jobs", "4",
         "--duration", "0.3", "--middleware", "none,base-http", "--output", str(tmp_path)],
        capture_output=True, text=True, timeout=180, cwd=tmp_path,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    (folder,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    _, run, scenarios = files.load(folder)
    assert run.settings.middleware == ["none", "base-http"]
    assert [s.spec.middleware for s in scenarios] == ["none", "base-http"]
    behind = load_scenario(next(folder.glob("fastapi_base-http_4_jobs_*.json")))
    assert behind.spec.middleware == "base-http"
    analysed = analyse(run, scenarios)
    for summary in analysed.summaries:  # BackgroundTasks jobs behind the middleware complete, once each
        assert summary.completion.completed == 4 and summary.executions.completed_once == 4, summary.label
    report = next(folder.glob("comparison_*.md")).read_text()
    starlette = run.environment.versions["starlette"]
    assert "Without and with the middleware" in report
    assert f"Starlette {starlette}" in report and "BaseHTTPMiddleware" in report
    assert "FASTAPI [base-http]" in report
    assert f"Behind BaseHTTPMiddleware on Starlette {starlette}, " in report  # the finding, either way
    assert content.middleware_table(analysed.summaries).rows[0][3] == "4/4"
    assert "sleep [base-http]" in " ".join(analysed.verdict.lines)  # judged apart in the verdict
    scenario_md = next(folder.glob("fastapi_base-http_4_jobs_*.md")).read_text()
    assert "behind a do-nothing BaseHTTPMiddleware" in scenario_md


def test_middleware_needs_a_stack_taskbench_started() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "taskbench", "run", "--url", "http://127.0.0.1:9", "--middleware", "base-http"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1 and "--middleware" in out.stderr


# --- Celery's pools -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def celery_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Redis, BackgroundTasks' API, Celery's and taskiq's APIs and workers; each test restarts the worker with the
    options it measures."""
    config = StackConfig(
        workdir=tmp_path_factory.mktemp("pools"), concurrency=2, implementations=("fastapi", "celery", "taskiq")
    )
    with Stack(config) as stack:
        yield stack


def with_worker(stack: Stack, options: PluginOptions) -> Stack:
    """Celery's worker again with these options of its own (its command line, and for gevent its environment)."""
    if stack.options_of("celery") == options:
        return stack
    stack.config = replace(stack.config, options={"celery": options})
    stack.restart_worker("celery")
    # The worker it replaced may still beat for a moment (a loaded machine): its capacity would count both.
    wait_for(lambda: len(_celery_beats(stack)) == 1, timeout_s=30, interval_s=0.5)
    return stack


def _celery_beats(stack: Stack) -> list[Beat]:
    with contextlib.suppress(httpx.HTTPError, ValueError):
        health = Health.of(httpx.get(f"{stack.urls()['celery']}/health", timeout=5).json())
        return health.sections["celery"].workers if "celery" in health.sections else []
    return []


def run_one(
    stack: Stack, spec: ScenarioSpec, options: PluginOptions, api: ApiOptions | None = None
) -> tuple[ScenarioResult, ScenarioSummary]:
    settings = _settings(implementations=[spec.implementation], workloads=[spec.workload], jobs=[spec.jobs],
                         duration_s=spec.duration_s, faults=[], options={spec.implementation: options},
                         api=api or ApiOptions())  # fmt: skip

    result = run_on(stack, spec, settings)
    assert not result.timed_out, result.events
    return result, summarise(result)


@pytest.mark.parametrize(("pool", "slots"), [("prefork", 2), ("threads", 2), ("gevent", 2), ("solo", 1)])
def test_each_celery_pool_runs_every_job_once_in_the_slots_it_has(celery_stack: Stack, pool: str, slots: int) -> None:
    options: PluginOptions = {"pool": pool}
    stack = with_worker(celery_stack, options)
    main_pid = stack.workers["celery"].pid
    for workload in ("sleep", "async_sleep") if pool in ("gevent", "threads") else ("sleep",):
        spec = ScenarioSpec(implementation="celery", workload=workload, jobs=4, duration_s=0.3)
        result, summary = run_one(stack, spec, options)
        ends = [e for e in result.executions if e.event == "end"]
        assert len(ends) == 4 and summary.executions.duplicated == 0, (pool, workload)
        if pool == "gevent" and workload == "async_sleep":
            # asyncio.run per job, as a Celery user writes it: greenlets share one thread, so a job that starts
            # while another's loop runs fails (celery #7465). A finding, kept visible, not worked around.
            failed = [e.error for e in ends if not e.ok]
            assert failed and all("cannot be called from a running event loop" in (f or "") for f in failed)
            assert summary.completion.completed + summary.completion.failed == 4
            continue
        assert summary.completion.completed == 4 and summary.executions.completed_once == 4, (pool, workload)
        assert result.capacity.concurrency == slots and pool in result.capacity.reason
        assert 1 <= summary.max_running <= slots
        if pool != "solo":
            assert summary.max_running == slots, (pool, workload)  # they really run side by side
        pids = {e.pid for e in result.executions}
        # prefork runs jobs in child processes; the other pools in the worker's own process
        assert (main_pid not in pids) if pool == "prefork" else (pids == {main_pid}), (pool, pids)
    assert summary.settings["pool"].startswith(pool)

    async def cpu_capacity() -> int:
        client = ServiceClient(stack.url, urls=stack.urls(), token=stack.api_token)
        try:
            return (await client.capacity("celery", "cpu", 4, 2, 2)).concurrency
        finally:
            await client.aclose()

    assert asyncio.run(cpu_capacity()) == (2 if pool == "prefork" else 1)  # threads and greenlets share one GIL


def test_max_tasks_per_child_replaces_each_child_after_its_jobs(celery_stack: Stack) -> None:
    options: PluginOptions = {"pool": "prefork", "max_tasks_per_child": 1}
    stack = with_worker(celery_stack, options)
    spec = ScenarioSpec(implementation="celery", workload="sleep", jobs=4, duration_s=0.2)
    result, summary = run_one(stack, spec, options)
    assert summary.completion.completed == 4 and summary.executions.completed_once == 4
    pids = [e.pid for e in result.executions if e.event == "start"]
    assert len(set(pids)) == 4, pids  # one job per child: four children ran them
    assert "1 jobs, then the child is replaced" in summary.settings["max_tasks_per_child"]
    assert stack.workers["celery"].pid not in pids


def test_taskiq_replaces_a_worker_process_after_max_tasks_per_child(celery_stack: Stack) -> None:
    """taskiq's own recycling: a worker process stops taking jobs after its N-th, finishes it and exits, and
    taskiq's process manager starts another; every job still runs once."""
    options: PluginOptions = {"max_tasks_per_child": 1}
    celery_stack.config = replace(celery_stack.config, options={"taskiq": options})
    celery_stack.restart_worker("taskiq")
    spec = ScenarioSpec(implementation="taskiq", workload="sleep", jobs=4, duration_s=0.2)
    result, summary = run_one(celery_stack, spec, options)
    assert summary.completion.completed == 4 and summary.executions.completed_once == 4
    pids = [e.pid for e in result.executions if e.event == "start"]
    assert len(set(pids)) == 4, pids  # one job per process: four processes ran them
    assert summary.settings["max_tasks_per_child"].startswith("--max-tasks-per-child 1:")
    argv = taskiq.IMPLEMENTATION.worker_argv(2, options)
    assert argv[argv.index("--max-tasks-per-child") + 1] == "1"
    assert "--max-tasks-per-child" not in taskiq.IMPLEMENTATION.worker_argv(2, {})


def test_worker_options_reach_the_command_line_and_the_report_settings() -> None:
    options: PluginOptions = {"pool": "threads", "prefetch": 4}
    argv = celery.IMPLEMENTATION.worker_argv(8, options)
    assert argv[argv.index("--pool") + 1] == "threads" and argv[argv.index("--prefetch-multiplier") + 1] == "4"
    assert "--max-tasks-per-child" not in argv
    shown = celery.IMPLEMENTATION.settings(8, options, ApiOptions())
    assert shown["pool"].startswith("threads, --concurrency 8: 8 threads") and shown[
        "worker_prefetch_multiplier"
    ].startswith("4")
    specs = plan.scenarios(
        _settings(faults=["worker-child-crash", "worker-crash"], options={"celery": options}), fault_jobs=3
    )
    assert not [s for s in specs if s.fault == "worker-child-crash" and s.implementation == "celery"]  # no children
    # schema 2 kept the API's options and Celery's in one `worker`: read as `api` and `options["celery"]`
    saved = _settings().model_dump(exclude={"api", "options"}) | {"worker": {"pool": "threads", "api_workers": 2}}
    old = RunSettings.model_validate(saved)
    assert old.api.api_workers == 2 and old.options == {"celery": {"pool": "threads"}}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--pool", "threads", "--max-tasks-per-child", "5"], "--max-tasks-per-child replaces prefork children"),
        (["--implementations", "arq", "--max-tasks-per-child", "5"], "add celery to --implementations"),
        (["--pool", "solo", "--implementations", "fastapi"], "add celery to --implementations"),
        (["--prefetch", "0"], "out of range"),
        (["--pool", "eventlet"], "invalid choice"),
    ],
)
def test_worker_flag_mistakes_are_one_line_and_exit_2(args: list[str], message: str) -> None:
    out = subprocess.run([sys.executable, "-m", "taskbench", "run", *args], capture_output=True, text=True,
                         timeout=30)  # fmt: skip
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1 and message in out.stderr, out.stderr


# --- several API processes ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def two_api_processes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    config = StackConfig(workdir=tmp_path_factory.mktemp("api2"), concurrency=2, implementations=("fastapi", "celery"),
                         api=ApiOptions(api_workers=2, graceful_timeout_s=0))  # fmt: skip
    with Stack(config) as stack:
        yield stack


def test_busy_counts_background_tasks_in_flight_in_every_api_process(two_api_processes: Stack) -> None:
    """Each process publishes its jobs in flight: whichever process answers /health, the sum is the server's."""

    from tests.conftest import routed_client, wait_for

    stack = two_api_processes

    async def busy() -> int:
        client = ServiceClient(stack.url, urls=stack.urls(), token=stack.api_token)
        try:
            return await client.busy(["fastapi"])
        finally:
            await client.aclose()

    for _ in range(6):  # a new connection each: the kernel hands them to either process
        with routed_client(stack) as http:
            assert http.post("/fastapi/job", json={"duration": 2.5}).status_code == 202
    wait_for(lambda: asyncio.run(busy()) == 6, timeout_s=10, interval_s=0.1)  # beats every 0.5 s; a loaded machine lags
    wait_for(lambda: asyncio.run(busy()) == 0, timeout_s=10, interval_s=0.1)


def test_fastapi_on_two_api_processes_counts_from_the_ledger_and_polls_each_status(two_api_processes: Stack) -> None:
    stack = two_api_processes
    api = ApiOptions(api_workers=2)
    spec = ScenarioSpec(implementation="fastapi", workload="sleep", jobs=12, duration_s=0.3)
    result, summary = run_one(stack, spec, {}, api)
    assert result.capacity.concurrency == 80 and "2 processes" in result.capacity.reason  # 2 thread pools of 40
    assert result.records_from == "ledger" and len(result.jobs) == 12
    assert summary.completion.completed == 12 and summary.executions.completed_once == 12
    assert all(j.status == "completed" and j.queue_time is not None and j.queue_time >= 0 for j in result.jobs)
    supervisor = stack.api.pid if stack.api else None
    api_pids = {j.pid for j in result.jobs}
    assert supervisor not in api_pids and all(psutil.Process(pid).ppid() == supervisor for pid in api_pids if pid)
    assert set(summary.max_running_by_pid) == api_pids and sum(summary.max_running_by_pid.values()) >= 1
    assert max(summary.max_running_by_pid.values()) <= summary.max_running <= sum(summary.max_running_by_pid.values())
    polls = summary.status_polls
    assert polls is not None and polls.sent == polls.answered == 12 and polls.other == 0
    assert {p.status_code for p in result.status_polls} <= {200, 404}
    roles = set().union(*(s.processes for s in result.samples))
    assert {"api", "api#1", "api#2"} <= roles and "api#3" not in roles  # not multiprocessing's resource tracker
    last = result.samples[-1].processes
    assert last["api"].rss_mb > last["api#1"].rss_mb + last["api#2"].rss_mb  # the total adds the supervisor
    assert summary.settings["runner"].endswith("(2 uvicorn processes (--workers 2))")
    celery_spec = ScenarioSpec(implementation="celery", workload="sleep", jobs=4, duration_s=0.2)
    celery_result, celery_summary = run_one(stack, celery_spec, {}, api)  # the queues are not affected
    assert celery_result.records_from == "api" and celery_summary.completion.completed == 4
    assert not celery_result.status_polls


# --- api-deploy -------------------------------------------------------------------------------------------------


def test_api_deploy_cuts_background_tasks_and_no_celery_job(two_api_processes: Stack) -> None:
    """SIGTERM with --timeout-graceful-shutdown 0: uvicorn cancels what runs and exits (re-raising the signal,
    so anyio's threads go with it): every running BackgroundTasks job is cut off, in both API processes;
    Celery's are in the broker."""
    deploy_stack, api = two_api_processes, ApiOptions(api_workers=2, graceful_timeout_s=0)
    spec = ScenarioSpec(implementation="fastapi", workload="sleep", jobs=6, duration_s=0.9, fault="api-deploy")
    result, fastapi = run_one(deploy_stack, spec, {}, api)
    assert "SIGTERM the API server (a deploy; --timeout-graceful-shutdown 0)" in [e.detail for e in result.events]
    assert fastapi.executions.source == "ledger" and fastapi.executions.accepted == 6
    assert fastapi.executions.lost == fastapi.executions.cut_off == 6  # all were running: started, never ended
    assert "jobs not completed" in [f.rule for f in fastapi.failures]
    spec = spec.model_copy(update={"implementation": "celery"})
    result, celery_summary = run_one(deploy_stack, spec, {}, api)
    assert celery_summary.executions.lost == 0 and celery_summary.executions.completed_once == 6
    assert celery_summary.executions.completed_after_fault >= 1
    table = content.faults_table([fastapi, celery_summary])
    lost, cut = table.headers.index("Lost"), table.headers.index("In flight at the fault (never finished)")
    assert table.rows[0][lost] == "0" and table.rows[0][cut] == "6 (6)"  # delivered, then cut off mid-job: Jepsen's
    assert table.rows[1][lost] == "0" and str(table.rows[1][cut]).endswith("(0)")  # "lost" is never started


def test_api_deploy_with_uvicorn_s_default_waits_for_every_background_task(celery_stack: Stack) -> None:
    """No --timeout-graceful-shutdown (uvicorn's default): the deploy waits until the background tasks are done."""
    spec = ScenarioSpec(implementation="fastapi", workload="sleep", jobs=4, duration_s=0.6, fault="api-deploy")
    result, summary = run_one(celery_stack, spec, {})
    assert "SIGTERM the API server (a deploy; no limit (uvicorn's default))" in [e.detail for e in result.events]
    assert summary.executions.lost == 0 and summary.executions.completed_once == 4
