"""On a Redis of someone else's (--redis-url), the service touches nothing it did not create.

The server already holds a team's own jobs, written by each library as their application writes them: a Celery
message waiting in the default `celery` queue and one a worker of theirs holds unacknowledged (kombu's `unacked`
hash, restorable at once), arq jobs in `arq:queue` with their `arq:job:<id>` keys, keys named as a taskbench on
its default names would name them, and a few plain keys of an application. Their Celery and arq jobs call
taskbench's own task names with valid job calls, so a worker of ours that took one would run it and the ledger
would say so. The real stack runs on that server: a burst through each queue (as a scenario runs it: the purge
first), the purge between scenarios, and a purge while jobs of ours wait (worker stopped). Every key of theirs is
then what it was, byte for byte (DUMP), its TTL kept; none of their jobs ran (the ledger shows only ours); nothing
was published on a channel of theirs (their workers' remote control included); every key of ours carries the
run's namespace (`taskbench-<stack id>`), but for the per-job keys whose prefix arq fixes, which carry it in the
job id. Once the stack has stopped (each queue's `forget` deleting what it wrote), the server is as the team had it.
"""

from __future__ import annotations

import fnmatch
import json
import secrets
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from taskbench.implementations import REGISTRY
from taskbench.stack.redis_server import find_redis_server, free_port, redis_command, write_password_config
from taskbench.stack.stack import Stack, StackConfig
from taskbench_wire.env import NAMESPACE
from tests.conftest import burst, purge, run_as_a_user, run_in_env, wait_for

QUEUES = ("celery", "arq")
JOBS, DURATION_S, CONCURRENCY = 4, 0.2, 2
WAITING = 3  # jobs of ours submitted while the worker is stopped, then purged


def _call(job_id: str, implementation: str) -> dict[str, Any]:
    """A job call taskbench's worker would run (a valid JobCall), with an id of theirs."""
    return {"job_id": job_id, "implementation": implementation, "kind": "sleep", "duration": DURATION_S}


# Each library as a team's application uses it (no taskbench variable set): Celery's and arq's defaults.
CELERY_USER = f"""
import json, os
import redis
from celery import Celery

app = Celery("theirs", broker=os.environ["FOREIGN_URL"])
app.send_task("taskbench.run_job", args=["theirs-celery-0", "sleep", {DURATION_S}, 0], task_id="theirs-celery-0")
app.send_task("billing.charge", args=[42], task_id="theirs-celery-1")
# One their worker holds unacknowledged (kombu's ack emulation on Redis), as old as can be: any kombu sweep that
# read these keys would put it back in their queue.
client = redis.Redis.from_url(os.environ["FOREIGN_URL"])
message = json.loads(client.lindex("celery", -1))
client.hset("unacked", "their-tag", json.dumps([message, "", "celery"]))
client.zadd("unacked_index", {{"their-tag": 1.0}})
"""
ARQ_USER = f"""
import asyncio, os
from arq import create_pool
from arq.connections import RedisSettings

async def main():
    pool = await create_pool(RedisSettings.from_dsn(os.environ["FOREIGN_URL"]))
    try:
        await pool.enqueue_job("taskbench.run_job", {_call("theirs-arq-0", "arq")!r}, _job_id="theirs-arq-0")
        await pool.enqueue_job("billing.charge", 42, _job_id="theirs-arq-1")
    finally:
        await pool.aclose()

asyncio.run(main())
"""


def _their_other_keys(client: redis.Redis) -> None:
    """An application's own keys, and ones a taskbench on its default names would have written."""
    client.set("app:session:42", "token", ex=3600)
    client.hset("app:user:42", mapping={"name": "Ada", "plan": "pro"})
    client.rpush("app:events", "signup", "login")
    client.hset("taskbench:job:theirs-1", mapping={"job_id": "theirs-1", "status": "queued"})
    client.zadd("taskbench:jobs:celery", {"theirs-1": 1.0})
    client.hset("taskbench:workers:arq", "their-worker", json.dumps({"pid": 1, "concurrency": 1, "t": time.time()}))


@pytest.fixture(scope="module")
def foreign(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A private redis-server (a password of its own) standing in for a team's, holding their jobs and keys."""
    data = tmp_path_factory.mktemp("foreign-redis")
    password, port = secrets.token_urlsafe(16), free_port()
    config = write_password_config(data, password)
    argv = redis_command(find_redis_server(), port, data, persistent=False, config=config)
    server = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://:{password}@127.0.0.1:{port}/0"
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=0.5)
        wait_for(lambda: _answers(client), timeout_s=15, interval_s=0.05)
        run_as_a_user("celery", CELERY_USER, url)
        run_as_a_user("arq", ARQ_USER, url)
        _their_other_keys(client)
        yield url
    finally:
        server.terminate()
        server.wait(10)


def _answers(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


# --- what is on the server -----------------------------------------------------------------------------------


def keys(client: redis.Redis) -> set[str]:
    return {key.decode() for key in client.scan_iter(count=1000)}


def dumps(client: redis.Redis, names: set[str]) -> dict[str, tuple[bytes | None, int]]:
    """Each key's DUMP (its value and type, byte for byte) and its PTTL (-1: none)."""
    with client.pipeline(transaction=True) as pipe:  # one moment for all
        for name in sorted(names):
            pipe.dump(name)
            pipe.pttl(name)
        replies = pipe.execute()
    return {name: (replies[2 * i], int(replies[2 * i + 1])) for i, name in enumerate(sorted(names))}


def assert_theirs_intact(client: redis.Redis, before: dict[str, tuple[bytes | None, int]], elapsed_s: float) -> None:
    now = dumps(client, set(before))
    for name, (value, ttl) in before.items():
        assert now[name][0] == value, f"{name} changed"
        if ttl < 0:
            assert now[name][1] == ttl, f"{name}: TTL {now[name][1]} ms, had none"
        else:  # still counting down from where it was
            assert ttl - (elapsed_s + 5) * 1000 <= now[name][1] <= ttl, f"{name}: TTL {now[name][1]} ms, was {ttl}"


class Channels:
    """Every pub/sub channel published to while it listens (PSUBSCRIBE *), on a thread of its own."""

    def __init__(self, url: str) -> None:
        self.pubsub = redis.Redis.from_url(url).pubsub(ignore_subscribe_messages=True)
        self.pubsub.psubscribe("*")
        self.seen: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._listen, name="channels", daemon=True)
        self._thread.start()

    def _listen(self) -> None:
        while not self._stop.is_set():
            message = self.pubsub.get_message(timeout=0.1)
            if message and message["type"] == "pmessage":
                self.seen.add(message["channel"].decode())

    def stop(self) -> set[str]:
        self._stop.set()
        self._thread.join(5)
        self.pubsub.close()
        return self.seen


def ledger_ids(path: Path) -> set[str]:
    """Every job id in the ledger file, from its first line (its start and end events)."""
    return {json.loads(line)["job_id"] for line in path.read_text().splitlines() if line.strip()}


# --- driving the stack ---------------------------------------------------------------------------------------


def purge_while_waiting(stack: Stack, name: str) -> set[str]:
    """Stop the worker, submit jobs (they wait in our queue), purge them: the purge has something to delete."""
    stack.workers[name].kill()
    with httpx.Client(base_url=stack.url_for(name), timeout=10, headers=stack.api_headers) as http:
        answers = [http.post(f"/{name}/job", json={"duration": DURATION_S}) for _ in range(WAITING)]
        assert all(a.status_code == 202 for a in answers), [a.text for a in answers]
        wait_for(lambda: http.get("/health").json()[name]["queued"] == WAITING)
        cleared = http.delete(f"/{name}/jobs").json()
        assert cleared == {"cleared": WAITING, "purged": WAITING}, cleared
        assert http.get("/health").json()[name]["queued"] == 0
    return {a.json()["job_id"] for a in answers}


# --- the test ------------------------------------------------------------------------------------------------


def test_the_stack_on_a_users_redis_touches_nothing_of_theirs(foreign: str, tmp_path: Path) -> None:
    client = redis.Redis.from_url(foreign)
    theirs = keys(client)
    for key in ("celery", "unacked", "unacked_index", "_kombu.binding.celery", "arq:queue", "arq:job:theirs-arq-0",
                "app:session:42", "taskbench:job:theirs-1"):  # fmt: skip
        assert key in theirs, sorted(theirs)
    assert client.llen("celery") == 2 and client.zcard("arq:queue") == 2
    before, started = dumps(client, theirs), time.monotonic()

    stack = Stack(StackConfig(workdir=tmp_path / "stack", redis_url=foreign, implementations=QUEUES,
                              concurrency=CONCURRENCY))  # fmt: skip
    ns = stack.namespace
    assert ns == f"taskbench-{stack.id[:8]}"
    channels = Channels(foreign)
    ours: set[str] = set()  # every job id our API accepted
    try:
        with stack:
            for name in QUEUES:
                result = burst(stack, name, JOBS, DURATION_S, CONCURRENCY)
                accepted = {s.job_id for s in result.submissions if s.job_id}
                done = {e.job_id for e in result.executions if e.event == "end" and e.ok}
                assert len(accepted) == JOBS and done == accepted, result.events
                ours |= accepted
                purge(stack, name)
                ours |= purge_while_waiting(stack, name)
                ran = ledger_ids(stack.ledger_path_for(name))
                assert accepted <= ran <= ours, ran - ours  # none of theirs ran here
            during = keys(client)
            assert_theirs_intact(client, before, time.monotonic() - started)
    finally:
        published = channels.stop()

    # Everything of ours carries the namespace: in the key's first part, or (arq's fixed per-job prefixes) in the
    # job id; the records, heartbeats, Celery's queue and arq's were all there.
    fixed = (f"arq:job:{ns}:*", f"arq:in-progress:{ns}:*", f"arq:retry:{ns}:*", f"arq:result:{ns}:*")
    mine = during - theirs
    assert not [k for k in mine if not k.startswith(f"{ns}:") and not any(fnmatch.fnmatch(k, p) for p in fixed)]
    for key in (f"{ns}:workers:celery", f"{ns}:workers:arq", f"{ns}:_kombu.binding.{ns}.celery"):
        assert key in mine, sorted(mine)
    # Only our channels: the results' and the remote control's (the purge asked our workers what they hold).
    assert published and all(channel.startswith(f"{ns}:") for channel in published), published
    assert any(channel.endswith(f"{ns}.celery.pidbox") for channel in published), published

    # Once stopped, nothing of ours is left (the stack deletes what its queues' patterns name), and theirs is whole.
    assert keys(client) == theirs
    assert_theirs_intact(client, before, time.monotonic() - started)


def test_every_other_redis_queue_leaves_nothing_behind_on_a_users_redis(foreign: str, tmp_path: Path) -> None:
    """RQ, taskiq, Dramatiq, SAQ, streaQ, Huey: a burst each on the team's Redis; once the stack has stopped, the
    server holds exactly what it held before (their keys byte for byte, nothing of ours)."""
    on_redis = [n for n, i in REGISTRY.items() if i.has_worker and not i.needs_postgres and not i.pickles_only]
    others = tuple(n for n in on_redis if n not in QUEUES)  # Docket, which only pickles, is refused there
    client = redis.Redis.from_url(foreign)
    before, started = dumps(client, keys(client)), time.monotonic()
    config = StackConfig(workdir=tmp_path / "stack", redis_url=foreign, implementations=others, concurrency=1)
    with Stack(config) as stack:
        for name in others:  # a deadline for correctness: BullMQ's worker can wait its drainDelay for a waiting job
            result = burst(stack, name, JOBS, DURATION_S, CONCURRENCY, timeout_s=30.0)
            done = {e.job_id for e in result.executions if e.event == "end" and e.ok}
            assert len(done) == JOBS, (name, result.events)
            purge(stack, name)

    assert keys(client) == set(before)
    assert_theirs_intact(client, before, time.monotonic() - started)


@pytest.mark.pure
def test_their_jobs_are_job_calls_taskbench_would_run() -> None:
    """Were one of theirs taken by our worker, it would run and be in the ledger, not fail to parse."""
    from taskbench_service.jobs import JobCall

    assert JobCall.model_validate(_call("theirs-arq-0", "arq")).implementation == "arq"


@pytest.mark.parametrize(
    ("label", "code"),
    [
        ("rq", "from taskbench_service.implementations.rq import serializer; print(serializer().__name__)"),
        ("arq", "from taskbench_service.implementations.arq import WorkerSettings as W; print(W.job_serializer({}))"),
        ("huey", "from taskbench_service.implementations.huey import huey; print(type(huey.serializer).__name__)"),
        (
            "streaq",
            "from taskbench_service.implementations.streaq import serializers; print(serializers()['serializer']([1]))",
        ),
        ("dbos", "from taskbench_service.implementations.dbos import serializer; print(type(serializer()).__name__)"),
    ],
)
def test_no_queue_unpickles_on_a_server_taskbench_does_not_own(
    label: str, code: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """RQ, arq, Huey, streaQ and DBOS pickle by default: on someone else's Redis (PostgreSQL for DBOS), anyone with
    its password could write a payload their worker would unpickle (as root under --hosts). There, they use JSON."""
    monkeypatch.setenv(NAMESPACE, "taskbench-0badc0de")
    assert run_in_env(label, code) in (
        "JSONSerializer",
        "b'{}'",
        "JsonSerializer",
        "b'[1]'",
        "DBOSPortableJSONSerializer",
    )


@pytest.mark.pure
def test_a_queue_that_only_pickles_is_refused_on_a_users_redis() -> None:
    """Docket has no serializer but cloudpickle: named with --redis-url it is one line (exit 2); under `all` it is
    left out, said so, and the others run there."""
    import argparse
    import io

    from rich.console import Console

    from taskbench.cli.options import no_pickle_on_theirs
    from taskbench.cli.types import implementation_labels
    from taskbench.errors import UsageError

    picklers = [n for n, i in REGISTRY.items() if i.pickles_only]
    assert "docket" in picklers
    named = argparse.Namespace(redis_url="redis://127.0.0.1:1/0", implementations=["celery", "docket"])
    with pytest.raises(UsageError, match="docket on --redis-url: Docket cloudpickles"):
        no_pickle_on_theirs(named, Console(file=io.StringIO()))
    said = io.StringIO()
    every = argparse.Namespace(redis_url="redis://127.0.0.1:1/0", implementations=implementation_labels("all"))
    no_pickle_on_theirs(every, Console(file=said, width=200))
    assert not set(picklers) & set(every.implementations) and "celery" in every.implementations
    assert "docket left out on --redis-url" in said.getvalue()
    private = argparse.Namespace(redis_url=None, implementations=["docket"])
    no_pickle_on_theirs(private, Console(file=io.StringIO()))
    assert private.implementations == ["docket"]
