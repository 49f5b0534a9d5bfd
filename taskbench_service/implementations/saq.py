"""`/saq/*`: jobs enqueued to a SAQ worker over Redis, records in Redis; and the worker's own definitions.

SAQ is asyncio from end to end: the API awaits `RedisQueue.enqueue` (one Lua script: SET the job, ZADD it to
`saq:taskbench:incomplete`, RPUSH its id to `saq:taskbench:queued`), and one worker process runs up to
`concurrency` jobs at once, each a task on its event loop that waits in BLMOVE (queued → active: no polling).
The worker runs as `python -m saq taskbench_service.implementations.saq.worker_settings --workers 1`.

How SAQ runs a sync function (saq/worker.py `ensure_coroutine_function`): on the Worker's own
`ThreadPoolExecutor()`, created in `Worker.__init__` with Python's default size, min(32, cores + 4), which no
setting changes. So sync kinds are a sync def run there, async kinds (and noop) an async def on the loop.

What a worker's death does (saq/queue/redis.py `RedisQueue.sweep`, run by every worker every `timers.sweep`
seconds): a job id left in the `active` list whose job is ACTIVE and older than its `timeout` (`Job.stuck`;
`heartbeat` is 0, i.e. off, since nothing in a job touches it) is aborted, then waited for 5 s (hard-coded
`abort=5.0`: no live worker will finish it), then `Job.retryable` (retries > attempts) decides: re-queued,
or finished ABORTED ("swept") and never run again. `retries` is therefore the switch: SAQ's default 1 runs
a job at most once; 2 re-runs a dead worker's job once. `retries` is also what re-runs a job that raised,
so the job function makes its own failure final (see `_final_failure`): only the sweep re-queues.

`timeout`, `retries` and `ttl` are fields of each job, set by whoever enqueues it; the API never restarts
with the worker's settings, so the worker stamps its own (`_before_process`, one SET + PUBLISH per job).

Names: the queue is named after the run's namespace (`settings.namespace`, `ns` below; `taskbench` on a private
Redis), and SAQ derives every key from it (saq/queue/redis.py `RedisQueue.namespace`, `job_id`):
`saq:{ns}:queued`, `:active`, `:incomplete`, `:schedule`, `:sweep`, `:stats`, `:worker_info:<id>`, the jobs
`saq:job:{ns}:<record id>` and their status channels (the same names; the API's multiplexer subscribes to
`saq:job:{ns}*`). SAQ fixes one prefix: a job's abort key `saq:abort:<job key>` (saq/job.py `Job.abort_id`), which
the enqueue script reads and the sweep writes for a stuck job of ours (SETEX 5 s, deleted once aborted); job keys
are the records' uuid4 hex ids, so it names no other team's job.
"""

from __future__ import annotations

import logging
import math
import os
import socket
from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio as aredis
from fastapi import BackgroundTasks
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import ExponentialBackoff
from saq.job import Job, Status
from saq.queue.redis import RedisQueue
from saq.worker import Worker

from taskbench_service import workloads
from taskbench_service.execution import execute_async, execute_sync
from taskbench_service.heartbeat import WORKERS_KEY, Heartbeat, decoded, live_beats, live_workers, server_time
from taskbench_service.implementations.base import BrokerUnavailable, CountedWithBeats
from taskbench_service.jobs import JobCall, RedisJobStore, WorkerRecords, redis_options
from taskbench_service.settings import settings
from taskbench_service.workloads import Kind
from taskbench_wire.health import Beat
from taskbench_wire.records import JobRecord

log = logging.getLogger(__name__)

NAME = "saq"
QUEUE_NAME = settings.namespace  # keys saq:{ns}:queued / :active / :incomplete, jobs saq:job:{ns}:<id>
SYNC_FUNCTION = "taskbench.run_sync"  # sleep, cpu, memory: sync def, in the Worker's thread pool
ASYNC_FUNCTION = "taskbench.run_async"  # async_sleep, blocking_async, noop: async def, on the loop
SYNC_KINDS = workloads.SYNC_KINDS

# Delivery variants by name (TASKBENCH_DELIVERY) → each job's `retries`, which decides whether the sweep
# re-queues a dead worker's job (attempts is 1 by then) or finishes it ABORTED.
DELIVERIES = {"default": 1, "retries=2": 2}  # 1 is SAQ's own default (Job.retries)
RETRIES = DELIVERIES.get(settings.delivery, DELIVERIES["default"])

# The Worker's thread pool for sync functions: `ThreadPoolExecutor()` in Worker.__init__, Python's default.
SYNC_THREADS = min(32, (os.cpu_count() or 1) + 4)
# How often a worker sweeps the active list for stuck jobs (SAQ default 60 s); also the sweep's Redis lock,
# a SETEX, hence whole seconds.
SWEEP_S = max(1, round(settings.restore_interval_s)) if settings.restore_interval_s else 60
SWEEP_ABORT_WAIT_S = 5.0  # RedisQueue.sweep(abort=5.0): the Worker never passes another value
TTL_S = -1  # SAQ deletes a job's own record as it finishes (default 600 s); taskbench's records are its own
WORKER_REDIS_RETRIES = 12  # backoff 0.1 s doubling, capped at 1 s: about 9 s, a Redis restart


def runs_sync(kind: Kind, job: int) -> bool:
    """Sync kinds (and a user's sync function) go to SAQ's thread pool, the rest run on the loop."""
    return kind in SYNC_KINDS or (kind is Kind.job and not workloads.is_async(kind, job))


def job_timeout_s(kind: Kind, duration: float) -> int:
    """A job's `timeout`: when SAQ cancels it, and when the sweep calls it stuck if its worker died.

    The redelivery timeout (the harness: max(5 s, 2 × duration + 2 s)), times how many jobs of this kind share
    what one needs here: SAQ stamps `started` at dequeue, so a job that waits for the GIL (cpu), the blocked
    loop (blocking_async) or a free pool thread runs that many times longer, and a shorter timeout would
    cancel healthy jobs. Whole seconds (Job.timeout is an int).
    """
    if kind in (Kind.cpu, Kind.blocking_async):
        sharing = settings.concurrency
    elif kind in SYNC_KINDS:
        sharing = math.ceil(settings.concurrency / SYNC_THREADS)
    else:
        sharing = 1
    return max(1, math.ceil(settings.redelivery_timeout_s * sharing))


# Purge: every id in the `queued` list, and every id in `active` that no live worker owns (a dead worker's,
# which a sweep would otherwise run in the next scenario), each with its job and its place in `incomplete`.
# KEYS: queued, incomplete, active; ARGV: the live workers' SAQ ids. A live worker's running jobs stay.
_PURGE = """
local purged = 0
for _, id in ipairs(redis.call('LRANGE', KEYS[1], 0, -1)) do
  redis.call('ZREM', KEYS[2], id)
  redis.call('DEL', id)
  purged = purged + 1
end
redis.call('DEL', KEYS[1])
local live = {}
for _, worker in ipairs(ARGV) do live[worker] = true end
for _, id in ipairs(redis.call('LRANGE', KEYS[3], 0, -1)) do
  local raw = redis.call('GET', id)
  local owner = raw and cjson.decode(raw)['worker_id']
  if not (owner and live[owner]) then
    redis.call('LREM', KEYS[3], 0, id)
    redis.call('ZREM', KEYS[2], id)
    redis.call('DEL', id)
    purged = purged + 1
  end
end
return purged
"""


class SaqImplementation(CountedWithBeats):
    name = NAME
    runner = "SAQ (Queue.enqueue → asyncio worker over Redis, BLMOVE, `concurrency` jobs at once)"

    def __init__(self) -> None:
        super().__init__()
        self._queue: RedisQueue | None = None

    async def startup(self) -> None:
        await super().startup()
        # Bounded waits and reconnect-and-retry, like the records; bytes, as SAQ expects of its client.
        options = redis_options(settings.redis_timeout_s, asyncio=True) | {"decode_responses": False}
        self._queue = RedisQueue(aredis.Redis.from_url(settings.redis_url, **options), name=QUEUE_NAME)
        await self._queue.connect()

    async def shutdown(self) -> None:
        if self._queue is not None:
            await self._queue.disconnect()
        await super().shutdown()

    @property
    def queue(self) -> RedisQueue:
        if self._queue is None:
            raise RuntimeError(f"{self.name}: the API has not started (lifespan) yet")
        return self._queue

    async def submit(self, record: JobRecord, background_tasks: BackgroundTasks) -> None:
        job = Job(
            function=SYNC_FUNCTION if runs_sync(record.kind, record.job or 0) else ASYNC_FUNCTION,
            kwargs=JobCall.of(record).model_dump(mode="json"),
            key=record.job_id,
            # The worker stamps its own timeout and retries as it starts the job; these cover the moment
            # between its BLMOVE and that stamp.
            timeout=job_timeout_s(record.kind, record.duration),
            retries=1,
            ttl=TTL_S,
        )
        if await self.bounded(self.queue.enqueue(job)) is None:  # SAQ's answer for a key it already has
            raise BrokerUnavailable(f"saq refused job {record.job_id}: a job with this key exists")

    async def purge(self, queued_ids: list[str]) -> int:
        beats = await live_beats(self.store.redis, self.name)
        live = [w.extra("saq_worker_id") for w in beats if w.extra("saq_worker_id")]
        keys = [self.queue.namespace(key) for key in ("queued", "incomplete", "active")]
        return int(await self.store.redis.eval(_PURGE, len(keys), *keys, *live))

    async def queue_and_workers(self) -> tuple[int, list[Beat]]:
        """One round trip. Pending: the `queued` list, plus ids in `active` that no live worker runs (a dead
        worker's jobs, which the sweep will take: see the module's docstring)."""
        async with self.store.redis.pipeline(transaction=False) as pipe:
            pipe.llen(self.queue.namespace("queued"))
            pipe.llen(self.queue.namespace("active"))
            pipe.hgetall(WORKERS_KEY.format(self.name))
            pipe.time()
            queued, active, beats, now = await pipe.execute()
        workers = live_workers(decoded(beats), server_time(now))
        running = sum(w.active for w in workers)
        return int(queued) + max(int(active) - running, 0), workers

    def describe(self) -> dict[str, Any]:
        return {
            "runner": self.runner,
            "queue": QUEUE_NAME,
            "dequeue": "BLMOVE queued → active, dequeue_timeout 0 (blocks; no polling)",
            "ttl_s": TTL_S,
            "retries": DELIVERIES,
            "timeout": "the worker's redelivery timeout × jobs sharing a resource (its heartbeat says)",
            "heartbeat": 0,
            "sweep": "every worker's timers.sweep (the worker's restore interval; SAQ default 60 s)",
        }


IMPLEMENTATION = SaqImplementation()


# --- the worker: `python -m saq taskbench_service.implementations.saq.worker_settings --workers 1` -------------


class _WorkerQueue(RedisQueue):
    """SAQ's RedisQueue, unchanged but for a count of the jobs its sweep holds (`swept`).

    The sweep takes a stuck job out of the `active` list (`abort`), waits 5 s, then re-queues (`retry`) or
    finishes it. In between the job is in no list at all; the heartbeat reports these as `reserved`, so the
    harness does not take a job about to run again for an orphan."""

    def __init__(self, client: aredis.Redis, name: str) -> None:
        super().__init__(client, name=name)
        self.swept: set[str] = set()

    async def abort(self, job: Job, error: str, ttl: float = 5) -> None:
        self.swept.add(job.key)
        await super().abort(job, error, ttl)

    async def retry(self, job: Job, error: str | None) -> None:
        try:
            await super().retry(job, error)
        finally:
            self.swept.discard(job.key)

    async def finish(
        self, job: Job, status: Status, *, result: Any = None, error: str | None = None, **kwargs: Any
    ) -> None:
        try:
            await super().finish(job, status, result=result, error=error, **kwargs)
        finally:
            self.swept.discard(job.key)


@dataclass
class _WorkerState:
    """What the worker process holds, made in `_startup` (never at import)."""

    worker: Worker[Any]
    queue: _WorkerQueue
    records: WorkerRecords  # for sync jobs, in the pool's threads
    store: RedisJobStore  # for async jobs, on the loop
    heartbeat: Heartbeat
    worker_id: str


_state: _WorkerState | None = None


def _final_failure(ctx: dict[str, Any], error: BaseException) -> BaseException:
    """A job's own exception never re-runs it: `Job.retryable` is retries > attempts, so make them equal.
    Only the sweep (a dead worker's job) uses `retries`."""
    job: Job = ctx["job"]
    job.retries = job.attempts
    return error


def run_sync(ctx: dict[str, Any], **payload: Any) -> None:
    """Sync kinds, on the Worker's thread pool (SAQ wraps a sync function so)."""
    assert _state is not None, "the worker's startup has not run"
    records = _state.records
    try:
        call = JobCall.model_validate(payload)
        error = execute_sync(call, records, lambda: workloads.run_sync(call))
    except Exception as exc:  # a payload that is not a JobCall: failed too, never re-run
        error = exc
    if error is not None:
        raise _final_failure(ctx, error)  # recorded already; SAQ finishes the job FAILED


async def run_async(ctx: dict[str, Any], **payload: Any) -> None:
    """Async kinds and noop, awaited on the worker's event loop."""
    assert _state is not None, "the worker's startup has not run"
    store = _state.store
    try:
        call = JobCall.model_validate(payload)
        error = await execute_async(call, store, lambda: workloads.run_async(call))
    except Exception as exc:
        error = exc
    if error is not None:
        raise _final_failure(ctx, error)


def _describe() -> dict[str, Any]:
    assert _state is not None
    return {
        "worker": _state.worker_id,
        "saq_worker_id": _state.worker.id,  # what SAQ stamps on the jobs it runs (Job.worker_id)
        "active": len(_state.worker.job_task_contexts),
        "reserved": len(_state.queue.swept),  # a dead worker's jobs in the sweep's hands
        "concurrency": _state.worker.concurrency,
        "sync_threads": SYNC_THREADS,
        "retries": RETRIES,
        "delivery": settings.delivery,
        "timeout_s": job_timeout_s(Kind.sleep, 0),
        "timeout_s_cpu_blocking_async": job_timeout_s(Kind.cpu, 0),
        "heartbeat_s": 0,
        "sweep_s": SWEEP_S,
        "sweep_abort_wait_s": SWEEP_ABORT_WAIT_S,
        "ttl_s": TTL_S,
    }


async def _startup(ctx: dict[str, Any]) -> None:
    global _state
    workloads.calibrate()  # before any job; `--workers 1` forks nothing
    worker: Worker[Any] = ctx["worker"]
    queue = worker.queue
    assert isinstance(queue, _WorkerQueue), "worker_settings makes the queue"
    worker_id = f"saq@{socket.gethostname()}:{os.getpid()}"
    _state = _WorkerState(
        worker=worker,
        queue=queue,
        records=WorkerRecords(settings.redis_url, settings.redis_timeout_s),
        store=RedisJobStore(NAME, settings.redis_url, settings.redis_timeout_s),
        heartbeat=Heartbeat(NAME, worker_id, _describe),
        worker_id=worker_id,
    )
    _state.heartbeat.start()
    log.warning(
        "taskbench saq worker %s: concurrency=%d retries=%d sweep=%ds", worker_id, worker.concurrency, RETRIES, SWEEP_S
    )


async def _shutdown(ctx: dict[str, Any]) -> None:
    if _state is not None:
        _state.heartbeat.stop()
        await _state.store.aclose()


async def _before_process(ctx: dict[str, Any]) -> None:
    """This worker's timeout and retries on the job, in Redis too: the sweep reads them from there."""
    job: Job = ctx["job"]
    try:
        call = JobCall.model_validate(job.kwargs or {})
        timeout = job_timeout_s(call.kind, call.duration)
    except ValueError:  # not a JobCall: the job function fails it
        timeout = job_timeout_s(Kind.sleep, 0)
    await job.update(status=Status.ACTIVE, timeout=timeout, retries=RETRIES)


def worker_settings() -> dict[str, Any]:
    """Read by SAQ's CLI (`saq.worker.import_settings` calls it at start-up): the client is made here."""
    client = aredis.Redis.from_url(
        settings.redis_url,
        socket_connect_timeout=settings.redis_timeout_s,
        socket_timeout=None,  # BLMOVE blocks by design; said, not left out: redis-py 8's default is 5 s
        retry=AsyncRetry(ExponentialBackoff(cap=1.0, base=0.1), retries=WORKER_REDIS_RETRIES),
        retry_on_error=[redis.ConnectionError, redis.TimeoutError],
    )
    return {
        "queue": _WorkerQueue(client, name=QUEUE_NAME),
        "functions": [(SYNC_FUNCTION, run_sync), (ASYNC_FUNCTION, run_async)],
        "concurrency": settings.concurrency,
        "startup": _startup,
        "shutdown": _shutdown,
        "before_process": _before_process,
        "timers": {"sweep": SWEEP_S},  # schedule 1 s, abort 1 s, worker_info 10 s: SAQ's defaults
        "dequeue_timeout": 0,  # BLMOVE without a timeout: a job starts as soon as it is pushed
    }
