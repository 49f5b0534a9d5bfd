"""`/procrastinate/*`: jobs deferred to a procrastinate worker over PostgreSQL, records in Redis; and the worker's
own definitions (the `app` its CLI loads).

procrastinate keeps its jobs in PostgreSQL: `Task.defer_async` is one INSERT into `procrastinate_jobs` (status
`todo`), whose trigger `procrastinate_jobs_notify_queue_job_inserted_v1` NOTIFYs the queue's channel
(sql/schema.sql). The API awaits it on the app's `PsycopgConnector` (a `psycopg_pool.AsyncConnectionPool`), opened
in `startup()`. The worker is procrastinate's own CLI, as a module:

    python -m procrastinate --app=taskbench_service.implementations.procrastinate.app worker --concurrency N

One process, one asyncio loop (worker.py `Worker`): up to `concurrency` jobs at once (an `asyncio.Semaphore`),
each taken by `JobManager.fetch_job` (`procrastinate_fetch_job_v2`: `SELECT … FOR UPDATE SKIP LOCKED`, then status
`doing` with the worker's id). It fetches when LISTEN (a connection of its own, outside the pool,
`PsycopgConnector.listen_notify`) tells it a job was inserted, and polls every `fetch_job_polling_interval` in
case a notification was missed; a job made `todo` again by an UPDATE (a retry) notifies no one, so the poll finds
it. Async tasks are awaited on the loop; sync tasks go through `utils.sync_to_async` (asgiref's
`sync_to_async(thread_sensitive=False)`), i.e. the loop's default `ThreadPoolExecutor`, Python's size
min(32, cores + 4), which no setting of procrastinate's changes. So sync kinds are a sync task run there, async
kinds (and noop) an async task on the loop.

What a worker's death does (procrastinate 3.x): a job stays `doing` until its worker finishes it; a SIGKILLed
worker never does, and nothing in the worker ever looks at another worker's jobs (`Worker.run` only prunes the
rows of workers whose heartbeat is older than `stalled_worker_timeout`, `prune_stalled_workers`, which sets the
jobs' `worker_id` to NULL and leaves them `doing`). Every worker updates its heartbeat row every
`update_heartbeat_interval` (`Worker._update_heartbeat`); `JobManager.get_stalled_jobs(seconds_since_heartbeat=S)`
(`select_stalled_jobs_by_heartbeat`) lists the `doing` jobs of workers whose heartbeat is older than S (or whose
row is gone), and `JobManager.retry_job` makes such a job `todo` again (`procrastinate_retry_job_v2`, attempts +1).
The docs ("Retry stalled jobs", howto/production/retry_stalled_jobs.md) leave it to the user to run that as a
periodic task (`@app.periodic(cron="*/10 * * * *")`); cron's granularity is a minute, so the "retry-stalled"
delivery runs the same two calls in an asyncio task of each worker every restore interval (`_retry_stalled`), with
S = the redelivery timeout (and the heartbeat every S / 3, as procrastinate's defaults, 10 s in 30 s). Its first
pass runs before the worker's first heartbeat, which then waits until the worker holds what it retried, so jobs
stalled before the worker started never slip past the harness's reset. "default" runs nothing: a killed worker's
jobs stay `doing` for ever, at most once (the purge deletes them before the next scenario).

Where its objects live: in the PostgreSQL schema of the namespace (`settings.namespace`, `schema_name`:
`taskbench`, or `taskbench_<stack id>` on a server of someone else's), never in `public`, where a user's own
procrastinate would be. Every connection (the pools, the worker's LISTEN connection, the set-up) has
`search_path` = that schema alone (libpq `options=-c search_path=…`), and procrastinate's SQL names no schema
(schema.sql and queries.sql: unqualified names, plpgsql functions resolved in the caller's search_path), so
every table, type, function and trigger it creates or uses is ours. Its channels are database-wide, and
procrastinate hard-codes them (schema.sql's trigger functions NOTIFY `procrastinate_queue_v1#<queue>` and
`procrastinate_any_queue_v1`; manager.py `get_channel_for_queues` LISTENs on them): the set-up installs the
trigger functions with the schema's prefix on those names (`namespaced_schema_sql`), and the connector LISTENs
on the prefixed names (`NamespacedConnector`), so no user's worker is woken by our jobs (or told to abort one of
its jobs by our ids, which its own sequence also hands out), and ours by none of theirs.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import sys
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import procrastinate
import psycopg
import psycopg.conninfo
from fastapi import BackgroundTasks
from procrastinate import connector as connector_module
from procrastinate.exceptions import ProcrastinateException
from procrastinate.schema import SchemaManager
from psycopg import sql

from taskbench_service import workloads
from taskbench_service.execution import execute_async, execute_sync
from taskbench_service.heartbeat import Heartbeat
from taskbench_service.implementations.base import BrokerUnavailable, QueueImplementation
from taskbench_service.jobs import JobCall, RedisJobStore, WorkerRecords
from taskbench_service.settings import settings
from taskbench_service.workloads import Kind
from taskbench_wire.namespace import SCHEMA_MARK, schema_name
from taskbench_wire.records import JobRecord

log = logging.getLogger(__name__)

NAME = "procrastinate"
QUEUE = "taskbench"  # procrastinate_jobs.queue_name; the worker listens to this queue only
SYNC_TASK = "taskbench.run_sync"  # sleep, cpu, memory: a sync task, in the loop's default thread pool
ASYNC_TASK = "taskbench.run_async"  # async_sleep, blocking_async, noop: an async task, on the loop
SYNC_KINDS = workloads.SYNC_KINDS

# Delivery variants by name (TASKBENCH_DELIVERY): whether the worker runs the stalled-job retry loop.
DELIVERIES = ("default", "retry-stalled")
RETRY_STALLED = settings.delivery == "retry-stalled"

# The worker's timing, one place (worker.py Worker.__init__ defaults in comments).
FETCH_JOB_POLLING_INTERVAL_S = 5.0  # default 5.0: the fallback poll when no NOTIFY comes
ABORT_JOB_POLLING_INTERVAL_S = 5.0  # default 5.0
LISTEN_NOTIFY = True  # default True: LISTEN on a connection of its own, beside the pool
DELETE_JOBS = "always"  # default "never": the finished job's row is deleted (taskbench keeps its own records)
# Shutdown: procrastinate's default None, wait for running jobs without limit (the stack SIGKILLs after 10 s).
SHUTDOWN_GRACEFUL_TIMEOUT_S = None
# When a worker counts as stalled: the redelivery timeout (procrastinate default 30 s, `get_stalled_jobs`'s
# seconds_since_heartbeat and the worker's stalled_worker_timeout alike); its heartbeat beats 3 times within it,
# as procrastinate's defaults do (10 s in 30 s), at most every 10 s.
STALLED_AFTER_S = settings.redelivery_timeout_s
HEARTBEAT_INTERVAL_S = min(10.0, STALLED_AFTER_S / 3)
# The retry loop's period ("retry-stalled"): the restore interval (1 s under the harness); the documented recipe
# is a periodic task every 10 minutes.
RETRY_INTERVAL_S = settings.restore_interval_s or 600.0
# psycopg_pool.AsyncConnectionPool's defaults (min_size 4, max_size = min_size), stated: the API holds 4
# connections, the worker 4 + its LISTEN connection.
POOL_MIN_SIZE = 4
POOL_MAX_SIZE = 4
# The loop's default executor, which runs sync tasks: Python's default size.
SYNC_THREADS = min(32, (os.cpu_count() or 1) + 4)
SCHEMA_LOCK = 0x7461736B  # pg_advisory_xact_lock key: two set-ups at once install the schema once


# Everything of procrastinate's lives in this schema, reached through search_path (see the module's docstring).
SCHEMA = schema_name(settings.namespace)
CHANNEL_PREFIX = f"{SCHEMA}."  # before each of procrastinate's channel names, in the trigger and in LISTEN
MAX_IDENTIFIER = 63  # PostgreSQL's NAMEDATALEN - 1: a longer channel name is refused (NOTIFY) or cut (LISTEN)
if len(f"{CHANNEL_PREFIX}procrastinate_queue_v1#{QUEUE}") > MAX_IDENTIFIER:
    raise ValueError(f"namespace {settings.namespace!r} is too long for procrastinate's channel names")


def namespaced_url(url: str) -> str:
    """`url` with `search_path` = the namespace's schema alone (after any `options` the URL had, so it wins):
    as a libpq key=value string, which psycopg and its pools take as they take the URL."""
    if not url:
        return url
    options = psycopg.conninfo.conninfo_to_dict(url).get("options")
    return psycopg.conninfo.make_conninfo(url, options=f"{options or ''} -c search_path={SCHEMA}".strip())


def namespaced_schema_sql() -> str:
    """procrastinate's schema.sql with its NOTIFY channels prefixed (the same prefix `NamespacedConnector` adds
    when it LISTENs); fails when a `pg_notify` names a channel this did not prefix (a release that adds one)."""
    schema_sql = str(SchemaManager.get_schema())
    for channel in ("procrastinate_queue_v1#", "procrastinate_any_queue_v1"):
        schema_sql = schema_sql.replace(f"pg_notify('{channel}'", f"pg_notify('{CHANNEL_PREFIX}{channel}'")
    notifies, prefixed = schema_sql.count("pg_notify("), schema_sql.count(f"pg_notify('{CHANNEL_PREFIX}")
    if notifies == 0 or prefixed != notifies:
        raise RuntimeError(
            f"procrastinate's schema.sql notifies {notifies - prefixed} channel(s) taskbench does not namespace"
        )
    return schema_sql


class NamespacedConnector(procrastinate.PsycopgConnector):
    """procrastinate's psycopg connector, LISTENing on the namespace's channels (`CHANNEL_PREFIX` + the names
    procrastinate asks for), and handing notifications back under the names it knows."""

    async def listen_notify(self, on_notification: connector_module.Notify, channels: Iterable[str]) -> None:
        async def relay(*, channel: str, payload: str) -> None:
            await on_notification(channel=channel.removeprefix(CHANNEL_PREFIX), payload=payload)

        await super().listen_notify(relay, [f"{CHANNEL_PREFIX}{channel}" for channel in channels])


_COUNT_TODO = "SELECT count(*) AS n FROM procrastinate_jobs WHERE status = 'todo' AND queue_name = %(queue)s"
# Purge: every `todo` job, and every `doing` job whose worker has missed two heartbeats or whose row is gone (a
# killed worker's, which "retry-stalled" would otherwise run in the next scenario). Deleted, not cancelled: a
# cancelled row is only a status, and taskbench's records are its own. Events go with them (ON DELETE CASCADE).
_PURGE = """
WITH gone AS (
    DELETE FROM procrastinate_jobs job
     WHERE job.queue_name = %(queue)s
       AND (job.status = 'todo'
            OR (job.status = 'doing' AND NOT EXISTS (
                    SELECT 1 FROM procrastinate_workers w
                     WHERE w.id = job.worker_id
                       AND w.last_heartbeat >= NOW() - make_interval(secs => %(missed)s))))
    RETURNING 1
)
SELECT count(*) AS n FROM gone
"""
_COUNT_TODO_IDS = "SELECT count(*) AS n FROM procrastinate_jobs WHERE status = 'todo' AND id = ANY(%(ids)s)"
# A dead worker's jobs that the retry loop will take: `doing`, of a worker that has missed two heartbeats.
_COUNT_ORPHANS = """
SELECT count(*) AS n FROM procrastinate_jobs job
  LEFT JOIN procrastinate_workers w ON w.id = job.worker_id
 WHERE job.status = 'doing' AND job.queue_name = %(queue)s
   AND (w.id IS NULL OR w.last_heartbeat < NOW() - make_interval(secs => %(missed)s))
"""
MISSED_HEARTBEATS_S = 2 * HEARTBEAT_INTERVAL_S


def runs_sync(kind: Kind, job: int) -> bool:
    """Sync kinds (and a user's sync function) go to the thread pool, the rest run on the loop."""
    return kind in SYNC_KINDS or (kind is Kind.job and not workloads.is_async(kind, job))


class TaskbenchApp(procrastinate.App):
    """procrastinate's App, with the worker's start-up and shut-down around `run_worker_async`, which its CLI
    calls once the app is open (cli.py `worker_`): calibration, the records clients, the heartbeat, and the
    stalled-job retry loop of "retry-stalled"."""

    worker: Any = None  # the procrastinate Worker this process runs, once `run_worker_async` made it

    def _worker(self, **kwargs: Any) -> Any:
        self.worker = super()._worker(**kwargs)
        return self.worker

    async def run_worker_async(self, **kwargs: Any) -> None:
        await _startup(self, int(kwargs.get("concurrency", settings.concurrency)))
        try:
            await super().run_worker_async(**kwargs)
        finally:
            await _shutdown()

    def held(self) -> int | None:
        """Jobs the worker holds (fetched, running or waiting for a thread), from its own table of tasks."""
        running = getattr(self.worker, "_running_jobs", None)
        return None if running is None else len(running)


# No connection is opened here: the pool is created by `open_async` (the API's startup, the CLI's worker).
app = TaskbenchApp(
    connector=NamespacedConnector(
        conninfo=namespaced_url(settings.postgres_url), min_size=POOL_MIN_SIZE, max_size=POOL_MAX_SIZE
    ),
    worker_defaults={
        "queues": [QUEUE],
        "fetch_job_polling_interval": FETCH_JOB_POLLING_INTERVAL_S,
        "abort_job_polling_interval": ABORT_JOB_POLLING_INTERVAL_S,
        "listen_notify": LISTEN_NOTIFY,
        "delete_jobs": DELETE_JOBS,
        "update_heartbeat_interval": HEARTBEAT_INTERVAL_S,
        "stalled_worker_timeout": STALLED_AFTER_S,
    },
)


class ProcrastinateImplementation(QueueImplementation):
    name = NAME
    runner = "procrastinate (defer_async → asyncio worker over PostgreSQL, LISTEN/NOTIFY + polling, concurrency)"

    def __init__(self) -> None:
        super().__init__()
        self._open = False

    async def startup(self) -> None:
        await super().startup()
        await app.open_async()
        self._open = True

    async def shutdown(self) -> None:
        if self._open:
            await app.close_async()
            self._open = False
        await super().shutdown()

    @property
    def broker_url(self) -> str:
        return settings.postgres_url  # where its jobs wait (a 503 names it, redacted)

    async def _pg(self, awaitable: Any) -> Any:
        """A PostgreSQL call bounded in time; its errors are the broker's (503)."""
        try:
            return await self.bounded(awaitable)
        except ProcrastinateException as exc:
            raise BrokerUnavailable(f"PostgreSQL: {exc.__cause__ or exc}") from exc

    async def submit(self, record: JobRecord, background_tasks: BackgroundTasks) -> None:
        task = run_sync if runs_sync(record.kind, record.job or 0) else run_async
        await self._pg(task.defer_async(payload=JobCall.of(record).model_dump(mode="json")))

    async def queued(self) -> int:
        row = await self._pg(app.connector.execute_query_one_async(_COUNT_TODO, queue=QUEUE))
        return int(row["n"])

    async def purge(self, queued_ids: list[str]) -> int:
        query = app.connector.execute_query_one_async(_PURGE, queue=QUEUE, missed=MISSED_HEARTBEATS_S)
        return int((await self._pg(query))["n"])

    def describe(self) -> dict[str, Any]:
        return {
            "runner": self.runner,
            "queue": QUEUE,
            "broker": f"PostgreSQL ({SCHEMA}.procrastinate_jobs)",
            "schema": f"{SCHEMA} (search_path; channels prefixed {CHANNEL_PREFIX!r})",
            "pool": f"psycopg_pool min_size {POOL_MIN_SIZE}, max_size {POOL_MAX_SIZE}",
            "deliveries": list(DELIVERIES),
            "purge": "DELETE todo jobs, and doing jobs of workers that missed two heartbeats",
        }


IMPLEMENTATION = ProcrastinateImplementation()


# --- the worker: `python -m procrastinate --app=taskbench_service.implementations.procrastinate.app worker` -------


@dataclass
class _WorkerState:
    """What the worker process holds, made in `_startup` (never at import)."""

    records: WorkerRecords  # for sync jobs, in the pool's threads
    store: RedisJobStore  # for async jobs, on the loop
    heartbeat: Heartbeat
    worker_id: str
    concurrency: int
    retry_loop: asyncio.Task[None] | None = None
    first_beat: asyncio.Task[None] | None = None
    active: int = 0
    orphans: int = 0  # a dead worker's jobs the retry loop will take ("retry-stalled")
    retried: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add_active(self, n: int) -> None:
        with self.lock:
            self.active += n


_state: _WorkerState | None = None


@app.task(name=SYNC_TASK, queue=QUEUE)
def run_sync(payload: dict[str, Any]) -> None:
    """Sync kinds, in the loop's default thread pool (procrastinate's `sync_to_async`)."""
    assert _state is not None, "the worker's startup has not run"
    _state.add_active(1)
    try:
        call = JobCall.model_validate(payload)
        error = execute_sync(call, _state.records, lambda: workloads.run_sync(call))
    finally:
        _state.add_active(-1)
    if error is not None:
        raise error  # recorded already; the task has no retry strategy, so procrastinate fails the job for good


@app.task(name=ASYNC_TASK, queue=QUEUE)
async def run_async(payload: dict[str, Any]) -> None:
    """Async kinds and noop, awaited on the worker's event loop."""
    assert _state is not None, "the worker's startup has not run"
    _state.add_active(1)
    try:
        call = JobCall.model_validate(payload)
        error = await execute_async(call, _state.store, lambda: workloads.run_async(call))
    finally:
        _state.add_active(-1)
    if error is not None:
        raise error


async def _retry_pass(worker_app: procrastinate.App) -> list[int]:
    """One pass of the "retry-stalled" loop: the documented periodic task's body (`get_stalled_jobs` with
    seconds_since_heartbeat, then `retry_job` for each); it also counts the jobs it is about to retry. Returns the
    ids of the jobs it made `todo` again."""
    assert _state is not None
    manager = worker_app.job_manager
    retried: list[int] = []
    try:
        for job in await manager.get_stalled_jobs(queue=QUEUE, seconds_since_heartbeat=STALLED_AFTER_S):
            try:
                await manager.retry_job(job)
                retried.append(job.id)
                _state.retried += 1
                log.warning("retried stalled job %s (attempt %d)", job.id, job.attempts + 1)
            except ProcrastinateException as exc:  # finished, or retried by another worker meanwhile
                log.warning("stalled job %s not retried: %s", job.id, exc)
        row = await worker_app.connector.execute_query_one_async(
            _COUNT_ORPHANS, queue=QUEUE, missed=MISSED_HEARTBEATS_S
        )
        _state.orphans = int(row["n"])
    except ProcrastinateException as exc:  # PostgreSQL away: try again next time
        log.warning("stalled-job retry skipped: %s", exc)
    return retried


async def _beat_once_taken(worker_app: procrastinate.App, retried: list[int]) -> None:
    """Start the heartbeat once the jobs the first pass retried are no longer `todo` (this worker has taken them,
    or they went), within 5 s: its first beat then counts them as active, so no one who waits for the worker to
    be idle (the harness's reset) misses them between the fetch and the next beat."""
    assert _state is not None
    deadline = asyncio.get_running_loop().time() + 5.0
    try:
        while asyncio.get_running_loop().time() < deadline:
            row = await worker_app.connector.execute_query_one_async(_COUNT_TODO_IDS, ids=retried)
            if int(row["n"]) == 0:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.1)  # the worker registers a fetched job right after fetch_job returns
    finally:
        _state.heartbeat.start()


async def _retry_stalled(worker_app: procrastinate.App) -> None:
    """The "retry-stalled" loop, every RETRY_INTERVAL_S (the first pass ran in `_startup`)."""
    while True:
        await asyncio.sleep(RETRY_INTERVAL_S)
        await _retry_pass(worker_app)


def _describe() -> dict[str, Any]:
    assert _state is not None
    return {
        "worker": _state.worker_id,
        "active": held if (held := app.held()) is not None else _state.active,
        "procrastinate_worker_id": getattr(app.worker, "worker_id", None),  # its row in procrastinate_workers
        "reserved": _state.orphans,  # a dead worker's jobs about to run again here
        "concurrency": _state.concurrency,
        "sync_threads": SYNC_THREADS,
        "delivery": settings.delivery,
        "retry_stalled": RETRY_STALLED,
        "retried_stalled": _state.retried,
        "stalled_after_s": STALLED_AFTER_S,
        "heartbeat_interval_s": HEARTBEAT_INTERVAL_S,
        "retry_interval_s": RETRY_INTERVAL_S if RETRY_STALLED else None,
        "fetch_job_polling_interval_s": FETCH_JOB_POLLING_INTERVAL_S,
        "pool_max_size": POOL_MAX_SIZE,
    }


async def _startup(worker_app: procrastinate.App, concurrency: int) -> None:
    global _state
    workloads.calibrate()  # before any job; the worker forks nothing
    worker_id = f"procrastinate@{socket.gethostname()}:{os.getpid()}"
    _state = _WorkerState(
        records=WorkerRecords(settings.redis_url, settings.redis_timeout_s),
        store=RedisJobStore(NAME, settings.redis_url, settings.redis_timeout_s),
        heartbeat=Heartbeat(NAME, worker_id, _describe),
        worker_id=worker_id,
        concurrency=concurrency,
    )
    log.warning(
        "taskbench procrastinate worker %s: concurrency=%d delivery=%s stalled_after=%.1fs heartbeat=%.1fs",
        worker_id,
        concurrency,
        settings.delivery,
        STALLED_AFTER_S,
        HEARTBEAT_INTERVAL_S,
    )
    if not RETRY_STALLED:
        _state.heartbeat.start()
        return
    # The first pass before anyone sees the worker: what was stalled before it started (a crash in an earlier
    # scenario under "default") is `todo` again, and its first beat waits until it holds those jobs.
    retried = await _retry_pass(worker_app)
    _state.retry_loop = asyncio.create_task(_retry_stalled(worker_app), name="taskbench-retry-stalled")
    if retried:
        _state.first_beat = asyncio.create_task(_beat_once_taken(worker_app, retried), name="taskbench-first-beat")
    else:
        _state.heartbeat.start()


async def _shutdown() -> None:
    if _state is not None:
        for task in (_state.retry_loop, _state.first_beat):
            if task is not None:
                task.cancel()
        _state.heartbeat.stop()
        await _state.store.aclose()


# --- the set-up: `python -m taskbench_service.implementations.procrastinate setup` ----------------------------


def setup() -> None:
    """Install procrastinate's schema, namespaced, in the namespace's schema (created and marked unless there)
    unless its tables exist there (`procrastinate schema --apply` fails on a second run), under an advisory lock
    so that two set-ups at once install it once. Refuses a schema of that name that is not taskbench's."""
    with psycopg.connect(namespaced_url(settings.postgres_url), connect_timeout=10) as conn:  # one transaction
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
        _own_schema(conn)
        row = conn.execute("SELECT to_regclass(%s)", (f"{SCHEMA}.procrastinate_jobs",)).fetchone()
        if row is not None and row[0] is not None:
            print(f"procrastinate schema: already there (in {SCHEMA})", file=sys.stderr)
            return
        conn.execute(namespaced_schema_sql())  # no parameters: sent as is, every statement
        print(f"procrastinate schema: applied (in {SCHEMA})", file=sys.stderr)


def _own_schema(conn: psycopg.Connection[Any]) -> None:
    """Create the namespace's schema and mark it as taskbench's, unless it is there; when it is, it must carry
    the mark (a schema of someone else's of that name is never installed into)."""
    found = conn.execute(
        "SELECT obj_description(oid, 'pg_namespace') FROM pg_namespace WHERE nspname = %s", (SCHEMA,)
    ).fetchone()
    if found is None:
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(SCHEMA)))
        conn.execute(sql.SQL("COMMENT ON SCHEMA {} IS {}").format(sql.Identifier(SCHEMA), sql.Literal(SCHEMA_MARK)))
    elif found[0] != SCHEMA_MARK:
        sys.exit(f"the schema {SCHEMA} exists and is not taskbench's (no {SCHEMA_MARK!r} comment): not touched")


if __name__ == "__main__":
    if sys.argv[1:] != ["setup"]:
        sys.exit(f"usage: python -m {__spec__.name if __spec__ else __name__} setup")
    setup()
