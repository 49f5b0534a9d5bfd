"""Worker heartbeats in Redis, so `/health` sees every queue's workers without a broadcast.

Each worker process of each queue beats once a second into `{namespace}:workers:{implementation}` (one hash
field per worker; the namespace is `settings.namespace`), with its pid, concurrency and the settings that change
timing; `/health` reads the hash and counts a worker whose beat is older than WORKER_STALE_S as gone.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
from collections.abc import Callable
from typing import Any

import redis
import redis.asyncio as aredis

from taskbench_service.settings import settings
from taskbench_wire.health import Beat

log = logging.getLogger(__name__)

WORKERS_KEY = f"{settings.namespace}:workers:{{}}"
HEARTBEAT_INTERVAL_S = 1.0
WORKER_STALE_S = 5.0


class Heartbeat:
    """A daemon thread in the worker's main process; `describe()` adds what changes from beat to beat."""

    def __init__(
        self,
        implementation: str,
        worker_id: str,
        describe: Callable[[], dict[str, Any]],
        interval_s: float = HEARTBEAT_INTERVAL_S,
    ) -> None:
        self.key = WORKERS_KEY.format(implementation)
        self.worker_id = worker_id
        self.describe = describe
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="taskbench-heartbeat", daemon=True)
            self._thread.start()

    def _client(self) -> redis.Redis:
        return redis.Redis.from_url(settings.redis_url, socket_connect_timeout=1, socket_timeout=1)

    def _run(self) -> None:
        client = self._client()
        while not self._stop.is_set():
            try:
                # stamped with Redis's clock, which the readers compare with (live_beats): a step of this host's
                # clock, or another host's clock, neither keeps a dead worker alive nor drops a live one
                now = server_time(client.time())
                beat = {"pid": os.getpid(), "concurrency": settings.concurrency, **self.describe(), "t": now}
                client.hset(self.key, self.worker_id, json.dumps(beat))
            except redis.RedisError as exc:
                log.debug("heartbeat skipped: %s", exc)
            self._stop.wait(self.interval_s)

    def stop(self) -> None:
        self._stop.set()
        with contextlib.suppress(redis.RedisError):
            self._client().hdel(self.key, self.worker_id)


def server_time(reply: Any) -> float:
    """Redis's TIME reply (seconds, microseconds) as epoch seconds."""
    seconds, micros = reply
    return int(seconds) + int(micros) / 1e6


async def live_beats(client: aredis.Redis, implementation: str) -> list[Beat]:
    """The live workers of `implementation`, judged on Redis's clock (one round trip: TIME and the beats)."""
    async with client.pipeline(transaction=False) as pipe:
        pipe.time()
        pipe.hgetall(WORKERS_KEY.format(implementation))
        now, beats = await pipe.execute()
    return live_workers(decoded(beats), server_time(now))


def decoded(beats: dict[Any, Any]) -> dict[str, str]:
    """A heartbeat hash from a client with or without decode_responses."""
    return {
        (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
        for k, v in beats.items()
    }


def live_workers(beats: dict[str, str], now: float) -> list[Beat]:
    workers = [Beat.model_validate_json(beat) for beat in beats.values()]
    return [w for w in workers if now - w.t < WORKER_STALE_S]
