"""The Celery app, configured as the spec shows; delivery settings explicit so the report can state them."""

from __future__ import annotations

from celery import Celery

from app.settings import settings

# Delivery variants by name (TASKBENCH_DELIVERY): what the worker-crash faults switch.
DELIVERIES = {
    "default": (False, False),
    "acks_late": (True, False),
    "acks_late+reject_on_worker_lost": (True, True),
}
ACKS_LATE, REJECT_ON_WORKER_LOST = DELIVERIES.get(settings.delivery, DELIVERIES["default"])

celery_app = Celery("taskbench", broker=settings.broker_url, backend=settings.result_backend, include=["app.tasks"])

_transport_options: dict[str, float] = {"visibility_timeout": settings.redelivery_timeout_s}
if settings.restore_interval_s is not None:
    # kombu ≥ 5.7 restores unacked messages every interval × throttle seconds (100 s by default); older
    # kombu ignores these and app.tasks sweeps on its own (see restore_unacked there).
    _transport_options |= {"unacked_restore_interval": settings.restore_interval_s, "unacked_restore_throttle": 1}

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
    # Redelivery on Redis waits for this; it must be the same in both places (Celery docs).
    broker_transport_options=_transport_options,
    result_backend_transport_options=_transport_options,
    result_expires=3600,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)
