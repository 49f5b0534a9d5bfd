"""The execution ledger: one line per execution start and end, written by the code that runs the job.

Statuses cannot tell a lost job from a duplicated one (Celery even calls an unknown id PENDING), and
they vanish with the API process or with Redis. The ledger is a file outside both, appended with
O_APPEND so the API, the worker's children and a restarted process all add to it safely. It is off
unless TASKBENCH_LEDGER names the file; the harness sets it.
"""

from __future__ import annotations

import json
import logging
import os
import time

from taskbench_service import settings as config

log = logging.getLogger(__name__)

# One descriptor per process, opened on first use (a forked worker child opens its own): a line costs
# one short write() then, which is what runs on the event loop for async jobs.
_fd: int | None = None
_fd_pid = 0


def record(job_id: str, implementation: str, event: str, error: str | None = None) -> None:
    """Best effort: a ledger that cannot be written is logged, never a reason for a job to fail."""
    global _fd, _fd_pid
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
    try:
        if _fd is None or _fd_pid != os.getpid():
            _fd, _fd_pid = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644), os.getpid()
        os.write(_fd, (line + "\n").encode())
    except OSError as exc:
        log.warning("execution ledger %s not written: %s", path, exc)
