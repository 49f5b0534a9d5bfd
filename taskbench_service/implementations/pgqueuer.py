"""`/pgqueuer/*`: jobs enqueued to a PgQueuer worker over PostgreSQL, records in Redis; and the worker's own
definitions.

PgQueuer (1.x) keeps its jobs in a PostgreSQL table (`pgqueuer`, installed by `setup` below). The API awaits
`Queries.enqueue(ENTRYPOINT, payload)` over an asyncpg pool: one INSERT, whose statement trigger NOTIFYs the
channel `ch_pgqueuer`. One worker process (a `QueueManager` over one asyncpg connection, run by `pgqueuer.run`,
the function behind `pgq run`) LISTENs on that channel and claims jobs with one `UPDATE … FOR UPDATE SKIP
LOCKED` (status queued → picked, stamped with its `queue_manager_id`), `batch_size` at a time, up to
`max_concurrent_tasks` picked at once, each dispatched at once as a task on its event loop (core/qm.py
`QueueManager.run` / `fetch_jobs`, adapters/persistence/qb.py `build_dequeue_query`). With no notification it
polls every `dequeue_timeout`. A finished job's row is deleted (moved to `pgqueuer_log`).

Sync code: PgQueuer 1.x refuses sync entrypoints (core/executors.py `EntrypointExecutor.__post_init__` with
`is_async_callable`: "Sync entrypoints are no longer supported. Wrap blocking code with asyncio.to_thread()"),
so the one entrypoint is an async def; sync kinds go through `asyncio.to_thread` (`workloads.run_async`), on the
loop's default executor, which the worker sizes to its concurrency (no hidden second limit).

What a worker's death does (1.x; 0.x had a per-entrypoint `retry_timer`, off by default): every dispatched job
beats (core/heartbeat.py `Heartbeat`, every `heartbeat_timeout / 2`, written through `HeartbeatBuffer`, flushed
every `heartbeat_timeout / 8`), and every dequeue also claims `picked` jobs whose heartbeat is older than
`heartbeat_timeout` (qb.py, CTE `next_stale`), without counting a try. A SIGKILLed worker's jobs are therefore
always run again, by the next dequeue after they go stale: at least once, whatever the settings (there is no
at-most-once setting in 1.x). `heartbeat_timeout` is the harness's redelivery timeout here; the stale jobs are
found by a dequeue, which a NOTIFY or the `dequeue_timeout` poll starts, so `dequeue_timeout` is the harness's
restore interval (the sweep of the other queues).

Set-up: `python -m taskbench_service.implementations.pgqueuer setup` installs the schema unless its table is
there (`Queries.has_table`, then `install()`, else `upgrade()`), under an advisory lock. The worker:
`python -m taskbench_service.implementations.pgqueuer worker`.

Where its objects live: in the PostgreSQL schema of the namespace (`settings.namespace`, `schema_name`:
`taskbench`, or `taskbench_<stack id>` on a server of someone else's), never in `public`, where a user's own
PgQueuer would be. PgQueuer's names come from one `DBSettings` built here with every field given (`DB`: its
`db_schema` qualifies every table, type and function in its SQL, and its advisory-lock keys, which hash the
qualified names; its channel is the schema's), so no `PGQUEUER_*` variable of the user's shell redirects it, and
every asyncpg connection (the API's pool, the worker's, the set-up's) also has `search_path` = that schema alone
(`server_settings`, which wins over the URL's), so whatever PgQueuer or this module leaves unqualified resolves
there too. The channel is a setting of PgQueuer's (`DBSettings.channel`, baked into the trigger function the
set-up installs; the QueueManager LISTENs on it, given explicitly, as its default reads the environment).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import sys
from collections.abc import AsyncIterator, Awaitable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import asyncpg
import pgqueuer
from fastapi import BackgroundTasks
from pgqueuer import AsyncpgDriver, AsyncpgPoolDriver, Job, Queries, QueueManager
from pgqueuer.adapters.persistence.qb import QueryBuilderEnvironment, QueryQueueBuilder, QuerySchedulerBuilder
from pgqueuer.domain.settings import DBSettings, Durability
from pgqueuer.types import Channel

from taskbench_service import workloads
from taskbench_service.execution import run_counted_async
from taskbench_service.heartbeat import Heartbeat, live_beats
from taskbench_service.implementations.base import PUBLISH_TIMEOUT_S, BrokerUnavailable, QueueImplementation
from taskbench_service.jobs import JobCall, RedisJobStore
from taskbench_service.settings import settings
from taskbench_wire.health import BROKER_UNREACHABLE, NO_WORKERS, SECTION_OK, Beat, Section
from taskbench_wire.namespace import SCHEMA_MARK, schema_name
from taskbench_wire.records import JobRecord

log = logging.getLogger(__name__)
T = TypeVar("T")

NAME = "pgqueuer"
ENTRYPOINT = "taskbench.run_job"  # the one entrypoint: async kinds awaited, sync kinds via asyncio.to_thread

# Delivery variants by name (TASKBENCH_DELIVERY): PgQueuer 1.x has one behaviour, a stale job is re-picked.
DELIVERIES = ("default",)

# Timing settings, stated in `describe()`, the worker's heartbeat and the harness's `settings()`.
HEARTBEAT_TIMEOUT_S = settings.redelivery_timeout_s  # PgQueuer default 30 s
DEQUEUE_TIMEOUT_S = settings.restore_interval_s or 30.0  # PgQueuer default 30 s: the polling fallback
DEFAULT_BATCH_SIZE = 10  # PgQueuer's default (`pgq run --batch-size`)
API_POOL_SIZE = 10  # asyncpg.create_pool's defaults, min_size = max_size = 10
PG_CONNECT_TIMEOUT_S = 5.0


def concurrency_knobs(concurrency: int) -> tuple[int, int | None, int]:
    """--concurrency N → (batch_size, max_concurrent_tasks, the entrypoint's concurrency_limit).

    `max_concurrent_tasks` is the per-worker cap (jobs this worker has picked, enforced by the dequeue query);
    `QueueManager.run` demands it be at least twice `batch_size`, so the batch is PgQueuer's default 10 capped
    at N // 2. N = 1 cannot be expressed so: then the entrypoint's `concurrency_limit` 1 (enforced in SQL across
    all workers; one worker here) serialises it, and there is no per-worker cap.
    """
    if concurrency >= 2:
        return min(DEFAULT_BATCH_SIZE, concurrency // 2), concurrency, 0
    return 1, None, 1


BATCH_SIZE, MAX_CONCURRENT_TASKS, CONCURRENCY_LIMIT = concurrency_knobs(settings.concurrency)


# Everything of PgQueuer's lives in this schema (see the module's docstring).
SCHEMA = schema_name(settings.namespace)
SERVER_SETTINGS = {"search_path": SCHEMA}  # every asyncpg connection's
# PgQueuer's names, its defaults (domain/settings.py) without a prefix, each given so that the environment
# (PGQUEUER_*, and the legacy bare QUEUE_TABLE, CHANNEL, …) sets none; the durability `pgq install`'s default.
DB = DBSettings(
    prefix="",
    db_schema=SCHEMA,
    channel=Channel(f"{SCHEMA}.ch_pgqueuer"),
    function="fn_pgqueuer_changed",
    statistics_table="pgqueuer_statistics",
    queue_status_type="pgqueuer_status",
    queue_table="pgqueuer",
    queue_table_log="pgqueuer_log",
    trigger="tg_pgqueuer_changed",
    schedules_table="pgqueuer_schedules",
    durability=Durability.durable,
    widen_id=True,
)


def make_queries(driver: Any) -> Queries:
    """PgQueuer's `Queries` over `driver`, every builder on `DB` (their default is the environment's)."""
    return Queries(driver, qbe=QueryBuilderEnvironment(DB), qbq=QueryQueueBuilder(DB), qbs=QuerySchedulerBuilder(DB))


def _table_names(queries: Queries) -> tuple[str, str]:
    db = queries.qbe.qualified
    return db.queue_table, db.queue_table_log


# Pending: queued jobs, and picked ones no live worker holds (a dead worker's, which a dequeue will re-pick
# once their heartbeat is stale). $1: the entrypoint, $2: the live workers' queue_manager_ids.
_PENDING = """
SELECT count(*) AS pending FROM {queue}
WHERE entrypoint = $1
  AND (status = 'queued' OR (status = 'picked' AND NOT (queue_manager_id = ANY($2::uuid[]))))
"""
# Purge: the same rows, logged 'deleted' as PgQueuer's own `clear_queue` (build_delete_from_queue_query) does;
# a live worker's running jobs stay (clear_queue would delete those too).
_PURGE = """
WITH deleted AS (
    DELETE FROM {queue}
    WHERE entrypoint = $1
      AND (status = 'queued' OR (status = 'picked' AND NOT (queue_manager_id = ANY($2::uuid[]))))
    RETURNING id, entrypoint, priority
), logged AS (
    INSERT INTO {log} (job_id, status, entrypoint, priority)
    SELECT id, 'deleted', entrypoint, priority FROM deleted
)
SELECT count(*) AS purged FROM deleted
"""


def _not_sent(exc: BaseException) -> bool:
    """Whether a failed INSERT surely did not commit: refused before it ran, or failed inside the server."""
    if isinstance(exc, (ConnectionRefusedError, asyncpg.CannotConnectNowError, asyncpg.TooManyConnectionsError)):
        return True
    return isinstance(exc, asyncpg.PostgresError) and not isinstance(exc, asyncpg.PostgresConnectionError)


async def bounded_pg(awaitable: Awaitable[T]) -> T:
    """A PostgreSQL call bounded in time, its failures as BrokerUnavailable (`maybe_sent` when it may have
    committed: a timeout, a connection lost mid-statement)."""
    try:
        return await asyncio.wait_for(awaitable, PUBLISH_TIMEOUT_S)
    except asyncio.TimeoutError as exc:
        message = f"PostgreSQL did not answer within {PUBLISH_TIMEOUT_S:.0f} s"
        raise BrokerUnavailable(message, maybe_sent=True) from exc
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
        raise BrokerUnavailable(f"{type(exc).__name__}: {exc}", maybe_sent=not _not_sent(exc)) from exc


class PgqueuerImplementation(QueueImplementation):
    name = NAME
    runner = "pgqueuer (Queries.enqueue → asyncio worker over PostgreSQL, LISTEN/NOTIFY, max_concurrent_tasks)"

    def __init__(self) -> None:
        super().__init__()
        self._pool: asyncpg.Pool | None = None
        self._queries: Queries | None = None

    async def startup(self) -> None:
        await super().startup()
        self._pool = await asyncpg.create_pool(
            settings.postgres_url,
            min_size=API_POOL_SIZE,
            max_size=API_POOL_SIZE,
            timeout=PG_CONNECT_TIMEOUT_S,
            server_settings=SERVER_SETTINGS,
        )
        self._queries = make_queries(AsyncpgPoolDriver(self._pool))

    async def shutdown(self) -> None:
        if self._pool is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._pool.close(), PUBLISH_TIMEOUT_S)
        await super().shutdown()

    @property
    def queries(self) -> Queries:
        if self._queries is None:
            raise RuntimeError(f"{self.name}: the API has not started (lifespan) yet")
        return self._queries

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError(f"{self.name}: the API has not started (lifespan) yet")
        return self._pool

    @property
    def broker_url(self) -> str:
        return settings.postgres_url

    async def submit(self, record: JobRecord, background_tasks: BackgroundTasks) -> None:
        payload = JobCall.of(record).model_dump_json().encode()
        await bounded_pg(self.queries.enqueue(ENTRYPOINT, payload))

    async def _live_managers(self) -> tuple[list[str], list[Beat]]:
        workers = await live_beats(self.store.redis, self.name)
        return [str(w.extra("queue_manager_id")) for w in workers if w.extra("queue_manager_id")], workers

    async def purge(self, queued_ids: list[str]) -> int:
        live, _ = await self._live_managers()
        queue, log_table = _table_names(self.queries)
        sql = _PURGE.format(queue=queue, log=log_table)
        return int(await bounded_pg(self.pool.fetchval(sql, ENTRYPOINT, live)))

    async def _pending(self, live: list[str]) -> int:
        queue, _ = _table_names(self.queries)
        return int(await bounded_pg(self.pool.fetchval(_PENDING.format(queue=queue), ENTRYPOINT, live)))

    async def queued(self) -> int:
        live, _ = await self._live_managers()
        return await self._pending(live)

    async def health(self) -> Section:
        live, workers = await self._live_managers()
        try:
            queued = await self._pending(live)
        except BrokerUnavailable as exc:
            return Section(status=BROKER_UNREACHABLE, error=str(exc), workers=workers)
        return Section(status=SECTION_OK if workers else NO_WORKERS, queued=queued, workers=workers)

    def describe(self) -> dict[str, Any]:
        return {
            "runner": self.runner,
            "entrypoint": ENTRYPOINT,
            "dequeue": "LISTEN/NOTIFY, UPDATE … FOR UPDATE SKIP LOCKED; polling every dequeue_timeout without one",
            "dequeue_timeout_s": DEQUEUE_TIMEOUT_S,
            "batch_size": BATCH_SIZE,
            "max_concurrent_tasks": MAX_CONCURRENT_TASKS,
            "concurrency_limit": CONCURRENCY_LIMIT,
            "heartbeat_timeout_s": HEARTBEAT_TIMEOUT_S,
            "api_pool": API_POOL_SIZE,
            "schema": f"{SCHEMA} (db_schema and search_path; channel {DB.channel})",
        }


IMPLEMENTATION = PgqueuerImplementation()


# --- the worker: `python -m taskbench_service.implementations.pgqueuer worker` ----------------------------------


@dataclass
class _WorkerState:
    """What the worker process holds, made in the factory (never at import)."""

    manager: QueueManager
    records: RedisJobStore
    heartbeat: Heartbeat
    executor: ThreadPoolExecutor
    worker_id: str
    active: int = 0


_state: _WorkerState | None = None


async def run_job(job: Job) -> None:
    """The one entrypoint (async: PgQueuer 1.x runs no sync function); sync kinds go to the loop's executor."""
    assert _state is not None, "the worker's factory has not run"
    call = JobCall.model_validate_json(job.payload or b"")
    error = await run_counted_async(call, _state.records, _state)
    if error is not None:
        # recorded already; PgQueuer logs it and deletes the job (on_failure "delete"): never run again
        raise error


def _describe() -> dict[str, Any]:
    assert _state is not None
    return {
        "worker": _state.worker_id,
        "queue_manager_id": str(_state.manager.queue_manager_id),  # stamped on the rows it picks
        "active": _state.active,
        "max_concurrent_tasks": MAX_CONCURRENT_TASKS,
        "concurrency_limit": CONCURRENCY_LIMIT,
        "batch_size": BATCH_SIZE,
        "sync_threads": settings.concurrency,
        "dequeue_timeout_s": DEQUEUE_TIMEOUT_S,
        "heartbeat_timeout_s": HEARTBEAT_TIMEOUT_S,
        "delivery": settings.delivery,
        "postgres_connections": 1,
    }


@contextlib.asynccontextmanager
async def create_queue_manager() -> AsyncIterator[QueueManager]:
    """The factory `pgqueuer.run` (and `pgq run`) takes: a QueueManager over one asyncpg connection, as
    PgQueuer's own examples build it."""
    global _state
    workloads.calibrate()  # before any job; nothing is forked
    # asyncio.to_thread uses the loop's default executor (min(32, cores + 4) threads unless told); sized to the
    # concurrency, it is not a hidden second limit on sync jobs.
    executor = ThreadPoolExecutor(settings.concurrency, thread_name_prefix="pgqueuer-job")
    asyncio.get_running_loop().set_default_executor(executor)
    connection = await asyncpg.connect(
        settings.postgres_url, timeout=PG_CONNECT_TIMEOUT_S, server_settings=SERVER_SETTINGS
    )
    manager = QueueManager(make_queries(AsyncpgDriver(connection)), channel=Channel(DB.channel))
    manager.entrypoint(ENTRYPOINT, concurrency_limit=CONCURRENCY_LIMIT)(run_job)
    worker_id = f"pgqueuer@{socket.gethostname()}:{os.getpid()}"
    records = RedisJobStore(NAME, settings.redis_url, settings.redis_timeout_s)
    _state = _WorkerState(manager, records, Heartbeat(NAME, worker_id, _describe), executor, worker_id)
    _state.heartbeat.start()
    log.warning(
        "taskbench pgqueuer worker %s: max_concurrent_tasks=%s batch_size=%d heartbeat_timeout=%.0fs "
        "dequeue_timeout=%.1fs",
        worker_id, MAX_CONCURRENT_TASKS, BATCH_SIZE, HEARTBEAT_TIMEOUT_S, DEQUEUE_TIMEOUT_S,
    )  # fmt: skip
    try:
        yield manager
    finally:
        _state.heartbeat.stop()
        await records.aclose()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(connection.close(), PUBLISH_TIMEOUT_S)
        executor.shutdown(wait=False)


def worker() -> None:
    """What `pgq run …:create_queue_manager --batch-size B --max-concurrent-tasks N --heartbeat-timeout T
    --dequeue-timeout D` does, with the values from the environment: the CLI reads none of them from there, and the
    heartbeat timeout follows the redelivery timeout the harness sets per scenario."""
    from pgqueuer.core import logconfig

    logconfig.setup_fancy_logger(logconfig.LogLevel.INFO)  # `pgq run`'s default --log-level
    main = pgqueuer.run(
        create_queue_manager,
        dequeue_timeout=timedelta(seconds=DEQUEUE_TIMEOUT_S),
        batch_size=BATCH_SIZE,
        heartbeat_timeout=timedelta(seconds=HEARTBEAT_TIMEOUT_S),
        max_concurrent_tasks=MAX_CONCURRENT_TASKS,
    )
    try:
        import uvloop  # a dependency of PgQueuer; `pgq run` runs on it

        uvloop.run(main)
    except ImportError:
        asyncio.run(main)


# --- the set-up: `python -m taskbench_service.implementations.pgqueuer setup` ------------------------------------

SETUP_LOCK = 0x7461736B  # an advisory lock key of taskbench's: set-ups of several stacks on one database queue up


async def setup() -> str:
    """Install PgQueuer's schema in the namespace's schema (created and marked unless there) unless its queue
    table exists there (then bring it up to date); idempotent. Refuses a schema of that name not taskbench's."""
    connection = await asyncpg.connect(
        settings.postgres_url, timeout=PG_CONNECT_TIMEOUT_S, server_settings=SERVER_SETTINGS
    )
    try:
        await connection.execute("SELECT pg_advisory_lock($1)", SETUP_LOCK)
        await _own_schema(connection)
        queries = make_queries(AsyncpgDriver(connection))
        if not await queries.has_table(DB.queue_table):  # in DB.db_schema
            await queries.install()
            return f"installed (in {SCHEMA})"
        await queries.upgrade()
        return f"already installed in {SCHEMA} (upgraded where needed)"
    finally:
        await connection.close()  # releases the session's advisory lock


async def _own_schema(connection: asyncpg.Connection) -> None:
    """Create the namespace's schema and mark it as taskbench's, unless it is there; when it is, it must carry
    the mark (a schema of someone else's of that name is never installed into)."""
    found = await connection.fetchrow(
        "SELECT obj_description(oid, 'pg_namespace') AS mark FROM pg_namespace WHERE nspname = $1", SCHEMA
    )
    if found is None:
        await connection.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")  # a plain identifier (schema_name)
        await connection.execute(f"COMMENT ON SCHEMA {SCHEMA} IS '{SCHEMA_MARK}'")
    elif found["mark"] != SCHEMA_MARK:
        sys.exit(f"the schema {SCHEMA} exists and is not taskbench's (no {SCHEMA_MARK!r} comment): not touched")


def main(argv: list[str]) -> int:
    command = argv[0] if argv else ""
    if command == "setup":
        print(json.dumps({"pgqueuer": asyncio.run(setup())}))
        return 0
    if command == "worker":
        worker()
        return 0
    print("usage: python -m taskbench_service.implementations.pgqueuer setup|worker", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
