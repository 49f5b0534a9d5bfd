"""`--broker amqp`: Celery and Dramatiq on a real RabbitMQ, job records, ledger and heartbeats in Redis.

The RabbitMQ is a private `rabbitmq-server` the stack starts (its own node, ports, data and epmd), or the one
TASKBENCH_TEST_AMQP_URL names (give it a vhost of its own: the tests purge their queues). Without either the
tests are skipped with the reason, and fail under CI=true.
"""

from __future__ import annotations

import os
import stat
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import psutil
import pytest
import redis
from kombu import Connection

from taskbench import faults
from taskbench.cli import main as cli
from taskbench.errors import UsageError
from taskbench.implementations import REGISTRY
from taskbench.implementations.base import python_module
from taskbench.measure.ledger import LedgerTail
from taskbench.record.results import ApiOptions, Event, ScenarioSpec
from taskbench.stack import watchdog
from taskbench.stack.rabbitmq_server import amqp_problem, find_epmd, find_rabbitmq_server
from taskbench.stack.redis_server import free_port
from taskbench.stack.services import Service
from taskbench.stack.stack import Stack, StackConfig, StackState
from tests.conftest import routed_client, run_in_env, wait_for

QUEUES = {"celery": "celery", "dramatiq": "dramatiq"}  # each one's queue on RabbitMQ: `{stack namespace}.{this}`
JOB_S = 1.0
REDIS_VISIBILITY_S = 60.0  # what Redis would make a crashed job wait here; RabbitMQ must not


def _amqp_url_or_none() -> str | None:
    """The RabbitMQ to use: TASKBENCH_TEST_AMQP_URL, else None (a private one); skip when neither can be had."""
    url = os.environ.get("TASKBENCH_TEST_AMQP_URL")
    if url:
        return url
    try:
        find_rabbitmq_server()
        find_epmd()
    except UsageError as exc:
        reason = f"no RabbitMQ to test against: {exc} (or set TASKBENCH_TEST_AMQP_URL)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return None


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    config = StackConfig(
        workdir=tmp_path_factory.mktemp("amqp"),
        concurrency=2,
        implementations=("fastapi", "celery", "dramatiq"),
        broker="amqp",
        broker_url=_amqp_url_or_none(),
    )
    with Stack(config) as running:
        with routed_client(running) as http:
            for name in QUEUES:
                http.delete(f"/{name}/jobs").raise_for_status()  # a shared RabbitMQ may hold old messages
        yield running


@pytest.fixture
def http(stack: Stack) -> Iterator[httpx.Client]:
    with routed_client(stack) as client:
        yield client


def _submit(http: httpx.Client, name: str, count: int, duration: float) -> list[str]:
    answers = [http.post(f"/{name}/job", json={"duration": duration, "kind": "sleep"}) for _ in range(count)]
    assert all(a.status_code == 202 for a in answers), [a.text for a in answers]
    return [a.json()["job_id"] for a in answers]


def _queue(stack: Stack, name: str) -> str:
    return f"{stack.namespace}.{QUEUES[name]}"


def _in_rabbitmq(stack: Stack, queue: str) -> int:
    """Messages ready in the queue, asked of RabbitMQ itself."""
    with Connection(stack.amqp_url, connect_timeout=5) as connection:
        channel: Any = connection.default_channel
        return int(channel.queue_declare(queue=queue, passive=True).message_count)


@pytest.mark.parametrize("name", list(QUEUES))
def test_jobs_go_through_rabbitmq_and_complete(stack: Stack, http: httpx.Client, name: str) -> None:
    stack.select(name)  # `/` and `/health` of its API
    health = http.get("/health").json()
    assert health["broker"]["kind"] == "amqp"
    assert http.get("/").json()["implementations"][name]["broker_kind"] == "amqp"
    ledger = LedgerTail(stack.ledger_path)
    ids = _submit(http, name, 3, 0.2)
    wait_for(lambda: all(http.get(f"/{name}/status/{i}").json()["status"] == "completed" for i in ids))
    ends = Counter(e.job_id for e in ledger.read() if e.event == "end" and e.ok)
    assert all(ends[i] == 1 for i in ids)
    client = redis.Redis.from_url(stack.redis_url)
    ns, queue = stack.namespace, _queue(stack, name)
    assert not client.exists(f"{ns}:{queue}", f"{ns}:{queue}.msgs", queue)  # no queue of theirs in Redis


@pytest.mark.parametrize("name", list(QUEUES))
def test_queued_counts_and_purge_read_rabbitmq(stack: Stack, http: httpx.Client, name: str) -> None:
    stack.select(name)
    worker = stack.workers[name]
    worker.kill()  # nobody consumes: the jobs wait in RabbitMQ
    try:
        _submit(http, name, 3, 0.2)
        wait_for(lambda: http.get("/health").json()[name]["queued"] == 3)
        assert _in_rabbitmq(stack, _queue(stack, name)) == 3
        assert http.delete(f"/{name}/jobs").json()["purged"] == 3
        assert http.get("/health").json()[name]["queued"] == 0
        assert _in_rabbitmq(stack, _queue(stack, name)) == 0
    finally:
        worker.start()


CRASHES = [("celery", "acks_late"), ("celery", "acks_late+reject_on_worker_lost"), ("dramatiq", "default")]


@pytest.mark.parametrize(("name", "variant"), CRASHES)
def test_a_killed_worker_s_jobs_are_redelivered_on_disconnect(
    stack: Stack, http: httpx.Client, name: str, variant: str
) -> None:
    """Under a visibility timeout (heartbeat timeout) of 60 s that Redis would wait for, RabbitMQ requeues the
    running jobs as soon as the worker's connection drops: they start again once the restarted worker is up."""
    stack.select(name)
    impl = REGISTRY[name]
    assert impl.delivery(variant, "amqp").worker_crash == "redelivered"
    stack.apply(StackState(deliveries={name: variant}, redelivery_timeout_s=REDIS_VISIBILITY_S))
    http.delete(f"/{name}/jobs").raise_for_status()
    ledger = LedgerTail(stack.ledger_path)
    ids = _submit(http, name, 2, JOB_S)  # concurrency 2: both run at once
    started: Counter[str] = Counter()

    def both_running() -> bool:
        started.update(e.job_id for e in ledger.read() if e.event == "start")
        return all(started[i] for i in ids)

    wait_for(both_running)
    spec = ScenarioSpec(implementation=name, workload="sleep", jobs=2, duration_s=JOB_S, fault="worker-crash",
                        variant=variant)  # fmt: skip
    events: list[Event] = []
    faults.of(spec).inject(stack, spec, events)  # SIGKILL the worker and its children, start it again
    killed_at = next(e.t for e in events if e.name == "fault")
    executions = []

    def completed_again() -> bool:
        executions.extend(ledger.read())
        return all(any(e.job_id == i and e.event == "end" and e.ok for e in executions) for i in ids)

    wait_for(completed_again, timeout_s=40)
    starts = Counter(e.job_id for e in executions if e.event == "start")
    assert all(starts[i] == 1 for i in ids), starts  # the second start of each (the first was before the kill)
    again = max(e.t for e in executions if e.event == "start" and e.job_id in ids)
    bound = impl.redelivery_bound_on("amqp", REDIS_VISIBILITY_S, 2, 2)
    assert again - killed_at <= bound < REDIS_VISIBILITY_S, (again - killed_at, bound)
    assert all(s.status_code == 200 for s in [http.get(f"/{name}/status/{i}") for i in ids])


def _api_with_unreachable_rabbitmq(stack: Stack, workdir: Path, name: str) -> tuple[Service, str]:
    """A second API server of `name` on the stack's Redis whose RabbitMQ is a port nobody listens on; its URL."""
    port, url = free_port(), f"amqp://guest:guest@127.0.0.1:{free_port()}/%2F"
    env = {**stack.env(name), "TASKBENCH_BROKER_URL": url, "CELERY_BROKER_URL": url}
    argv = stack.command(name, python_module("uvicorn", "taskbench_service.main:app", "--port", str(port)))
    log = workdir / f"{name}-api-2.log"
    api = Service(f"{name}-api-2", argv, env, log, lambda _: _answers(port), "a second API server")
    return api.start(), f"http://127.0.0.1:{port}"


def _answers(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/health/sync", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_every_port_of_the_stack_is_on_loopback_and_refuses_a_client_without_its_credentials(stack: Stack) -> None:
    """Every process of the stack (Redis, RabbitMQ with its Erlang distribution and epmd, the APIs, the workers)
    listens on loopback only; the private Redis and RabbitMQ answer only with the stack's own credentials."""
    listening = [
        connection
        for process in watchdog.tagged(stack.id)
        for connection in process.net_connections(kind="inet")
        if connection.status == psutil.CONN_LISTEN
    ]
    assert len(listening) >= 4  # Redis, 3 APIs (and RabbitMQ's AMQP, distribution and epmd ports)
    assert {c.laddr.ip for c in listening} <= {"127.0.0.1", "::1"}, listening
    redis_port = urlsplit(stack.redis_url).port or 6379
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(port=redis_port, socket_connect_timeout=2).ping()
    assert redis.Redis.from_url(stack.redis_url).ping()
    if stack.rabbitmq is not None:
        port = urlsplit(stack.amqp_url).port
        assert amqp_problem(f"amqp://guest:guest@127.0.0.1:{port}/%2F", timeout_s=3) is not None
        assert amqp_problem(stack.amqp_url, timeout_s=3) is None
        if os.geteuid() == 0:  # never root (a password holder could make a root server write root's files)
            for server in (stack.rabbitmq, stack.epmd):
                assert server is not None and server.pid is not None
                assert psutil.Process(server.pid).uids().effective != 0, server.name
            cookie = Path(stack.rabbitmq.process.env["HOME"]) / ".erlang.cookie"
            assert stat.S_IMODE(cookie.stat().st_mode) == 0o400


def test_rabbitmq_down_is_a_503_with_a_message(stack: Stack, tmp_path: Path) -> None:
    """Last in this module: it stops the private RabbitMQ, connections open (the stack's teardown stops the rest);
    a RabbitMQ it did not start stays up, and second API servers are given one that is not there."""
    apis: list[Service] = []
    urls: dict[str, str] = {}
    if stack.rabbitmq is not None:
        for worker in stack.workers.values():  # not needed here, and quick to end now rather than retrying later
            worker.kill()
        stack.rabbitmq.stop()
        urls = {name: stack.url_for(name) for name in QUEUES}
    else:
        for name in QUEUES:
            api, urls[name] = _api_with_unreachable_rabbitmq(stack, tmp_path, name)
            apis.append(api)
    try:
        for name, url in urls.items():
            started = time.monotonic()
            answer = httpx.post(f"{url}/{name}/job", json={"duration": 0.1}, timeout=10, headers=stack.api_headers)
            assert answer.status_code == 503, answer.text
            assert f"the {name} broker at amqp://" in answer.json()["detail"]
            assert time.monotonic() - started < 10
            health = httpx.get(f"{url}/health", timeout=10)
            assert health.status_code == 503 and health.json()[name]["status"] == "broker unreachable"
        fastapi = httpx.post(
            f"{stack.url_for('fastapi')}/fastapi/job", json={"duration": 0.1}, timeout=10, headers=stack.api_headers
        )
        assert fastapi.status_code == 202  # BackgroundTasks need no broker
    finally:
        for api in apis:
            api.stop()


def test_broker_amqp_without_rabbitmq_is_one_line_and_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no rabbitmq-server on it, and no --broker-url
    for command in (["run", "--broker", "amqp", "--output", str(tmp_path / "out")], ["serve", "--broker", "amqp"]):
        assert cli.main(command) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and "rabbitmq-server" in err and "--broker-url" in err, err
    assert not (tmp_path / "out").exists()


def test_unreachable_broker_url_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    url = f"amqp://guest:secret@127.0.0.1:{free_port()}//"
    started = time.monotonic()
    assert cli.main(["run", "--broker-url", url, "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "does not answer" in err and "secret" not in err, err
    assert time.monotonic() - started < 10
    assert cli.main(["run", "--broker", "redis", "--broker-url", url]) == 2
    assert "--broker amqp" in capsys.readouterr().err
    assert cli.main(["run", "--broker", "amqp", "--implementations", "fastapi,arq"]) == 2
    assert "runs on RabbitMQ" in capsys.readouterr().err


def test_service_settings_keep_records_in_redis_when_the_broker_is_rabbitmq(monkeypatch: pytest.MonkeyPatch) -> None:
    from taskbench_service import settings
    from taskbench_wire.env import CELERY_ENV_VARS, ENV_VARS

    for name in (*ENV_VARS, *CELERY_ENV_VARS):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CELERY_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672//")
    loaded = settings.load()
    assert loaded.broker == "amqp" and loaded.redis_url == loaded.result_backend == settings.DEFAULT_REDIS_URL
    monkeypatch.setenv("CELERY_BROKER_URL", "redis://127.0.0.1:7/0")
    assert settings.load().broker == "redis" and settings.load().redis_url == "redis://127.0.0.1:7/0"
    pika = "from taskbench_service.implementations.dramatiq import pika_url; print(pika_url('amqp://u:p@h:1//'))"
    assert run_in_env("dramatiq", pika) == "amqp://u:p@h:1/%2F"  # Celery's spelling of vhost "/", for pika


def test_every_queue_on_rabbitmq_declares_each_delivery_there_and_its_settings() -> None:
    """The fault plan names deliveries once for both brokers: each must say what it promises on RabbitMQ too."""
    on_amqp = {name: impl for name, impl in REGISTRY.items() if "amqp" in impl.brokers}
    assert set(on_amqp) == set(QUEUES)
    for impl in on_amqp.values():
        assert [d.name for d in impl.amqp_deliveries] == [d.name for d in impl.deliveries]
        assert impl.settings_on(4, "amqp", {}, ApiOptions())["broker"].startswith("RabbitMQ")
    for name, impl in REGISTRY.items():  # the others stay on Redis (or PostgreSQL) whatever the run asks
        if name not in on_amqp:
            home = "postgres" if impl.needs_postgres else "redis"
            assert impl.broker_for("amqp") == home and impl.deliveries_on("amqp") == impl.deliveries
