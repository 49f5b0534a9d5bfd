"""`celery -A app.celery_app worker`, as the spec runs it: taskbench's Celery app under its old name."""

from taskbench_service.implementations.celery import celery_app

__all__ = ["celery_app"]
