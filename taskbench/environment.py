"""Versions and machine, recorded in every result so a figure can be traced to where it was measured."""

from __future__ import annotations

import os
import platform
from importlib import metadata
from typing import Any

import psutil
import redis

from taskbench.rabbitmq_server import server_version

PACKAGES = (
    "fastapi",
    "starlette",
    "uvicorn",
    "uvloop",
    "httptools",
    "anyio",
    "celery",
    "kombu",
    "amqp",
    "arq",
    "taskiq",
    "taskiq-redis",
    "dramatiq",
    "pika",
    "rq",
    "saq",
    "redis",
    "httpx",
    "psutil",
)


def describe(redis_url: str | None, amqp_url: str | None = None) -> dict[str, Any]:
    versions: dict[str, str] = {"taskbench": _version("taskbench")}
    versions |= {name: _version(name) for name in PACKAGES}
    if redis_url:
        try:
            versions["redis-server"] = str(
                redis.Redis.from_url(redis_url, socket_timeout=2).info("server")["redis_version"]  # type: ignore[index]
            )
        except redis.RedisError:
            versions["redis-server"] = "unreachable"
    if amqp_url:  # --broker amqp
        versions["rabbitmq-server"] = server_version(amqp_url)
    return {
        "versions": versions,
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpu_count": os.cpu_count(),
            "memory_gb": psutil.virtual_memory().total / 2**30,
            "hostname": platform.node(),
        },
    }


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"
