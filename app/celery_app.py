"""The Celery app, configured as the spec shows; delivery settings explicit so the report can state them."""

from __future__ import annotations

from celery import Celery

from app.settings import settings

celery_app = Celery("taskbench", broker=settings.broker_url, backend=settings.result_backend, include=["app.tasks"])

_transport_options: dict[str, float] = {"visibility_timeout": settings.visibility_timeout_s}
if settings.restore_interval_s is not None:
    # kombu 5.7 restores unacked messages every interval × throttle seconds (100 s by default).
    _transport_options |= {"unacked_restore_interval": settings.restore_interval_s, "unacked_restore_throttle": 1}

celery_app.conf.update(
    task_serializer="json",
    accept_content=["json"],
    result_serializer="json",
    timezone="UTC",
    enable_utc=True,
    task_track_started=True,
    worker_prefetch_multiplier=1,  # Process one task at a time
    task_acks_late=settings.acks_late,
    task_reject_on_worker_lost=settings.reject_on_worker_lost,
    # Redelivery on Redis waits for this; it must be the same in both places (Celery docs).
    broker_transport_options=_transport_options,
    result_backend_transport_options=_transport_options,
    result_expires=3600,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)
