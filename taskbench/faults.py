"""Crash and restart injections, and the stack state each one needs.

- api-crash: SIGKILL the API server while jobs are queued and running, then start it again.
- api-deploy: SIGTERM the API server (a rolling deploy): uvicorn's graceful shutdown waits for requests and
  background tasks up to --graceful-timeout, then cancels them; SIGKILL if still there after an orchestrator's
  grace period; then start it again.
- worker-crash: SIGKILL the implementation's worker, main process and children, then start it again; run
  under each of the implementation's delivery settings. For BackgroundTasks, every worker of the stack
  dies: its jobs do not care, which is the finding.
- worker-child-crash: SIGKILL only the worker's child processes (an OOM kill, a segfault); the main
  process lives on and starts new ones. For Celery, `task_reject_on_worker_lost` decides here whether the
  running jobs are requeued or acknowledged as failed.
- redis-restart: stop and start the private Redis, with AOF persistence (`aof`) or without (`none`).
- worker-oom: the process that runs the scenario's jobs (its worker; BackgroundTasks' API) under a memory limit
  (its cgroup: --worker-memory, else its idle usage at the scenario's start + 256 MiB, whatever its pool's own
  size) and `memory` jobs that fit one at a time but not at the worker's concurrency: the kernel's OOM killer
  kills a process of it (the biggest: a pool's child holding a job, or the whole single-process worker or API), as
  in a container under Kubernetes; the cgroup's OOM kill count says when and how many; a process whose main
  process died is started again whenever it dies, as its orchestrator would (`tend`). Every implementation, under
  each delivery setting.
- postgres-restart: stop the private PostgreSQL with a fast shutdown (every client cut off, as `pg_ctl restart`
  does; committed jobs are on disk) and start it again: the PostgreSQL queues only.
- network-partition (needs --hosts): the worker's host cut off from the broker and everything else (its link set
  down inside its namespace, taskbench.netns) for the variant's time, then restored; the queues with a worker.
  The `restored` event marks the link's return: the analysis reads how long the queue took to start a job again.
- api-partition (needs --hosts): the APIs' host cut off from the servers alone (Redis, RabbitMQ, PostgreSQL: a
  blackhole route inside its namespace, taskbench.netns) for the variant's time, then restored; clients still reach
  the API, and the scenario keeps submitting through the cut and after it (`SUBMITS_DURING`): what a client meets
  (a 503 once the service's bounded retries give up, or no answer until its timeout) and when the API takes jobs
  again. Every implementation.

To add a fault: a name in FAULTS, its variants in `variants`, its stack state in `state_for` and its
injection in `inject`; an implementation lists the faults that apply to it.
"""

from __future__ import annotations

import contextlib
import time

import psutil

from taskbench import implementations
from taskbench.errors import StackError
from taskbench.results import Event, PluginOptions, RunSettings, ScenarioSpec
from taskbench.stack import DEFAULT_REDELIVERY_TIMEOUT_S, Stack, StackState
from taskbench_wire import enums

FAULTS, WORKER_FAULTS, PARTITIONS = enums.FAULTS, enums.WORKER_FAULTS, enums.PARTITION_FAULTS
REDIS_VARIANTS = ("none", "aof")
PARTITION_VARIANTS = ("5s",)  # how long the host stays cut off
# How long a worker is watched after its children die: Dramatiq's main process notices within 0.1–1.1 s
# (it checks in 1 s steps) and exits; a worker that lives on replaces its children itself.
SUPERVISOR_GRACE_S = 3.0
OOM_HEADROOM_MB = 256  # worker-oom without --worker-memory: the limit is the worker's idle usage plus this
# Each worker-oom job holds this share of the limit: one fits beside the worker's own memory, two do not, so a
# worker running two or more at once (any --concurrency above 1) is OOM-killed.
OOM_JOB_SHARE = 0.6
OOM_WAIT_S = 5.0  # after the jobs' duration: how long inject waits for the OOM kill before it says there was none
OOM_RESTARTS = 5  # restarts of a worker the OOM killer killed, per scenario


# Faults during which the scenario keeps submitting (scenario._submit_through): run on a thread of their own.
SUBMITS_DURING = (enums.Fault.api_partition.value,)


def variants(fault: str, implementation: str) -> list[str | None]:
    if fault in WORKER_FAULTS:
        impl = implementations.get(implementation)
        # Jobs that do not run on a worker: once is enough to show they do not care.
        return [d.name for d in impl.deliveries] if impl.has_worker else ["default"]
    if fault == "redis-restart":
        return list(REDIS_VARIANTS)
    if fault in PARTITIONS:
        return list(PARTITION_VARIANTS)
    return [None]


def applies(fault: str, implementation: str, options: PluginOptions | None = None) -> bool:
    return implementations.get(implementation).applies(fault, options or {})


def redelivery_timeout_for(duration_s: float) -> float:
    """Short, so redelivery shows within the run, yet longer than any job: a running job whose message
    outlives this timeout is delivered again while it still runs (Celery's visibility timeout)."""
    return max(5.0, 2 * duration_s + 2)


def shaped(spec: ScenarioSpec, settings: RunSettings) -> ScenarioSpec:
    """A fault scenario's workload: `sleep`, but `memory` jobs above the worker's limit for worker-oom."""
    if spec.fault != enums.Fault.worker_oom:
        return spec
    limit = settings.worker_limits.memory_mb  # None: the worker's idle usage + OOM_HEADROOM_MB, when it starts
    memory_mb = max(1, round((limit or OOM_HEADROOM_MB) * OOM_JOB_SHARE))
    return spec.model_copy(update={"workload": "memory", "memory_mb": memory_mb, "memory_limit_mb": limit})


def state_for(spec: ScenarioSpec) -> StackState:
    """The stack this scenario runs on: stated here, applied by the run before the scenario starts."""
    deliveries = {spec.implementation: spec.variant or "default"} if spec.fault in WORKER_FAULTS else {}
    # Without a fault, the queues' own default (Celery's visibility timeout: an hour): a short one would deliver
    # again the jobs a worker holds prefetched in a long backlog, and changing it restarts every worker.
    return StackState(
        deliveries=deliveries,
        redelivery_timeout_s=redelivery_timeout_for(spec.duration_s) if spec.fault else DEFAULT_REDELIVERY_TIMEOUT_S,
        redis_persistent=spec.fault == "redis-restart" and spec.variant == "aof",
        concurrency=spec.concurrency,
        middleware=spec.middleware,
        worker_memory_mb=spec.memory_limit_mb if spec.fault == enums.Fault.worker_oom else None,
        worker_memory_headroom_mb=OOM_HEADROOM_MB if spec.fault == enums.Fault.worker_oom else None,
    )


def _kill_children(stack: Stack, name: str) -> int:
    worker = stack.workers[name]
    assert worker.pid is not None
    children = psutil.Process(worker.pid).children(recursive=True)
    for child in children:
        with contextlib.suppress(psutil.NoSuchProcess):
            child.kill()
    psutil.wait_procs(children, timeout=5)
    return len(children)


def partition_seconds(variant: str) -> float:
    return float(variant.removesuffix("s"))


def _partition(stack: Stack, name: str, variant: str, events: list[Event]) -> None:
    """Cut the host of `name`'s worker off for the variant's time; `fault` when the link goes down, `restored`
    when it is up again (from then on the queue can resume)."""
    network, host = stack.network, stack.host_of(name)
    if network is None or host is None:
        raise ValueError(f"network-partition needs --hosts and a worker in a namespace ({name})")
    seconds = partition_seconds(variant)
    where = f"{network.address(host)}, {network.namespace(host)}"
    detail = f"cut the {implementations.title(name)} worker's host off ({where}: link down) for {seconds:g} s"
    events.append(Event(t=time.time(), name="fault", detail=detail))
    _, up_at = stack.partition(name, seconds)
    events.append(Event(t=up_at, name="restored", detail=f"link up again: host {host} reachable"))


def _cut_api(stack: Stack, variant: str, events: list[Event]) -> None:
    """Cut the APIs' host off from the servers for the variant's time; `fault` once the cut is in place (the
    scenario submits from then on), `restored` when it is over."""
    network = stack.network
    if network is None:
        raise ValueError("api-partition needs --hosts: the APIs in a namespace of their own")
    seconds = partition_seconds(variant)
    detail = f"cut the APIs' host off from the servers ({network.servers}: blackhole route) for {seconds:g} s"
    stack.cut_api(True)
    try:
        events.append(Event(t=time.time(), name="fault", detail=detail))
        time.sleep(seconds)
    finally:
        stack.cut_api(False)
    events.append(Event(t=time.time(), name="restored", detail=f"route removed: {network.servers} reachable"))


def inject(stack: Stack, spec: ScenarioSpec, events: list[Event]) -> None:
    """Blocks the caller for a second or so, on purpose: a child must be started by a thread that outlives
    it (see taskbench.processes), and the probes and sampler run on threads of their own."""
    fault, variant, name = spec.fault, spec.variant, spec.implementation
    targets = [name] if name in stack.workers else list(stack.workers)
    if fault == "api-crash":
        events.append(Event(t=time.time(), name="fault", detail="SIGKILL the API server"))
        stack.restart_api()
    elif fault == "api-deploy":
        graceful = stack.config.api.graceful_timeout_s
        limit = "no limit (uvicorn's default)" if graceful is None else f"--timeout-graceful-shutdown {graceful:g}"
        events.append(Event(t=time.time(), name="fault", detail=f"SIGTERM the API server (a deploy; {limit})"))
        took = stack.deploy_api()
        events.append(Event(t=time.time(), name="restart", detail=f"the old API server took {took:.2f} s to go"))
    elif fault == "worker-crash":
        what = ", ".join(implementations.title(t) for t in targets) or "no"
        events.append(Event(t=time.time(), name="fault", detail=f"SIGKILL the {what} worker ({variant})"))
        for target in targets:
            stack.workers[target].kill()
        for target in targets:
            stack.workers[target].start()
    elif fault == "worker-child-crash":
        at = time.time()
        killed = sum(_kill_children(stack, target) for target in targets)
        events.append(Event(t=at, name="fault", detail=f"SIGKILL the worker's {killed} child processes"))
        for target in targets:  # some workers exit when a child dies (Dramatiq): restart them, as systemd would
            deadline = time.monotonic() + SUPERVISOR_GRACE_S
            while stack.workers[target].alive() and time.monotonic() < deadline:
                time.sleep(0.05)
            if not stack.workers[target].alive():
                events.append(Event(t=time.time(), name="restart", detail=f"the {target} worker exited: restarted"))
                stack.workers[target].start()
    elif fault == "worker-oom":
        _await_oom(stack, spec, events)
    elif fault == "redis-restart":
        persistent = variant == "aof"
        detail = "restart Redis " + ("with AOF persistence" if persistent else "without persistence")
        events.append(Event(t=time.time(), name="fault", detail=detail))
        stack.restart_redis(persistent)
    elif fault == "postgres-restart":
        events.append(Event(t=time.time(), name="fault", detail="restart PostgreSQL (fast shutdown)"))
        stack.restart_postgres()
    elif fault == "network-partition":
        _partition(stack, name, variant or PARTITION_VARIANTS[0], events)
    elif fault == "api-partition":
        _cut_api(stack, variant or PARTITION_VARIANTS[0], events)
    else:
        raise ValueError(f"unknown fault {fault!r}")
    events.append(Event(t=time.time(), name="recovered", detail=f"{fault}: the stack answers again"))


def _await_oom(stack: Stack, spec: ScenarioSpec, events: list[Event]) -> None:
    """worker-oom: the jobs themselves are the fault; wait for the kernel's kill (the cgroup's count, watched from
    the scenario's start), state it, and start the worker again if its main process died."""
    name = spec.implementation
    cgroup, process = stack.job_cgroup(name), stack.job_service(name)
    concurrency = stack.worker_concurrency if name in stack.workers else "a thread per job"
    limit, idle = cgroup.memory_limit_mb, cgroup.idle_mb
    shape = f"{spec.jobs} jobs of {spec.memory_mb} MiB, concurrency {concurrency}, limit {limit} MiB"
    shape += f" over {idle:.0f} MiB used idle" if idle is not None else ""
    deadline = time.monotonic() + spec.duration_s + OOM_WAIT_S
    while cgroup.oom_at is None and time.monotonic() < deadline:
        time.sleep(0.05)
    if cgroup.oom_at is None:
        events.append(
            Event(t=time.time(), name="fault", detail=f"no OOM kill in the cgroup of {process.what} ({shape})")
        )
        return
    killed = cgroup.oom_kills_since_mark()
    detail = f"the kernel OOM-killed {killed} process{'es' if killed != 1 else ''} of {process.what} ({shape})"
    events.append(Event(t=cgroup.oom_at, name="fault", detail=detail))
    grace = time.monotonic() + SUPERVISOR_GRACE_S
    while process.alive() and time.monotonic() < grace:
        time.sleep(0.05)
    tend(stack, spec, events)


def tend(stack: Stack, spec: ScenarioSpec, events: list[Event]) -> None:
    """worker-oom, while the scenario waits: start the job process (the worker; BackgroundTasks' API) again
    whenever the kernel killed its main process, at once and up to OOM_RESTARTS times (an orchestrator's restart
    policy, without Kubernetes' growing back-off), so that jobs run again into the same limit show what the queue
    does with them."""
    name = spec.implementation
    if spec.fault != enums.Fault.worker_oom or name not in stack.config.implementations:
        return
    process = stack.job_service(name)
    if process.alive() or sum(e.name == "restart" for e in events) >= OOM_RESTARTS:
        return
    how = process.process.ended_how()
    events.append(Event(t=time.time(), name="restart", detail=f"{process.what} exited ({how}): restarted"))
    try:
        process.start()
    except StackError as exc:  # killed again while it started (jobs it took at once): the next poll tries again
        events.append(Event(t=time.time(), name="restart_failed", detail=str(exc).splitlines()[0]))


def settle(stack: Stack, spec: ScenarioSpec, events: list[Event]) -> None:
    """After the scenario's wait: worker-oom states every OOM kill of the scenario (jobs redelivered into the
    same limit are killed again)."""
    if spec.fault != enums.Fault.worker_oom or spec.implementation not in stack.config.implementations:
        return
    process = stack.job_service(spec.implementation)
    killed = stack.job_cgroup(spec.implementation).oom_kills_since_mark()
    events.append(Event(t=time.time(), name="oom_kills", detail=f"{killed} OOM kills in the cgroup of {process.what}"))
