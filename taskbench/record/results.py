"""What a run collects and leaves on disk: raw data, versioned, so reports can be rebuilt from it alone.

Schema (version 4), one JSON file per scenario plus one comparison file per run:
- `ScenarioResult`: the scenario's spec, the run's settings, its capacity and ideal makespan, every
  submission, job record, ledger event, probe, resource sample and injected event. No figure computed
  from them: that is `taskbench.analysis`.
- `RunResult`: settings, environment and the scenario file names; the comparison file adds the analysis
  (summaries and verdict) for readers in other languages.
Readers check `schema_version`, migrate older versions on read (`migrate_v1`; version 2's Celery options in
`RunSettings.worker` move to `options["celery"]`, see `RunSettings._migrate_v2`; version 4 added sustained load,
`RunSettings.load`, `ScenarioSpec.rate`, `Submission.due_at` and `ScenarioResult.depth`, and provenance:
`described` implementations, the taskbench version and git revision; all optional), and
refuse versions they do not know with a clear message.
"""

from __future__ import annotations

import json
import re
from enum import Enum
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from taskbench.capacity import Capacity, ideal_makespan_s
from taskbench.errors import SchemaError
from taskbench.record import labels
from taskbench_wire.records import JobRecord

SCHEMA_VERSION = 4
SUPPORTED_SCHEMA_VERSIONS = frozenset({1, 2, 3, 4})


class Thresholds(BaseModel):
    """Failure rules; every report states them."""

    probe_timeout_s: float = 2.0
    responsive_p99_s: float = 0.5
    submit_timeout_s: float = 10.0
    memory_limit_mb: float = 1024.0
    system_memory_limit_percent: float = 90.0
    makespan_ratio_limit: float = 1.5
    makespan_slack_s: float = 1.0  # and more than this over the ideal: start-up and polling are not "far over"
    # A figure within this share of its limit (or a rule that fired in some repeats only) is "borderline".
    borderline_margin: float = 0.2


class JobProfile(BaseModel):
    """The user's job (`--job`) as the harness checked it once, in its own process, before the run."""

    path: str  # package.module:function
    index: int  # its number in the stack's TASKBENCH_JOBS
    is_async: bool
    import_s: float
    duration_s: float  # mean wall clock of the trial calls (jobs 0, 1, … with their own arguments)
    cpu_s: float  # mean CPU time of those calls in the harness process
    return_type: str
    behaves_like: str  # the built-in workload whose capacity model fits it: sleep, async_sleep or cpu
    args: str  # where its arguments come from
    trial_calls: int = 1

    @property
    def description(self) -> str:
        kind = "an async" if self.is_async else "a sync"
        return (
            f"{self.path}: {kind} function that took {self.duration_s:.3f} s "
            + ("once" if self.trial_calls == 1 else f"on average over {self.trial_calls} trial calls")
            + f" ({self.cpu_s:.3f} s of CPU; "
            f"imported in {self.import_s:.3f} s), returns {self.return_type}; capacity as for `{self.behaves_like}`; "
            f"arguments {self.args}"
        )


class ApiOptions(BaseModel):
    """How the API runs, for every implementation (--api-workers, --graceful-timeout). The defaults are what
    taskbench always ran: one uvicorn process, uvicorn's own graceful shutdown."""

    api_workers: int = 1  # uvicorn --workers: each process has its own thread pool and in-memory records
    # uvicorn --timeout-graceful-shutdown: how long a SIGTERMed API waits for requests and background tasks
    # before it cancels them; None is uvicorn's default, no limit (then the deploy's SIGKILL after 30 s decides)
    graceful_timeout_s: int | None = None  # whole seconds, as uvicorn takes it

    @property
    def is_default(self) -> bool:
        return self == ApiOptions()


class ContainerLimits(BaseModel):
    """A part's container limits (--worker-cpus/--worker-memory, --api-cpus/--api-memory): its cgroup's CPU quota
    and memory limit (swap included), as Kubernetes' resources.limits set them (taskbench.hosts.cgroups). None: none."""

    cpus: float | None = None  # CPUs of quota per 100 ms period
    memory_mb: int | None = None  # MiB

    @property
    def is_set(self) -> bool:
        return self.cpus is not None or self.memory_mb is not None

    def text(self) -> str:
        cpu = "no CPU limit" if self.cpus is None else f"{self.cpus:g} CPU"
        return cpu + (", no memory limit" if self.memory_mb is None else f", {self.memory_mb} MiB (swap included)")


class LoadOptions(BaseModel):
    """Sustained load (--rate): open-loop steps of a fixed offered rate instead of bursts, and the rules that
    call a step sustained (taskbench.analysis.rates)."""

    rates: list[float] = Field(default_factory=list)  # jobs per second, one step each
    auto: bool = False  # --rate auto: search each implementation's highest sustained rate
    for_s: float = 20.0  # each step's length (--for)
    arrivals: Literal["uniform", "poisson"] = "uniform"
    seed: int = 0  # of the Poisson arrivals, so a run can be repeated
    queue_p95_s: float = 2.0  # a sustained step's queue time p95 (from the due time) stays under this
    throughput_margin: float = 0.1  # completions within this share of the offered rate
    warmup_share: float = 0.2  # the first part of a step, left out of the steady-state figures
    search_resolution: float = 0.1  # --rate auto stops when the bracket is this narrow (a share of its low end)
    search_steps: int = 10  # and after this many steps whatever the bracket
    target_rate: float | None = None  # --target-rate: the smallest concurrency that sustains it
    start_rate: float | None = None  # --rate auto's first step (None: a quarter of the capacity model's rate)


# An implementation's own options (Celery's pool, prefetch, ...), as recorded: scalars by name. Each
# implementation reads them into its own typed model (`Implementation.Options`).
OptionValue = str | int | float | bool | None
PluginOptions = dict[str, OptionValue]
CELERY_V2_OPTIONS = ("pool", "prefetch", "max_tasks_per_child")  # schema 2 kept them in `worker`


class RunSettings(BaseModel):
    implementations: list[str]
    workloads: list[str]
    jobs: list[int]
    noop_jobs: list[int] = Field(default_factory=lambda: [1000, 10000])  # job counts of the `noop` workload
    duration_s: float
    memory_mb: int
    concurrency: int
    faults: list[str] = Field(default_factory=list)
    url: str | None = None  # an already-running service (the spec's manual flow)
    redis: str = "embedded"  # "embedded" or the redacted URL used
    # Where Celery's and Dramatiq's jobs wait (--broker): redis, or amqp (RabbitMQ: "embedded" or the redacted URL
    # in `amqp`); every other queue, the records, ledger and heartbeats stay on Redis.
    broker: Literal["redis", "amqp"] = "redis"
    amqp: str | None = None
    postgres: str | None = None  # the PostgreSQL queues' server: "embedded", the redacted URL, or None (not needed)
    probe_interval_s: float = 0.1
    sample_interval_s: float = 0.25
    thresholds: Thresholds = Field(default_factory=Thresholds)
    quick: bool = False
    # The other implementations' APIs and workers paused (SIGSTOP) through each scenario without a fault, so idle
    # neighbours polling their queues take no CPU from the one measured (--keep-neighbours: left running). False in
    # runs recorded before they were.
    pause_neighbours: bool = False
    calibrate: bool = False  # --calibrate: this host's ceilings measured before the first scenario (RunResult.ceilings)
    user_jobs: list[JobProfile] = Field(default_factory=list)  # --job, checked before the run
    job_timeout_s: float | None = None
    repeat: int = 1  # every scenario runs this many times, interleaved (the whole plan, then again)
    concurrency_sweep: list[int] = Field(default_factory=list)  # --concurrency 4,16,40: each worker's values
    reference: str | None = None  # --reference: what the answer's ratios are against (None: BackgroundTasks)
    # The API's middleware, one set of scenarios each: "none", "base-http" (a do-nothing BaseHTTPMiddleware)
    middleware: list[str] = Field(default_factory=lambda: ["none"])
    api: ApiOptions = Field(default_factory=ApiOptions)  # --api-workers, --graceful-timeout
    # Each implementation's own options by registry name (Celery: pool, prefetch, max_tasks_per_child), only
    # those given; the implementation's `Options` model holds their defaults.
    options: dict[str, PluginOptions] = Field(default_factory=dict)
    # --with PKG==VERSION: releases pinned in every implementation's environment that installs the package
    with_packages: list[str] = Field(default_factory=list)
    # --requirements FILE: the project's own pins, in every environment (taskbench.envs.project_pins)
    requirements_file: str | None = None
    project_pins: list[str] = Field(default_factory=list)
    load: LoadOptions | None = None  # --rate / --target-rate: sustained load instead of bursts
    # --hosts N: the workers in N network namespaces on a bridge (taskbench.hosts.netns); 0: everything on loopback.
    # `topology`: which part on which address, filled in once the stack is up; `link_delay_ms`: --link-delay.
    hosts: int = 0
    topology: dict[str, str] = Field(default_factory=dict)
    link_delay_ms: float | None = None
    # Container limits (taskbench.hosts.cgroups): each worker's and each API server's cgroup
    worker_limits: ContainerLimits = Field(default_factory=ContainerLimits)
    api_limits: ContainerLimits = Field(default_factory=ContainerLimits)

    @model_validator(mode="before")
    @classmethod
    def _migrate_v2(cls, data: Any) -> Any:
        """Schema 2 held the API's options and Celery's in one `worker` object."""
        if isinstance(data, dict) and isinstance(data.get("worker"), dict):
            data = dict(data)
            worker = data.pop("worker")
            data.setdefault("api", {k: v for k, v in worker.items() if k in ApiOptions.model_fields})
            celery = {k: worker[k] for k in CELERY_V2_OPTIONS if k in worker}
            if celery:
                data.setdefault("options", {}).setdefault("celery", celery)
        elif isinstance(data, dict) and "worker" in data:
            data = {k: v for k, v in data.items() if k != "worker"}
        return data

    @property
    def external_servers(self) -> bool:
        """Whether a server was named by a flag (someone else's): the stack's namespace is then its run's, and no
        queue pickles (Stack.namespace, taskbench_service.settings.foreign_servers)."""
        given = (self.redis, self.amqp, self.postgres)
        return self.url is None and any(server not in (None, "embedded") for server in given)

    def options_of(self, label: str) -> PluginOptions:
        """The options given to `label`'s implementation (`celery@5.5.3` takes Celery's, `celery+app` its own)."""
        return labels.options_of(self.options, label)


class ScenarioSpec(BaseModel):
    implementation: str
    workload: str
    jobs: int
    duration_s: float
    memory_mb: int = 0
    fault: str | None = None  # api-crash, worker-crash, redis-restart
    variant: str | None = None  # delivery settings for worker-crash, persistence for redis-restart
    job_index: int | None = None  # a user's job (`workload` is then its path): its number in the stack
    behaves_like: str | None = None  # a user's job: the built-in workload whose capacity model fits it
    repeat: int = 0  # which run of this scenario (0: the first; see RunSettings.repeat)
    concurrency: int | None = None  # the workers' --concurrency when it is swept (RunSettings.concurrency_sweep)
    middleware: str = "none"  # the API's middleware while this scenario ran ("base-http": BaseHTTPMiddleware)
    rate: float | None = None  # sustained load: jobs per second offered, open loop, for `for_s` (`jobs` in all)
    for_s: float | None = None
    arrivals: Literal["uniform", "poisson"] = "uniform"
    # worker-oom: the worker's memory limit (MiB: --worker-memory); None: its idle usage + 256 MiB (the event says)
    memory_limit_mb: int | None = None

    @property
    def model_workload(self) -> str:
        """The workload the capacity model and "how it runs" go by."""
        return self.behaves_like or self.workload

    @property
    def label(self) -> str:
        amount = f"{self.rate:g}/s for {self.for_s:g} s" if self.rate is not None else f"{self.jobs} jobs"
        parts = [self.implementation, self.workload, amount]
        if self.concurrency is not None:
            parts.append(f"concurrency {self.concurrency}")
        if self.fault:
            parts.append(self.fault + (f" ({self.variant})" if self.variant else ""))
        if self.middleware != "none":
            parts.append(self.middleware)
        return " · ".join(parts)

    @property
    def file_stem(self) -> str:
        """The spec's names (`fastapi_10_jobs`) for its own workload; others say which workload or fault."""
        stem = self.implementation + ("" if self.middleware == "none" else f"_{self.middleware}")
        if self.workload != "sleep":
            stem += f"_{self.workload}"
        if self.fault:
            stem += f"_{self.fault}" + (f"_{self.variant}" if self.variant else "")
        stem += f"_{self.rate:g}_per_s" if self.rate is not None else f"_{self.jobs}_jobs"
        stem += f"_c{self.concurrency}" if self.concurrency is not None else ""
        stem += f"_rep{self.repeat + 1}" if self.repeat else ""
        return re.sub(r"[^A-Za-z0-9_.=-]", "_", stem)

    @property
    def group(self) -> ScenarioSpec:
        """The scenario whatever its repeat: the repeats of one group are summarised together."""
        return self.model_copy(update={"repeat": 0})


class Execution(BaseModel):
    """One line of the execution ledger (taskbench_service.ledger), written by the code that ran the job."""

    job_id: str
    implementation: str
    event: Literal["start", "end"]
    ok: bool = True
    error: str | None = None
    pid: int | None = None
    t: float  # on the clock of the host that ran it
    host: str | None = None  # the host that ran it (`taskbench worker --host-label`); None: recorded before hosts
    # when the event reached the stack's telemetry Redis, on the harness's machine's clock
    # (taskbench.measure.telemetry); None: read from the ledger file
    received_at: float | None = None


class HostClock(BaseModel):
    """A host that ran part of a scenario, and how far its clock may be behind the harness's: the least
    (arrival on the harness's clock − the host's own stamp) over its ledger events and sample batches, an upper
    bound (transit only adds); negative: its clock is ahead by at least that much (taskbench.measure.telemetry)."""

    host: str
    local: bool = False  # the harness's own machine (its clock): its host name, or a namespace of --hosts
    roles: list[str] = Field(default_factory=list)  # its sampled roles (`{label}-worker@{host}`)
    batches: int = 0  # sample batches received
    events: int = 0  # ledger events received
    jobs_ended: int = 0  # of them, ends: the executions that host finished
    behind_at_most_s: float | None = None


class DeliveryRecord(BaseModel):
    """The delivery setting a scenario's worker ran with, and what the queue promises under it."""

    name: str
    promise: str = ""
    redelivery_timeout_s: float | None = None  # None where none applies (RabbitMQ requeues on disconnect)
    broker: str = "redis"  # where this implementation's jobs waited


class Submission(BaseModel):
    index: int
    sent_at: float
    latency_s: float | None
    status_code: int | None = None
    job_id: str | None = None
    error: str | None = None  # "timeout" or the exception
    submitted_at: float | None = None  # the API's own stamp, from its 202 answer
    due_at: float | None = None  # sustained load: when the schedule said to send it (latencies count from here)


class StatusPoll(BaseModel):
    """One `GET /{impl}/status/{id}` on a new connection, as a user's client polls: with several API processes
    a BackgroundTasks record lives in one of them, and the others answer 404."""

    job_id: str
    sent_at: float
    status_code: int | None  # None: no answer
    latency_s: float | None = None
    error: str | None = None


class Probe(BaseModel):
    endpoint: Literal["async", "sync"]
    sent_at: float
    latency_s: float | None  # None: no answer (timeout or connection error)
    status_code: int | None = None
    error: str | None = None


class Reading(BaseModel):
    cpu_percent: float  # 100 = one full core
    rss_mb: float
    pss_mb: float | None = None  # the roles the sampler reads PSS for (taskbench.measure.sampler); runs before: none
    connections: int | None = None  # TCP connections it holds to PostgreSQL (the PostgreSQL queues' API and worker)


class SystemReading(BaseModel):
    cpu_percent: float
    memory_percent: float
    memory_used_mb: float


class Sample(BaseModel):
    """One reading of every process by role (`api`, `redis`, `harness`, `{implementation}-worker`)."""

    t: float
    processes: dict[str, Reading]
    system: SystemReading


class EventName(str, Enum):
    """What a scenario's events are named: written by the scenario and the faults, read by the analysis."""

    burst_start = "burst_start"
    burst_end = "burst_end"
    rate_start = "rate_start"  # a sustained-load step's first due time
    rate_end = "rate_end"
    cut_submissions = "cut_submissions"  # the submissions through an api-partition
    status_polls = "status_polls"  # the statuses asked of an API whose records are split over processes
    no_start = "no_start"  # a fault struck before the jobs it should catch had started
    fault = "fault"  # the fault struck
    restart = "restart"  # a part started again (by the fault, or by the orchestrator the harness plays)
    restart_failed = "restart_failed"
    restored = "restored"  # a cut host reachable again
    recovered = "recovered"  # the stack answers again after the fault
    deadline_extended = "deadline_extended"  # jobs still complete at the deadline
    unfinished = "unfinished"  # the burst ended unfinished: how many finished, at what rate
    deadline = "deadline"
    died = "died"  # a part of the implementation died outside a fault
    oom_kills = "oom_kills"
    records_lost = "records_lost"  # the API's records could not be read at the end
    lock_stranded = "lock_stranded"  # a queue's lock outlived the connection that held it (released at the end)
    neighbours_paused = "neighbours_paused"  # the other implementations paused through the scenario: which


class Event(BaseModel):
    t: float
    name: str  # an EventName; a plain string, so that a record with a name this version does not know still reads
    detail: str = ""


class Machine(BaseModel):
    platform: str = "?"
    python: str = "?"
    cpu_count: int | None = None
    memory_gb: float | None = None
    hostname: str = "?"
    job_memory: str = "pss"  # what the job process's memory was read as: pss, uss or rss (pss before it was said)


class EnvironmentFreeze(BaseModel):
    """One implementation's environment: what it was asked to install and what it holds (`uv pip freeze`)."""

    python: str
    requirements: list[str] = Field(default_factory=list)
    constraints: list[str] = Field(default_factory=list)
    packages: dict[str, str] = Field(default_factory=dict)
    built_at: float | None = None
    where: str = ""


class RedisCeilings(BaseModel):
    """What a Redis of the run's binary serves on this host, alone (a throwaway server: taskbench.stack.ceilings),
    in commands a second; `clients` connections at once, `pipeline` commands in flight on each."""

    tool: str  # "redis-benchmark 7.0.15", or "redis-py 5.2.1" where no redis-benchmark is installed
    server: str  # "Redis 7.0.15"
    round_trips_per_s: float  # PING, one connection, one at a time: the latency bound of one client
    commands_per_s: float | None  # PING, `clients` connections: the server's own bound
    pipelined_per_s: float | None  # PING, `clients` connections, `pipeline` at a time
    push_pop_pairs_per_s: float | None  # LPUSH then RPOP of one item, `clients` connections: a queue's least work
    clients: int
    pipeline: int


class PostgresCeilings(BaseModel):
    """How many jobs a second a PostgreSQL queue's dequeue can take on this host's private server: one row a
    transaction (`SELECT … FOR UPDATE SKIP LOCKED` and DELETE), `clients` connections at once (pgbench)."""

    tool: str  # "pgbench (PostgreSQL) 16.4"
    dequeues_per_s: float
    clients: int
    at_least: bool = False  # the table ran empty before the end: the rate is a lower bound


class HostCeilings(BaseModel):
    """This host's ceilings, measured before the first scenario (`run --calibrate`), with every implementation's
    processes paused: each queue's rate is read as a share of what its broker can do here."""

    redis: RedisCeilings | None = None
    postgres: PostgresCeilings | None = None
    not_measured: list[str] = Field(default_factory=list)  # what was not, and why


class RunEnvironment(BaseModel):
    """Where a run ran: the packages that matter (`versions`), each implementation's environment, the machine."""

    versions: dict[str, str] = Field(default_factory=dict)
    environments: dict[str, EnvironmentFreeze] = Field(default_factory=dict)
    machine: Machine = Field(default_factory=Machine)


class Described(BaseModel):
    """An implementation as it ran: recorded with the run, so that a later version's registry cannot change
    what its reports say it did."""

    title: str
    job_process: str
    settings: dict[str, str] = Field(default_factory=dict)  # every setting that changes timing
    how_it_runs: dict[str, str] = Field(default_factory=dict)  # workload → how it runs there
    broker: str = ""  # where its jobs wait: redis, amqp, postgres; "": in the API's process (BackgroundTasks)


class DepthSample(BaseModel):
    """The implementation's job counts at one instant of a sustained-load step (GET /{name}/jobs?limit=0)."""

    t: float
    queued: int
    running: int
    finished: int


class BrokerDepth(BaseModel):
    """The jobs the queue's broker counts as waiting at `t` (its API's `/health` `queued`: what an autoscaler that
    scales on queue length reads), sampled through a burst; jobs a worker took and holds unstarted (prefetched) are
    not in it."""

    t: float
    queued: int


class BrokerBytes(BaseModel):
    """The bytes a queue holds in its broker (taskbench.measure.retention), read after the clear before the burst
    and once the scenario's jobs ended, and what it added between them key by key: what it keeps of them."""

    before: int
    after: int
    grown: int | None = None  # None: recorded before it was read (after − before stands for it)


class CommandCount(BaseModel):
    """Every command the private Redis has served (`INFO commandstats`, all clients) at `t`, or every statement the
    private PostgreSQL has (pg_stat_statements) and the rows they touched: read before the idle baseline, at the
    burst and once its jobs were done (taskbench.analysis.stats.per_job)."""

    t: float
    calls: int
    rows: int | None = None  # PostgreSQL: rows returned or changed


class ScenarioResult(BaseModel):
    schema_version: int = SCHEMA_VERSION
    spec: ScenarioSpec
    settings: RunSettings
    environment: RunEnvironment = Field(default_factory=RunEnvironment)
    capacity: Capacity
    ideal_makespan_s: float
    started_at: float
    ended_at: float
    deadline_s: float
    timed_out: bool
    interrupted: bool = False
    submissions: list[Submission]
    jobs: list[JobRecord]  # job records as the API returned them
    executions: list[Execution] = Field(default_factory=list)  # the ledger's lines
    probes: list[Probe]
    samples: list[Sample]
    events: list[Event] = Field(default_factory=list)
    harness: Reading | None = None  # the harness's own CPU (over the scenario) and memory
    delivery: DeliveryRecord | None = None  # when taskbench set the worker's delivery settings
    status_polls: list[StatusPoll] = Field(default_factory=list)  # each job's status once, after the burst
    depth: list[DepthSample] = Field(default_factory=list)  # sustained load: queued and running over time
    broker_depth: list[BrokerDepth] = Field(default_factory=list)  # a queue's broker count over time (no fault)
    described: Described | None = None  # its implementation as it ran (at this scenario's concurrency)
    # "api": GET /{impl}/jobs; "ledger": rebuilt from the ledger and the 202 answers, because several API
    # processes each keep their own BackgroundTasks records and no single answer holds them all
    records_from: Literal["api", "ledger"] = "api"
    # the hosts that ran its jobs or sent samples (workers joined with `taskbench worker --join`), with their clocks
    hosts: list[HostClock] = Field(default_factory=list)
    broker_bytes: BrokerBytes | None = None  # what its queue kept in the broker, before the burst and once it ended
    # Redis's command count thrice (a Redis queue on taskbench's own Redis, its neighbours paused); else empty
    redis_commands: list[CommandCount] = Field(default_factory=list)
    # pg_stat_statements' totals thrice (a PostgreSQL queue on taskbench's own server, its neighbours paused)
    postgres_statements: list[CommandCount] = Field(default_factory=list)

    @property
    def run_label(self) -> str:
        """The scenario's label, and which of its runs this is when it ran more than once."""
        runs = self.settings.repeat
        return self.spec.label + (f" · run {self.spec.repeat + 1} of {runs}" if runs > 1 else "")


class Unavailable(BaseModel):
    """An implementation the run could not measure, and why: a finding, while the run went on with the others."""

    implementation: str  # its label
    part: str  # what failed: "the streaQ API server", "the taskiq worker", "setting up procrastinate"
    reason: str  # the error's first line
    log_tail: str = ""  # the last lines of that part's log, secrets removed
    when: str = "at start"  # "at start", or "before <scenario label>"


# What a run's JSON may name as a file of its folder: a plain name, never a path (a crafted `../x` would write outside).
SAFE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.@+=,-]{0,200}$")


def safe_name(value: str) -> str:
    if not SAFE_NAME.match(value) or ".." in value:
        raise ValueError(f"{value[:80]!r} is not a plain file name")
    return value


class RunResult(BaseModel):
    schema_version: int = SCHEMA_VERSION
    taskbench: str | None = None  # the version that measured the run (None: recorded before it was kept)
    git_revision: str | None = None  # its commit, when it ran from a checkout
    command: str | None = None  # the command line that made the run, URLs redacted
    described: dict[str, Described] = Field(default_factory=dict)  # each implementation as it ran, by label
    timestamp: str
    settings: RunSettings
    environment: RunEnvironment
    scenario_files: list[str]
    interrupted: bool = False
    stopped_by: int | None = None  # the signal that cut the run short: 2 (Ctrl-C) or 15 (SIGTERM)
    unavailable: list[Unavailable] = Field(default_factory=list)  # implementations that could not run
    ceilings: HostCeilings | None = None  # `--calibrate`: this host's, measured before the first scenario

    @field_validator("timestamp")
    @classmethod
    def _timestamp_names_no_path(cls, value: str) -> str:
        return safe_name(value)  # every report's file name holds it

    @field_validator("scenario_files")
    @classmethod
    def _files_in_the_folder(cls, value: list[str]) -> list[str]:
        return [safe_name(name) for name in value]


def _check_version(data: dict[str, Any], path: Path) -> None:
    version = data.get("schema_version")
    if version not in SUPPORTED_SCHEMA_VERSIONS:
        known = ", ".join(map(str, sorted(SUPPORTED_SCHEMA_VERSIONS)))
        raise SchemaError(f"{path}: schema_version {version!r} is not one this taskbench reads ({known})")


V1_ROLES = {"worker": "celery-worker"}  # schema 1 had one worker, Celery's


def migrate_v1_scenario(data: dict[str, Any]) -> dict[str, Any]:
    """Schema 1 → 2: the stored summary goes (it is recomputed), the ideal makespan is stored, Celery's
    delivery flags become a named variant, the worker's role is named after its implementation."""
    data = {k: v for k, v in data.items() if k != "summary"}
    spec, capacity = data["spec"], data["capacity"]
    concurrency = max(int(capacity["concurrency"]), 1)
    data["ideal_makespan_s"] = ideal_makespan_s(int(spec["jobs"]), concurrency, float(spec["duration_s"]))
    old = data.get("delivery") or {}
    data["delivery"] = (
        {"name": old.get("name", "default"), "redelivery_timeout_s": old.get("visibility_timeout_s")} if old else None
    )
    for sample in data.get("samples", []):
        sample["processes"] = {V1_ROLES.get(role, role): reading for role, reading in sample["processes"].items()}
    data["harness"] = data.get("harness") or None
    data["schema_version"] = SCHEMA_VERSION
    return data


def load_scenario(path: Path) -> ScenarioResult:
    data = json.loads(path.read_text())
    _check_version(data, path)
    if data["schema_version"] == 1:
        data = migrate_v1_scenario(data)
    return ScenarioResult.model_validate(data)


def load_run(path: Path) -> RunResult:
    data = json.loads(path.read_text())
    _check_version(data, path)
    data["schema_version"] = SCHEMA_VERSION  # version 1 differs only in what it stored of the analysis
    return RunResult.model_validate({k: v for k, v in data.items() if k in RunResult.model_fields})
