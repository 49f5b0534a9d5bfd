"""Fixtures that start the real stack: a private redis-server, uvicorn and every implementation's worker."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from taskbench import implementations
from taskbench.envs import environment
from taskbench.implementations import REGISTRY
from taskbench.load.client import ServiceClient
from taskbench.record.results import RunEnvironment, RunSettings, ScenarioResult, ScenarioSpec
from taskbench.run.scenario import ScenarioContext, run_scenario
from taskbench.stack import watchdog
from taskbench.stack.stack import Stack, StackConfig
from taskbench_wire.env import IMPLEMENTATIONS
from tests import user_jobs

# While developing one implementation: `TASKBENCH_TEST_ONLY=fastapi,huey pytest ...` runs every test over those
# alone (the registry is pruned before the test modules read it). CI never sets it.
if only := os.environ.get("TASKBENCH_TEST_ONLY"):
    for _name in [name for name in REGISTRY if name not in only.split(",")]:
        del REGISTRY[_name]


@pytest.fixture(scope="session")
def user_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder outside the project with the user's job module (tests/user_jobs.py), as `--job` imports it."""
    folder = tmp_path_factory.mktemp("user-code")
    (folder / f"{user_jobs.MODULE}.py").write_text(textwrap.dedent(user_jobs.SOURCE))
    return folder


class SharedStack:
    """One stack, every implementation and the user's job functions, shared by the tests that leave it as they
    found it (starting one takes a while): started by the first of them, stopped after the last of their group
    (`pytest_runtest_teardown`), not at the end of the session, since idle its fourteen implementations take a
    fifth of a core from the tests that run after them on the same pytest worker."""

    def __init__(self) -> None:
        self.running: Stack | None = None

    def get(self, tmp_path_factory: pytest.TempPathFactory, user_dir: Path) -> Stack:
        if self.running is None:
            config = StackConfig(
                workdir=tmp_path_factory.mktemp("stack"), concurrency=2, implementations=tuple(REGISTRY),
                jobs=tuple(f"{user_jobs.MODULE}:{name}" for name in user_jobs.JOBS), job_timeout_s=1.0,
                job_dir=user_dir,
            )  # fmt: skip
            running = Stack(config).__enter__()
            self.running = running
            # Every test of it reaches each implementation's port: one given up would leave its port to whoever
            # takes it
            assert not running.unavailable, f"parts of the shared stack could not start: {running.unavailable}"
        return self.running

    def close(self) -> None:
        """Stop it: its stop must leave no process that carries its id."""
        running, self.running = self.running, None
        if running is not None:
            running.__exit__(None, None, None)
            wait_for(lambda: not watchdog.tagged(running.id), timeout_s=30, interval_s=0.2)


SHARED = SharedStack()


@pytest.fixture
def stack(tmp_path_factory: pytest.TempPathFactory, user_dir: Path) -> Stack:
    return SHARED.get(tmp_path_factory, user_dir)


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    if SHARED.running is not None and (nextitem is None or group_of(nextitem.nodeid) != SHARED_STACK_GROUP):
        SHARED.close()


def pytest_sessionfinish() -> None:
    SHARED.close()  # a run cut short (-x, Ctrl-C) before the group's last test


class RoutedClient(httpx.Client):
    """A client of the whole stack: `/{implementation}/…` goes to that implementation's API (each runs in an
    environment of its own), every other path (`/`, `/health`) to the API of the one under test."""

    def __init__(self, stack: Stack) -> None:
        super().__init__(timeout=10, headers=stack.api_headers)
        self.stack = stack

    def request(self, method: str, url: httpx.URL | str, **kwargs: Any) -> httpx.Response:
        path = str(url)
        first = path.strip("/").split("/")[0]
        base = self.stack.url_for(first) if first in self.stack.ports else self.stack.url
        return super().request(method, base + path, **kwargs)


def routed_client(stack: Stack) -> RoutedClient:
    return RoutedClient(stack)


@pytest.fixture
def http(stack: Stack) -> Iterator[httpx.Client]:
    with routed_client(stack) as client:
        yield client


def wait_for(
    check: Callable[[], Any],
    timeout_s: float = 15.0,
    interval_s: float = 0.02,
    describe: Callable[[], str] | None = None,
) -> Any:
    """Poll until `check()` is truthy; fail the test, never hang, when it is not (saying `describe()`: what was
    seen last, a log's tail, so that a failure on a CI machine names its cause)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval_s)
    raise AssertionError(f"condition not met within {timeout_s} s" + (f"; {describe()}" if describe else ""))


@contextlib.contextmanager
def run_until_jobs_start(
    args: list[str], output: Path, ledger: str, starts: int, start_timeout_s: float = 60.0
) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """`taskbench run ARGS --output OUTPUT` in a child process until the ledger of `ledger` shows `starts` jobs
    started: yields the process and its stack's id (what every process it started carries); kills it if it is
    still running at the end."""
    run = subprocess.Popen(
        [sys.executable, "-m", "taskbench", "run", *args, "--output", str(output)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        path = wait_for(
            lambda: next(output.glob(f"*/stack/ledger/{ledger}.jsonl"), None), timeout_s=120, interval_s=0.2
        )
        wait_for(lambda: path.read_text().count('"start"') >= starts, timeout_s=start_timeout_s, interval_s=0.1)
        yield run, next(p.environ()[watchdog.TAG] for p in _children(run.pid) if watchdog.TAG in p.environ())
    finally:
        if run.poll() is None:
            run.kill()


def _children(pid: int) -> list[psutil.Process]:
    return psutil.Process(pid).children(recursive=True)


def sigkill_and_wait_until_clean(run: subprocess.Popen[str], stack_id: str, *leftovers: Callable[[], Any]) -> None:
    """SIGKILL the harness (no `finally` of its runs): its watchdog must clear every process carrying the stack's
    id, then whatever `leftovers` list (namespaces, cgroups, directories)."""
    run.send_signal(signal.SIGKILL)
    run.wait(30)
    wait_for(lambda: not watchdog.tagged(stack_id), timeout_s=30, interval_s=0.2)
    for left in leftovers:
        wait_for(_nothing_from(left), timeout_s=30, interval_s=0.2)


def _nothing_from(left: Callable[[], Any]) -> Callable[[], bool]:
    return lambda: not left()


def run_on(stack: Stack, spec: ScenarioSpec, settings: RunSettings, **context: Any) -> ScenarioResult:
    """One scenario on a running stack, as `taskbench run` runs it, with a client of its own; `context`: more of
    the ScenarioContext (a timeout, a user job's arguments)."""

    async def go() -> ScenarioResult:
        client = ServiceClient(stack.url, urls=stack.urls(), token=stack.api_token)
        try:
            ctx = ScenarioContext(
                client=client, settings=settings, environment=RunEnvironment(), stack=stack, **context
            )
            return await run_scenario(ctx, spec, lambda done, total: None)
        finally:
            await client.aclose()

    return asyncio.run(go())


def burst(
    stack: Stack,
    name: str,
    jobs: int,
    duration_s: float,
    concurrency: int,
    timeout_s: float | None = None,
    workload: str = "sleep",
) -> ScenarioResult:
    """A burst of `jobs` sleeps (or `workload`) through `name`, as `taskbench run` runs that scenario (its clear
    first, the other implementations paused); `timeout_s` in place of the deadline from the ideal makespan."""
    spec = ScenarioSpec(implementation=name, workload=workload, jobs=jobs, duration_s=duration_s)
    settings = RunSettings(implementations=[name], workloads=[workload], jobs=[jobs], duration_s=duration_s,
                           memory_mb=0, concurrency=concurrency, pause_neighbours=True)  # fmt: skip
    stack.select(name)
    return run_on(stack, spec, settings, timeout_s=timeout_s)


def purge(stack: Stack, name: str) -> None:
    """`DELETE /{name}/jobs`: the purge between scenarios."""

    async def go() -> None:
        client = ServiceClient(stack.url_for(name), urls=stack.urls(), token=stack.api_token)
        try:
            await client.clear(name)
        finally:
            await client.aclose()

    asyncio.run(go())


def run_as_a_user(label: str, code: str, url: str) -> None:
    """Run `code` in `label`'s environment as a team's own application would: nothing of taskbench's (nor of a
    queue's own settings variables) in its environment, their server's URL in FOREIGN_URL."""
    python = environment.prepare([label])[label].python
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/"), "FOREIGN_URL": url}
    done = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr


def run_in_env(label: str, code: str) -> str:
    """Run `code` with the interpreter of `label`'s environment, as the stack runs its API and worker; its output."""
    env = environment.prepare([label])[label]
    run_env = {**os.environ, IMPLEMENTATIONS: implementations.plugin_name(label)}
    out = subprocess.run([env.python, "-c", code], capture_output=True, text=True, timeout=120, env=run_env)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def workdir(tmp_path: Path) -> Path:
    return tmp_path / "stack"


# How the suite is spread over pytest-xdist's workers: a group runs whole on one worker, in collection order. A
# file is a group (its module-scoped stacks stay whole), but the files that share the session stack are one, and a
# file whose cases each start one implementation's stack is a group per implementation. The heaviest groups come
# first, so that no long one starts last: their order is from `--durations` of CI runs. (xdist's own
# `--dist loadgroup` cannot be used: it renames items in a way pytest 9.2 ignores.)
SHARED_STACK, SHARED_STACK_GROUP = ("test_service.py", "test_user_job.py"), "shared stack"
BY_IMPLEMENTATION = ("test_delivery_promises.py",)  # its case ids start with the implementation's name
HEAVIEST_FIRST = (
    "shared stack", "test_postgres_queues.py", "test_user_world.py", "test_delivery_promises.py[celery]",
    "test_lifecycle.py", "test_topology.py", "test_container_limits.py", "test_hosts.py", "test_sustained_run.py",
    "test_delivery_promises.py[taskiq]", "test_benchmark_run.py", "test_foreign_servers.py", "test_amqp.py",
    "test_delivery_promises.py[arq]", "test_delivery_promises.py[rq]", "test_remote_worker.py",
    "test_delivery_promises.py[saq]", "test_target.py", "test_delivery_promises.py[bullmq]",
    "test_delivery_promises.py[procrastinate]", "test_taskiq_idle.py", "test_user_app.py",
    "test_delivery_promises.py[streaq]", "test_delivery_promises.py[dramatiq]", "test_perf_smoke.py",
    "test_report_render.py", "test_secrets.py", "test_packaging.py", "test_delivery_promises.py[docket]",
    "test_delivery_promises.py[dbos]",
)  # fmt: skip


def group_of(nodeid: str) -> str:
    path, _, name = nodeid.partition("::")
    file = Path(path).name
    if file in SHARED_STACK:
        return SHARED_STACK_GROUP
    if file in BY_IMPLEMENTATION and "[" in name:
        return f"{file}[{name.split('[', 1)[1].split('-', 1)[0]}]"
    return file


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {group: i for i, group in enumerate(HEAVIEST_FIRST)}
    items.sort(key=lambda item: rank.get(group_of(item.nodeid), len(rank)))  # stable: each file's order stays


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    from xdist.scheduler import LoadScopeScheduling

    class GroupScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return group_of(nodeid)

    return GroupScheduling(config, log)
