"""`/rq/*`: jobs enqueued to RQ over Redis, run by `rq worker-pool` with RQ's default forking `Worker`.

API side: `Queue.enqueue_call` is a blocking Redis call (a pipelined job hash + RPUSH), so it runs on the
implementation's own executor (`in_publisher`), never on the event loop. The job is enqueued by the dotted
path of `run_job`, with the JSON form of `JobCall` as its only argument.

Worker side: `TaskbenchWorker` is RQ's `Worker` (fetch, fork a work horse, run the job in it, wait), plus
taskbench's heartbeat and the timing settings from the environment, which `worker-pool` gives no way to
pass. This module is also the pool's settings module (`--config`): RQ's CLI reads its Redis URL and queues
here (`REDIS_URL`, `QUEUES`), and imports it in the pool's main process before it forks its workers, the one
start-up hook RQ runs there, so the CPU workload is calibrated then, once, on an idle process, and every worker
and work horse inherits the figure (also the workers the pool starts again after a crash, while others may be
busy). Nothing else runs at import: in the API process, calibration happens in its lifespan.

What a crash does (rq 3.0 source): a running job is an entry in the queue's StartedJobRegistry whose score
is its execution heartbeat (`BaseWorker.get_heartbeat_ttl`: min(job timeout, job_monitoring_interval) +
60 s, refreshed by the worker every job_monitoring_interval while its horse runs). A killed horse whose
worker lives is failed at once (`Worker.monitor_work_horse` → `handle_job_failure`); a job whose worker
died stays STARTED until its heartbeat expires, and the next maintenance pass
(`StartedJobRegistry.cleanup`) moves it to the FailedJobRegistry (AbandonedJobError) unless it has
retries left. Retries are off here, so either way the job is not run again: at most once.

Names (rq 3.0 source): the queue is named after the run's namespace (`settings.namespace`, `ns` below), and RQ
derives from it the queue's list `rq:queue:{ns}` (and `:intermediate`), its registries (`rq:wip:{ns}`,
`rq:failed:{ns}`, `rq:finished:{ns}`, `rq:scheduled:{ns}`, `rq:deferred:{ns}`, `rq:canceled:{ns}`), the locks of its
maintenance and scheduler (`rq:clean_registries:{ns}`, `rq:scheduler-lock:{ns}`) and the set of its workers
(`rq:workers:{ns}`). Job ids are `{ns}_<uuid hex>` (RQ allows letters, digits, `_` and `-` in an id), so its per-job
keys are the run's too (`rq:job:{ns}_…`, `rq:executions:{ns}_…`, `rq:results:{ns}_…`), and so are worker names,
`{ns}.<uuid hex>` (`rq:worker:{ns}.…`, its `:executions`, its command channel `rq:pubsub:{ns}.…`). `Queue.empty`,
the purge, pops our queue's list and deletes the jobs it popped, nothing else.

What RQ fixes: the `rq:` prefix (RQ_KEY_PREFIX exists in rq 3.0, but only as an environment variable read before
rq is imported, which `rq worker-pool` does before it reads this module), and four keys every RQ on the server
shares: the sets `rq:queues` (each enqueue adds `rq:queue:{ns}`) and `rq:workers` (each worker adds its key at
birth and removes it at death; the maintenance pass removes only dead keys listed in `rq:workers:{ns}`, i.e.
ours), `rq:suspended` (read only: `rq suspend` on the server pauses our workers too), and `rq:scheduler:<uuid4
hex>`, the hash of the scheduler a worker starts (RQ names it; it expires 61 s after its last beat). RQ's group
maintenance (`Group.clean_registries`, over every team's `rq:groups`) is switched off in `TaskbenchWorker`: no
job here is in a group, and it would rewrite other teams' groups.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys
import uuid
from functools import partial
from typing import Any

import redis
from fastapi import BackgroundTasks
from rq import Queue, Worker
from rq.job import Job
from rq.serializers import DefaultSerializer, JSONSerializer

from taskbench_service import workloads
from taskbench_service.execution import execute_sync
from taskbench_service.heartbeat import Heartbeat
from taskbench_service.implementations.base import QueueImplementation
from taskbench_service.jobs import JobCall, WorkerRecords, redis_options
from taskbench_service.settings import MAX_DURATION_S, settings
from taskbench_wire.records import JobRecord

log = logging.getLogger(__name__)

QUEUE = settings.namespace  # Redis key rq:queue:{ns} (rq:queue:taskbench on a private Redis)
JOB_ID_PREFIX = f"{settings.namespace}_"  # of RQ's job ids: rq:job:{ns}_<uuid hex>
WORKER_PREFIX = f"{settings.namespace}."  # of the workers' names: rq:worker:{ns}.<uuid hex>

# RQ's settings (`rq worker-pool --config taskbench_service.implementations.rq`)
REDIS_URL = settings.redis_url
QUEUES = [QUEUE]
if "worker-pool" in sys.argv:  # imported by RQ's CLI in the pool's main process, before it forks
    workloads.calibrate()
JOB_FUNCTION = "taskbench_service.implementations.rq.run_job"  # by path: the API never imports the job's code
# RQ's default job timeout (180 s) would kill jobs the API accepts (up to MAX_DURATION_S); in RQ the
# timeout kills a job that runs too long, it does not decide redelivery, so it only has to be longer.
JOB_TIMEOUT_S = int(MAX_DURATION_S) + 60
RESULT_TTL_S = 0  # results are not kept (the records live beside): the job hash is deleted on success
FAILURE_TTL_S = 60  # RQ reads 0 as "unset" (one year), so the shortest useful value
# RQ adds this to every execution heartbeat TTL (BaseWorker.get_heartbeat_ttl), hard-coded.
RQ_HEARTBEAT_GRACE_S = 60
# BaseWorker.dequeue_timeout = worker_ttl - 15: the worker blocks this long on an empty queue.
RQ_DEQUEUE_MARGIN_S = 15


def job_monitoring_interval() -> int:
    """A job is abandoned once its heartbeat is older than this + 60 s: max(61 s, redelivery timeout)."""
    return max(1, int(settings.redelivery_timeout_s) - RQ_HEARTBEAT_GRACE_S)


def maintenance_interval() -> int:
    """How often a worker sweeps the registries for abandoned jobs (RQ's default: 600 s)."""
    interval = settings.restore_interval_s
    return 600 if interval is None else max(1, round(interval))


def worker_ttl() -> int:
    """Long enough for RQ's own bookkeeping, short enough that an idle worker wakes from its blocking pop
    every maintenance interval to run the sweep (RQ's default 420 s blocks for 405 s)."""
    return 420 if settings.restore_interval_s is None else RQ_DEQUEUE_MARGIN_S + maintenance_interval()


class RQImplementation(QueueImplementation):
    name = "rq"
    runner = "RQ (Queue.enqueue_call → rq worker-pool, a forked work horse per job, over Redis)"

    def __init__(self) -> None:
        super().__init__()
        self._queue: Queue | None = None

    @property
    def queue(self) -> Queue:
        if self._queue is None:
            raise RuntimeError("rq: the API has not started (lifespan) yet")
        return self._queue

    async def startup(self) -> None:
        await super().startup()
        # RQ stores pickled bytes: no decode_responses. Bounded waits and reconnect-and-retry as elsewhere.
        options = {**redis_options(settings.redis_timeout_s, asyncio=False), "decode_responses": False}
        connection = redis.Redis.from_url(settings.redis_url, **options)
        self._queue = Queue(QUEUE, connection=connection, serializer=serializer())

    async def shutdown(self) -> None:
        if self._queue is not None:
            self._queue.connection.close()
        await super().shutdown()

    async def submit(self, record: JobRecord, background_tasks: BackgroundTasks) -> None:
        publish = partial(
            self.queue.enqueue_call,
            JOB_FUNCTION,
            kwargs={"call": JobCall.of(record).model_dump(mode="json")},
            timeout=JOB_TIMEOUT_S,
            result_ttl=RESULT_TTL_S,
            failure_ttl=FAILURE_TTL_S,
            job_id=JOB_ID_PREFIX + record.job_id,
            retry=None,  # explicit: a failed or abandoned job is never run again
        )
        await self.in_publisher(publish)

    async def purge(self, queued_ids: list[str]) -> int:
        return int(await self.in_publisher(self.queue.empty) or 0)

    async def queued(self) -> int:
        return int(await self.store.redis.llen(self.queue.key))

    def describe(self) -> dict[str, Any]:
        return {
            "runner": self.runner,
            "queue": QUEUE,
            "job_ids": f"{JOB_ID_PREFIX}<record id>",
            "job_timeout": JOB_TIMEOUT_S,
            "result_ttl": RESULT_TTL_S,
            "failure_ttl": FAILURE_TTL_S,
            "retry": None,
        }


IMPLEMENTATION = RQImplementation()


# --- the worker side ---------------------------------------------------------------------------------

_records: WorkerRecords | None = None  # created when a worker starts; each work horse inherits it


def run_job(call: dict[str, Any]) -> None:
    """The job RQ runs, in a work horse: sync kinds as they are, async kinds with asyncio.run per job (RQ
    runs plain functions only)."""
    job = JobCall.model_validate(call)
    records = _records or WorkerRecords(settings.redis_url, settings.redis_timeout_s)  # a worker not ours
    error = execute_sync(job, records, lambda: workloads.run_sync(job))
    if error is not None:
        raise error  # RQ moves the job to its FailedJobRegistry; no retry


_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Linux: the kernel SIGKILLs this process when the thread that forked it (the worker's) ends.

    RQ puts each work horse in a process group of its own (`os.setpgrp` in `Worker.fork_work_horse`), so a
    SIGKILL of the worker's group would leave it running, an orphan nobody owns. A container or systemd
    (cgroup) kill takes the horse down with its worker; this does the same for a process-group kill.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError) as exc:
        log.warning("work horse cannot be tied to its worker: %s", exc)


def serializer() -> Any:  # a serializer class of RQ's, which mypy sees as Any (RQ is not in the harness's venv)
    """RQ's default (pickle) on taskbench's own Redis; JSON on someone else's, where a pickled payload written by
    anyone with the password would run in the work horse."""
    return JSONSerializer if settings.foreign_servers else DefaultSerializer


class TaskbenchWorker(Worker):
    """RQ's default forking Worker, with taskbench's heartbeat and timing settings.

    `rq worker-pool` constructs its workers itself and passes none of these, hence the subclass.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        name = kwargs.get("name") or uuid.uuid4().hex  # worker-pool names each worker with a uuid4 hex
        kwargs["name"] = name if name.startswith(WORKER_PREFIX) else WORKER_PREFIX + name
        kwargs["serializer"] = serializer()  # worker-pool passes RQ's default (pickle) explicitly
        kwargs.setdefault("worker_ttl", worker_ttl())
        kwargs.setdefault("maintenance_interval", maintenance_interval())
        kwargs.setdefault("job_monitoring_interval", job_monitoring_interval())
        super().__init__(*args, **kwargs)
        self._running = 0
        self._heartbeat: Heartbeat | None = None

    def bootstrap(self, *args: Any, **kwargs: Any) -> None:
        global _records
        super().bootstrap(*args, **kwargs)
        workloads.calibrate()  # a no-op when the pool's main process did it (see QUEUES above)
        _records = WorkerRecords(settings.redis_url, settings.redis_timeout_s)
        self._heartbeat = Heartbeat("rq", self.name, self._describe)
        self._heartbeat.start()

    def _describe(self) -> dict[str, Any]:
        return {
            "worker": self.name,
            "pool": os.getppid(),  # the worker-pool process: capacity counts each pool's live workers
            "active": self._running,
            "worker_class": "rq.Worker (fork per job)",
            "worker_ttl": self.worker_ttl,
            "maintenance_interval": self.maintenance_interval,
            "job_monitoring_interval": self.job_monitoring_interval,
        }

    def clean_group_registries(self) -> None:
        """Nothing: RQ's group maintenance walks every group on the server (`rq:groups`), other teams' included,
        and no job here is in a group."""

    def execute_job(self, job: Job, queue: Queue) -> None:
        self._running = 1
        try:
            super().execute_job(job, queue)
        finally:
            self._running = 0

    def main_work_horse(self, job: Job, queue: Queue) -> None:
        die_with_parent()
        if os.getppid() != self.pid:  # the worker died between fork and prctl
            os._exit(1)
        super().main_work_horse(job, queue)

    def teardown(self) -> None:
        if self._heartbeat is not None and not self.is_horse:
            self._heartbeat.stop()
        super().teardown()
