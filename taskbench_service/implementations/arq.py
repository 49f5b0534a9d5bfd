"""`/arq/*`: jobs enqueued to an arq worker over Redis, records in Redis; and the worker's own definitions.

arq is asyncio from end to end: the API awaits `ArqRedis.enqueue_job` (a WATCH/MULTI on the job key, then
SET + ZADD to the queue's sorted set, `{ns}:arq:queue`: see Names below), and one worker process runs up to
`max_jobs` jobs at once on its event loop, polling the sorted set every `poll_delay`. The worker runs as
`python -m arq taskbench_service.implementations.arq.WorkerSettings`.

What a worker's death does (arq/worker.py): `Worker.start_jobs` marks a job taken with an `arq:in-progress:`
key whose TTL is `job_timeout + 10 s` and is never renewed, and the job stays in the sorted set until
`finish_job` removes it. A SIGKILLed worker's job is therefore picked up again by any worker's poll once that
key expires; `run_job` then counts the try (`arq:retry:` key) and, past `max_tries`, fails it without
running it ("max N retries exceeded"). So `max_tries` is the switch: arq's default 5 re-runs the job
(at least once), 1 drops it (at most once).

Names: the queue is the run's, `{ns}:arq:queue` (`settings.namespace`; arq's default `arq:queue`), and with it the
worker's health-check key `{ns}:arq:queue:health-check`. arq fixes the prefixes of its per-job keys
(arq/constants.py): `arq:job:<id>` (the payload), `arq:in-progress:<id>`, `arq:retry:<id>` and `arq:result:<id>`
(never written here: keep_result 0), and every finish ZREMs the job's id from the global `arq:abort` sorted set
(only read by a worker with allow_abort_jobs, which ours is not; a ZREM of an absent member changes nothing). So
the job ids are the run's too: `{ns}:<uuid4 hex>` (JOB_ID_PREFIX), and these keys read `arq:job:{ns}:<uuid>`:
another team's arq jobs (uuid4 hex ids, or ids of their own without our prefix) can neither collide with ours nor
be reached by the purge, which deletes only the ids it finds in our queue.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
import os
import socket
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import redis
import redis.asyncio as aredis
from arq.connections import ArqRedis, RedisSettings
from arq.constants import in_progress_key_prefix, job_key_prefix, retry_key_prefix
from arq.worker import func, get_kwargs
from fastapi import BackgroundTasks
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import ExponentialBackoff

from taskbench_service import workloads
from taskbench_service.execution import run_counted_async
from taskbench_service.heartbeat import WORKERS_KEY, Heartbeat, decoded, live_workers, server_time
from taskbench_service.implementations.base import BrokerUnavailable, CountedWithBeats
from taskbench_service.jobs import MAX_REDIS_CONNECTIONS, JobCall, RedisJobStore, json_bytes, redis_options
from taskbench_service.settings import settings
from taskbench_wire.health import Beat
from taskbench_wire.records import JobRecord

log = logging.getLogger(__name__)

NAME = "arq"


def user_settings(path: str) -> dict[str, Any]:
    """The user's own `WorkerSettings` (`--app arq=package.module:WorkerSettings`, a class or a dict, as arq's CLI
    takes it), as the mapping of its settings arq reads (arq.worker.get_kwargs); empty without --app."""
    if not path:
        return {}
    module_name, _, attribute = path.partition(":")
    found = getattr(importlib.import_module(module_name), attribute)
    return dict(found) if isinstance(found, dict) else get_kwargs(found)


# With --app: every setting as the user wrote it, but its connections (taskbench's Redis), its queue's name in the
# run's namespace, and max_jobs (taskbench's --concurrency); taskbench's function beside the user's own.
USER = user_settings(settings.app)
QUEUE = f"{settings.namespace}:{USER.get('queue_name') or 'arq:queue'}"  # a sorted set scored by start time
JOB_ID_PREFIX = f"{settings.namespace}:"  # of arq's job ids: arq:job:{ns}:<uuid> (see the module's docstring)
FUNCTION = "taskbench.run_job"

# Delivery variants by name (TASKBENCH_DELIVERY) → arq's `max_tries`, which decides whether a job whose
# worker died runs again once its in-progress key expires.
DELIVERIES = {"default": 5, "max_tries=1": 1}  # 5 is arq's own default
MAX_TRIES = DELIVERIES.get(settings.delivery, DELIVERIES["default"])

# Timing settings, stated in `describe()` and the harness's `settings()`.
POLL_DELAY_S = 0.1  # arq default 0.5 s: a ZRANGEBYSCORE 10 times a second is nothing to Redis
# arq cancels a job at job_timeout, and the in-progress TTL (when a dead worker's job runs again) is
# job_timeout + 10 s: one knob for both. The redelivery timeout max(5 s, 2 × duration + 2 s) alone would
# cancel jobs that share the GIL (cpu) or the blocked loop (blocking_async), which take up to
# max_jobs × duration (30 s cpu jobs × 4 threads: 120 s > 62 s); max_jobs times it never cancels one.
JOB_TIMEOUT_S = settings.concurrency * settings.redelivery_timeout_s
IN_PROGRESS_EXTRA_S = 10.0  # hard-coded in arq: Worker.__init__ sets in_progress_timeout_s = job_timeout + 10
KEEP_RESULT_S = 0  # no result stored at all (arq default 3600 s): records live in taskbench's own hash


def _seconds(value: Any) -> float:
    """arq takes seconds, or a timedelta."""
    return float(value.total_seconds()) if hasattr(value, "total_seconds") else float(value)


if USER:  # the user's own, arq's defaults where they say nothing
    POLL_DELAY_S = _seconds(USER.get("poll_delay", 0.5))
    JOB_TIMEOUT_S = _seconds(USER.get("job_timeout", 300))
    KEEP_RESULT_S = int(_seconds(USER.get("keep_result", 3600)))
    MAX_TRIES = int(USER.get("max_tries", 5))

# arq's poll loop has no error handling of its own: one ConnectionError from Redis ends the worker. Its
# client retries instead (RedisSettings.retry / retry_on_error), long enough to ride out a Redis restart:
# 5 tries 0.2 s → 1 s apart (3.4 s) to connect, and a command retried 5 times over that. OSError is listed
# because redis-py retries a refused connect only for the errors named (the raw ConnectionRefusedError).
WORKER_REDIS_RETRIES = 5


def _worker_redis_settings() -> RedisSettings:
    redis_settings = RedisSettings.from_dsn(settings.redis_url)
    redis_settings.conn_timeout = max(1, int(settings.redis_timeout_s))
    redis_settings.retry = AsyncRetry(ExponentialBackoff(cap=1.0, base=0.1), retries=WORKER_REDIS_RETRIES)
    redis_settings.retry_on_error = [redis.ConnectionError, redis.TimeoutError, OSError]
    return redis_settings


# Pending = in the sorted set, not running on a live worker. A dead worker's job keeps its in-progress key
# until it expires and is still in the set: it counts as pending, since arq will pick it up again.
# Purge: every job in the set goes, with its payload and try counter; a running job finishes anyway (its
# worker read the payload when it started), a dead worker's job is never picked up again.
_PURGE = """
local ids = redis.call('ZRANGE', KEYS[1], 0, -1)
local pending = 0
for _, id in ipairs(ids) do
  if redis.call('EXISTS', ARGV[2] .. id) == 0 then pending = pending + 1 end
  redis.call('DEL', ARGV[1] .. id, ARGV[3] .. id)
end
redis.call('DEL', KEYS[1])
return pending
"""


class ArqImplementation(CountedWithBeats):
    name = NAME
    runner = "arq (enqueue_job → asyncio worker over Redis, max_jobs at once)"

    def __init__(self) -> None:
        super().__init__()
        self._arq: ArqRedis | None = None

    async def startup(self) -> None:
        await super().startup()
        # arq's create_pool pings with retries (5 × 1 s) and has no pool timeout: build the client directly,
        # with the same bounded waits and reconnect-and-retry as the records (bytes: arq pickles its payload).
        options = redis_options(settings.redis_timeout_s, asyncio=True) | {"decode_responses": False}
        pool = aredis.BlockingConnectionPool.from_url(
            settings.redis_url, max_connections=MAX_REDIS_CONNECTIONS, timeout=settings.redis_timeout_s, **options
        )
        self._arq = ArqRedis(pool_or_conn=pool, default_queue_name=QUEUE, **serializers())

    async def shutdown(self) -> None:
        if self._arq is not None:
            await self._arq.aclose(close_connection_pool=True)
        await super().shutdown()

    @property
    def arq(self) -> ArqRedis:
        if self._arq is None:
            raise RuntimeError(f"{self.name}: the API has not started (lifespan) yet")
        return self._arq

    async def submit(self, record: JobRecord, background_tasks: BackgroundTasks) -> None:
        payload = JobCall.of(record).model_dump(mode="json")
        job = await self.bounded(self.arq.enqueue_job(FUNCTION, payload, _job_id=JOB_ID_PREFIX + record.job_id))
        if job is None:  # arq's answer when a job with this id already exists
            raise BrokerUnavailable(f"arq refused job {record.job_id}: a job with this id exists")

    async def purge(self, queued_ids: list[str]) -> int:
        keys = [QUEUE]
        args = [job_key_prefix, in_progress_key_prefix, retry_key_prefix]
        return int(await self.store.redis.eval(_PURGE, len(keys), *keys, *args))

    async def queue_and_workers(self) -> tuple[int, list[Beat]]:
        """One round trip: the sorted set's size and the heartbeats; running jobs stay in the set."""
        async with self.store.redis.pipeline(transaction=False) as pipe:
            pipe.zcard(QUEUE)
            pipe.hgetall(WORKERS_KEY.format(self.name))
            pipe.time()
            in_set, beats, now = await pipe.execute()
        workers = live_workers(decoded(beats), server_time(now))
        running = sum(w.active for w in workers)
        return max(int(in_set) - running, 0), workers

    def describe(self) -> dict[str, Any]:
        return {
            "runner": self.runner,
            "queue": QUEUE,
            "job_ids": f"{JOB_ID_PREFIX}<record id> (keys arq:job:{JOB_ID_PREFIX}<id>, ...)",
            "poll_delay_s": POLL_DELAY_S,
            "keep_result_s": KEEP_RESULT_S,
            "retry_jobs": True,
            "max_tries": DELIVERIES,
            "job_timeout": "max_jobs × the worker's redelivery timeout (its heartbeat says)",
            "in_progress_ttl": f"job_timeout + {IN_PROGRESS_EXTRA_S:.0f} s (fixed by arq)",
        }


IMPLEMENTATION = ArqImplementation()


# --- the worker: `python -m arq taskbench_service.implementations.arq.WorkerSettings` ---------------------------------


@dataclass
class _WorkerState:
    """What the worker process holds, made in `_startup` (never at import)."""

    records: RedisJobStore
    heartbeat: Heartbeat
    executor: ThreadPoolExecutor
    active: int = 0
    started: dict[str, Any] = field(default_factory=dict)


_state: _WorkerState | None = None


async def run_job(ctx: dict[str, Any], payload: dict[str, Any]) -> None:
    """The one arq function: async kinds await on the worker's loop, sync kinds go to its thread pool."""
    assert _state is not None, "the worker's on_startup has not run"
    call = JobCall.model_validate(payload)
    error = await run_counted_async(call, _state.records, _state)
    if error is not None:
        raise error  # recorded already; arq logs it and re-runs only `Retry` and a cancellation at shutdown


def _describe() -> dict[str, Any]:
    assert _state is not None
    return {
        **_state.started,
        "active": _state.active,
        "max_jobs": settings.concurrency,
        "poll_delay_s": POLL_DELAY_S,
        "job_timeout_s": JOB_TIMEOUT_S,
        "in_progress_ttl_s": JOB_TIMEOUT_S + IN_PROGRESS_EXTRA_S,
        "max_tries": MAX_TRIES,
        "delivery": settings.delivery,
    }


async def _startup(ctx: dict[str, Any]) -> None:
    global _state
    workloads.calibrate()  # before any job; arq forks nothing
    # asyncio.to_thread uses the loop's default executor: min(32, cores + 4) threads unless told; sized to
    # max_jobs, the thread pool is not a hidden second limit on sync jobs.
    executor = ThreadPoolExecutor(settings.concurrency, thread_name_prefix="arq-job")
    asyncio.get_running_loop().set_default_executor(executor)
    records = RedisJobStore(NAME, settings.redis_url, settings.redis_timeout_s)
    worker_id = f"arq@{socket.gethostname()}:{os.getpid()}"
    _state = _WorkerState(records, Heartbeat(NAME, worker_id, _describe), executor, started={"worker": worker_id})
    _state.heartbeat.start()
    log.info("taskbench arq worker %s: max_jobs=%d max_tries=%d", worker_id, settings.concurrency, MAX_TRIES)


async def _shutdown(ctx: dict[str, Any]) -> None:
    if _state is not None:
        _state.heartbeat.stop()
        await _state.records.aclose()
        _state.executor.shutdown(wait=False)


def serializers() -> dict[str, Any]:
    """The user's (--app), else arq's default (pickle) on taskbench's own Redis and JSON on someone else's
    (settings.foreign_servers)."""
    if USER:
        return {key: USER[key] for key in ("job_serializer", "job_deserializer") if USER.get(key) is not None}
    return {"job_serializer": json_bytes, "job_deserializer": json.loads} if settings.foreign_servers else {}


class WorkerSettings:
    """Read by arq's CLI (`arq.worker.get_kwargs`): plain configuration, no connection is opened here."""

    functions = (func(run_job, name=FUNCTION),)
    queue_name = QUEUE
    redis_settings = _worker_redis_settings()
    max_jobs = settings.concurrency
    poll_delay = POLL_DELAY_S
    # queue_read_limit: arq's default, max(5 × max_jobs, 100) ids per poll. Running jobs stay in the set
    # and come first, so it must exceed max_jobs; it does, and a poll starts at most max_jobs jobs anyway.
    job_timeout = JOB_TIMEOUT_S
    keep_result = KEEP_RESULT_S
    max_tries = MAX_TRIES
    retry_jobs = True  # arq's default: a job cancelled at shutdown (SIGTERM) is run again, within max_tries
    on_startup = _startup
    on_shutdown = _shutdown
    if settings.foreign_servers:
        job_serializer = staticmethod(json_bytes)
        job_deserializer = staticmethod(json.loads)


def _their_settings() -> dict[str, Any]:
    """--app: the user's settings (arq's CLI takes a dict as it takes a class), with only taskbench's connections,
    queue name, max_jobs and start-up and shut-down hooks (theirs run after and before taskbench's)."""
    theirs_start, theirs_stop = USER.get("on_startup"), USER.get("on_shutdown")

    async def startup(ctx: dict[str, Any]) -> None:
        await _startup(ctx)
        if theirs_start is not None:
            await theirs_start(ctx)

    async def shutdown(ctx: dict[str, Any]) -> None:
        if theirs_stop is not None:
            await theirs_stop(ctx)
        await _shutdown(ctx)

    return USER | {
        "functions": (*USER.get("functions", ()), func(run_job, name=FUNCTION)),
        "queue_name": QUEUE,
        "redis_settings": _worker_redis_settings(),
        "max_jobs": settings.concurrency,
        "on_startup": startup,
        "on_shutdown": shutdown,
    }


USER_WORKER_SETTINGS = _their_settings() if USER else None  # `arq …arq.USER_WORKER_SETTINGS` (the harness's argv)
