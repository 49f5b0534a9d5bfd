"""Celery: a prefork worker over Redis (or RabbitMQ with `--broker amqp`), prefetch 1, as the spec configures it."""

from __future__ import annotations

import uuid
from typing import Any

from taskbench.capacity import Capacity
from taskbench.errors import StackError
from taskbench.implementations.base import Delivery, Implementation, cpu_bound, python_module


class CeleryImplementation(Implementation):
    name = "celery"
    title = "Celery"
    job_process = "celery-worker"
    memory_per_slot = True  # prefork: one process per unit of --concurrency
    deliveries = (
        Delivery(
            "default",
            "at most once: acknowledged on receipt, so a job whose worker dies is lost",
            worker_crash="lost",
            child_crash="lost",
        ),
        Delivery(
            "acks_late",
            "at least once when the whole worker dies (redelivered after the visibility timeout); a killed pool "
            "process' job is acknowledged and lost",
            worker_crash="redelivered",
            child_crash="lost",
        ),
        Delivery(
            "acks_late+reject_on_worker_lost",
            "at least once: a killed pool process' job is requeued at once, a dead worker's after the visibility "
            "timeout",
            worker_crash="redelivered",
            child_crash="redelivered",
        ),
    )

    brokers = ("redis", "amqp")
    amqp_deliveries = (
        Delivery(
            "default",
            "at most once: acknowledged when a pool process takes it, so a job whose worker dies is lost (jobs "
            "only prefetched go back to the queue when the worker's connection drops)",
            worker_crash="lost",
            child_crash="lost",
        ),
        Delivery(
            "acks_late",
            "at least once when the whole worker dies: RabbitMQ requeues its unacknowledged messages as soon as "
            "its connection drops (no visibility timeout); a killed pool process' job is acknowledged and lost",
            worker_crash="redelivered",
            child_crash="lost",
        ),
        Delivery(
            "acks_late+reject_on_worker_lost",
            "at least once: a killed pool process' job is requeued at once, a dead worker's as soon as its "
            "connection drops",
            worker_crash="redelivered",
            child_crash="redelivered",
        ),
    )

    def worker_argv(self, concurrency: int) -> list[str]:
        return python_module(
            "celery", "-A", "app.celery_app", "worker", "--loglevel", "info", "--concurrency", str(concurrency),
            "--without-gossip", "--without-mingle", "-n", f"taskbench-{uuid.uuid4().hex[:6]}@%h",
        )  # fmt: skip

    def capacity(self, workload: str, jobs: int, concurrency: int, cpu_count: int, health: dict[str, Any]) -> Capacity:
        workers = self.workers_seen(health)
        total = sum(int(w.get("concurrency") or 0) for w in workers)
        if total == 0:
            raise StackError("no Celery worker is seen by the service (GET /health): start one")
        if workload == "cpu":
            return cpu_bound(total, cpu_count, "worker processes")
        return Capacity(concurrency=total, reason=f"{total} worker processes ({len(workers)} worker)")

    def settings(self, concurrency: int) -> dict[str, str]:
        return {
            "pool": f"prefork, --concurrency {concurrency}",
            "worker_prefetch_multiplier": "1 (the spec)",
            "acknowledgement": "per delivery variant (default: on receipt)",
            "visibility_timeout": "max(5 s, 2 × job duration + 2 s) (production default 3600 s)",
            "unacked restore sweep": "every 1 s (kombu default: 100 s)",
            "gossip / mingle": "off",
        }

    def broker_settings(self, broker: str) -> dict[str, str]:
        if broker != "amqp":
            return {"broker": "Redis (kombu's Redis transport)"}
        return {
            "broker": "RabbitMQ (py-amqp); results and records in Redis",
            "queue": "`celery`, classic, durable, persistent messages (Celery's defaults)",
            "prefetch": "basic.qos prefetch_count = concurrency × worker_prefetch_multiplier (1)",
            "visibility_timeout": "none on RabbitMQ: a dead worker's unacknowledged messages are requeued as soon "
            "as its connection drops",
            "unacked restore sweep": "none (Redis only)",
            "publisher confirms": "on (broker_transport_options confirm_publish; py-amqp's default: off)",
            "worker_cancel_long_running_tasks_on_connection_loss": "True (Celery 6's default; 5.x: False): a "
            "late-acknowledged job whose connection dropped is requeued, so it is not run on",
            "consumer_timeout": "the server's (RabbitMQ's default 30 min): a late-acknowledged job running longer "
            "has its channel closed and is delivered again",
        }

    def how_it_runs(self, workload: str) -> str:
        if workload in ("async_sleep", "blocking_async"):
            return "asyncio.run per job in a prefork child"
        return "sync def in a prefork child"


IMPLEMENTATION = CeleryImplementation()
