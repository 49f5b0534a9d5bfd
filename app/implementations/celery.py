"""`/celery/*`: jobs published to a Celery worker over Redis, records in Redis.

Publishing (`apply_async`) is a blocking socket call of ~0.5 ms; it runs on a small executor of its
own so it neither stalls the event loop nor competes for Starlette's threadpool.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from celery import _state as celery_state
from fastapi import BackgroundTasks
from kombu.exceptions import KombuError
from kombu.utils.url import maybe_sanitize_url as redacted

from app.celery_app import ACKS_LATE, REJECT_ON_WORKER_LOST, celery_app
from app.implementations.base import BrokerUnavailable, QueueImplementation
from app.jobs import JobRecord
from app.settings import settings
from app.tasks import run_job

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
    celery_state._set_task_join_will_block(True)  # type: ignore[attr-defined]


class CeleryImplementation(QueueImplementation):
    name = "celery"
    runner = "Celery (apply_async → prefork worker over Redis)"

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
        except KombuError as exc:  # what kombu raises for a broker it cannot reach
            raise BrokerUnavailable(f"{type(exc).__name__}: {exc}") from exc

    async def purge(self) -> int:
        return int(await self._publish(celery_app.control.purge) or 0)

    async def queued(self) -> int:
        return int(await self.store.redis.llen("celery"))  # type: ignore[misc]

    def describe(self) -> dict[str, Any]:
        return {
            "runner": self.runner,
            "broker": redacted(settings.broker_url),
            "backend": redacted(settings.result_backend),
            "acks_late": ACKS_LATE,
            "reject_on_worker_lost": REJECT_ON_WORKER_LOST,
        }


IMPLEMENTATION = CeleryImplementation()
