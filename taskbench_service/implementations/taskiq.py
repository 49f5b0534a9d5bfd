"""`/taskiq/*`: jobs kicked to a `taskiq worker` over Redis (taskiq-redis), records in Redis.

Two brokers of taskiq-redis 1.0.9, one per delivery variant (TASKBENCH_DELIVERY):

- `default`: `ListQueueBroker`, LPUSH to a list and BRPOP from it. No acknowledgement: a job is gone from
  Redis the moment a worker pops it, so a worker that dies loses the jobs it was running (at most once).
- `stream`: `RedisStreamBroker`, XADD to a stream read with XREADGROUP by a consumer group. The receiver
  acknowledges (XACK) after the job (taskiq's default `--ack-type when_saved`); a message left
  unacknowledged by a dead consumer is claimed by another one (XAUTOCLAIM) once idle for `idle_timeout`
  (at least once). That pass holds a lock key with no expiry (taskiq-redis 1.0.9) while it hands out a
  claimed message: a worker killed while running a claimed job leaves it held, and nothing is claimed again.

The harness tells only the worker which variant it runs, so the API kicks to the broker of the freshest
worker heartbeat (read by `/health`, which the harness polls before every scenario); counts and purges
cover both. A taskiq user configures one broker object shared by both sides; this only stands in for that.

The worker side lives here too: `taskiq worker taskbench_service.implementations.taskiq:worker_broker` calls the factory
in each worker process (taskiq forks its `--workers` children before importing the broker), which builds
the broker, registers the two tasks and the start-up hook (calibrate, record clients, heartbeat).

Names: the run's (`settings.namespace`, `ns` below): the list `{ns}:taskiq`, the stream `{ns}:taskiq:stream` and
its consumer group `{ns}` (taskiq-redis' defaults: `taskiq` for all three). Consumers are uuid4s inside that group.
taskiq-redis fixes one prefix: the stream broker's claim lock `autoclaim:{group}:{stream}`, here
`autoclaim:{ns}:{ns}:taskiq:stream` (a redis-py lock: SET NX, deleted after each claim pass, left behind only by a
worker killed during one).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

import redis
from fastapi import BackgroundTasks
from taskiq import AsyncBroker, AsyncTaskiqDecoratedTask, TaskiqEvents, TaskiqState
from taskiq.exceptions import SendTaskError
from taskiq_redis import ListQueueBroker, RedisStreamBroker

from taskbench_service import workloads
from taskbench_service.execution import execute_async, execute_sync
from taskbench_service.heartbeat import Heartbeat, live_beats
from taskbench_service.implementations.base import BrokerUnavailable, QueueImplementation
from taskbench_service.jobs import MAX_REDIS_CONNECTIONS, JobCall, RedisJobStore, WorkerRecords, redis_options
from taskbench_service.settings import settings
from taskbench_wire.health import Beat, Section
from taskbench_wire.records import JobRecord
from taskbench_wire.urls import redacted

log = logging.getLogger(__name__)

NAME = "taskiq"
LIST_KEY = f"{settings.namespace}:taskiq"  # ListQueueBroker's list
STREAM_KEY = f"{settings.namespace}:taskiq:stream"  # RedisStreamBroker's stream
GROUP = settings.namespace  # its consumer group
SYNC_TASK = "taskbench.run_job"  # a plain def: taskiq runs it in the worker process' thread pool
ASYNC_TASK = "taskbench.run_job_async"  # an async def: awaited on the worker process' event loop
DELIVERIES = ("default", "stream")
# taskiq retries only with a retry middleware (none is added here); the label says so for the task too.
NO_RETRY = {"retry_on_error": False}


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


def make_broker(delivery: str, worker: bool) -> AsyncBroker:
    """The broker of a delivery variant. The API's connections have bounded waits and retry a dropped
    connection; a worker's have no socket timeout, since BRPOP / XREADGROUP block on purpose."""
    options = redis_options(settings.redis_timeout_s, asyncio=True)
    options.pop("decode_responses")  # taskiq reads raw bytes
    if worker:
        # None, not left out: redis-py 8 defaults socket_timeout to 5 s (redis/_defaults.py), which ended the idle
        # BRPOP (taskiq-redis blocks with timeout 0) with TimeoutError and killed the worker process every ~21 s
        # (taskiq-redis#127): jobs lost, and no worker seen for a moment.
        options["socket_timeout"] = None
        pool: dict[str, Any] = {}
    else:
        pool = {"max_connection_pool_size": MAX_REDIS_CONNECTIONS, "timeout": settings.redis_timeout_s}
    if delivery == "stream":
        return RedisStreamBroker(
            settings.redis_url,
            queue_name=STREAM_KEY,
            consumer_group_name=GROUP,
            # An unacknowledged message goes to another consumer once idle this long.
            idle_timeout=_ms(settings.redelivery_timeout_s),
            # XAUTOCLAIM runs after each XREADGROUP, which waits this long when the stream is empty.
            xread_block=_ms(settings.restore_interval_s or 2.0),
            xread_count=1,  # default 100: a process would take 100 jobs while the others idle
            unacknowledged_batch_size=1,  # default 100: the same, for claimed messages
            **pool,
            **options,
        )
    return ListQueueBroker(settings.redis_url, queue_name=LIST_KEY, **pool, **options)


# --- worker side ----------------------------------------------------------------------------------------


class _Worker:
    """One worker process' state: created by the start-up hook, never at import."""

    def __init__(self) -> None:
        self.records: WorkerRecords | None = None
        self.store: RedisJobStore | None = None
        self.heartbeat: Heartbeat | None = None
        self.slots = settings.concurrency
        self.threads: int | None = None
        self.processes: int | None = None
        self._active = 0
        self._lock = threading.Lock()

    @contextmanager
    def running(self) -> Iterator[None]:
        with self._lock:
            self._active += 1
        try:
            yield
        finally:
            with self._lock:
                self._active -= 1

    @property
    def active(self) -> int:
        return self._active


_worker = _Worker()


def run_job(call: dict[str, Any]) -> None:
    """Sync kinds: taskiq runs a plain def in its thread pool (`--max-threadpool-threads`)."""
    job = JobCall.model_validate(call)
    assert _worker.records is not None, "the worker start-up hook has not run"
    with _worker.running():
        error = execute_sync(job, _worker.records, lambda: workloads.run_sync(job))
    if error is not None:
        raise error


async def run_job_async(call: dict[str, Any]) -> None:
    """Async kinds and noop: awaited on the worker process' event loop, taskiq's native way."""
    job = JobCall.model_validate(call)
    assert _worker.store is not None, "the worker start-up hook has not run"
    with _worker.running():
        error = await execute_async(job, _worker.store, lambda: workloads.run_async(job))
    if error is not None:
        raise error


def register_tasks(broker: AsyncBroker) -> dict[str, AsyncTaskiqDecoratedTask[Any, Any]]:
    return {
        SYNC_TASK: broker.register_task(run_job, task_name=SYNC_TASK, **NO_RETRY),
        ASYNC_TASK: broker.register_task(run_job_async, task_name=ASYNC_TASK, **NO_RETRY),
    }


def _cli_option(name: str, default: int | None) -> int | None:
    """What `taskiq worker` was started with (the child inherits its command line)."""
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument(name, type=int, default=default)
    known, _ = parser.parse_known_args(sys.argv[1:])
    value: int | None = getattr(known, name.lstrip("-").replace("-", "_"))
    return value


def _describe() -> dict[str, Any]:
    return {
        "concurrency": settings.concurrency,  # the whole worker's (--concurrency N of the harness)
        "processes": _worker.processes,  # --workers
        "slots": _worker.slots,  # this process' --max-async-tasks
        "active": _worker.active,
        "threads": _worker.threads,
        "delivery": settings.delivery if settings.delivery in DELIVERIES else "default",
        "redelivery_timeout": settings.redelivery_timeout_s if settings.delivery == "stream" else None,
        "restore_interval": settings.restore_interval_s if settings.delivery == "stream" else None,
    }


def _on_startup(_: TaskiqState) -> None:
    workloads.calibrate()  # in this worker process, before it takes a job (taskiq forked it already)
    _worker.slots = _cli_option("--max-async-tasks", 100) or settings.concurrency
    _worker.threads = _cli_option("--max-threadpool-threads", None)
    _worker.processes = _cli_option("--workers", 2)
    _worker.records = WorkerRecords(settings.redis_url, settings.redis_timeout_s)
    _worker.store = RedisJobStore(NAME, settings.redis_url, settings.redis_timeout_s)
    _worker.heartbeat = Heartbeat(NAME, f"taskiq-{os.uname().nodename}-{os.getpid()}", _describe)
    _worker.heartbeat.start()


async def _on_shutdown(_: TaskiqState) -> None:
    if _worker.heartbeat is not None:
        _worker.heartbeat.stop()
    if _worker.store is not None:
        await _worker.store.aclose()


def worker_broker() -> AsyncBroker:
    """`taskiq worker taskbench_service.implementations.taskiq:worker_broker`: taskiq calls this in each worker
    process."""
    broker = make_broker(settings.delivery, worker=True)
    register_tasks(broker)
    broker.add_event_handler(TaskiqEvents.WORKER_STARTUP, _on_startup)
    broker.add_event_handler(TaskiqEvents.WORKER_SHUTDOWN, _on_shutdown)
    return broker


# --- API side -------------------------------------------------------------------------------------------

# Jobs waiting: the list's length plus the entries the consumer group has not read yet (its lag, Redis 7).
_QUEUED = """
local n = redis.call('LLEN', KEYS[1])
if redis.call('EXISTS', KEYS[2]) == 1 then
  for _, group in ipairs(redis.call('XINFO', 'GROUPS', KEYS[2])) do
    local name, lag
    for i = 1, #group, 2 do
      if group[i] == 'name' then name = group[i + 1] end
      if group[i] == 'lag' then lag = group[i + 1] end
    end
    if name == ARGV[1] and lag then n = n + lag end
  end
end
return n
"""

# Drop what waits: the list, and the stream's unread entries (the group skips to the end). Entries read and
# acknowledged are trimmed; those still pending (running, or left by a dead consumer) stay claimable.
_PURGE = (
    _QUEUED.replace("return n", "")
    + """
redis.call('DEL', KEYS[1])
if redis.call('EXISTS', KEYS[2]) == 1 then
  local ok = pcall(redis.call, 'XGROUP', 'SETID', KEYS[2], ARGV[1], '$')
  local pending = ok and redis.call('XPENDING', KEYS[2], ARGV[1]) or {0}
  if pending[1] == 0 then
    redis.call('XTRIM', KEYS[2], 'MAXLEN', 0)
  else
    redis.call('XTRIM', KEYS[2], 'MINID', pending[2])
  end
end
return n
"""
)


class TaskiqImplementation(QueueImplementation):
    name = NAME
    runner = "taskiq (kiq → taskiq worker processes over Redis, taskiq-redis)"

    def __init__(self) -> None:
        super().__init__()
        self._tasks: dict[str, dict[str, AsyncTaskiqDecoratedTask[Any, Any]]] = {}
        self._brokers: dict[str, AsyncBroker] = {}
        self._delivery: str | None = None  # the freshest worker heartbeat's

    async def startup(self) -> None:
        await super().startup()
        for delivery in DELIVERIES:
            broker = make_broker(delivery, worker=False)
            self._tasks[delivery] = register_tasks(broker)
            self._brokers[delivery] = broker
        # No broker.startup() here: it only runs client hooks (none), and the stream broker's would create
        # the consumer group, which its worker does.
        self._queued = self.store.redis.register_script(_QUEUED)
        self._purge = self.store.redis.register_script(_PURGE)

    async def shutdown(self) -> None:
        for broker in self._brokers.values():
            with suppress(Exception):
                await broker.shutdown()
        await super().shutdown()

    def _follow(self, workers: list[Beat]) -> None:
        if workers:
            delivery = max(workers, key=lambda w: w.t).extra("delivery")
            self._delivery = delivery if delivery in DELIVERIES else "default"

    async def _current_delivery(self) -> str:
        if self._delivery is None:
            self._follow(await live_beats(self.store.redis, NAME))
        return self._delivery or "default"

    async def submit(self, record: JobRecord, background_tasks: BackgroundTasks) -> None:
        delivery = await self._current_delivery()
        task = self._tasks[delivery][
            ASYNC_TASK
            if workloads.is_async(record.kind, record.job or 0) or record.kind is workloads.Kind.noop
            else SYNC_TASK
        ]
        kicker = task.kicker().with_task_id(record.job_id)
        try:
            await self.bounded(kicker.kiq(JobCall.of(record).model_dump(mode="json")))
        except SendTaskError as exc:  # taskiq wraps the broker's error
            cause = exc.__cause__
            maybe_sent = isinstance(cause, (redis.TimeoutError, TimeoutError))
            raise BrokerUnavailable(f"{type(cause).__name__}: {cause}", maybe_sent=maybe_sent) from exc

    async def queued(self) -> int:
        return int(await self._queued(keys=[LIST_KEY, STREAM_KEY], args=[GROUP]))

    async def purge(self, queued_ids: list[str]) -> int:
        return int(await self._purge(keys=[LIST_KEY, STREAM_KEY], args=[GROUP]))

    async def health(self) -> Section:
        health = await super().health()
        self._follow(health.workers)
        return health

    def describe(self) -> dict[str, Any]:
        return {
            "runner": self.runner,
            "broker": redacted(settings.redis_url),
            "deliveries": {
                "default": f"ListQueueBroker ({LIST_KEY})",
                "stream": f"RedisStreamBroker ({STREAM_KEY}, group {GROUP})",
            },
            "following_worker_delivery": self._delivery,
            "result_backend": "none (taskiq's DummyResultBackend: results are not stored)",
            "retries": "none (no retry middleware)",
        }


IMPLEMENTATION = TaskiqImplementation()
