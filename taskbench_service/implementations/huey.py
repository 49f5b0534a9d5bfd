"""`/huey/*`: jobs enqueued to Huey over Redis, records in Redis; and the consumer's own definitions.

Storage: `RedisHuey` (huey/api.py), Huey's plain Redis storage and the one its README, deployment guide and
examples use: the queue is one Redis list, `huey.redis.<name>` (storage.py:RedisStorage; LPUSH to enqueue,
BRPOP to dequeue: strict FIFO). `PriorityRedisHuey` keeps the queue in a sorted set (BZPOPMIN) only so that
task priorities can overtake; nothing here has a priority, so it would buy nothing.

Sending: calling the task (`TaskWrapper.__call__` → `Huey.enqueue` → `RedisStorage.enqueue`) is a blocking
redis-py LPUSH of the pickled message, so it runs on the implementation's own publisher executor. Results are
off (`results=False`: taskbench keeps its own records, and Huey would otherwise keep every return value in
its result hash until read).

The worker is Huey's own consumer, given the import path of the `huey` instance below, as Huey's docs show:

    python -m huey.bin.huey_consumer taskbench_service.implementations.huey.huey -w N -k thread -n

One process: a scheduler thread (reads the schedule, a Redis sorted set, every second) and N worker threads
(consumer.py:Consumer, ThreadEnvironment). Each worker thread loops on `Worker.loop`: `Huey.dequeue` (a
BRPOP with a 1 s timeout, `RedisStorage(blocking=True, read_timeout=1)`, the default), then `Huey.execute`
in the same thread; it takes its next message only when the job returns, so nothing is prefetched. The
polling knobs (`-d/-b/-m`) only apply to a storage that does not block (and to the back-off after an error
reading the queue, e.g. while Redis restarts). Huey refuses `async def` tasks (api.py:TaskWrapper.create_task:
"Wrap the coroutine with asyncio.run() in a regular function"), so async kinds run with `asyncio.run` per job
on the worker thread (`workloads.run_sync`).

What a worker's death does (huey 3.5 source): `RedisStorage.dequeue` is a BRPOP (RPOP without blocking),
which removes the message from Redis; there is no acknowledgement, no in-progress list, no visibility timeout.
From then on the task exists only in the consumer's memory (`Huey._tasks_in_flight`). A SIGTERM (immediate
shutdown) or SIGINT past `--shutdown-timeout` ends the consumer after `Huey.notify_interrupted_tasks` has
sent SIGNAL_INTERRUPTED for each task still running; Huey's recipe re-enqueues them from a handler of that
signal (docs/recipes.rst, "Re-enqueueing Interrupted Tasks"). A SIGKILL runs no handler: the running tasks
are gone, at most once, and no option changes it. Jobs still in the list wait for the next consumer.

Names: the Huey instance is named after the run's namespace (`settings.namespace`), its `-` written `_` since
RedisStorage keeps letters, digits and `_` alone in a name (`clean_name`): `taskbench` on a private Redis,
`taskbench_<stack id>` on a server named by a flag. Every key Huey writes derives from that name (storage.py
RedisStorage): the queue `huey.redis.<name>`, the schedule `huey.schedule.<name>`, and, unused here, the results
`huey.results.<name>`, counters `huey.counters.<name>`, `huey.notify.<name>.<id>` and task locks `<name>.lock.*`.
"""

from __future__ import annotations

import atexit
import json
import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any

import redis
from fastapi import BackgroundTasks
from huey import RedisHuey
from huey.consumer import Consumer
from huey.registry import Message
from huey.serializer import Serializer

from taskbench_service import workloads
from taskbench_service.execution import execute_sync
from taskbench_service.heartbeat import Heartbeat
from taskbench_service.implementations.base import QueueImplementation
from taskbench_service.jobs import JobCall, WorkerRecords, json_bytes, redis_options
from taskbench_service.settings import settings
from taskbench_wire.records import JobRecord

NAME = "huey"
# The Huey instance's name: its storage keys are huey.*.<name> (see the module's docstring).
QUEUE_NAME = settings.namespace.replace("-", "_")
# Huey's blocking dequeue (RedisStorage's defaults, stated): BRPOP, back after at most READ_TIMEOUT_S when idle.
BLOCKING = True
READ_TIMEOUT_S = 1


def _connection_pool() -> redis.ConnectionPool:
    """Huey's storage client: pickled bytes (no decode_responses), bounded waits and a reconnect-and-retry after
    a Redis restart, as the API's own clients (taskbench_service.jobs.redis_options). The socket timeout stays
    above BRPOP's own, or every idle dequeue would time out. A pool connects on first use, not here."""
    options = redis_options(max(settings.redis_timeout_s, READ_TIMEOUT_S + 1.0), asyncio=False)
    return redis.ConnectionPool.from_url(settings.redis_url, **(options | {"decode_responses": False}))


class JsonSerializer(Serializer):
    """Huey's messages as JSON, not pickle, on a server taskbench does not own (settings.foreign_servers): a
    Message (a namedtuple) is written as its fields and read back as one."""

    def _serialize(self, data: Any) -> bytes:
        return json_bytes(data)

    def _deserialize(self, data: bytes) -> Any:
        value = json.loads(data)
        return Message(*value) if isinstance(value, list) and len(value) == len(Message._fields) else value


class TaskbenchHuey(RedisHuey):
    """RedisHuey, which also notes the consumer the CLI creates from it: its workers and their type for the
    heartbeat (`huey_consumer` passes its options only to `create_consumer`)."""

    def create_consumer(self, **options: Any) -> Consumer:
        consumer = super().create_consumer(**options)
        _state.workers = consumer.workers
        _state.worker_type = consumer.worker_type
        _state.initial_delay, _state.backoff, _state.max_delay = (
            consumer.default_delay,
            consumer.backoff,
            consumer.max_delay,
        )
        _state.periodic = consumer.periodic
        return consumer


# The instance both sides import: the API enqueues with it, the consumer is given its import path. Creating it
# opens no connection (redis-py's pool connects on first use).
huey = TaskbenchHuey(
    QUEUE_NAME,
    results=False,  # taskbench keeps its own records; Huey's default True stores every non-None result
    utc=True,  # Huey's default: timestamps (eta, expires) in UTC
    blocking=BLOCKING,
    read_timeout=READ_TIMEOUT_S,
    connection_pool=_connection_pool(),
    serializer=JsonSerializer() if settings.foreign_servers else None,  # None: Huey's default, pickle
)


# --- the worker side ---------------------------------------------------------------------------------


@dataclass
class _WorkerState:
    records: WorkerRecords | None = None
    heartbeat: Heartbeat | None = None
    workers: int = 0
    worker_type: str = ""
    initial_delay: float = 0.0
    backoff: float = 0.0
    max_delay: float = 0.0
    periodic: bool = True
    active: int = 0


_state = _WorkerState()
_lock = threading.Lock()


@contextmanager
def _running() -> Iterator[None]:
    with _lock:
        _state.active += 1
    try:
        yield
    finally:
        with _lock:
            _state.active -= 1


@huey.task(retries=0)  # explicit: a failed job is never run again
def run_job(call: dict[str, Any]) -> None:
    """Every kind, on one of the consumer's worker threads: sync kinds as they are, async kinds with asyncio.run
    per job (Huey runs plain functions only)."""
    job = JobCall.model_validate(call)
    assert _state.records is not None, "the consumer has not started"
    with _running():
        error = execute_sync(job, _state.records, lambda: workloads.run_sync(job))
    if error is not None:
        raise error  # logged by Huey ("Unhandled exception in task"); retries=0, no result stored


def _describe() -> dict[str, Any]:
    return {
        "active": _state.active,
        "concurrency": _state.workers,  # -w: the consumer's worker threads
        "worker_type": _state.worker_type,
        "blocking": BLOCKING,
        "read_timeout_s": READ_TIMEOUT_S,
        "initial_delay_s": _state.initial_delay,
        "backoff": _state.backoff,
        "max_delay_s": _state.max_delay,
        "periodic": _state.periodic,
        "results": huey.results,
    }


@huey.on_startup()
def _start_worker() -> None:
    """Each worker thread runs the start-up hooks before its first dequeue (consumer.py:Worker.initialize): the
    first calibrates, opens the records client and starts the heartbeat while the others wait on the lock, so
    no job runs before calibration and the heartbeat (the harness's readiness) comes after it."""
    with _lock:
        if _state.heartbeat is not None:
            return
        workloads.calibrate()
        _state.records = WorkerRecords(settings.redis_url, settings.redis_timeout_s)
        _state.heartbeat = Heartbeat(NAME, f"{socket.gethostname()}:{os.getpid()}", _describe)
        _state.heartbeat.start()
        atexit.register(_stop_worker)


def _stop_worker() -> None:
    """At the consumer's exit: its worker threads are daemons that a SIGTERM (Huey's immediate shutdown) never
    stops, so Huey's on_shutdown hooks do not run then; the interpreter's exit handlers do (not on SIGKILL)."""
    with _lock:
        heartbeat, _state.heartbeat = _state.heartbeat, None
    if heartbeat is not None:
        heartbeat.stop()


# --- the API side ------------------------------------------------------------------------------------


class HueyImplementation(QueueImplementation):
    name = NAME
    runner = "Huey (task call → huey_consumer, worker threads, over Redis)"

    async def shutdown(self) -> None:
        huey.storage.pool.disconnect()
        await super().shutdown()

    async def submit(self, record: JobRecord, background_tasks: BackgroundTasks) -> None:
        await self.in_publisher(partial(run_job, JobCall.of(record).model_dump(mode="json")))

    async def queued(self) -> int:
        return int(await self.store.redis.llen(huey.storage.queue_key))

    async def purge(self, queued_ids: list[str]) -> int:
        """Delete Huey's queue list (what `Huey.flush`'s `flush_queue` does), counted in the same transaction;
        the schedule too, though nothing here is scheduled. A worker thread holds only the job it runs."""
        async with self.store.redis.pipeline(transaction=True) as pipe:
            pipe.llen(huey.storage.queue_key)
            pipe.delete(huey.storage.queue_key, huey.storage.schedule_key)
            pending, _ = await pipe.execute()
        return int(pending)

    def describe(self) -> dict[str, Any]:
        return {
            "runner": self.runner,
            "storage": "RedisHuey (RedisStorage: a Redis list, LPUSH / BRPOP)",
            "queue": huey.storage.queue_key,
            "blocking": BLOCKING,
            "read_timeout_s": READ_TIMEOUT_S,
            "results": huey.results,
            "utc": huey.utc,
            "retries": 0,
            "acknowledgement": "none: BRPOP removes the message before the task runs",
        }


IMPLEMENTATION = HueyImplementation()
