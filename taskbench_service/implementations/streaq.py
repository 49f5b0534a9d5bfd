"""`/streaq/*`: tasks enqueued to a streaQ worker over Redis streams, records in Redis; and the worker's own
definitions.

streaQ (anyio on asyncio, coredis) keeps each task's data under `streaq:taskbench:task:data:<id>` and its id in
a Redis stream, `streaq:taskbench:queues:normal` (one stream per priority; a delayed task waits in the sorted set
`streaq:taskbench:queues:delayed:normal` until the worker's 0.5 s loop moves it over). The API enqueues with
`Worker.enqueue_unsafe(...)` (the FCALL `publish_task` of streaQ's Lua library: SET NX of the data, XADD),
from a `Worker` object of its own used only as a client. One worker process reads the stream in the consumer
group `workers` and runs up to `concurrency` tasks at once; it runs as
`python -m streaq run taskbench_service.implementations.streaq:worker --workers 1`.

How streaQ runs a sync function (streaq/task.py `SyncRegisteredTask.runner`, streaq/utils.py `asyncify`): in
anyio worker threads bounded by a CapacityLimiter of `sync_concurrency` (default: `concurrency`). So sync kinds
are a sync def run there, async kinds (and noop) an async def on the loop.

How a worker reads (streaq/worker.py `Worker.producer`): it holds up to 2 × concurrency messages (prefetch,
default `concurrency`, plus `concurrency`) in an in-memory stream its `concurrency` consumers take from. Each
round it first calls the Lua function `read_streams` (XAUTOCLAIM of messages pending longer than `idle_timeout`,
then XREADGROUP '>' without blocking), then, when nothing came, XREADGROUP BLOCK `idle_timeout`. (Redis 8.4+:
one XREADGROUP with CLAIM instead.) Nothing polls while the stream is empty.

What a worker's death does: a message read with XREADGROUP stays in the group's pending entries list (PEL)
until `Worker.finish_task` / `finish_failed_task` XACKs and XDELs it. A live worker re-XCLAIMs the messages of
its running tasks every 0.9 × idle_timeout (`Worker.renew_idle_timeouts`), so only a dead worker's (or
prefetched ones left waiting) go idle. Once idle for `idle_timeout`, the next `read_streams` of any worker takes
them (XAUTOCLAIM), and `Worker.run_task` counts a try (INCR `task:retry:<id>`, at the start of a run, so a
prefetched task that never started has not used one) and, past the task's `max_tries`, fails it ("Max retry
attempts reached for task!") without running it. `max_tries` (default 3) is the switch: the default re-runs a
dead worker's running task (at least once), 1 drops it (at most once). A task's own exception never re-runs it
(only `StreaqRetry`, and a timeout with `retry_timeouts`). The redelivery timeout is therefore `idle_timeout`;
a task has its own `timeout` too (a cancel), left at streaQ's default, none. A prefetched task that waits in
the worker's memory longer than `idle_timeout` is reclaimed by its own worker's next read too (streaQ documents
it), so it can be held twice and run twice: only with a short redelivery timeout and jobs that share the GIL
or a blocked loop.

A Redis restart without persistence ends the worker (seen: FCALL "Function not found" from its 0.5 s loop, and
NOGROUP for its read): its Lua library and consumer group are made only at start-up, so it runs again once
restarted. Until then the API's enqueue (also an FCALL) fails with a 503.

The worker object is made on first access (module `__getattr__`): the CLI's `import_string` gets it at
start-up, and the API process, which imports this module too, never builds it.

Names: the queue is named after the run's namespace (`settings.namespace`, `ns` below; `taskbench` on a private
Redis), and streaQ derives every key from it (streaq/constants.py, `Worker.prefix`): `streaq:{ns}:queues:<priority>`,
`:queues:delayed:<priority>`, `:task:data:<id>`, `:task:retry:<id>`, `:task:results:<id>`, `:index:running`,
`:health:<worker id>`, ...; its consumer group, `workers`, lives inside our stream. streaQ fixes one name that is the
whole server's: its Lua library, `streaq` (`#!lua name=streaq`, functions `publish_task`, `read_streams`, ...),
which the API and the worker load with FUNCTION LOAD REPLACE. Redis functions are not keys and have no namespace:
on a server where someone else's streaQ runs, ours replaces their library with this release's code, and theirs
replaces ours when it starts (the functions take every key name as an argument, so each still writes its own
keys; a release whose functions differ would run the other's code).
"""

from __future__ import annotations

import json
import logging
import os
import socket
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

from coredis.exceptions import ConnectionError as CoredisConnectionError
from coredis.exceptions import RedisError as CoredisError
from coredis.retry import ExponentialBackoffRetryPolicy
from fastapi import BackgroundTasks
from streaq import Worker
from streaq.constants import (
    REDIS_GROUP,
    REDIS_PREFIX,
    REDIS_QUEUE,
    REDIS_RETRY,
    REDIS_RUNNING_SET,
    REDIS_STREAM,
    REDIS_TASK,
)

from taskbench_service import workloads
from taskbench_service.execution import run_counted_async, run_counted_sync
from taskbench_service.heartbeat import WORKERS_KEY, Heartbeat, decoded, live_workers, server_time
from taskbench_service.implementations.base import BrokerUnavailable, CountedWithBeats
from taskbench_service.jobs import MAX_REDIS_CONNECTIONS, JobCall, RedisJobStore, WorkerRecords, json_bytes
from taskbench_service.settings import settings
from taskbench_service.workloads import Kind
from taskbench_wire.health import Beat
from taskbench_wire.records import JobRecord

log = logging.getLogger(__name__)

NAME = "streaq"
QUEUE_NAME = settings.namespace
PRIORITY = "normal"  # streaQ's one default priority
PREFIX = REDIS_PREFIX + QUEUE_NAME  # streaq:{ns}
STREAM = PREFIX + REDIS_STREAM + PRIORITY  # streaq:{ns}:queues:normal
DELAYED = PREFIX + REDIS_QUEUE + PRIORITY  # streaq:{ns}:queues:delayed:normal
TASK_DATA = PREFIX + REDIS_TASK  # + task id
TRIES = PREFIX + REDIS_RETRY  # + task id
RUNNING_SET = PREFIX + REDIS_RUNNING_SET
SYNC_FUNCTION = "taskbench.run_sync"  # sleep, cpu, memory: sync def, in streaQ's anyio threads
ASYNC_FUNCTION = "taskbench.run_async"  # async_sleep, blocking_async, noop: async def, on the loop
SYNC_KINDS = workloads.SYNC_KINDS

# Delivery variants by name (TASKBENCH_DELIVERY) → the tasks' `max_tries`, which decides whether a dead worker's
# task runs again once reclaimed (its try counter is 1 by then) or is failed unrun.
DELIVERIES = {"default": 3, "max_tries=1": 1}  # 3 is streaQ's own default (Worker.task)
MAX_TRIES = DELIVERIES.get(settings.delivery, DELIVERIES["default"])

# Timing settings, stated in `describe()`, the heartbeat and the harness's `settings()`.
IDLE_TIMEOUT_S = settings.redelivery_timeout_s  # streaQ default 60 s
TTL_S = 0  # no result stored at all (streaQ default 300 s): records live in taskbench's own hash
DELAYED_LOOP_S = 0.5  # Worker.schedule_delayed_tasks, fixed
RENEW_FACTOR = 0.9  # Worker.renew_idle_timeouts: every 0.9 × idle_timeout
# coredis retries a command twice, 10 ms apart, by default: too short for a Redis restart, and any error in
# the worker's read loop ends the worker. Backoff 0.1 s doubling, capped at 1 s: about 9 s, as for arq and SAQ.
WORKER_REDIS_RETRIES = 12
API_REDIS_RETRIES = 3  # about 0.7 s: a dropped connection costs no request, Redis down answers 503 soon


def _retry_policy(retries: int) -> ExponentialBackoffRetryPolicy:
    return ExponentialBackoffRetryPolicy(
        (CoredisConnectionError, TimeoutError), retries=retries, base_delay=0.1, max_delay=1.0
    )


def runs_sync(kind: Kind, job: int) -> bool:
    """Sync kinds (and a user's sync function) go to streaQ's threads, the rest run on the loop."""
    return kind in SYNC_KINDS or (kind is Kind.job and not workloads.is_async(kind, job))


# Purge: every message in the stream that no live worker runs: never delivered, pending for a consumer that is
# gone (a dead worker's: XAUTOCLAIM would run it in the next scenario), or prefetched by a live worker but still
# queued in taskbench's records (its task data goes, so that worker fails it 'expired' unrun). Each with its task
# data and try counter; then the delayed set. A live worker's running tasks stay.
# KEYS: stream, delayed, running set; ARGV: data prefix, tries prefix, group, n live consumers, the live
# consumers, then the ids of the records still queued.
_PURGE = """
local stream, delayed, running_set = KEYS[1], KEYS[2], KEYS[3]
local data_prefix, tries_prefix, group = ARGV[1], ARGV[2], ARGV[3]
local n_live = tonumber(ARGV[4])
local live, queued = {}, {}
for i = 5, 4 + n_live do live[ARGV[i]] = true end
for i = 5 + n_live, #ARGV do queued[ARGV[i]] = true end
local owner = {}
local ok, pending = pcall(redis.call, 'XPENDING', stream, group, '-', '+', 1000000)
if ok then for _, p in ipairs(pending) do owner[p[1]] = p[2] end end
local purged = 0
for _, entry in ipairs(redis.call('XRANGE', stream, '-', '+')) do
  local id, fields, task_id = entry[1], entry[2], nil
  for i = 1, #fields, 2 do if fields[i] == 'task_id' then task_id = fields[i + 1] end end
  local who = owner[id]
  if (not who) or (not live[who]) or (task_id and queued[task_id]) then
    if who then redis.call('XACK', stream, group, id) end
    redis.call('XDEL', stream, id)
    if task_id then
      redis.call('DEL', data_prefix .. task_id, tries_prefix .. task_id)
      redis.call('SREM', running_set, task_id)
    end
    purged = purged + 1
  end
end
for _, task_id in ipairs(redis.call('ZRANGE', delayed, 0, -1)) do
  redis.call('DEL', data_prefix .. task_id, tries_prefix .. task_id)
  purged = purged + 1
end
redis.call('DEL', delayed)
return purged
"""


class StreaqImplementation(CountedWithBeats):
    name = NAME
    runner = "streaQ (enqueue → anyio worker over a Redis stream, consumer group, `concurrency` tasks at once)"

    def __init__(self) -> None:
        super().__init__()
        self._client: Worker[Any] | None = None
        self._exit: AsyncExitStack | None = None

    async def startup(self) -> None:
        await super().startup()
        # A Worker used as a client only (streaQ's way to enqueue): its coredis pool, bounded waits.
        client: Worker[Any] = Worker(
            redis_url=settings.redis_url,
            redis_kwargs={
                "connect_timeout": settings.redis_timeout_s,
                "stream_timeout": settings.redis_timeout_s,
                "max_connections": MAX_REDIS_CONNECTIONS,
                "retry_policy": _retry_policy(API_REDIS_RETRIES),
            },
            queue_name=QUEUE_NAME,
            **serializers(),
            handle_signals=False,
        )
        self._exit = AsyncExitStack()
        await self._exit.enter_async_context(client)  # connects, loads streaQ's Lua library (FUNCTION LOAD)
        self._client = client

    async def shutdown(self) -> None:
        if self._exit is not None:
            await self._exit.aclose()
        await super().shutdown()

    @property
    def client(self) -> Worker[Any]:
        if self._client is None:
            raise RuntimeError(f"{self.name}: the API has not started (lifespan) yet")
        return self._client

    async def submit(self, record: JobRecord, background_tasks: BackgroundTasks) -> None:
        function = SYNC_FUNCTION if runs_sync(record.kind, record.job or 0) else ASYNC_FUNCTION
        task = self.client.enqueue_unsafe(function, **JobCall.of(record).model_dump(mode="json"))
        task.id = record.job_id
        try:
            await self.bounded(task)
        except (CoredisError, OSError) as exc:
            raise BrokerUnavailable(f"{type(exc).__name__}: {exc}") from exc

    async def _live(self) -> tuple[list[Beat], int, int]:
        """One round trip: the live workers, the stream's length (every task not yet acknowledged: waiting,
        prefetched, running, or a dead worker's) and the delayed set's size."""
        async with self.store.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(WORKERS_KEY.format(self.name))
            pipe.xlen(STREAM)
            pipe.zcard(DELAYED)
            pipe.time()
            beats, in_stream, delayed, now = await pipe.execute()
        return live_workers(decoded(beats), server_time(now)), int(in_stream), int(delayed)

    async def purge(self, queued_ids: list[str]) -> int:
        workers, _, _ = await self._live()
        live = [w.extra("streaq_worker_id") for w in workers if w.extra("streaq_worker_id")]
        keys = [STREAM, DELAYED, RUNNING_SET]
        args = [TASK_DATA, TRIES, REDIS_GROUP, len(live), *live, *queued_ids]
        return int(await self.store.redis.eval(_PURGE, len(keys), *keys, *args))

    async def queue_and_workers(self) -> tuple[int, list[Beat]]:
        """Pending: every message in the stream but those a live worker runs (so prefetched ones, and a dead
        worker's, which XAUTOCLAIM will take: see the module's docstring), plus the delayed set."""
        workers, in_stream, delayed = await self._live()
        running = sum(w.active for w in workers)
        return max(in_stream - running, 0) + delayed, workers

    def describe(self) -> dict[str, Any]:
        return {
            "runner": self.runner,
            "queue": QUEUE_NAME,
            "stream": STREAM,
            "dequeue": "XREADGROUP BLOCK idle_timeout (no polling), XAUTOCLAIM of idle messages before each",
            "idle_timeout": "the worker's redelivery timeout (its heartbeat says)",
            "max_tries": DELIVERIES,
            "ttl_s": TTL_S,
            "timeout": None,
        }


IMPLEMENTATION = StreaqImplementation()


# --- the worker: `python -m streaq run taskbench_service.implementations.streaq:worker --workers 1` ------------


@dataclass
class _WorkerState:
    """What the worker process holds, made in its lifespan (never at import)."""

    worker: Worker[Any]
    records: WorkerRecords  # for sync tasks, in anyio's threads
    store: RedisJobStore  # for async tasks, on the loop
    heartbeat: Heartbeat
    worker_id: str
    active: int = 0


_state: _WorkerState | None = None


def run_sync(**payload: Any) -> None:
    """Sync kinds, in streaQ's anyio threads (streaQ wraps a sync function so)."""
    assert _state is not None, "the worker's lifespan has not started"
    state = _state
    call = JobCall.model_validate(payload)
    error = run_counted_sync(call, state.records, state)
    if error is not None:
        raise error  # recorded already; streaQ fails the task, never re-runs it for its own exception


async def run_async(**payload: Any) -> None:
    """Async kinds and noop, awaited on the worker's event loop."""
    assert _state is not None, "the worker's lifespan has not started"
    state = _state
    call = JobCall.model_validate(payload)
    error = await run_counted_async(call, state.store, state)
    if error is not None:
        raise error


def _describe() -> dict[str, Any]:
    assert _state is not None
    worker = _state.worker
    return {
        "worker": _state.worker_id,
        "streaq_worker_id": worker.id,  # its consumer name in the group
        "active": _state.active,
        "concurrency": worker.concurrency,
        "sync_threads": worker.sync_concurrency,
        "prefetch": worker.prefetch,
        "idle_timeout_s": worker.idle_timeout / 1000,
        "max_tries": MAX_TRIES,
        "delivery": settings.delivery,
        "ttl_s": TTL_S,
    }


@asynccontextmanager
async def _lifespan() -> AsyncIterator[None]:
    """streaQ's start-up hook: entered once the worker is connected, before it reads a task."""
    global _state
    workloads.calibrate()  # before any task; `--workers 1` forks nothing
    worker = _worker()
    worker_id = f"streaq@{socket.gethostname()}:{os.getpid()}"
    _state = _WorkerState(
        worker=worker,
        records=WorkerRecords(settings.redis_url, settings.redis_timeout_s),
        store=RedisJobStore(NAME, settings.redis_url, settings.redis_timeout_s),
        heartbeat=Heartbeat(NAME, worker_id, _describe),
        worker_id=worker_id,
    )
    _state.heartbeat.start()
    log.warning(
        "taskbench streaq worker %s (consumer %s): concurrency=%d max_tries=%d idle_timeout=%gs",
        worker_id, worker.id, worker.concurrency, MAX_TRIES, IDLE_TIMEOUT_S,
    )  # fmt: skip
    try:
        yield None
    finally:
        _state.heartbeat.stop()
        await _state.store.aclose()


_worker_object: Worker[Any] | None = None


def serializers() -> dict[str, Any]:
    """streaQ's default (pickle) on taskbench's own Redis; JSON on someone else's (settings.foreign_servers)."""
    return {"serializer": json_bytes, "deserializer": json.loads} if settings.foreign_servers else {}


def _worker() -> Worker[Any]:
    """The worker streaQ's CLI runs, made once, on first access."""
    global _worker_object
    if _worker_object is None:
        retry = _retry_policy(WORKER_REDIS_RETRIES)
        worker: Worker[Any] = Worker(
            redis_url=settings.redis_url,
            # no stream_timeout: XREADGROUP blocks for idle_timeout by design
            redis_kwargs={"connect_timeout": settings.redis_timeout_s, "retry_policy": retry},
            concurrency=settings.concurrency,
            queue_name=QUEUE_NAME,
            **serializers(),
            lifespan=_lifespan,
            idle_timeout=IDLE_TIMEOUT_S,
        )
        options: dict[str, Any] = {"max_tries": MAX_TRIES, "ttl": TTL_S, "timeout": None}
        worker.task(name=SYNC_FUNCTION, **options)(run_sync)
        worker.task(name=ASYNC_FUNCTION, **options)(run_async)
        _worker_object = worker
    return _worker_object


def __getattr__(name: str) -> Any:
    """`taskbench_service.implementations.streaq:worker`, what streaQ's CLI imports."""
    if name == "worker":
        return _worker()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
