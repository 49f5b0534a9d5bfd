"""`/docket/*`: tasks added to a Docket over Redis streams, records in Redis; and the worker's own definitions.

Docket (`pydocket`: the background-task engine of FastMCP and Prefect) keeps each task's message in a Redis stream,
`{docket}:stream` (a task due later waits in the sorted set `{docket}:queue`, moved over by the worker's scheduler
loop every `scheduling_resolution`), and its state in `{docket}:runs:<key>`. The API adds with
`Docket.add(run_job, key=<record id>)(payload)` (one Lua script: the runs hash, then XADD); its arguments are
cloudpickled (docket/execution.py `Execution.as_message`), with no other serializer to choose.

One worker process runs up to `concurrency` tasks at once, each a task on its event loop (Docket runs only
`async def`: sync kinds go to the loop's thread pool with `asyncio.to_thread`, the way Docket's docs leave blocking
code to the task). It reads with XREADGROUP BLOCK `minimum_check_interval` for no more messages than it has free
slots (docket/worker.py `Worker._worker_loop`): nothing is prefetched, and while every slot is busy it checks for
finished tasks every `minimum_check_interval`.

What a worker's death does (docket/_redelivery.py): a read message stays in the consumer group's pending list
until the task's end XACKs and XDELs it (lua/terminal.lua). A live worker resets the idle time of the messages it
runs every quarter of `redelivery_timeout` (`renew_leases`, XCLAIM idle=0, on its event loop), so only a dead
worker's go idle; a sweep (XAUTOCLAIM of messages idle longer than `redelivery_timeout`, on a timer of a jittered
quarter of it, one worker of the fleet at a time under a lease, and at once when a worker starts) takes them, and
the task runs again, with no limit on how often (a `Retry` dependency counts a task's own failures, not its
worker's death). So Docket is at least once by design; the redelivery timeout here is taskbench's, stated in
every report.

Its worker is Docket's own entry point, `Worker.run` (what `docket worker` calls: SIGTERM cancels the loop and the
running tasks are awaited before it exits), started as `python -m taskbench_service.implementations.docket`, with
taskbench's heartbeat and records around it and the Redis URL taken from the environment (never from argv).

Names: the docket is named after the run's namespace, `docket:{ns}` (`settings.namespace`, `taskbench` on a
private Redis): every key and channel it uses starts with that name (`Docket.key`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import redis.asyncio as aredis
from docket import Disposition, Docket, Worker
from fastapi import BackgroundTasks

from taskbench_service import workloads
from taskbench_service.execution import run_counted_async
from taskbench_service.heartbeat import WORKERS_KEY, Heartbeat, decoded, live_workers, server_time
from taskbench_service.implementations.base import BrokerUnavailable, CountedWithBeats
from taskbench_service.jobs import JobCall, RedisJobStore
from taskbench_service.settings import settings
from taskbench_wire.health import Beat
from taskbench_wire.records import JobRecord

log = logging.getLogger(__name__)

NAME = "docket"
DOCKET_NAME = f"docket:{settings.namespace}"
TASKS_PATH = "taskbench_service.implementations.docket:TASKS"  # what the worker registers (Docket's `--tasks`)

# Timing settings, stated in `describe()`, the heartbeat and the harness's `settings()`: Docket's own defaults
# (its CLI's) but the redelivery timeout, which is taskbench's (docket default 5 min).
REDELIVERY_TIMEOUT_S = settings.redelivery_timeout_s
MINIMUM_CHECK_INTERVAL_S = 0.1  # `docket worker` default: XREADGROUP BLOCK, and the wait while every slot is busy
SCHEDULING_RESOLUTION_S = 0.25  # docket default: how often due tasks move from the queue to the stream
EXECUTION_TTL_S = 15 * 60  # docket default: how long a finished task's state stays in Redis


async def run_job(payload: dict[str, Any]) -> None:
    """The one task: async kinds on the worker's loop, sync kinds in its thread pool (`asyncio.to_thread`)."""
    assert _state is not None, "the worker has not started"
    call = JobCall.model_validate(payload)
    error = await run_counted_async(call, _state.records, _state)
    if error is not None:
        raise error  # recorded already; Docket marks the task failed and never runs it again for it


TASKS = [run_job]  # by path (TASKS_PATH), as `docket worker --tasks` takes them


class DocketImplementation(CountedWithBeats):
    name = NAME
    runner = "Docket (add → asyncio worker over a Redis stream, consumer group, `concurrency` tasks at once)"

    def __init__(self) -> None:
        super().__init__()
        self._docket: Docket | None = None
        self._exit: AsyncExitStack | None = None

    async def startup(self) -> None:
        await super().startup()
        docket = Docket(name=DOCKET_NAME, url=settings.redis_url)
        self._exit = AsyncExitStack()
        await self._exit.enter_async_context(docket)  # connects; follows the strike list
        self._docket = docket

    async def shutdown(self) -> None:
        if self._exit is not None:
            await self._exit.aclose()
        await super().shutdown()

    @property
    def docket(self) -> Docket:
        if self._docket is None:
            raise RuntimeError(f"{self.name}: the API has not started (lifespan) yet")
        return self._docket

    async def submit(self, record: JobRecord, background_tasks: BackgroundTasks) -> None:
        payload = JobCall.of(record).model_dump(mode="json")
        execution = await self.bounded(self.docket.add(run_job, key=record.job_id)(payload))
        if execution.disposition is not Disposition.SCHEDULED:
            raise BrokerUnavailable(f"Docket refused task {record.job_id}: {execution.disposition.value}")

    async def _live(self) -> tuple[list[Beat], int, int]:
        """One round trip: the live workers, the stream's length (every task not yet acknowledged: waiting,
        running, or a dead worker's) and the scheduled set's size."""
        async with self.store.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(WORKERS_KEY.format(self.name))
            pipe.xlen(self.docket.stream_key)
            pipe.zcard(self.docket.queue_key)
            pipe.time()
            beats, in_stream, scheduled, now = await pipe.execute()
        return live_workers(decoded(beats), server_time(now)), int(in_stream), int(scheduled)

    async def purge(self, queued_ids: list[str]) -> int:
        """Docket's own `clear`: every message in the stream and the scheduled set goes (a running task's
        message too, but it finishes: its worker holds it; a dead worker's is never swept again)."""
        return await self.bounded(self.docket.clear())

    async def queue_and_workers(self) -> tuple[int, list[Beat]]:
        """Pending: every message in the stream but those a live worker runs, plus the scheduled set."""
        workers, in_stream, scheduled = await self._live()
        running = sum(w.active for w in workers)
        return max(in_stream - running, 0) + scheduled, workers

    def describe(self) -> dict[str, Any]:
        return {
            "runner": self.runner,
            "docket": DOCKET_NAME,
            "stream": self.docket.stream_key if self._docket is not None else f"{DOCKET_NAME}:stream",
            "dequeue": f"XREADGROUP BLOCK {MINIMUM_CHECK_INTERVAL_S * 1000:.0f} ms, for its free slots only",
            "redelivery_timeout": "the worker's redelivery timeout (its heartbeat says)",
            "execution_ttl_s": EXECUTION_TTL_S,
        }


IMPLEMENTATION = DocketImplementation()


# --- the worker: `python -m taskbench_service.implementations.docket` ------------------------------------------------


@dataclass
class _WorkerState:
    """What the worker process holds, made in `main` (never at import)."""

    records: RedisJobStore
    heartbeat: Heartbeat
    worker_id: str
    active: int = 0


_state: _WorkerState | None = None


def _describe() -> dict[str, Any]:
    assert _state is not None
    return {
        "worker": _state.worker_id,
        "active": _state.active,
        "concurrency": settings.concurrency,
        "redelivery_timeout_s": REDELIVERY_TIMEOUT_S,
        "minimum_check_interval_s": MINIMUM_CHECK_INTERVAL_S,
        "delivery": settings.delivery,
    }


# A worker's sweep lease lasts a quarter of its redelivery timeout. One left by a worker stopped to restart on a
# shorter timeout (taskbench restarts workers between scenarios: 3600 s, then 5 s for a fault) would keep every
# sweep off for up to 15 min, and no dead worker's task would come back. A starting worker drops a lease longer
# than its own would be; among workers of one setting, Docket's lease works as designed.
_DROP_LONGER_LEASE = """
if redis.call('PTTL', KEYS[1]) > tonumber(ARGV[1]) then return redis.call('DEL', KEYS[1]) end
return 0
"""


async def _drop_a_longer_sweep_lease() -> None:
    client = aredis.Redis.from_url(settings.redis_url, socket_timeout=settings.redis_timeout_s)
    try:
        lease = f"{DOCKET_NAME}:leases:redelivery-sweep"  # Docket.redelivery_sweep_key
        interval_ms = int(REDELIVERY_TIMEOUT_S * 1000 / 4)
        if await client.eval(_DROP_LONGER_LEASE, 1, lease, interval_ms):
            log.warning("dropped a sweep lease longer than this worker's own (%d ms)", interval_ms)
    finally:
        await client.aclose()


async def main() -> None:
    """Docket's own worker (`Worker.run`, as `docket worker` runs it) with taskbench's heartbeat and records."""
    global _state
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    workloads.calibrate()  # before any task; Docket forks nothing
    # asyncio.to_thread uses the loop's default executor: min(32, cores + 4) threads unless told; sized to
    # concurrency, the thread pool is not a hidden second limit on sync jobs.
    executor = ThreadPoolExecutor(settings.concurrency, thread_name_prefix="docket-job")
    asyncio.get_running_loop().set_default_executor(executor)
    worker_id = f"docket@{socket.gethostname()}:{os.getpid()}"
    _state = _WorkerState(
        records=RedisJobStore(NAME, settings.redis_url, settings.redis_timeout_s),
        heartbeat=Heartbeat(NAME, worker_id, _describe),
        worker_id=worker_id,
    )
    _state.heartbeat.start()
    await _drop_a_longer_sweep_lease()
    log.warning(
        "taskbench docket worker %s: concurrency=%d redelivery_timeout=%gs",
        worker_id, settings.concurrency, REDELIVERY_TIMEOUT_S,
    )  # fmt: skip
    try:
        await Worker.run(
            docket_name=DOCKET_NAME,
            url=settings.redis_url,
            name=worker_id,
            concurrency=settings.concurrency,
            redelivery_timeout=timedelta(seconds=REDELIVERY_TIMEOUT_S),
            minimum_check_interval=timedelta(seconds=MINIMUM_CHECK_INTERVAL_S),
            scheduling_resolution=timedelta(seconds=SCHEDULING_RESOLUTION_S),
            tasks=[TASKS_PATH],
        )
    finally:
        _state.heartbeat.stop()
        await _state.records.aclose()
        executor.shutdown(wait=False)


if __name__ == "__main__":
    # Run the module under its own name, so that the task Docket imports by path (TASKS_PATH) sees this state.
    from taskbench_service.implementations import docket as this

    asyncio.run(this.main())
