"""`/dbos/*`: workflows enqueued to a DBOS queue in PostgreSQL, records in Redis; and the worker's own definitions.

DBOS (`dbos`, DBOS Transact) is durable execution in a library: a workflow's status, inputs and steps live in its
system database, and a queue is rows of that database's `workflow_status` table. The API enqueues with
`DBOSClient.enqueue_async` (an INSERT with status ENQUEUED, from outside the application, as DBOS documents for
producers that do not run workflows). One worker process (`DBOS.launch()`, the queue registered with
`worker_concurrency`) polls the table every `polling_interval_sec` (SELECT … FOR UPDATE SKIP LOCKED of what its
free slots allow, in a thread of its own), marks the rows PENDING with its executor id, and runs each workflow:
an `async def` on DBOS's event loop thread, a `def` in its thread pool.

What a worker's death does (dbos/_recovery.py, `DBOS._launch`): its workflows stay PENDING under its executor id;
a worker that launches with the same executor id (`local`, DBOS's default for a process not managed by DBOS
Conductor or Cloud) re-enqueues them at start-up (`startup_recovery_thread`), and they run again from their last
completed step (here: from the start; the job is one workflow with no steps), up to `max_recovery_attempts` (100)
times. Nothing times out: a crashed worker's jobs wait for its replacement, not for a timeout.

Where its objects live: DBOS's system schema is the namespace's PostgreSQL schema (`schema_name`, `dbos_system_schema`),
created and marked by the set-up (`python -m taskbench_service.implementations.dbos setup`, then `DBOS.migrate`),
so on a server of someone else's nothing of theirs is read or written. DBOS's NOTIFY channels are the database's
(`dbos_notifications_channel`, …: its triggers, in our schema, fire on messages, events and streams, which
taskbench's workflows never write); there our worker does not LISTEN to them (`use_listen_notify` off).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import sys
import threading
from dataclasses import dataclass
from typing import Any

import psycopg
from dbos import DBOS, DBOSClient, DBOSConfig, EnqueueOptions
from dbos._serialization import DBOSPortableJSONSerializer, DefaultSerializer, Serializer
from fastapi import BackgroundTasks

from taskbench_service import workloads
from taskbench_service.execution import run_counted_async, run_counted_sync
from taskbench_service.heartbeat import Heartbeat
from taskbench_service.implementations.base import BrokerUnavailable, QueueImplementation
from taskbench_service.jobs import JobCall, RedisJobStore, WorkerRecords
from taskbench_service.settings import settings
from taskbench_service.workloads import Kind
from taskbench_wire.namespace import SCHEMA_MARK, schema_name
from taskbench_wire.records import JobRecord

log = logging.getLogger(__name__)

NAME = "dbos"
APP = "taskbench"
QUEUE = "taskbench"
SCHEMA = schema_name(settings.namespace)  # DBOS's system schema (see the module's docstring)
SYNC_WORKFLOW = "taskbench.run_sync"  # sleep, cpu, memory: def, in DBOS's thread pool
ASYNC_WORKFLOW = "taskbench.run_async"  # async_sleep, blocking_async, noop: async def, on DBOS's event loop
SYNC_KINDS = workloads.SYNC_KINDS

# Timing settings, stated in `describe()`, the heartbeat and the harness's `settings()`.
# DBOS polls its queue every second by default and nothing wakes it: 0.1 s, as for arq's poll (a SELECT … SKIP
# LOCKED ten times a second is nothing to PostgreSQL).
POLLING_INTERVAL_S = 0.1
MAX_RECOVERY_ATTEMPTS = 100  # DBOS's default (DEFAULT_MAX_RECOVERY_ATTEMPTS)
PG_CONNECT_TIMEOUT_S = 5


def serializer() -> Serializer:
    """DBOS's default (pickle) on taskbench's own PostgreSQL; its portable JSON on someone else's."""
    return DBOSPortableJSONSerializer() if settings.foreign_servers else DefaultSerializer()


def runs_sync(kind: Kind, job: int) -> bool:
    return kind in SYNC_KINDS or (kind is Kind.job and not workloads.is_async(kind, job))


class DbosImplementation(QueueImplementation):
    name = NAME
    runner = "DBOS (DBOSClient.enqueue → a queue in PostgreSQL, polled by a DBOS worker, `worker_concurrency` at once)"

    def __init__(self) -> None:
        super().__init__()
        self._client: DBOSClient | None = None
        self._counts: psycopg.AsyncConnection[Any] | None = None  # one connection for the counts /health asks for

    async def startup(self) -> None:
        await super().startup()
        # retry_connection_errors off: a PostgreSQL that is down answers 503, never a request left waiting
        self._client = DBOSClient(
            system_database_url=settings.postgres_url, dbos_system_schema=SCHEMA, serializer=serializer(),
            application_name=APP, lazy=True, retry_connection_errors=False,
        )  # fmt: skip

    async def shutdown(self) -> None:
        if self._client is not None:
            self._client.destroy()
        if self._counts is not None:
            await self._counts.close()
        await super().shutdown()

    @property
    def client(self) -> DBOSClient:
        if self._client is None:
            raise RuntimeError(f"{self.name}: the API has not started (lifespan) yet")
        return self._client

    @property
    def broker_url(self) -> str:
        return settings.postgres_url

    async def submit(self, record: JobRecord, background_tasks: BackgroundTasks) -> None:
        workflow = SYNC_WORKFLOW if runs_sync(record.kind, record.job or 0) else ASYNC_WORKFLOW
        options: EnqueueOptions = {"workflow_name": workflow, "queue_name": QUEUE, "workflow_id": record.job_id}
        try:
            await self.bounded(self.client.enqueue_async(options, JobCall.of(record).model_dump(mode="json")))
        except BrokerUnavailable:
            raise
        except Exception as exc:  # DBOS raises SQLAlchemy's errors (and its own) when PostgreSQL cannot take it
            raise BrokerUnavailable(f"{type(exc).__name__}: {exc}") from exc

    async def _count(self, statuses: tuple[str, ...]) -> int:
        """On one kept connection (counts are polled while a scenario runs), made again after PostgreSQL dropped it:
        a dropped one is BrokerUnavailable (/health: 503 with the reason, not a 500 with a traceback)."""
        query = f"SELECT count(*) FROM {SCHEMA}.workflow_status WHERE queue_name = %s AND status = ANY(%s)"
        try:
            if self._counts is None or self._counts.closed:
                self._counts = await psycopg.AsyncConnection.connect(
                    settings.postgres_url, connect_timeout=PG_CONNECT_TIMEOUT_S, autocommit=True
                )
            row = await (await self._counts.execute(query, (QUEUE, list(statuses)))).fetchone()
        except psycopg.OperationalError as exc:
            if self._counts is not None:
                await self._counts.close()  # a restart or pg_terminate_backend: the next call connects again
            raise BrokerUnavailable(f"PostgreSQL: {type(exc).__name__}: {exc}") from exc
        return int(row[0]) if row else 0

    async def queued(self) -> int:
        """Workflows enqueued and not yet taken by a worker."""
        return await self._count(("ENQUEUED",))

    async def purge(self, queued_ids: list[str]) -> int:
        """Every workflow still enqueued, and every one PENDING that is still queued in taskbench's records (taken by
        a worker that died before it started it: the next worker would recover it), deleted with its rows."""
        enqueued = await self.client.list_queued_workflows_async(
            queue_name=QUEUE, status="ENQUEUED", load_input=False, load_output=False
        )
        ids = {w.workflow_id for w in enqueued} | set(queued_ids)
        if ids:
            await self.client.delete_workflows_async(sorted(ids))
        return len(ids)

    def describe(self) -> dict[str, Any]:
        return {
            "runner": self.runner,
            "queue": QUEUE,
            "schema": SCHEMA,
            "polling_interval_s": POLLING_INTERVAL_S,
            "executor_id": "local (DBOS's default): a worker that starts again recovers the dead one's workflows",
            "max_recovery_attempts": MAX_RECOVERY_ATTEMPTS,
        }


IMPLEMENTATION = DbosImplementation()


# --- the workflows and the worker: `python -m taskbench_service.implementations.dbos worker` --------------------------


@dataclass
class _WorkerState:
    """What the worker process holds, made in `worker` (never at import)."""

    records: WorkerRecords  # for sync workflows, in DBOS's threads
    store: RedisJobStore  # for async workflows, on DBOS's event loop
    heartbeat: Heartbeat
    worker_id: str
    active: int = 0


_state: _WorkerState | None = None


def run_sync(payload: dict[str, Any]) -> None:
    assert _state is not None, "the worker has not started"
    call = JobCall.model_validate(payload)
    error = run_counted_sync(call, _state.records, _state)
    if error is not None:
        raise error  # recorded already; DBOS marks the workflow ERROR and never runs it again for it


async def run_async(payload: dict[str, Any]) -> None:
    assert _state is not None, "the worker has not started"
    call = JobCall.model_validate(payload)
    error = await run_counted_async(call, _state.store, _state)
    if error is not None:
        raise error


def _describe() -> dict[str, Any]:
    assert _state is not None
    return {
        "worker": _state.worker_id,
        "active": _state.active,
        "concurrency": settings.concurrency,
        "polling_interval_s": POLLING_INTERVAL_S,
        "delivery": settings.delivery,
    }


def worker() -> None:
    """A DBOS worker as its docs write one: DBOS launched, the queue registered, the process kept alive; on SIGTERM
    it ends at once (DBOS installs no handler: its running workflows are recovered by the next worker)."""
    global _state
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    workloads.calibrate()  # before any workflow; DBOS forks nothing
    worker_id = f"dbos@{socket.gethostname()}:{os.getpid()}"
    _state = _WorkerState(
        records=WorkerRecords(settings.redis_url, settings.redis_timeout_s),
        store=RedisJobStore(NAME, settings.redis_url, settings.redis_timeout_s),
        heartbeat=Heartbeat(NAME, worker_id, _describe),
        worker_id=worker_id,
    )
    for name, function in ((SYNC_WORKFLOW, run_sync), (ASYNC_WORKFLOW, run_async)):  # here, never at import
        DBOS.workflow(name=name, max_recovery_attempts=MAX_RECOVERY_ATTEMPTS)(function)
    config: DBOSConfig = {
        "name": APP,
        "system_database_url": settings.postgres_url,
        "dbos_system_schema": SCHEMA,
        "serializer": serializer(),
        "run_migrations": False,  # the set-up ran them
        # its channels are the database's, whatever the schema: on a server of someone else's, where their DBOS may
        # run, ours does not LISTEN to theirs (it polls; taskbench's workflows use no messages, events or streams)
        "use_listen_notify": not settings.foreign_servers,
    }
    DBOS(config=config)
    DBOS.launch()
    DBOS.register_queue(QUEUE, worker_concurrency=settings.concurrency, polling_interval_sec=POLLING_INTERVAL_S)
    _state.heartbeat.start()
    log.warning(
        "taskbench dbos worker %s: worker_concurrency=%d polling_interval=%gs",
        worker_id, settings.concurrency, POLLING_INTERVAL_S,
    )  # fmt: skip
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    _state.heartbeat.stop()
    DBOS.destroy()


# --- the set-up: `python -m taskbench_service.implementations.dbos setup` ------------------------------------------


def setup() -> str:
    """The namespace's schema, created and marked unless there (one of that name not taskbench's is refused), then
    DBOS's own migrations in it; idempotent."""
    with psycopg.connect(settings.postgres_url, connect_timeout=PG_CONNECT_TIMEOUT_S, autocommit=True) as connection:
        found = connection.execute(
            "SELECT obj_description(oid, 'pg_namespace') FROM pg_namespace WHERE nspname = %s", (SCHEMA,)
        ).fetchone()
        if found is None:
            connection.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")  # a plain identifier (schema_name)
            connection.execute(f"COMMENT ON SCHEMA {SCHEMA} IS '{SCHEMA_MARK}'")
        elif found[0] != SCHEMA_MARK:
            sys.exit(f"the schema {SCHEMA} exists and is not taskbench's (no {SCHEMA_MARK!r} comment): not touched")
    DBOS.migrate(settings.postgres_url, schema=SCHEMA)
    return f"DBOS's system tables in {SCHEMA}"


def main(argv: list[str]) -> int:
    command = argv[0] if argv else ""
    if command == "setup":
        print(json.dumps({"dbos": setup()}))
        return 0
    if command == "worker":
        worker()
        return 0
    print("usage: python -m taskbench_service.implementations.dbos setup|worker", file=sys.stderr)
    return 2


if __name__ == "__main__":
    # Run under the module's own name, so that the workflows it registers see the worker's state.
    from taskbench_service.implementations import dbos as this

    sys.exit(this.main(sys.argv[1:]))
