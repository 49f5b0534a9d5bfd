"""On a PostgreSQL of someone else's (--postgres-url), the PostgreSQL queues touch nothing they did not create.

The database already holds a user's own procrastinate and PgQueuer, installed in `public` by each library's own
installer, with jobs waiting, some in taskbench's own queue and entrypoint names (what taskbench's workers and
purge would take if they looked there). The real stack runs on that database: a burst through each queue and the
purge between scenarios. Every row of the user's tables, and every object of theirs, is then what it was (none
of their jobs ran: the ledger shows only ours), no notification reached their channels, everything taskbench
created is in the namespace's schema, and `drop_namespace` removes that schema and nothing else.

Skipped with the reason when no PostgreSQL server can be had; failing under CI=true, as the other PostgreSQL
tests do.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from taskbench.envs import environment
from taskbench.errors import StackError
from taskbench.stack import postgres_server
from taskbench.stack.redis_server import free_port
from taskbench.stack.services import Service
from taskbench.stack.stack import Stack, StackConfig
from taskbench_wire.env import IMPLEMENTATIONS, NAMESPACE, POSTGRES_URL
from taskbench_wire.namespace import schema_name
from tests.conftest import burst, purge, run_as_a_user

pytestmark = pytest.mark.skipif(
    not postgres_server.available() and os.environ.get("CI") != "true",
    reason=f"{postgres_server.unavailable()} (CI installs PostgreSQL)",
)

QUEUES = ("procrastinate", "pgqueuer", "dbos")
JOBS, DURATION_S, CONCURRENCY = 4, 0.2, 2
THEIRS = 3  # jobs of the user's per queue and name

# Their channels: procrastinate's (manager.py get_channel_for_queues, schema.sql), PgQueuer's default, and DBOS's,
# which are the database's whatever the schema (dbos/_migration.py: its triggers name them, its listener LISTENs).
DBOS_CHANNELS = ("dbos_notifications_channel", "dbos_workflow_events_channel", "dbos_streams_channel")
FOREIGN_CHANNELS = ("procrastinate_any_queue_v1", "procrastinate_queue_v1#taskbench", "procrastinate_queue_v1#default",
                    "ch_pgqueuer", *DBOS_CHANNELS)  # fmt: skip


def _payload(name: str, i: int) -> dict[str, Any]:
    """A job call taskbench's worker would run (a valid JobCall), with an id of the user's: if ours took it, the
    ledger would say so."""
    return {"job_id": f"foreign-{name}-{i}", "implementation": name, "kind": "noop", "duration": 0.0}


# Each library's own installer and enqueue, as a user's application runs them (no taskbench variable set).
PROCRASTINATE_USER = f"""
import asyncio, os, procrastinate
app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=os.environ["FOREIGN_URL"]))

@app.task(name="taskbench.run_async", queue="taskbench")  # taskbench's own task and queue names
async def theirs(payload): ...

@app.task(name="their.report", queue="default")
def report(n): ...

async def main():
    await app.open_async()
    try:
        await app.schema_manager.apply_schema_async()
        for i in range({THEIRS}):
            call = {_payload("procrastinate", 0)!r} | {{"job_id": f"foreign-procrastinate-{{i}}"}}
            await theirs.defer_async(payload=call)
            await report.defer_async(n=i)
    finally:
        await app.close_async()

asyncio.run(main())
"""
PGQUEUER_USER = f"""
import asyncio, json, os, asyncpg
from pgqueuer import AsyncpgDriver, Queries

async def main():
    connection = await asyncpg.connect(os.environ["FOREIGN_URL"])
    try:
        queries = Queries(AsyncpgDriver(connection))
        await queries.install()
        for i in range({THEIRS}):
            call = {_payload("pgqueuer", 0)!r} | {{"job_id": f"foreign-pgqueuer-{{i}}"}}
            await queries.enqueue("taskbench.run_job", json.dumps(call).encode())  # taskbench's own entrypoint
            await queries.enqueue("their.job", b"theirs")
    finally:
        await connection.close()

asyncio.run(main())
"""


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A private PostgreSQL standing in for the user's, its `public` holding the user's queues and jobs."""
    cluster = postgres_server.PostgresCluster.create(free_port(), "foreign-postgres-test")
    ready = lambda _: postgres_server.problem(cluster.admin_url) is None  # noqa: E731
    log = tmp_path_factory.mktemp("foreign-pg") / "pg.log"
    server = Service("postgres", cluster.argv(), {}, log, ready, "PostgreSQL", signal.SIGINT, cluster.user)
    try:
        with server:
            cluster.create_database()
            run_as_a_user("procrastinate", PROCRASTINATE_USER, cluster.url)
            run_as_a_user("pgqueuer", PGQUEUER_USER, cluster.url)
            yield cluster.url
    finally:
        cluster.remove()


# --- what is in the database -------------------------------------------------------------------------------

OBJECTS = """
SELECT 'relation ' || c.relkind::text || ' ' || c.relname FROM pg_class c
 WHERE c.relnamespace = %(schema)s::regnamespace
UNION ALL
SELECT 'function ' || p.proname || ' ' || pg_get_functiondef(p.oid) FROM pg_proc p
 WHERE p.pronamespace = %(schema)s::regnamespace
UNION ALL
SELECT 'type ' || t.typname FROM pg_type t WHERE t.typnamespace = %(schema)s::regnamespace
UNION ALL
SELECT 'trigger ' || pg_get_triggerdef(g.oid) FROM pg_trigger g JOIN pg_class c ON c.oid = g.tgrelid
 WHERE NOT g.tgisinternal AND c.relnamespace = %(schema)s::regnamespace
"""


def objects(url: str, schema: str) -> list[str]:
    """Every relation (tables, sequences, indexes), function (with its definition), type and trigger of `schema`."""
    with psycopg.connect(url) as conn:
        return sorted(str(row[0]) for row in conn.execute(OBJECTS, {"schema": schema}))


def snapshot(url: str, schema: str = "public") -> dict[str, Any]:
    """The objects of `schema`, every row of each of its tables (as text, every column) and its sequences' state."""
    with psycopg.connect(url) as conn:
        relations = conn.execute(
            "SELECT relname, relkind FROM pg_class WHERE relnamespace = %s::regnamespace AND relkind IN ('r', 'S')",
            (schema,),
        ).fetchall()
        rows: dict[str, Any] = {}
        for name, kind in relations:
            table = sql.Identifier(schema, name)
            if kind == "S":
                rows[name] = conn.execute(sql.SQL("SELECT last_value, is_called FROM {}").format(table)).fetchone()
            else:
                query = sql.SQL("SELECT t::text FROM {} t").format(table)
                rows[name] = sorted(str(row[0]) for row in conn.execute(query))
        schemas = sorted(str(row[0]) for row in conn.execute("SELECT nspname FROM pg_namespace"))
    return {"objects": objects(url, schema), "rows": rows, "schemas": schemas}


def their_jobs(state: dict[str, Any]) -> tuple[list[str], list[str]]:
    return state["rows"]["procrastinate_jobs"], state["rows"]["pgqueuer"]


# --- the test ----------------------------------------------------------------------------------------------


def test_the_stack_on_a_users_database_touches_nothing_of_theirs(database: str, tmp_path: Path) -> None:
    before = snapshot(database)
    procrastinate_jobs, pgqueuer_jobs = their_jobs(before)
    assert len(procrastinate_jobs) == 2 * THEIRS and all(",todo," in row for row in procrastinate_jobs)
    assert len(pgqueuer_jobs) == 2 * THEIRS and all(",queued," in row for row in pgqueuer_jobs)

    config = StackConfig(workdir=tmp_path / "stack", postgres_url=database, implementations=QUEUES,
                         concurrency=CONCURRENCY)  # fmt: skip
    stack = Stack(config)
    schema = schema_name(stack.namespace)
    assert stack.namespace != "taskbench" and schema not in before["schemas"]
    ours = (f"{schema}.procrastinate_any_queue_v1", f"{schema}.procrastinate_queue_v1#taskbench",
            f"{schema}.ch_pgqueuer")  # fmt: skip
    with psycopg.connect(database, autocommit=True) as listener:
        for channel in (*FOREIGN_CHANNELS, *ours):
            listener.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
        with stack:
            for name in QUEUES:
                result = burst(stack, name, JOBS, DURATION_S, CONCURRENCY)
                done = {e.job_id for e in result.executions if e.event == "end" and e.ok}
                accepted = {s.job_id for s in result.submissions if s.job_id}
                assert len(accepted) == JOBS and done == accepted, result.events
                assert {e.job_id for e in result.executions} <= accepted  # none of theirs ran here
                purge(stack, name)
            # Everything of ours is in the namespace's schema; `public` and the other schemas are as they were.
            mine = objects(database, schema)
            for thing in ("relation r procrastinate_jobs", "relation r procrastinate_workers", "relation r pgqueuer",
                          "relation r pgqueuer_log", "type procrastinate_job_status", "type pgqueuer_status",
                          "function procrastinate_fetch_job_v2", "function fn_pgqueuer_changed"):  # fmt: skip
                assert any(o.startswith(thing) for o in mine), (thing, mine)
            functions = [o for o in mine if o.startswith("function ")]
            assert not [f for f in functions if "public." in f]
            # DBOS's triggers notify the database-wide channels above, on writes to tables taskbench's workflows never
            # write (messages, events, streams): what the listener below hears is the test of it
            notifying = [f for f in functions if "pg_notify(" in f and "'dbos_" not in f]
            assert notifying and all(f"pg_notify('{schema}." in f or f"'{schema}.ch_pgqueuer'" in f for f in notifying)
            during = snapshot(database)
            assert during["schemas"] == sorted([*before["schemas"], schema])
            with psycopg.connect(database) as conn:
                logged = conn.execute(
                    sql.SQL("SELECT count(*) FROM {} WHERE entrypoint = 'taskbench.run_job'").format(
                        sql.Identifier(schema, "pgqueuer_log")
                    )
                ).fetchone()
            assert logged and logged[0] >= JOBS  # our jobs went through our tables
        heard = [(n.channel, n.payload) for n in listener.notifies(timeout=1.0)]

    assert not [n for n in heard if n[0] in FOREIGN_CHANNELS], heard  # no worker of theirs was woken by us
    assert {channel for channel, _ in heard} >= {f"{schema}.procrastinate_queue_v1#taskbench", f"{schema}.ch_pgqueuer"}
    for key in ("objects", "rows"):  # their rows byte for byte, their jobs still waiting, their objects as they were
        assert during[key] == before[key]
        assert snapshot(database)[key] == before[key]

    after = snapshot(database)
    assert after == before  # the stack dropped our schema as it stopped; theirs intact
    postgres_server.drop_namespace(database, stack.namespace)  # nothing there: nothing done


def _in_service(label: str, url: str, namespace: str, *argv: str) -> subprocess.CompletedProcess[str]:
    """`python *argv` in `label`'s environment, as the stack runs its set-up (the contract's variables set)."""
    python = environment.prepare([label])[label].python
    env = {**os.environ, POSTGRES_URL: url, NAMESPACE: namespace, IMPLEMENTATIONS: label}
    return subprocess.run([python, *argv], capture_output=True, text=True, timeout=120, env=env)


# procrastinate's worker LISTENs through the connector on the channels its manager names; the trigger of the
# namespaced schema must NOTIFY those (else the worker would wait for its 5 s poll, which a burst does not show).
LISTENS = """
import asyncio, json
from procrastinate.manager import get_channel_for_queues
from taskbench_service.implementations import procrastinate as p

async def main():
    p.setup()
    heard = asyncio.Queue()
    async def on(*, channel, payload):
        await heard.put((channel, json.loads(payload)))
    await p.app.open_async()
    listener = asyncio.create_task(p.app.connector.listen_notify(on, get_channel_for_queues([p.QUEUE])))
    try:
        for _ in range(20):  # until the listener's LISTEN has been issued
            job = await p.run_async.defer_async(payload={})
            try:
                channel, note = await asyncio.wait_for(heard.get(), 1.0)
            except asyncio.TimeoutError:
                continue
            print(json.dumps({"channel": channel, "job": note["job_id"], "deferred": job}))
            return
    finally:
        listener.cancel()
        await p.app.close_async()

asyncio.run(main())
"""


def test_procrastinates_worker_hears_its_namespaced_channel(database: str) -> None:
    namespace = "taskbench-11570000"
    try:
        done = _in_service("procrastinate", database, namespace, "-c", LISTENS)
        assert done.returncode == 0, done.stderr
        heard = json.loads(done.stdout.strip().splitlines()[-1])
        assert heard["channel"] == "procrastinate_queue_v1#taskbench"  # the name procrastinate knows, unprefixed
        assert heard["job"] >= 1
    finally:
        postgres_server.drop_namespace(database, namespace)
    assert "taskbench_11570000" not in snapshot(database)["schemas"]


def test_a_schema_of_that_name_not_taskbenchs_is_neither_installed_into_nor_dropped(database: str) -> None:
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA taskbench_0badc0de")
        conn.execute("CREATE TABLE taskbench_0badc0de.mine (n int)")
    theirs = objects(database, "taskbench_0badc0de")
    try:
        for label in QUEUES:
            module = f"taskbench_service.implementations.{label}"
            done = _in_service(label, database, "taskbench-0badc0de", "-m", module, "setup")
            assert done.returncode != 0 and "not taskbench's" in done.stderr, done.stderr
        with pytest.raises(StackError, match="not taskbench's"):
            postgres_server.drop_namespace(database, "taskbench-0badc0de")
        assert objects(database, "taskbench_0badc0de") == theirs and "relation r mine" in theirs
    finally:
        with psycopg.connect(database, autocommit=True) as conn:
            conn.execute("DROP SCHEMA taskbench_0badc0de CASCADE")


def test_their_jobs_are_job_calls_taskbench_would_run() -> None:
    """Were one of theirs taken by our worker, it would run and be in the ledger, not fail to parse."""
    from taskbench_service.jobs import JobCall

    for name in QUEUES:
        assert JobCall.model_validate(_payload(name, 0)).implementation == name
