"""`/celery/*`: jobs published to a Celery worker over Redis or RabbitMQ (`--broker amqp`), records in Redis.

Publishing (`apply_async`) is a blocking socket call of ~0.5 ms; it runs on a small executor of its
own so it neither stalls the event loop nor competes for Starlette's threadpool. So does counting the
queue on RabbitMQ (a passive `queue.declare`, which answers with the number of messages ready).
"""

from __future__ import annotations

import contextlib
from functools import partial
from typing import Any

from amqp.exceptions import AMQPError, NotFound
from celery import _state as celery_state
from fastapi import BackgroundTasks
from kombu.exceptions import KombuError

from taskbench_service.celery_app import ACKS_LATE, AMQP, REJECT_ON_WORKER_LOST, celery_app
from taskbench_service.implementations.base import BrokerUnavailable, QueueImplementation
from taskbench_service.jobs import JobRecord
from taskbench_service.settings import settings
from taskbench_service.tasks import run_job
from taskbench_wire.urls import redacted

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
                return int(channel.queue_declare(queue=celery_app.conf.task_default_queue, passive=True).message_count)
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
    runner = f"Celery (apply_async → prefork worker over {'RabbitMQ' if AMQP else 'Redis'})"

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

    async def purge(self) -> int:
        return int(await self._publish(celery_app.control.purge) or 0)

    async def queued(self) -> int:
        if AMQP:
            return int(await self._publish(amqp_queued))
        return int(await self.store.redis.llen("celery"))

    @property
    def broker_url(self) -> str:
        return settings.broker_url

    def describe(self) -> dict[str, Any]:
        return {
            "runner": self.runner,
            "broker": redacted(settings.broker_url),
            "broker_kind": settings.broker,
            "backend": redacted(settings.result_backend),
            "acks_late": ACKS_LATE,
            "reject_on_worker_lost": REJECT_ON_WORKER_LOST,
        }


IMPLEMENTATION = CeleryImplementation()
