"""A psutil snapshot of the machine and of this API process, for `GET /metrics`.

Non-blocking by design: `cpu_percent(interval=None)` compares against the previous call instead of
sleeping, so a poll never stalls the event loop it is reporting on.
"""

from __future__ import annotations

import os
from typing import Any

import psutil

_MB = 1024 * 1024
_process = psutil.Process(os.getpid())
_process.cpu_percent(None)
psutil.cpu_percent(None)


def snapshot() -> dict[str, Any]:
    memory = psutil.virtual_memory()
    with _process.oneshot():
        process = {
            "pid": _process.pid,
            "cpu_percent": _process.cpu_percent(None),
            "rss_mb": _process.memory_info().rss / _MB,
            "threads": _process.num_threads(),
        }
    return {
        "system": {
            "cpu_percent": psutil.cpu_percent(None),
            "cpu_count": psutil.cpu_count(),
            "memory_percent": memory.percent,
            "memory_used_mb": (memory.total - memory.available) / _MB,
            "memory_total_mb": memory.total / _MB,
        },
        "process": process,
    }
