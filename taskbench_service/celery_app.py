"""The Celery app, configured as the spec shows; delivery settings explicit so the report can state them."""

from __future__ import annotations

from celery import Celery

from taskbench_service.settings import settings

# Delivery variants by name (TASKBENCH_DELIVERY): what the worker-crash faults switch.
DELIVERIES = {
    "default": (False, False),
    "acks_late": (True, False),
    "acks_late+reject_on_worker_lost": (True, True),
}
ACKS_LATE, REJECT_ON_WORKER_LOST = DELIVERIES.get(settings.delivery, DELIVERIES["default"])

celery_app = Celery(
    "taskbench", broker=settings.broker_url, backend=settings.result_backend, include=["taskbench_service.tasks"]
)

AMQP = settings.broker == "amqp"

# Redis: redelivery waits for the visibility timeout; it must be the same in both places (Celery docs).
_redis_options: dict[str, float] = {"visibility_timeout": settings.redelivery_timeout_s}
if settings.restore_interval_s is not None:
    # kombu ≥ 5.7 restores unacked messages every interval × throttle seconds (100 s by default); older
    # kombu ignores these and app.tasks sweeps on its own (see restore_unacked there).
    _redis_options |= {"unacked_restore_interval": settings.restore_interval_s, "unacked_restore_throttle": 1}
# RabbitMQ: no visibility timeout (a dead consumer's unacknowledged messages are requeued when its connection
# drops); publisher confirms, without which a publish to a broker at its memory or disk alarm is dropped
# silently (Celery docs, broker_transport_options; celery#5410).
_broker_options: dict[str, float | bool] = {"confirm_publish": True} if AMQP else dict(_redis_options)

celery_app.conf.update(
    task_serializer="json",
    accept_content=["json"],
    result_serializer="json",
    timezone="UTC",
    enable_utc=True,
    task_track_started=True,
    worker_prefetch_multiplier=1,  # Process one task at a time
    task_acks_late=ACKS_LATE,
    task_reject_on_worker_lost=REJECT_ON_WORKER_LOST,
    broker_transport_options=_broker_options,
    result_backend_transport_options=_redis_options,  # results are in Redis on either broker
    result_expires=3600,
    broker_connection_retry_on_startup=True,
    # RabbitMQ requeues a late-acknowledged job as soon as the worker's connection drops: running it on would
    # run it twice. Celery 6's default, recommended since 5.1 (its warning CANCEL_TASKS_BY_DEFAULT); on Redis
    # nothing is requeued on a dropped connection, so the worker keeps running it.
    worker_cancel_long_running_tasks_on_connection_loss=AMQP,
    worker_hijack_root_logger=False,
)
