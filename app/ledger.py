"""The execution ledger: one line per execution start and end, written by the code that runs the job.

Statuses cannot tell a lost job from a duplicated one (Celery even calls an unknown id PENDING), and
they vanish with the API process or with Redis. The ledger is a file outside both, appended with
O_APPEND so the API, the worker's children and a restarted process all add to it safely. It is off
unless TASKBENCH_LEDGER names the file; the harness sets it.
"""

from __future__ import annotations

import json
import os
import time

from app import settings as config


def record(job_id: str, implementation: str, event: str, error: str | None = None) -> None:
    path = config.settings.ledger_path
    if not path:
        return
    line = json.dumps(
        {
            "job_id": job_id,
            "implementation": implementation,
            "event": event,  # "start" or "end"
            "ok": error is None,
            "error": error,
            "pid": os.getpid(),
            "t": time.time(),
        }
    )
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)
