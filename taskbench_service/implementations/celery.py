"""Celery: `/celery/*` publishes jobs to a Celery worker over Redis or RabbitMQ (`--broker amqp`), records in
Redis. One module for both sides of Celery: the app (configured as the spec shows, delivery settings explicit
so the report can state them), the task and the worker's start-up hooks, and the API's implementation.

The worker: `celery -A taskbench_service.implementations.celery:celery_app worker` (the spec's `celery -A
app.celery_app worker` from taskbench's repository is the same app). Abandoned (unacknowledged) jobs are
restored by kombu's own sweep, every `unacked_restore_interval` (kombu ≥ 5.7).

Publishing (`apply_async`) is a blocking socket call of ~0.5 ms; it runs on a small executor of its
own so it neither stalls the event loop nor competes for Starlette's threadpool. So does counting the
queue on RabbitMQ (a passive `queue.declare`, which answers with the number of messages ready).

Names: everything is the run's (`settings.namespace`, `ns` below), so that on a broker someone else uses the
service never purges their queue and neither their workers nor ours see the other's jobs or broadcasts.

- The queue, its direct exchange and routing key are `{ns}.celery` (Celery's default: `celery`); the remote
  control's fanout exchange (pidbox: `inspect`, `revoke`) `{ns}.celery.pidbox` and its replies'
  `reply.{ns}.celery.pidbox` (`control_exchange`; default `celery.pidbox`); events `{ns}.celeryev` (default
  `celeryev`: task events are off here, the workers' own online, heartbeat and offline events go out).
  `control.purge` purges the app's queues, which are that one queue.
- Redis: kombu's `global_keyprefix` `{ns}:` prefixes every key and pub/sub channel of the Redis transport (the
  queue list `{ns}:{ns}.celery`, `unacked`, `unacked_index`, `unacked_mutex`, `_kombu.binding*`, the fanout
  channels of the pidbox and events, `{ns}:/<db>.{ns}.celery.pidbox`); the same prefix in
  `result_backend_transport_options` covers the results and their channels (`{ns}:celery-task-meta-<id>`, kept
  for result_expires, 1 h). kombu sends a few reads unprefixed (`EXISTS` of a queue, in a passive declare, which
  this module never makes on Redis); they could only name `{ns}.…` queues. No key keeps a fixed name.
- RabbitMQ: the queues and exchanges above, plus the workers' pidbox queues `<node>.{ns}.celery.pidbox` and the
  replies' `<uuid>.reply.{ns}.celery.pidbox` (auto-deleted); the default exchange `""` is RabbitMQ's own.

The user's own app (`taskbench run --app celery=shop.celery:app`, TASKBENCH_APP): `celery_app` is then their
`Celery` object, imported from their working directory, and only its connections are taskbench's: the broker
and result backend as above (SSL off: the servers are taskbench's), the key prefix of its Redis transport and
results (`global_keyprefix`) and the remote control's and events' exchanges. Everything else is theirs, as they
configured it: queues and routing (`taskbench.run_job` goes where their router sends it: their default queue
unless their `task_routes` say otherwise), acknowledgement, prefetch, visibility timeout, pool, time limits,
serializer; TASKBENCH_DELIVERY does not apply (their settings are the delivery). Their tasks stay registered
beside taskbench's; their code is not changed.
"""

from __future__ import annotations

import contextlib
import importlib
from functools import cache, partial
from typing import Any

from amqp.exceptions import AMQPError, NotFound
from celery import Celery
from celery import _state as celery_state
from celery.signals import celeryd_after_setup, worker_init, worker_ready, worker_shutdown
from celery.worker import state as worker_state
from fastapi import BackgroundTasks
from kombu.exceptions import KombuError

from taskbench_service import workloads
from taskbench_service.execution import execute_sync
from taskbench_service.heartbeat import Heartbeat, live_beats
from taskbench_service.implementations.base import BrokerUnavailable, QueueImplementation
from taskbench_service.jobs import JobCall, WorkerRecords
from taskbench_service.settings import settings
from taskbench_wire.records import JobRecord
from taskbench_wire.urls import redacted

# --- the app ----------------------------------------------------------------------------------------------

# Delivery variants by name (TASKBENCH_DELIVERY): what the worker-crash faults switch (taskbench's own app only).
DELIVERIES = {
    "default": (False, False),
    "acks_late": (True, False),
    "acks_late+reject_on_worker_lost": (True, True),
}

AMQP = settings.broker == "amqp"

# The run's names (see the module's docstring).
QUEUE = f"{settings.namespace}.celery"  # the queue, its exchange and routing key
CONTROL_EXCHANGE = QUEUE  # → the pidbox exchange `{QUEUE}.pidbox`, replies `reply.{QUEUE}.pidbox`
EVENT_EXCHANGE = f"{settings.namespace}.celeryev"
KEY_PREFIX = f"{settings.namespace}:"  # kombu's global_keyprefix (kombu ≥ 5.3), broker and results alike
REDIS_QUEUE_KEY = KEY_PREFIX + QUEUE  # the queue's list on Redis
KOMBU_VISIBILITY_TIMEOUT_S = 3600.0  # kombu's Redis transport, when broker_transport_options do not say


def user_app(path: str) -> Celery:
    """The user's own app, `package.module:attribute` (their working directory is on PYTHONPATH)."""
    module_name, _, attribute = path.partition(":")
    app = getattr(importlib.import_module(module_name), attribute, None)
    if not isinstance(app, Celery):
        raise TypeError(f"{path} is {type(app).__name__}, not a celery.Celery app")
    return app


def point_at_taskbench(app: Celery) -> None:
    """Only the connections of the user's app become taskbench's: its broker and result backend, the key prefix of
    the run's namespace on Redis and the remote control's and events' exchanges. Their transport options (the
    visibility timeout among them) stay, with the prefix added."""
    conf = app.conf
    broker_options = dict(conf.broker_transport_options or {})
    result_options = dict(conf.result_backend_transport_options or {})
    prefix = {"global_keyprefix": KEY_PREFIX}
    conf.update(
        broker_url=settings.broker_url,
        broker_read_url=settings.broker_url,  # their read/write URLs would win over broker_url (Celery's rule)
        broker_write_url=settings.broker_url,
        broker_use_ssl=False,  # taskbench's servers, on loopback or its bridge
        result_backend=settings.result_backend,
        redis_backend_use_ssl=None,
        broker_transport_options=broker_options if AMQP else broker_options | prefix,
        result_backend_transport_options=result_options | prefix,  # results are in Redis on either broker
        control_exchange=CONTROL_EXCHANGE,
        event_exchange=EVENT_EXCHANGE,
    )


def taskbench_app() -> Celery:
    """taskbench's own app: configured as the spec shows, the delivery variant TASKBENCH_DELIVERY explicit."""
    acks_late, reject_on_worker_lost = DELIVERIES.get(settings.delivery, DELIVERIES["default"])
    app = Celery("taskbench", broker=settings.broker_url, backend=settings.result_backend, include=[__name__])
    # Redis: redelivery waits for the visibility timeout; it must be the same in both places (Celery docs).
    redis_options: dict[str, float | str] = {
        "visibility_timeout": settings.redelivery_timeout_s,
        "global_keyprefix": KEY_PREFIX,
    }
    if settings.restore_interval_s is not None:
        # kombu ≥ 5.7 restores unacked messages every interval × throttle seconds (100 s by default); older
        # kombu ignores these and app.tasks sweeps on its own (see restore_unacked there).
        redis_options |= {"unacked_restore_interval": settings.restore_interval_s, "unacked_restore_throttle": 1}
    # RabbitMQ: no visibility timeout (a dead consumer's unacknowledged messages are requeued when its connection
    # drops); publisher confirms, without which a publish to a broker at its memory or disk alarm is dropped
    # silently (Celery docs, broker_transport_options; celery#5410).
    broker_options: dict[str, float | bool | str] = {"confirm_publish": True} if AMQP else dict(redis_options)
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        timezone="UTC",
        enable_utc=True,
        task_track_started=True,
        worker_prefetch_multiplier=1,  # Process one task at a time
        task_acks_late=acks_late,
        task_reject_on_worker_lost=reject_on_worker_lost,
        broker_transport_options=broker_options,
        result_backend_transport_options=redis_options,  # results are in Redis on either broker
        result_expires=3600,
        broker_connection_retry_on_startup=True,
        # RabbitMQ requeues a late-acknowledged job as soon as the worker's connection drops: running it on would
        # run it twice. Celery 6's default, recommended since 5.1 (its warning CANCEL_TASKS_BY_DEFAULT); on Redis
        # nothing is requeued on a dropped connection, so the worker keeps running it.
        worker_cancel_long_running_tasks_on_connection_loss=AMQP,
        worker_hijack_root_logger=False,
        task_default_queue=QUEUE,
        task_default_exchange=QUEUE,
        task_default_routing_key=QUEUE,
        control_exchange=CONTROL_EXCHANGE,
        event_exchange=EVENT_EXCHANGE,
    )
    return app


if settings.app:
    celery_app = user_app(settings.app)
    point_at_taskbench(celery_app)
else:
    celery_app = taskbench_app()

# What a crash does, as the app is configured (the variant's, or the user's own settings).
ACKS_LATE = bool(celery_app.conf.task_acks_late)
REJECT_ON_WORKER_LOST = bool(celery_app.conf.task_reject_on_worker_lost)
_transport: dict[str, Any] = dict(celery_app.conf.broker_transport_options or {})
VISIBILITY_TIMEOUT_S = None if AMQP else float(_transport.get("visibility_timeout", KOMBU_VISIBILITY_TIMEOUT_S))
RESTORE_INTERVAL_S = None if AMQP else _transport.get("unacked_restore_interval")


# --- the task and the worker's start-up -------------------------------------------------------------


@cache
def _records() -> WorkerRecords:
    return WorkerRecords(settings.redis_url, settings.redis_timeout_s)


JOB_TASK = "taskbench.run_job"  # taskbench's task, on taskbench's app or registered on the user's


@celery_app.task(name=JOB_TASK)
def run_job(
    job_id: str, kind: str, duration: float, memory_mb: int = 0, job: int = 0, args: dict[str, Any] | None = None
) -> dict[str, Any]:
    call = JobCall(
        job_id=job_id, implementation="celery", kind=kind, duration=duration, memory_mb=memory_mb, job=job,
        args=args or {},
    )  # fmt: skip
    error = execute_sync(call, _records(), lambda: workloads.run_sync(call))
    if error is not None:
        raise error
    return {"job_id": job_id}


@cache
def job_queue() -> str:
    """The queue `taskbench.run_job` is sent to: taskbench's own, or the one the user's router picks (their default
    queue unless their task_routes say otherwise). Asked when first needed, never at import: routing to a queue the
    app does not declare adds it to the queues a worker consumes."""
    if not settings.app:
        return QUEUE
    return str(celery_app.amqp.router.route({}, JOB_TASK)["queue"].name)


def redis_queue_keys() -> list[str]:
    """The Redis lists of that queue: kombu keeps a list per priority step (`{queue}\\x06\\x163`, …) beside the
    queue's own, which holds every job published without a priority (all of taskbench's app's)."""
    if not settings.app:
        return [REDIS_QUEUE_KEY]
    queue = job_queue()
    sep = str(_transport.get("sep", "\x06\x16"))
    steps = _transport.get("priority_steps") or [0, 3, 6, 9]
    return [KEY_PREFIX + (f"{queue}{sep}{step}" if step else queue) for step in steps]


# --- worker start-up, heartbeat and the unacked sweep ----------------------------------------------

_worker: dict[str, Any] = {}
_heartbeat: Heartbeat | None = None


def _describe() -> dict[str, Any]:
    return {
        **_worker,
        "active": len(worker_state.active_requests),
        "reserved": len(worker_state.reserved_requests),
        "broker": settings.broker,
        "acks_late": ACKS_LATE,
        "reject_on_worker_lost": REJECT_ON_WORKER_LOST,
        "visibility_timeout": VISIBILITY_TIMEOUT_S,
        "restore_interval": RESTORE_INTERVAL_S,
    }


@worker_init.connect
def _calibrate(**_: Any) -> None:
    workloads.calibrate()  # in the main process, before the pool forks: every child inherits it


POOL_NAMES = {"prefork": "prefork", "thread": "threads", "gevent": "gevent", "solo": "solo", "eventlet": "eventlet"}


def pool_name(pool_cls: Any) -> str:
    """`celery.concurrency.thread.TaskPool` → "threads": the pool as `--pool` names it."""
    module = str(getattr(pool_cls, "__module__", pool_cls)).rsplit(".", 1)[-1]
    return POOL_NAMES.get(module, module)


@celeryd_after_setup.connect
def _remember_worker(sender: str, instance: Any, **_: Any) -> None:
    _worker.update(
        hostname=sender,
        concurrency=instance.concurrency,
        pool=pool_name(instance.pool_cls),
        prefetch_multiplier=instance.prefetch_multiplier,
        max_tasks_per_child=instance.max_tasks_per_child,
    )


@worker_ready.connect
def _start_heartbeat(**_: Any) -> None:
    global _heartbeat
    _heartbeat = Heartbeat("celery", _worker.get("hostname", "celery"), _describe)
    _heartbeat.start()


@worker_shutdown.connect
def _stop_heartbeat(**_: Any) -> None:
    if _heartbeat is not None:
        _heartbeat.stop()


# --- the API side ---------------------------------------------------------------------------------------


INSPECT_TIMEOUT_S = 1.0  # how long DELETE waits for the workers to say what they hold


def _reserved_ids(queued: set[str], nodes: int) -> set[str]:
    """Of `queued`, the jobs some worker holds prefetched (asked of the workers: a broadcast, at DELETE only),
    as soon as each of the `nodes` workers seen alive has answered, or after 1 s."""
    answers = celery_app.control.inspect(timeout=INSPECT_TIMEOUT_S, limit=nodes or None).reserved() or {}
    held = {request.get("id") for requests in answers.values() for request in requests}
    return queued & {job_id for job_id in held if isinstance(job_id, str)}


# A pooled connection may be stale after a Redis restart: retry briefly, always within the timeout.
PUBLISH_RETRY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5}


def never_join_results_here() -> None:
    """Tell Celery that this process never waits on a result, as its own worker does.

    Records live in Redis, read by the store, so the API never joins. Without this the Redis result backend
    SUBSCRIBEs to every task's result channel inside apply_async and UNSUBSCRIBEs when the AsyncResult is
    collected: two extra Redis round trips per submission, under the backend's pubsub lock (Redis
    commandstats for 1000 submissions: 1000 SUBSCRIBE + 1000 UNSUBSCRIBE before, none after). The worker
    still stores every result. The function is private to Celery: tests/test_service.py fails loudly if
    a Celery release drops it.
    """
    celery_state._set_task_join_will_block(True)


def amqp_queued() -> int:
    """Messages ready in Celery's queue on RabbitMQ (not those a worker holds unacknowledged), from a passive
    declare on a pooled connection; a queue nobody declared yet holds none. A connection that failed is dropped,
    so the next call connects afresh (RabbitMQ restarted, or back)."""
    pooled: Any = celery_app.pool.acquire(block=True)  # kombu's stubs do not know the pooled Connection
    with pooled as connection:
        try:
            connection.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=2)
            channel = connection.channel()
            try:
                return int(channel.queue_declare(queue=job_queue(), passive=True).message_count)
            except NotFound:
                return 0
            finally:
                with contextlib.suppress(AMQPError, OSError):
                    channel.close()
        except (AMQPError, KombuError, OSError):
            connection.collect()
            raise


class CeleryImplementation(QueueImplementation):
    name = "celery"
    runner = (
        f"Celery (apply_async → {'the worker of ' + settings.app if settings.app else 'prefork worker'} over "
        f"{'RabbitMQ' if AMQP else 'Redis'})"
    )

    async def startup(self) -> None:
        await super().startup()
        never_join_results_here()

    async def submit(self, record: JobRecord, background_tasks: BackgroundTasks) -> None:
        publish = partial(
            run_job.apply_async,
            args=(record.job_id, record.kind.value, record.duration, record.memory_mb),
            kwargs={"job": record.job or 0, "args": record.args or {}} if record.job is not None else None,
            task_id=record.job_id,
            retry=True,
            retry_policy=PUBLISH_RETRY,
        )
        await self._publish(publish)

    async def _publish(self, func: Any) -> Any:
        try:
            return await self.in_publisher(func)
        except (KombuError, AMQPError) as exc:  # what kombu and py-amqp raise for a broker they cannot reach
            raise BrokerUnavailable(f"{type(exc).__name__}: {exc}") from exc

    async def purge(self, queued_ids: list[str]) -> int:
        """The broker's queue, and the jobs a worker has prefetched (reserved, not started). Every job still
        queued is revoked before the workers are asked what they hold: a prefetched job starts the moment a
        running one ends, and by the time their answers came it could have. A revoked id that no worker holds
        costs each worker an entry in its revoked set, which Celery bounds (50 000, for 3 h)."""
        purged = int(await self._publish(celery_app.control.purge) or 0)
        if not queued_ids:
            return purged
        await self._publish(partial(celery_app.control.revoke, queued_ids))
        nodes = len(await live_beats(self.store.redis, self.name))
        return purged + len(await self.in_publisher(partial(_reserved_ids, set(queued_ids), nodes)))

    async def queued(self) -> int:
        if AMQP:
            return int(await self._publish(amqp_queued))
        keys = redis_queue_keys()
        if len(keys) == 1:
            return int(await self.store.redis.llen(keys[0]))
        pipe = self.store.redis.pipeline(transaction=False)
        for key in keys:
            pipe.llen(key)
        return sum(int(n) for n in await pipe.execute())

    @property
    def broker_url(self) -> str:
        return settings.broker_url

    def describe(self) -> dict[str, Any]:
        return {
            "runner": self.runner,
            "broker": redacted(settings.broker_url),
            "broker_kind": settings.broker,
            "backend": redacted(settings.result_backend),
            "app": settings.app or None,
            "acks_late": ACKS_LATE,
            "reject_on_worker_lost": REJECT_ON_WORKER_LOST,
            "queue": job_queue(),
            "key_prefix": None if AMQP else KEY_PREFIX,
        }


IMPLEMENTATION = CeleryImplementation()
