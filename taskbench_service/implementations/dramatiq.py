"""`/dramatiq/*`: jobs sent to a Dramatiq worker over Redis or RabbitMQ (`--broker amqp`), records in Redis; and the
worker's own definitions.

Sending (`Actor.send`) is a blocking redis-py call (the broker's Lua `dispatch` script: HSET the message into
`{ns}:{ns}.dramatiq.msgs`, RPUSH its id onto `{ns}:{ns}.dramatiq`), so it runs on the implementation's own
publisher executor. The worker is Dramatiq's own CLI with a broker set-up function, as its docs show
(`dramatiq some_module:setup_broker`):

    python -m dramatiq taskbench_service.implementations.dramatiq:setup_worker --processes P --threads T

It forks P worker processes, each with T worker threads; sync actors run on those threads, async actors on
the process's one event-loop thread (the `AsyncIO` middleware), which the worker thread waits on.

What a worker's death does (dramatiq/brokers/redis.py and brokers/redis/dispatch.lua): a fetch moves message
ids into `{ns}:__acks__.<broker id>.{ns}.dramatiq` and a message is acknowledged (removed from it) only after
the actor returns (`worker.py:ConsumerThread.post_process_message`). Every broker command ZADDs its broker's
heartbeat; "maintenance", run by a command with probability `maintenance_chance` / 1e6, pushes the unacked
ids of every broker whose heartbeat is older than `heartbeat_timeout` back onto the queue. A SIGKILLed worker's
running and prefetched jobs are therefore run again, at least once. If one worker process dies, the dramatiq
main process stops the others and exits (`cli.py:main`): a supervisor restarts it, and the same sweep
redelivers.

On RabbitMQ (`RabbitmqBroker`, brokers/rabbitmq.py) a consumer acknowledges after the actor returns too, but
there is no heartbeat sweep: RabbitMQ requeues a consumer's unacknowledged messages as soon as its connection
closes, which a killed process's does at once. The broker's connections are per thread (pika's
BlockingConnection is not thread-safe), so the API's publisher threads each hold their own.

Names: the run's (`settings.namespace`, `ns` above). The queue is `{ns}.dramatiq` on either broker (Dramatiq's
default: `default`). On Redis the broker's namespace is `{ns}` (default `dramatiq`), the prefix of every key its
Lua script touches: the queue, `.msgs`, its delay queue `.DQ` and dead letters `.XQ` (each with `.msgs`), the acks
`{ns}:__acks__.<broker id>.<queue>` and the brokers' heartbeats `{ns}:__heartbeats__`. The maintenance pass looks
up a dead broker's acks with `KEYS {ns}:__acks__.<id>*`: a read of our keys only, though KEYS walks the whole
keyspace. On RabbitMQ (no key prefix there) the queue name carries the namespace: `{ns}.dramatiq`,
`{ns}.dramatiq.DQ` and `{ns}.dramatiq.XQ`, on RabbitMQ's default exchange. Dramatiq fixes no name of its own.
The purge (`Broker.flush`) empties those queues alone.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeAlias, TypeVar
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import dramatiq
import pika.exceptions
import redis
from dramatiq.brokers.rabbitmq import DEAD_MESSAGE_TTL as RABBITMQ_DEAD_MESSAGE_TTL
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.brokers.redis import DEFAULT_MAINTENANCE_CHANCE, MAINTENANCE_SCALE, RedisBroker
from dramatiq.errors import ConnectionClosed, ConnectionFailed
from dramatiq.middleware import AsyncIO, Middleware
from fastapi import BackgroundTasks

from taskbench_service import workloads
from taskbench_service.execution import execute_async, execute_sync
from taskbench_service.heartbeat import Heartbeat
from taskbench_service.implementations.base import BrokerUnavailable, QueueImplementation
from taskbench_service.jobs import JobCall, RedisJobStore, WorkerRecords, redis_options
from taskbench_service.settings import MAX_DURATION_S, settings
from taskbench_wire.records import JobRecord
from taskbench_wire.urls import redacted

log = logging.getLogger(__name__)
T = TypeVar("T")

NAME = "dramatiq"
NAMESPACE = settings.namespace  # RedisBroker's key prefix (its default: dramatiq)
QUEUE_NAME = f"{settings.namespace}.dramatiq"  # on Redis and RabbitMQ (Dramatiq's default: default)
QUEUE_KEY = f"{NAMESPACE}:{QUEUE_NAME}"  # the list of message ids waiting to be fetched

# Timing and delivery settings, stated in `describe()`, the heartbeat and the harness's `settings()`.
MAX_RETRIES = 0  # Retries middleware default: 20, backoff from 15 s; a retry would look like a duplicate
TIME_LIMIT_MS = int((MAX_DURATION_S + 60) * 1000)  # TimeLimit middleware default: 600 000 ms, below the longest job
DEAD_MESSAGE_TTL_MS = 3_600_000  # failed messages' dead-letter copies (default 7 days); purge() drops them too
# How long a silent broker (no command at all) counts as alive; Dramatiq's default is 60 000 ms. A live worker
# process beats every dramatiq_worker_timeout at least, from its delay-queue consumer, even when busy.
HEARTBEAT_TIMEOUT_MS = int(settings.redelivery_timeout_s * 1000)
# The idle consumer's longest back-off (env `dramatiq_worker_timeout`, default 1000 ms): the harness's worker
# command sets the same 100 ms (taskbench/implementations/dramatiq.py), each worker's heartbeat shows its own.
WORKER_TIMEOUT_ENV = "dramatiq_worker_timeout"
WORKER_TIMEOUT_MS = 100


def maintenance_chance(restore_interval_s: float | None, poll_ms: int) -> int:
    """Dramatiq has no sweep interval, only a chance per broker command (default 1000 in a million). An idle
    consumer sends a command at least every `poll_ms`; a chance of poll / interval gives it one sweep per
    `restore_interval_s` on average."""
    if restore_interval_s is None:
        return int(DEFAULT_MAINTENANCE_CHANCE)
    chance = int(MAINTENANCE_SCALE * poll_ms / (restore_interval_s * 1000))
    return max(int(DEFAULT_MAINTENANCE_CHANCE), min(int(MAINTENANCE_SCALE), chance))


MAINTENANCE_CHANCE = maintenance_chance(settings.restore_interval_s, WORKER_TIMEOUT_MS)
AMQP = settings.broker == "amqp"
# RabbitMQ: wait for the broker's confirm of every send (Dramatiq's default: off), so a message RabbitMQ did not
# take is an error at the API, not a silent loss; Dramatiq's docs: needed to redeclare a vanished queue too.
CONFIRM_DELIVERY = True

Broker: TypeAlias = "RedisBroker | RabbitmqBroker"


def pika_url(url: str) -> str:
    """The URL as pika reads it, for the virtual host kombu reads in it: Celery's `amqp://…//` means vhost "/"
    to kombu (the path after its first slash) but "" to pika (the first path segment)."""
    parts = urlsplit(url)
    vhost = unquote(parts.path[1:]) if parts.path else "/"
    return urlunsplit(
        parts._replace(scheme="amqps" if parts.scheme == "amqps" else "amqp", path="/" + quote(vhost, safe=""))
    )


def make_broker() -> Broker:
    """Dramatiq's default middleware (Retries, TimeLimit, ...). On Redis, a client with bounded waits that
    reconnects once after a Redis restart (the API's own clients do the same: see
    taskbench_service.jobs.redis_options)."""
    if AMQP:
        return RabbitmqBroker(url=pika_url(settings.broker_url), confirm_delivery=CONFIRM_DELIVERY)
    options = redis_options(settings.redis_timeout_s, asyncio=False) | {"decode_responses": False}
    return RedisBroker(
        client=redis.Redis.from_url(settings.redis_url, **options),
        namespace=NAMESPACE,
        heartbeat_timeout=HEARTBEAT_TIMEOUT_MS,
        maintenance_chance=MAINTENANCE_CHANCE,
        dead_message_ttl=DEAD_MESSAGE_TTL_MS,
    )


JobActor: TypeAlias = "dramatiq.Actor[[dict[str, Any]], None]"


def declare_actors(broker: Broker) -> tuple[JobActor, JobActor]:
    """The sync actor (sync kinds and noop) and the async one (async kinds), on `broker`."""
    options: dict[str, Any] = {"queue_name": QUEUE_NAME, "max_retries": MAX_RETRIES, "time_limit": TIME_LIMIT_MS}
    sync_actor = dramatiq.actor(broker=broker, actor_name="taskbench.run_job", **options)(run_job)
    async_actor = dramatiq.actor(broker=broker, actor_name="taskbench.run_job_async", **options)(run_job_async)
    return sync_actor, async_actor


# --- the worker side ---------------------------------------------------------------------------------


@dataclass
class _WorkerState:
    records: WorkerRecords | None = None
    store: RedisJobStore | None = None
    heartbeat: Heartbeat | None = None
    threads: int = 0
    prefetch: int = 0
    worker_timeout_ms: int = 0
    active: int = 0


_state = _WorkerState()
_active_lock = threading.Lock()


@contextmanager
def _running() -> Iterator[None]:
    with _active_lock:
        _state.active += 1
    try:
        yield
    finally:
        with _active_lock:
            _state.active -= 1


def run_job(call: dict[str, Any]) -> None:
    """Sync kinds and noop, on one of the process's worker threads."""
    job = JobCall.model_validate(call)
    assert _state.records is not None, "the worker process has not booted"
    with _running():
        error = execute_sync(job, _state.records, lambda: workloads.run_sync(job))
    if error is not None:
        raise error  # logged by Dramatiq, then dead-lettered: max_retries=0


async def run_job_async(call: dict[str, Any]) -> None:
    """Async kinds, on the process's event-loop thread (AsyncIO middleware)."""
    job = JobCall.model_validate(call)
    assert _state.store is not None, "the worker process has not booted"
    with _running():
        error = await execute_async(job, _state.store, lambda: workloads.run_async(job))
    if error is not None:
        raise error


def _describe() -> dict[str, Any]:
    return {
        "active": _state.active,
        "threads": _state.threads,
        "prefetch": _state.prefetch,
        "worker_timeout_ms": _state.worker_timeout_ms,
        "broker": settings.broker,
        "heartbeat_timeout_ms": None if AMQP else HEARTBEAT_TIMEOUT_MS,  # Redis only
        "maintenance_chance": None if AMQP else MAINTENANCE_CHANCE,
        "max_retries": MAX_RETRIES,
        "time_limit_ms": TIME_LIMIT_MS,
    }


class TaskbenchWorker(Middleware):
    """Start-up and shutdown of each worker process: calibration, records clients, heartbeat."""

    def after_process_boot(self, broker: dramatiq.Broker) -> None:
        # Each forked worker process imports this module itself (the dramatiq main process never does), so
        # each calibrates here, before its worker threads start: P ≤ cores processes at once, one core each.
        workloads.calibrate()
        _state.records = WorkerRecords(settings.redis_url, settings.redis_timeout_s)

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        # Created here, used only on the AsyncIO middleware's event-loop thread.
        _state.store = RedisJobStore(NAME, settings.redis_url, settings.redis_timeout_s)
        _state.threads = worker.worker_threads
        _state.prefetch = worker.queue_prefetch
        _state.worker_timeout_ms = worker.worker_timeout
        _state.heartbeat = Heartbeat(NAME, f"{socket.gethostname()}:{os.getpid()}", _describe)
        _state.heartbeat.start()

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        if _state.heartbeat is not None:
            _state.heartbeat.stop()


def setup_worker() -> None:
    """The worker's broker, set up in each worker process by `python -m dramatiq <this module>:setup_worker`."""
    broker = make_broker()
    broker.add_middleware(AsyncIO())  # Dramatiq's documented way to run `async def` actors
    broker.add_middleware(TaskbenchWorker())
    declare_actors(broker)
    dramatiq.set_broker(broker)


# --- the API side ------------------------------------------------------------------------------------


def amqp_ready(broker: RabbitmqBroker) -> int:
    """Messages ready in the queue (not those a consumer holds), from a passive declare on this thread's channel;
    a queue nobody declared yet holds none (and RabbitMQ closes the channel for asking: open another)."""
    try:
        return int(broker.channel.queue_declare(queue=QUEUE_NAME, passive=True).method.message_count)
    except pika.exceptions.ChannelClosedByBroker:
        del broker.channel
        return 0
    except pika.exceptions.AMQPConnectionError:
        del broker.connection  # the next call opens a new one
        raise


class DramatiqImplementation(QueueImplementation):
    name = NAME
    runner = f"Dramatiq (actor.send → worker processes × threads over {'RabbitMQ' if AMQP else 'Redis'})"

    def __init__(self) -> None:
        super().__init__()
        self._broker: Broker | None = None
        self._actors: tuple[JobActor, JobActor] | None = None

    async def startup(self) -> None:
        await super().startup()
        self._broker = make_broker()
        self._actors = declare_actors(self._broker)

    async def shutdown(self) -> None:
        if isinstance(self._broker, RedisBroker):
            self._broker.client.close()
        elif self._broker is not None:  # closes what the publisher threads opened
            self._broker.close()
        await super().shutdown()

    @property
    def broker(self) -> Broker:
        if self._broker is None:
            raise RuntimeError(f"{self.name}: the API has not started (lifespan) yet")
        return self._broker

    async def submit(self, record: JobRecord, background_tasks: BackgroundTasks) -> None:
        assert self._actors is not None
        sync_actor, async_actor = self._actors
        actor = async_actor if workloads.is_async(record.kind, record.job or 0) else sync_actor
        await self._on_broker(partial(actor.send, JobCall.of(record).model_dump(mode="json")))

    async def _on_broker(self, func: Callable[[], T]) -> T:
        """A blocking broker call on the publisher; RabbitMQ's errors become a 503 like Redis's."""
        try:
            return await self.in_publisher(func)
        except (ConnectionClosed, ConnectionFailed, pika.exceptions.AMQPError) as exc:
            raise BrokerUnavailable(f"{type(exc).__name__}: {exc}") from exc

    async def queued(self) -> int:
        if isinstance(self.broker, RabbitmqBroker):
            return await self._on_broker(partial(amqp_ready, self.broker))
        return int(await self.store.redis.llen(QUEUE_KEY))

    async def purge(self, queued_ids: list[str]) -> int:
        pending = await self.queued()
        # Redis: the Lua `purge` (list, .msgs, dead letters); RabbitMQ: queue.purge of the queue, .DQ and .XQ
        await self._on_broker(partial(self.broker.flush, QUEUE_NAME))
        return pending

    @property
    def broker_url(self) -> str:
        return settings.broker_url

    def describe(self) -> dict[str, Any]:
        on_broker: dict[str, Any] = (
            {
                "queue": QUEUE_NAME,
                "confirm_delivery": CONFIRM_DELIVERY,
                "dead_message_ttl_ms": RABBITMQ_DEAD_MESSAGE_TTL,
            }
            if AMQP
            else {
                "queue": QUEUE_KEY,
                "heartbeat_timeout_ms": HEARTBEAT_TIMEOUT_MS,
                "maintenance_chance": f"{MAINTENANCE_CHANCE} / {MAINTENANCE_SCALE}",
                "dead_message_ttl_ms": DEAD_MESSAGE_TTL_MS,
            }
        )
        return {
            "runner": self.runner,
            "broker": redacted(settings.broker_url),
            "broker_kind": settings.broker,
            **on_broker,
            "acknowledgement": "after the actor returns",
            "max_retries": MAX_RETRIES,
            "time_limit_ms": TIME_LIMIT_MS,
            "worker_timeout_ms": f"{WORKER_TIMEOUT_MS} (env {WORKER_TIMEOUT_ENV} on the worker's command line)",
        }


IMPLEMENTATION = DramatiqImplementation()
