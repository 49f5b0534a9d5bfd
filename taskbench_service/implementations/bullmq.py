"""`/bullmq/*`: jobs added to BullMQ for Python (the Node queue's Python port: same Redis layout, same Lua
scripts), records in Redis; and the worker's own definitions.

BullMQ keeps a job as a hash `bull:{queue}:<id>` and its id in one list or set per state: `wait`, `active`,
`delayed`, `prioritized`, `completed`, `failed` (`bull:{queue}:wait`, ...). The API adds with `Queue.add(name,
data, opts)` (the Lua script addStandardJob: the hash, LPUSH to `wait`, a marker for blocked workers); the data is
JSON. BullMQ for Python's `Queue` speaks over one Redis connection (`single_connection_client`), so the API's
concurrent adds take turns on it.

One worker process runs up to `concurrency` jobs at once, each a task on its event loop (the processor is
`async def`: sync kinds go to the loop's thread pool with `asyncio.to_thread`). Each job it takes moves to
`active` with a lock key `bull:{queue}:<id>:lock` that expires after `lockDuration`, renewed every `lockRenewTime`
(half of it) by the worker's lock manager, on its event loop (bullmq/worker.py `Worker.run`, lock_manager.py).

What a worker's death does (commands/moveStalledJobsToWait-9.lua, run by every live worker every
`stalledInterval`): an active job whose lock has expired is marked stalled at one check and, still unlocked at the
next, moved back to `wait` and run again, unless it stalled more than `maxStalledCount` times (default 1), when it
is failed ("job stalled more than allowable limit"). `maxStalledCount` is the switch: 1 re-runs a dead worker's
job once (at least once), 0 fails it (at most once). A live worker whose event loop is blocked past
`lockDuration` loses its locks the same way, and its jobs can run twice.

On SIGTERM the worker calls `Worker.close()`, BullMQ's documented graceful shutdown: it takes no new job and waits
for the running ones (bullmq has no CLI of its own; this is the shutdown its guide writes).

Names: the queue is named after the run's namespace (`settings.namespace`, `taskbench` on a private Redis) under
BullMQ's default prefix `bull`: every key is `bull:{ns}:…`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from bullmq import Job, Queue, Worker
from fastapi import BackgroundTasks

from taskbench_service import workloads
from taskbench_service.execution import run_counted_async
from taskbench_service.heartbeat import WORKERS_KEY, Heartbeat, decoded, live_workers, server_time
from taskbench_service.implementations.base import CountedWithBeats
from taskbench_service.jobs import JobCall, RedisJobStore
from taskbench_service.settings import settings
from taskbench_wire.health import Beat
from taskbench_wire.records import JobRecord

log = logging.getLogger(__name__)

NAME = "bullmq"
QUEUE_NAME = settings.namespace
PREFIX = "bull"  # BullMQ's default
KEY = f"{PREFIX}:{QUEUE_NAME}:"  # + wait, active, <job id>, <job id>:lock, ...
JOB_NAME = "taskbench.run_job"
WAITING = ("wait", "prioritized", "delayed", "paused")

# Delivery variants by name (TASKBENCH_DELIVERY) → maxStalledCount, which decides whether a dead worker's job runs
# again once its lock has expired or is failed.
DELIVERIES = {"default": 1, "maxStalledCount=0": 0}  # 1 is BullMQ's own default
MAX_STALLED_COUNT = DELIVERIES.get(settings.delivery, DELIVERIES["default"])

# Timing settings, stated in `describe()`, the heartbeat and the harness's `settings()`.
LOCK_DURATION_MS = int(settings.redelivery_timeout_s * 1000)  # BullMQ default 30 s: the redelivery timeout
# BullMQ checks every 30 s by default; taskbench's sweep interval (1 s), as for every queue that lets us say
STALLED_INTERVAL_MS = int((settings.restore_interval_s or 30.0) * 1000)
# BullMQ keeps every finished job for ever by default; its guide's auto-removal advice keeps the last ones
KEEP_JOBS = {"removeOnComplete": {"count": 1000}, "removeOnFail": {"count": 5000}}

# Purge: every waiting job (drained by BullMQ's own `drain`), then every active job that no live worker holds (its
# lock gone, or held by a worker that is gone): the next stalled check would run it in the next scenario.
# KEYS: active, stalled; ARGV: key prefix (bull:{ns}:), then the live workers' ids.
_PURGE_ORPHANS = """
local live = {}
for i = 2, #ARGV do live[ARGV[i]] = true end
local purged = 0
for _, id in ipairs(redis.call('LRANGE', KEYS[1], 0, -1)) do
  local token = redis.call('GET', ARGV[1] .. id .. ':lock')
  local holder = token and string.match(token, '^([^:]+):')
  if (not holder) or (not live[holder]) then
    redis.call('LREM', KEYS[1], 0, id)
    redis.call('SREM', KEYS[2], id)
    redis.call('DEL', ARGV[1] .. id, ARGV[1] .. id .. ':lock', ARGV[1] .. id .. ':logs')
    purged = purged + 1
  end
end
return purged
"""


async def process(job: Job, token: str) -> None:
    """The processor: async kinds on the worker's loop, sync kinds in its thread pool (`asyncio.to_thread`)."""
    assert _state is not None, "the worker has not started"
    call = JobCall.model_validate(job.data)
    error = await run_counted_async(call, _state.records, _state)
    if error is not None:
        raise error  # recorded already; BullMQ fails the job (attempts 1: never run again for it)


class BullmqImplementation(CountedWithBeats):
    name = NAME
    runner = "BullMQ for Python (Queue.add → asyncio worker over Redis lists, `concurrency` jobs at once)"

    def __init__(self) -> None:
        super().__init__()
        self._queue: Queue | None = None

    async def startup(self) -> None:
        await super().startup()
        self._queue = Queue(QUEUE_NAME, {"connection": settings.redis_url, "prefix": PREFIX})

    async def shutdown(self) -> None:
        if self._queue is not None:
            await self._queue.close()
        await super().shutdown()

    @property
    def queue(self) -> Queue:
        if self._queue is None:
            raise RuntimeError(f"{self.name}: the API has not started (lifespan) yet")
        return self._queue

    async def submit(self, record: JobRecord, background_tasks: BackgroundTasks) -> None:
        payload = JobCall.of(record).model_dump(mode="json")
        await self.bounded(self.queue.add(JOB_NAME, payload, {"jobId": record.job_id, **KEEP_JOBS}))

    async def _live(self) -> tuple[list[Beat], int, int]:
        """One round trip: the live workers, the jobs waiting (in any waiting state) and the active list's length
        (running jobs, and a dead worker's until the stalled check moves them back)."""
        async with self.store.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(WORKERS_KEY.format(self.name))
            pipe.llen(KEY + "wait")
            pipe.zcard(KEY + "prioritized")
            pipe.zcard(KEY + "delayed")
            pipe.llen(KEY + "paused")
            pipe.llen(KEY + "active")
            pipe.time()
            beats, *waiting, active, now = await pipe.execute()
        return live_workers(decoded(beats), server_time(now)), sum(map(int, waiting)), int(active)

    async def purge(self, queued_ids: list[str]) -> int:
        workers, waiting, _ = await self._live()
        await self.bounded(self.queue.drain(delayed=True))
        live = [str(w.extra("bullmq_worker_id")) for w in workers if w.extra("bullmq_worker_id")]
        keys = [KEY + "active", KEY + "stalled"]
        return waiting + int(await self.store.redis.eval(_PURGE_ORPHANS, len(keys), *keys, KEY, *live))

    async def queue_and_workers(self) -> tuple[int, list[Beat]]:
        """Pending: every waiting job, and the active ones no live worker runs (a dead worker's)."""
        workers, waiting, active = await self._live()
        running = sum(w.active for w in workers)
        return waiting + max(active - running, 0), workers

    def describe(self) -> dict[str, Any]:
        return {
            "runner": self.runner,
            "queue": QUEUE_NAME,
            "keys": KEY + "*",
            "dequeue": "BZPOPMIN on the queue's marker (no polling), then moveToActive with a lock",
            "lock_duration": "the worker's redelivery timeout (its heartbeat says)",
            "max_stalled_count": DELIVERIES,
            "keep_jobs": KEEP_JOBS,
        }


IMPLEMENTATION = BullmqImplementation()


# --- the worker: `python -m taskbench_service.implementations.bullmq` ------------------------------------------------


@dataclass
class _WorkerState:
    """What the worker process holds, made in `main` (never at import)."""

    records: RedisJobStore
    heartbeat: Heartbeat
    worker_id: str
    bullmq_worker_id: str = ""
    active: int = 0


_state: _WorkerState | None = None


def _describe() -> dict[str, Any]:
    assert _state is not None
    return {
        "worker": _state.worker_id,
        "bullmq_worker_id": _state.bullmq_worker_id,  # the prefix of its lock tokens
        "active": _state.active,
        "concurrency": settings.concurrency,
        "lock_duration_ms": LOCK_DURATION_MS,
        "stalled_interval_ms": STALLED_INTERVAL_MS,
        "max_stalled_count": MAX_STALLED_COUNT,
        "delivery": settings.delivery,
    }


async def main() -> None:
    """A BullMQ worker as its guide writes one: run until SIGTERM or SIGINT, then `close()` (waits for the running
    jobs); with taskbench's heartbeat and records around it."""
    global _state
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    workloads.calibrate()  # before any job; BullMQ forks nothing
    loop = asyncio.get_running_loop()
    # asyncio.to_thread uses the loop's default executor: min(32, cores + 4) threads unless told; sized to
    # concurrency, the thread pool is not a hidden second limit on sync jobs.
    executor = ThreadPoolExecutor(settings.concurrency, thread_name_prefix="bullmq-job")
    loop.set_default_executor(executor)
    worker_id = f"bullmq@{socket.gethostname()}:{os.getpid()}"
    _state = _WorkerState(
        records=RedisJobStore(NAME, settings.redis_url, settings.redis_timeout_s),
        heartbeat=Heartbeat(NAME, worker_id, _describe),
        worker_id=worker_id,
    )
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    worker = Worker(
        QUEUE_NAME,
        process,
        {
            "connection": settings.redis_url,
            "prefix": PREFIX,
            "concurrency": settings.concurrency,
            "lockDuration": LOCK_DURATION_MS,
            "stalledInterval": STALLED_INTERVAL_MS,
            "maxStalledCount": MAX_STALLED_COUNT,
            "name": worker_id,
        },
    )
    _state.bullmq_worker_id = worker.id
    _state.heartbeat.start()
    log.warning(
        "taskbench bullmq worker %s: concurrency=%d lockDuration=%dms stalledInterval=%dms maxStalledCount=%d",
        worker_id, settings.concurrency, LOCK_DURATION_MS, STALLED_INTERVAL_MS, MAX_STALLED_COUNT,
    )  # fmt: skip
    try:
        await stop.wait()
        log.warning("stopping: no new job, waiting for the running ones")
        await worker.close()
    finally:
        _state.heartbeat.stop()
        await _state.records.aclose()
        executor.shutdown(wait=False)


if __name__ == "__main__":
    # Run the module under its own name, so that `process` and `_state` are the ones its other users see.
    from taskbench_service.implementations import bullmq as this

    asyncio.run(this.main())
