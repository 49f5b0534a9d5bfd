"""One job record shape for every implementation, and where each keeps its records.

FastAPI's records live in the API process's memory (that is what BackgroundTasks gives you: a restart
loses them). Every queue's live in Redis beside its queue, so any API process and any worker can read them.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
import uuid
from collections import Counter
from collections.abc import Coroutine, Iterable
from enum import Enum
from typing import Any, Protocol, cast

import redis
import redis.asyncio as aredis
from pydantic import BaseModel, ConfigDict, Field, model_validator
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from taskbench_service import settings as config
from taskbench_service import user_job
from taskbench_service.workloads import Kind
from taskbench_wire.enums import JobStatus
from taskbench_wire.records import JobList, JobRecord

Status = JobStatus  # the service's name for it


class JobRequest(BaseModel):
    """The optional body of `POST /{impl}/job`; no body at all is the spec's 30 s sleep."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)  # JSON has no NaN: a finite number or a 422

    duration: float = Field(config.DEFAULT_DURATION_S, ge=0, le=config.MAX_DURATION_S, description="seconds")
    kind: Kind = Kind.sleep
    memory_mb: int = Field(config.DEFAULT_MEMORY_MB, ge=0, le=config.MAX_MEMORY_MB, description="held by `memory` jobs")
    job: int = Field(0, ge=0, description="`job` kind: which of the functions the service was started with")
    args: dict[str, Any] = Field(default_factory=dict, description="`job` kind: keyword arguments (JSON)")

    @model_validator(mode="after")
    def _job_is_one_the_service_has(self) -> JobRequest:
        if self.kind is Kind.job and self.job >= len(user_job.paths()):
            raise ValueError(
                f"job {self.job}: this service was started with {len(user_job.paths())} job function(s) "
                "(taskbench run --job package.module:function)"
            )
        if self.kind is not Kind.job and (self.args or self.job):
            raise ValueError("`job` and `args` go with kind 'job' only")
        try:
            json.dumps(self.args, allow_nan=False)  # what the brokers carry
        except ValueError:
            raise ValueError("`args` must be JSON: no NaN or Infinity") from None
        return self


class JobCall(BaseModel):
    """What travels through a broker to the worker: plain JSON, the same for every queue. A worker validates it
    with the API's bounds: what reaches a broker is not always what the API accepted (anyone with the broker's
    password can write there)."""

    model_config = ConfigDict(allow_inf_nan=False)

    job_id: str = Field(max_length=64)
    implementation: str = Field(max_length=64)
    kind: Kind
    duration: float = Field(ge=0, le=config.MAX_DURATION_S)
    memory_mb: int = Field(0, ge=0, le=config.MAX_MEMORY_MB)
    job: int = Field(0, ge=0)
    args: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _args_within_the_body_cap(self) -> JobCall:
        if len(json.dumps(self.args)) > config.MAX_BODY_BYTES:
            raise ValueError(f"`args` larger than {config.MAX_BODY_BYTES} bytes")
        return self

    @classmethod
    def of(cls, record: JobRecord) -> JobCall:
        return cls(
            job_id=record.job_id,
            implementation=record.implementation,
            kind=record.kind,
            duration=record.duration,
            memory_mb=record.memory_mb,
            job=record.job or 0,
            args=record.args or {},
        )


def new_record(implementation: str, request: JobRequest) -> JobRecord:
    return JobRecord(
        job_id=uuid.uuid4().hex,
        implementation=implementation,
        kind=request.kind,
        duration=request.duration,
        memory_mb=request.memory_mb if request.kind is Kind.memory else 0,
        job=request.job if request.kind is Kind.job else None,
        args=request.args if request.kind is Kind.job else None,
        submitted_at=time.time(),
    )


def running_fields() -> dict[str, Any]:
    return {
        "status": Status.running,
        "started_at": time.time(),
        "pid": os.getpid(),
        "thread": threading.current_thread().name,
        "host": os.uname().nodename,
    }


def finished_fields(error: BaseException | None) -> dict[str, Any]:
    fields: dict[str, Any] = {"finished_at": time.time()}
    if error is None:
        fields["status"] = Status.completed
    else:
        fields["status"] = Status.failed
        fields["error"] = f"{type(error).__name__}: {error}"[:500]
    return fields


def count_by_status(statuses: Iterable[str]) -> dict[JobStatus, int]:
    counts = Counter(statuses)
    return {status: counts.get(status.value, 0) for status in Status}


class JobStore(Protocol):
    """What the routers need of a store; every method may wait on I/O."""

    async def add(self, record: JobRecord) -> None: ...
    async def get(self, job_id: str) -> JobRecord | None: ...
    async def update(self, job_id: str, fields: dict[str, Any]) -> None: ...
    async def refuse(self, job_id: str) -> None: ...  # a submission answered with an error: no record of it
    async def list(self, limit: int | None) -> JobList: ...
    async def clear(self) -> int: ...


class SyncRecords(Protocol):
    """Where a job running in a thread or a worker process stamps its record."""

    def update(self, job_id: str, fields: dict[str, Any]) -> None: ...


class MemoryJobStore:
    """FastAPI's records: a dict in the API process, updated from the thread or task running the job."""

    def __init__(self) -> None:
        self._records: dict[str, JobRecord] = {}
        self.in_flight = 0  # accepted and not finished: queued for a thread or the loop, or running

    async def add(self, record: JobRecord) -> None:
        self._records[record.job_id] = record

    async def get(self, job_id: str) -> JobRecord | None:
        return self._records.get(job_id)

    def update_now(self, job_id: str, fields: dict[str, Any]) -> None:
        """Called from the thread running a sync job, or from the loop: a dict update needs no await."""
        record = self._records.get(job_id)
        if record is None:  # cleared while running: keep it cleared
            return
        for name, value in fields.items():
            setattr(record, name, value)

    async def update(self, job_id: str, fields: dict[str, Any]) -> None:
        self.update_now(job_id, fields)

    async def refuse(self, job_id: str) -> None:
        self._records.pop(job_id, None)

    async def list(self, limit: int | None) -> JobList:
        records = list(self._records.values())
        counts = count_by_status(r.status.value for r in records)
        return JobList(count=len(records), counts=counts, jobs=records if limit is None else records[:limit])

    async def clear(self) -> int:
        cleared = len(self._records)
        self._records.clear()
        return cleared


# Every key under the run's namespace (settings.namespace: `taskbench`, or `taskbench-<stack id>` on a server named
# by a flag), so the store never reads or deletes a key it did not write.
JOB_KEY = f"{config.settings.namespace}:job:{{}}"
INDEX_KEY = f"{config.settings.namespace}:jobs:{{}}"  # one sorted set per implementation, scored by submission time
REFUSED_KEY = f"{config.settings.namespace}:refused:{{}}"  # answered with an error: its record must not appear later
REFUSED_TTL_S = 600
REFUSE_RETRY_S = 0.5  # how often a failed batch's refusal is tried again while Redis cannot be reached
REFUSE_FOR_S = 120.0  # and for how long

# Add a batch of records, each unless it was refused or is there already. ARGV: the refused and record key prefixes,
# then per record its id, score (submission time), field count n, and n field/value pairs. A write whose client gave
# up (a timeout on a stalled connection) can still reach Redis once the network is back, after the client's retry
# on a new connection got through and the job ran: it must neither bring back a refused record (see
# RedisJobStore._refuse) nor set a finished one back to queued.
_ADD_NEW = """
local refused, prefix, i = ARGV[1], ARGV[2], 3
while i <= #ARGV do
  local id, score, n = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
  if redis.call('EXISTS', refused .. id) == 0 and redis.call('EXISTS', prefix .. id) == 0 then
    redis.call('HSET', prefix .. id, unpack(ARGV, i + 3, i + 2 + 2 * n))
    redis.call('ZADD', KEYS[1], score, id)
  end
  i = i + 3 + 2 * n
end
"""
# Refuse records: a tombstone each (so a late write of them is a no-op), and the record gone if it got there first.
_REFUSE = """
for i = 4, #ARGV do
  redis.call('SET', ARGV[1] .. ARGV[i], 1, 'EX', ARGV[3])
  redis.call('DEL', ARGV[2] .. ARGV[i])
  redis.call('ZREM', KEYS[1], ARGV[i])
end
"""

# Update a record only if it still exists: a job cleared by DELETE while running stays cleared.
_UPDATE_IF_EXISTS = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('HSET', KEYS[1], unpack(ARGV))
  return 1
end
return 0
"""


def _encode(fields: dict[str, Any]) -> dict[str, str]:
    return {k: ("" if v is None else str(v.value if isinstance(v, Enum) else v)) for k, v in fields.items()}


def _decode(raw: dict[str, str]) -> JobRecord:
    return JobRecord.model_validate({k: v for k, v in raw.items() if v != ""})


MAX_REDIS_CONNECTIONS = 64


def redis_options(timeout_s: float, asyncio: bool) -> dict[str, Any]:
    """Bounded waits, and a reconnect-and-retry on a dropped connection.

    Without the retry, every pooled connection fails once after a Redis restart ("Connection closed by
    server"): 18 of 20 submissions got a 503 in a redis-restart scenario. With Redis really down, the
    retries add ~0.4 s before the 503.
    """
    return {
        "decode_responses": True,
        "socket_connect_timeout": timeout_s,
        "socket_timeout": timeout_s,
        "retry": (AsyncRetry if asyncio else Retry)(ExponentialBackoff(cap=0.5, base=0.05), retries=3),
        "retry_on_error": [redis.ConnectionError, redis.TimeoutError],
    }


class RedisJobStore:
    """A queue's records, read and written by the API without blocking its event loop."""

    def __init__(self, implementation: str, url: str, timeout_s: float) -> None:
        self.index_key = INDEX_KEY.format(implementation)
        # Blocking pool: a burst waits for one of 64 connections instead of failing ("Too many connections").
        pool = aredis.BlockingConnectionPool.from_url(
            url, max_connections=MAX_REDIS_CONNECTIONS, timeout=timeout_s, **redis_options(timeout_s, asyncio=True)
        )
        self.redis = aredis.Redis(connection_pool=pool)
        self._update = self.redis.register_script(_UPDATE_IF_EXISTS)
        self._add = self.redis.register_script(_ADD_NEW)
        self._refuse_script = self.redis.register_script(_REFUSE)
        self._pending: list[tuple[JobRecord, asyncio.Future[None]]] = []  # records waiting for the next write
        self._writes: set[asyncio.Task[None]] = set()  # writes and refusals under way (referenced until done)

    async def aclose(self) -> None:
        await self.redis.aclose()

    async def add(self, record: JobRecord) -> None:
        """Store the record before its job is handed over. Submissions that arrive together share one pipeline
        (a group commit: the first schedules the write for when the event loop next runs, the others join it),
        so a burst costs one round trip per batch, not per job; each request still waits for its own record."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((record, future))
        if len(self._pending) == 1:
            asyncio.get_running_loop().call_soon(self._write_batch)
        await future

    def _write_batch(self) -> None:
        batch, self._pending = self._pending, []
        self._track(self._write(batch))

    def _track(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(work)
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def refuse(self, job_id: str) -> None:
        """Remove the record of a submission answered with an error, now if Redis answers, else in the background
        (and a late write of it with it: see `_refuse`)."""
        try:
            await self._refuse_script(keys=[self.index_key], args=self._refuse_args([job_id]))
        except (redis.RedisError, OSError):
            self._track(self._refuse([job_id]))

    def _refuse_args(self, job_ids: list[str]) -> list[str | float]:
        return [REFUSED_KEY.format(""), JOB_KEY.format(""), REFUSED_TTL_S, *job_ids]

    async def _refuse(self, job_ids: list[str]) -> None:
        """The records of submissions that were answered with an error must not turn up later: a write sent on a
        connection that stalled (a network partition) reaches Redis once the network is back, after its client
        gave up and the request got its 503. Tried until Redis answers, for a while."""
        args = self._refuse_args(job_ids)
        deadline = time.monotonic() + REFUSE_FOR_S
        while time.monotonic() < deadline:
            try:
                await self._refuse_script(keys=[self.index_key], args=args)
                return
            except (redis.RedisError, OSError):
                await asyncio.sleep(REFUSE_RETRY_S)

    async def _write(self, batch: list[tuple[JobRecord, asyncio.Future[None]]]) -> None:
        args: list[str | float] = [REFUSED_KEY.format(""), JOB_KEY.format("")]
        for record, _ in batch:
            fields = _encode(record.model_dump(exclude={"queue_time", "execution_time", "total_time"}))
            args += [record.job_id, record.submitted_at, len(fields), *(x for pair in fields.items() for x in pair)]
        try:
            await self._add(keys=[self.index_key], args=args)
        except BaseException as exc:  # every request of the batch answers with it (a 503 when Redis is down)
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            self._track(self._refuse([record.job_id for record, _ in batch]))
            if not isinstance(exc, Exception):
                raise
            return
        for _, future in batch:
            if not future.done():
                future.set_result(None)

    async def get(self, job_id: str) -> JobRecord | None:
        raw = cast("dict[str, str]", await self.redis.hgetall(JOB_KEY.format(job_id)))  # decode_responses
        return _decode(raw) if raw else None

    async def update(self, job_id: str, fields: dict[str, Any]) -> None:
        args = [item for pair in _encode(fields).items() for item in pair]
        await self._update(keys=[JOB_KEY.format(job_id)], args=args)

    async def list(self, limit: int | None) -> JobList:
        """Counts over every record; whole records only for the first `limit` (all when None)."""
        ids = cast("list[str]", await self.redis.zrange(self.index_key, 0, -1))  # decode_responses
        wanted = ids if limit is None else ids[:limit]
        async with self.redis.pipeline(transaction=False) as pipe:
            for job_id in wanted:
                pipe.hgetall(JOB_KEY.format(job_id))
            for job_id in ids[len(wanted) :]:  # the rest: their status is all the counts need
                pipe.hget(JOB_KEY.format(job_id), "status")
            replies = await pipe.execute()
        jobs = [_decode(raw) for raw in replies[: len(wanted)] if raw]
        statuses = [job.status.value for job in jobs] + [s for s in replies[len(wanted) :] if s]
        return JobList(count=len(statuses), counts=count_by_status(statuses), jobs=jobs)

    async def clear(self) -> int:
        ids = cast("list[str]", await self.redis.zrange(self.index_key, 0, -1))  # decode_responses
        async with self.redis.pipeline(transaction=False) as pipe:
            for start in range(0, len(ids), 1000):
                pipe.delete(*(JOB_KEY.format(i) for i in ids[start : start + 1000]))
            pipe.delete(self.index_key)
            await pipe.execute()
        return len(ids)


class WorkerRecords:
    """A worker's side of the records: stamps start and end inside the job itself (a blocking client,
    for worker processes and threads; async workers call it through `asyncio.to_thread`)."""

    def __init__(self, url: str, timeout_s: float) -> None:
        self.redis = redis.Redis.from_url(url, **redis_options(timeout_s, asyncio=False))
        self._update = self.redis.register_script(_UPDATE_IF_EXISTS)

    def update(self, job_id: str, fields: dict[str, Any]) -> None:
        args = [item for pair in _encode(fields).items() for item in pair]
        self._update(keys=[JOB_KEY.format(job_id)], args=args)


def json_bytes(value: Any) -> bytes:
    """The JSON that replaces pickle on a server taskbench does not own (settings.foreign_servers): what a queue
    cannot write as JSON (an exception in a result) is written as its repr."""
    return json.dumps(value, default=repr).encode()
