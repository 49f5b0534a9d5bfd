"""Two jobs a FastAPI team recognises, for `taskbench run --job examples.jobs:...` (run from the repository root).

- `make_thumbnail`: a sync, CPU-bound job (downscale an image, in pure Python, as Pillow-free code would).
- `write_audit_event`: an async I/O job (append an event to a log file and fsync it, off the event loop).
- `remember_request`: a sync job with the commonest leak, an unbounded module-level cache: the process that runs it
  grows by `kb` a job until something replaces it ("worker memory only goes up").

`thumbnail_args(i)` shows `--job-args-from`: the arguments of job number i.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
import time
from pathlib import Path


def make_thumbnail(width: int = 640, height: int = 480, size: int = 64) -> list[list[int]]:
    """Box-downscale a generated greyscale image to `size` × `size` pixels; returns the thumbnail."""
    image = [[(x * 7 + y * 13) % 256 for x in range(width)] for y in range(height)]
    step_x, step_y = width / size, height / size
    thumbnail = []
    for ty in range(size):
        row = []
        for tx in range(size):
            y0, y1 = int(ty * step_y), max(int((ty + 1) * step_y), int(ty * step_y) + 1)
            x0, x1 = int(tx * step_x), max(int((tx + 1) * step_x), int(tx * step_x) + 1)
            block = [image[y][x] for y in range(y0, y1) for x in range(x0, x1)]
            row.append(sum(block) // len(block))
        thumbnail.append(row)
    return thumbnail


def thumbnail_args(i: int) -> dict[str, int]:
    """Every third image is twice as large: real uploads are not all the same size."""
    return {"width": 1280, "height": 960} if i % 3 == 2 else {"width": 640, "height": 480}


def _append_line(path: Path, line: str) -> None:
    with path.open("a") as log:
        log.write(line + "\n")
        log.flush()
        os.fsync(log.fileno())


async def write_audit_event(user_id: int, action: str, directory: str = "") -> str:
    """Append one JSON line to `audit.log` in `directory` (default: the temp dir) and fsync it."""
    path = Path(directory or tempfile.gettempdir()) / "taskbench-audit.log"
    line = json.dumps({"user_id": user_id, "action": action, "t": time.time(), "pid": os.getpid()})
    await asyncio.to_thread(_append_line, path, line)
    return str(path)


_seen: dict[int, bytes] = {}  # never evicted: the leak


def remember_request(kb: int = 100) -> int:
    """Keep `kb` KiB of this job's "response" in a process-wide cache no one reads or trims; returns its size."""
    _seen[len(_seen)] = os.urandom(kb * 1024)  # random bytes: no page is shared or compressed away
    return len(_seen)
