"""The names both sides use, defined once: the workloads a job can be, a job's status, the faults the harness
injects and the middlewares the API can run behind. `str` enums, so they are their values in JSON and compare
equal to them."""

from __future__ import annotations

from enum import Enum


class Workload(str, Enum):
    sleep = "sleep"  # blocking sleep in a sync function: the spec's job, standing for blocking I/O
    async_sleep = "async_sleep"  # await asyncio.sleep: well-behaved async I/O
    blocking_async = "blocking_async"  # time.sleep inside async def: the mistake that stalls the event loop
    cpu = "cpu"  # pure-Python computation holding the GIL
    memory = "memory"  # holds memory_mb for the duration
    # sleep, a burst's first job twice as long as all the others together: what a worker's prefetch holds behind it
    uneven = "uneven"
    noop = "noop"  # returns at once, in the runner's own style (sync or async): what the queue itself costs
    job = "job"  # the user's own function (taskbench_service.user_job), chosen by the harness when it started the stack


BUILT_IN_WORKLOADS = tuple(w.value for w in Workload if w is not Workload.job)  # what `--workloads` offers
ASYNC_WORKLOADS = (Workload.async_sleep.value, Workload.blocking_async.value)


class JobStatus(str, Enum):
    queued = "queued"
    running = "running"
    completed = "completed"
    failed = "failed"


class Fault(str, Enum):
    api_crash = "api-crash"  # SIGKILL the API server, start it again
    api_deploy = "api-deploy"  # SIGTERM it as an orchestrator does (graceful shutdown), start it again
    worker_crash = "worker-crash"  # SIGKILL the worker and every descendant, start it again
    worker_child_crash = "worker-child-crash"  # SIGKILL only its child processes (as an OOM kill would)
    worker_deploy = "worker-deploy"  # SIGTERM the worker's main process, SIGKILL after a grace period, a new one
    worker_crash_loop = "worker-crash-loop"  # SIGKILL the worker again and again, restarting it each time
    redis_restart = "redis-restart"  # restart Redis, without and with AOF persistence
    redis_connections_killed = "redis-connections-killed"  # Redis drops every client connection (CLIENT KILL)
    postgres_restart = "postgres-restart"  # restart PostgreSQL (a fast shutdown): the PostgreSQL queues' jobs
    postgres_connections_killed = "postgres-connections-killed"  # PostgreSQL ends every client's backend
    network_partition = "network-partition"  # --hosts: the worker's host cut off (link down) for a while, restored
    api_partition = "api-partition"  # --hosts: the APIs' host cut off from the servers alone for a while, restored
    worker_oom = "worker-oom"  # the worker under a memory limit, jobs above it: the kernel's OOM killer (cgroups)
    long_job = "long-job"  # no kill: jobs twice as long as the redelivery timeout, are they delivered again?
    blocked_loop = "blocked-loop"  # no kill: jobs that block the worker's event loop, where it renews their claims


FAULTS = tuple(f.value for f in Fault)
PARTITION_FAULTS = (Fault.network_partition.value, Fault.api_partition.value)  # --hosts: a host cut off


class Middleware(str, Enum):
    none = "none"
    base_http = "base-http"  # a do-nothing BaseHTTPMiddleware in front of the app, as users add for logging or auth


MIDDLEWARES = tuple(m.value for m in Middleware)
