"""The analysis as types: what `taskbench.analysis.analyse` computes from raw results and every report reads.

One model per figure group, so a renderer reads `summary.submission.p99`, never `summary["submission"]["p99"]`;
the comparison file (`comparison_{timestamp}.json`) is an `AnalysedRun` dumped as JSON.
"""

from __future__ import annotations

from enum import Enum
from typing import Literal

from pydantic import BaseModel, Field

from taskbench.capacity import Capacity
from taskbench.record.results import DeliveryRecord, HostClock, Reading, RunResult

Endpoint = Literal["async", "sync"]
ENDPOINTS: tuple[Endpoint, ...] = ("async", "sync")


class Distribution(BaseModel):
    """Count, mean and percentiles of the values present (missing ones are left out)."""

    count: int = 0
    avg: float | None = None
    p50: float | None = None
    p95: float | None = None
    p99: float | None = None
    max: float | None = None


class ProbeSummary(Distribution):
    """Latency of one health endpoint's probes, and how many went unanswered."""

    sent: int = 0
    answered: int = 0
    timeouts: int = 0
    errors: int = 0  # unanswered for another reason than a timeout
    server_errors: int = 0  # answered with a 5xx
    longest_silence_s: float = 0.0
    rate_achieved: float = 0.0  # 1.0 = every scheduled probe was sent

    @property
    def unanswered(self) -> int:
        return self.timeouts + self.errors


class SubmissionSummary(Distribution):
    """Time to accept each job (the distribution), and what was not accepted."""

    attempted: int = 0
    accepted: int = 0
    timeouts: int = 0
    errors: int = 0


class Completion(BaseModel):
    """What the job records said at the end."""

    completed: int
    failed: int
    pending: int  # still queued or running at the deadline
    missing_records: int  # accepted, but no record came back
    timed_out: bool
    # When the deadline struck (it moves on while jobs still complete): how far they got, and how fast they were
    # completing at the end ("900 of 1000 jobs finished, completing at 47.0/s at the end")
    unfinished: str | None = None


class CutSubmissions(BaseModel):
    """api-partition: what a client met while the API was cut off from its servers."""

    sent: int
    accepted: int  # 202: a job the API took while it could not reach its servers
    refused: int  # answered with an error status (a 503 naming the broker)
    no_answer: int  # no answer within the client's timeout, or the connection failed
    answered_max_s: float | None  # the slowest answer, accepted or refused
    # jobs that ran though no client was given their id: sent before a refusal or a timeout reached the client
    # (the broker got the message once the cut was over), so a client that retries runs them twice
    ran_unaccepted: int = 0

    @property
    def text(self) -> str:
        parts = [f"{self.accepted} accepted"] if self.accepted else []
        if self.refused:
            slowest = f" in ≤ {self.answered_max_s:.2f} s" if self.answered_max_s is not None else ""
            parts.append(f"{self.refused} refused{slowest}")
        parts += [f"{self.no_answer} no answer"] if self.no_answer else []
        parts += [f"{self.ran_unaccepted} ran though not accepted"] if self.ran_unaccepted else []
        return f"{self.sent}: " + ", ".join(parts) if parts else "none sent"


class Executions(BaseModel):
    """Per accepted job: completed once, more than once, or never, from the ledger (else the records)."""

    source: Literal["ledger", "records"]
    accepted: int
    completed_once: int
    duplicated: int
    lost: int
    recovered: int  # started again after the fault and completed: redelivered
    cut_off: int = 0  # lost, of which started and never ended (the process went mid-job)
    never_started: int = 0  # lost, of which accepted and never started
    lost_ids: list[str] = Field(default_factory=list)
    duplicated_ids: list[str] = Field(default_factory=list)
    recovered_ids: list[str] = Field(default_factory=list)
    completed_after_fault: int = 0
    attempts_max: int = 0
    redelivery_delay_s: float | None = None  # from the fault to the first job started again
    # network-partition: from the link's return (the `restored` event) to the first job started after it;
    # api-partition: from the route's removal to the first submission the API accepted
    resumed_after_s: float | None = None
    cut: CutSubmissions | None = None  # api-partition: the submissions sent while the API was cut off


class HistoryCheck(BaseModel):
    """Jepsen's queue checker (`total-queue`) over the scenario's history (`{stem}.history.jsonl`), per job id:
    `taskbench.analysis.history` defines each category. Every acknowledged id is exactly one of once, duplicated
    or lost; an execution is a delivery to a runner (the ledger's start), finished or not."""

    attempted: int  # enqueue invocations: submissions sent
    acknowledged: int  # ok: answered 2xx with the job's id
    refused: int = 0  # fail: a definite refusal (a 4xx, a 503 that says why)
    indeterminate: int = 0  # info: no answer, a timeout, a reset, another 5xx
    dequeued: int = 0  # distinct ids some runner started
    executions: int = 0  # every start (and every end without its start)
    once: int = 0  # acknowledged, dequeued once (finished or not)
    lost: int = 0  # acknowledged, never dequeued
    recovered: int = 0  # dequeued, not acknowledged but attempted (a refused or unanswered submission)
    refused_yet_ran: int = 0  # of the recovered, those only a definite refusal accounts for
    unexpected: int = 0  # dequeued, never enqueued by this scenario
    duplicated: int = 0  # attempted, dequeued more times than attempted
    concurrent: int = 0  # of the duplicated: two executions overlapping in time
    sequential: int = 0  # of the duplicated: redelivered after the first ended or died
    unfinished: int = 0  # acknowledged, dequeued, no execution ended (cut off: its process died mid-job)
    finished_without_start: int = 0  # executions known only by their end
    exactly_once: float | None = None  # acknowledged ids executed exactly once (that execution ended) ÷ acknowledged
    in_flight_at_fault: int | None = None  # ids started and not ended at the fault's time (None: no fault)
    valid: bool = True  # Jepsen's total-queue verdict: nothing lost, nothing unexpected
    lost_ids: list[str] = Field(default_factory=list)
    recovered_ids: list[str] = Field(default_factory=list)
    unexpected_ids: list[str] = Field(default_factory=list)
    duplicated_ids: list[str] = Field(default_factory=list)
    concurrent_ids: list[str] = Field(default_factory=list)
    unfinished_ids: list[str] = Field(default_factory=list)


class FifoSummary(BaseModel):
    """How first-in-first-out the jobs ran: start order against the service's acceptance order."""

    started: int  # jobs that started at all
    max_overtaken: int  # the most later-accepted jobs that started before one earlier job
    overtaken_jobs: int  # jobs that at least one later-accepted job started before
    kendall_tau: float | None  # rank correlation of the two orders: 1 = strictly first in, first out


class StatusPollSummary(BaseModel):
    """Each job's status asked once on a new connection: with several API processes, how often the answer came
    from a process that does not hold the record (404), as a user's client sees it."""

    sent: int
    answered: int
    not_found: int  # 404: the record is in another process' memory
    other: int  # any other status or no answer

    @property
    def not_found_share(self) -> float | None:
        return self.not_found / self.answered if self.answered else None


class ProcessResources(BaseModel):
    """CPU (100 = one core), RSS and, for the process that ran the jobs, PSS of one sampled process (with its
    children)."""

    samples: int
    cpu_peak: float
    cpu_avg: float
    rss_peak_mb: float
    rss_avg_mb: float
    pss_peak_mb: float | None = None
    pss_avg_mb: float | None = None
    connections_peak: int | None = None  # to PostgreSQL, where it was read (the PostgreSQL queues)
    cpu_s: float | None = None  # CPU-seconds over the scenario (each reading × its interval); None: before it was
    rss_first_mb: float | None = None  # its first reading (before the burst) and its last (its jobs done): what
    rss_last_mb: float | None = None  # the burst left in it; None in runs analysed before

    @property
    def memory_peak_mb(self) -> float:
        """PSS where it was read (a forked pool's shared pages once), else RSS (runs saved before it was)."""
        return self.pss_peak_mb if self.pss_peak_mb is not None else self.rss_peak_mb


class SystemResources(BaseModel):
    """The whole machine: CPU as % of all cores, memory as % of RAM."""

    samples: int
    cpu_peak: float
    cpu_avg: float
    memory_peak_percent: float
    memory_avg_percent: float
    memory_used_peak_mb: float


Status = Literal["held", "borderline", "failed", "interrupted"]  # interrupted: cut by Ctrl-C or SIGTERM


HARNESS_SHARE_LIMIT_PERCENT = 10.0  # of the whole machine: above it the harness competes with what it measures


class CpuShares(BaseModel):
    """The harness's and the service's average CPU over one scenario, each as % of the whole machine (100 = every
    core busy), from the same samples: a load generator that takes a large share of a small machine takes it
    from the service it measures, so a harness above `harness_limit_percent` is flagged."""

    cores: int
    harness_percent: float
    service_percent: float  # the API, this implementation's worker (with its children) and Redis
    service_roles: list[str]
    harness_limit_percent: float = HARNESS_SHARE_LIMIT_PERCENT
    harness_over_limit: bool


class Rule(str, Enum):
    """The failure rules' names (`taskbench.analysis.failures`): a recorded `Failure.rule` is one of these values
    (kept a plain string in the record, so a run rendered by a later version still reads)."""

    unresponsive_async = "server unresponsive (async endpoint)"
    unresponsive_sync = "server unresponsive (sync endpoint)"
    submission_timeouts = "submission timeouts"
    resource_exhaustion = "resource exhaustion"
    jobs_not_completed = "jobs not completed"
    jobs_failed = "jobs failed"
    process_died = "a process died"
    jobs_duplicated = "jobs duplicated"
    rate_not_sustained = "rate not sustained"
    makespan_over_ideal = "makespan far over ideal"

    @classmethod
    def unresponsive(cls, endpoint: str) -> Rule:
        return cls(f"server unresponsive ({endpoint} endpoint)")


class Failure(BaseModel):
    """A failure rule that fired (or, in `ScenarioSummary.borderline`, nearly did), with its figures."""

    rule: str
    evidence: str
    figure: float | None = None  # the measured figure the rule compares, where it has one …
    limit: float | None = None  # … and its limit
    figure_name: str = ""  # what the figure is ("probe p99"), and its unit
    unit: str = ""
    runs: str = ""  # with repeats: "in 2 of 3 runs"


class Spread(BaseModel):
    """One figure over the repeats of a scenario: the summary shows the median."""

    min: float
    max: float


class Latency(BaseModel):
    """Percentiles of one latency over a sustained-load step, counted from each job's due time (HDR histogram,
    3 significant digits), in seconds."""

    count: int = 0
    mean: float | None = None
    p50: float | None = None
    p90: float | None = None
    p99: float | None = None
    p999: float | None = None
    max: float | None = None


RateVerdict = Literal["sustained", "saturated", "inconclusive"]


class RateStep(BaseModel):
    """One step of sustained load: what was offered, what the harness managed to send, what the service kept
    up with, and whether it sustained the rate (taskbench.analysis.rates says how that is decided)."""

    offered_per_s: float
    for_s: float
    arrivals: str
    due: int  # submissions the schedule had
    sent: int
    accepted: int
    send_rate_per_s: float | None  # achieved: sent over the span from the first send to the last
    schedule_lag_p99_s: float | None  # how late the harness sent (its own delay, not the service's)
    schedule_lag_max_s: float | None
    steady_from_s: float  # the steady part of the step, seconds from its start (the warm-up before it is left out)
    steady_to_s: float
    throughput_per_s: float | None  # completions in the steady part ÷ its length
    expected_per_s: float | None  # arrivals the steady part should have completed (shifted by a job's duration)
    depth_slope_per_s: float | None  # queued + running, least-squares trend over the steady part (jobs/s)
    depth_max: int = 0
    mean_running: float | None = None  # running jobs, averaged over the steady part (Little's law's L, measured)
    submission: Latency  # due → the API's answer
    queue: Latency  # due → a runner started the job
    queue_p95_s: float | None = None  # of the jobs due in the steady part: what the rule compares to its limit
    execution: Latency  # started → finished (not from due: the job itself)
    total: Latency  # due → finished
    latency_drift_s_per_min: float | None = None  # total latency's trend over the step (a soak's drift)
    # CPU per accepted job (ms), the sampler's readings integrated over the step: what the API spent on each
    # submission beside what the worker spent running it (the queue's side)
    api_cpu_ms_per_job: float | None = None
    worker_cpu_ms_per_job: float | None = None
    memory_trend_mb_per_h: dict[str, float] = Field(default_factory=dict)  # by role, least squares over the step
    queue_p95_limit_s: float
    throughput_margin: float
    verdict: RateVerdict
    reasons: list[str] = Field(default_factory=list)  # why not sustained, or why inconclusive


class BrokerKept(BaseModel):
    """What the queue keeps in its broker of a scenario's jobs once they are done (results, job hashes, streams):
    the bytes its namespace held after them less those before the burst, and that per 1 000 completed jobs."""

    kept_bytes: int
    kept_per_1000_bytes: float | None  # None when no job completed


class DepthSeen(BaseModel):
    """What an autoscaler that scales on the broker's queue length saw of the jobs really waiting (accepted, not
    started) through a burst: jobs a worker took and holds unstarted (prefetched) are waiting, yet not in it."""

    samples: int
    peak_waiting: int  # the most jobs waiting at one sample
    peak_unseen: int  # the most waiting jobs the broker did not count at one sample: held by workers, unstarted
    median_unseen: float | None = (
        None  # … the median over the samples with jobs waiting (a dequeue in flight is one, briefly)
    )
    seen_share: float | None  # over the samples with jobs waiting: the broker's count ÷ jobs really waiting
    # Drift (Celery's "reserved grows to hundreds after days"): the median not counted over the first and over the
    # last quarter of the samples with jobs waiting; None below DRIFT_SAMPLES of them
    first_unseen: float | None = None
    last_unseen: float | None = None


class HeldBehind(BaseModel):
    """An `uneven` burst: its long job, and the short jobs that waited for it to end although a balanced schedule
    runs them all beside it (taskbench.analysis.hoarding)."""

    long_s: float  # what the long job asked to last
    short_jobs: int
    held: int  # short jobs that started only once the long job had ended
    held_by_its_process: int  # of those, started by the process that ran the long job: its prefetch held them
    ideal_s: float  # the balanced schedule's makespan (the long job, with two slots or more)
    cost_s: float | None  # the makespan beyond it; None when the burst did not complete


class ScenarioSummary(BaseModel):
    """Every figure of one scenario, its failures and the facts a report states about it."""

    label: str
    implementation: str
    workload: str
    jobs: int
    duration_s: float
    memory_mb: int = 0
    fault: str | None = None
    variant: str | None = None
    concurrency: int | None = None  # the workers' --concurrency when the run swept it
    middleware: str = "none"  # the API's middleware during the scenario ("base-http": BaseHTTPMiddleware)
    interrupted: bool = False
    died: list[str] = Field(default_factory=list)  # processes of the implementation that died outside a fault
    how_it_runs: str = ""  # how this workload runs in this implementation ("" when not in the registry)
    settings: dict[str, str] = Field(default_factory=dict)  # the implementation's timing-relevant settings
    submission: SubmissionSummary
    probes: dict[Endpoint, ProbeSummary]
    completion: Completion
    queue_time: Distribution
    execution_time: Distribution
    total_time: Distribution
    client_total_time: Distribution  # from the client's send, which a blocked event loop can hold
    makespan_s: float | None
    throughput_jobs_per_s: float | None = None  # completed ÷ (last finish − first send): end to end
    submission_rate_per_s: float | None = None  # accepted ÷ (last answer − first send): what the API took in
    submission_span_s: float | None = None  # first send → last accepted answer
    model_makespan_s: float | None = None  # the capacity model's ceil(N / concurrency) × duration
    ideal_makespan_s: float  # max(the model's, submission span + one job)
    makespan_ratio: float | None
    capacity: Capacity
    max_running: int
    fifo: FifoSummary | None = None
    resources: dict[str, ProcessResources]  # by sampled role: api, redis, harness, {implementation}-worker
    system: SystemResources | None = None
    cpu_shares: CpuShares | None = None  # None: no samples, or the machine's core count was not recorded
    job_process: str  # the role whose CPU and memory are "the process that ran the jobs"
    worker_role: str | None = None  # the implementation's worker, when one was sampled
    peak_cpu_percent: float | None
    peak_memory_mb: float | None  # PSS of the job process where read (see ProcessResources.memory_peak_mb)
    executions: Executions
    history: HistoryCheck | None = None  # Jepsen's categories from the scenario's history (None: analysed before)
    fault_at: float | None = None
    delivery: DeliveryRecord | None = None
    harness: Reading | None = None
    api_processes: int = 1  # uvicorn worker processes (--api-workers)
    max_running_by_pid: dict[int, int] = Field(default_factory=dict)  # several API processes: most at once, by pid
    status_polls: StatusPollSummary | None = None  # when several API processes each held their own records
    rate: RateStep | None = None  # a sustained-load step (--rate): its figures and whether it was sustained
    records_from: str = "api"  # "ledger": rebuilt from the ledger, no single API process holding them all
    hosts: list[HostClock] = Field(default_factory=list)  # the hosts that ran its jobs or sent samples, their clocks
    broker: BrokerKept | None = None  # what its queue keeps in the broker once its jobs are done (not on RabbitMQ)
    job_processes: int | None = None  # distinct processes (the ledger's pids) that ran its jobs: recycling, forks
    depth_seen: DepthSeen | None = None  # a burst of a queue: what its broker's count said of the jobs waiting
    held_behind: HeldBehind | None = None  # an `uneven` burst: the short jobs its long job held up
    neighbours_paused: bool = False  # the other implementations paused through it: its broker served it alone
    redis_commands_per_job: float | None = None  # on taskbench's own Redis, neighbours paused (stats.per_job)
    postgres_statements_per_job: float | None = None  # on taskbench's own PostgreSQL, likewise (pg_stat_statements)
    postgres_rows_per_job: float | None = None  # the rows those statements returned or changed
    responsive: bool | None  # None: no probe was sent
    failures: list[Failure] = Field(default_factory=list)  # rules that fired in every run, clear of the margin
    # With repeats, every number above is the median over the runs (lists and ids: from the median run).
    repeats: int = 1
    spread: dict[str, Spread] = Field(default_factory=dict)  # dotted path of a figure → min–max over the runs
    borderline: list[Failure] = Field(default_factory=list)  # fired in some runs only, or near the limit
    status: Status = "held"

    @property
    def workload_key(self) -> str:
        """The workload, and the middleware when there was one: the verdict judges each such group apart."""
        return self.workload + ("" if self.middleware == "none" else f" [{self.middleware}]")

    @property
    def fault_label(self) -> str:
        """The fault, its variant and the middleware, as the reports name it."""
        label = (self.fault or "") + (f" ({self.variant})" if self.variant else "")
        return label + ("" if self.middleware == "none" else f" [{self.middleware}]")


class ImplementationOutcome(BaseModel):
    """One implementation on one workload: the smallest job count at which it failed, and how."""

    implementation: str
    title: str
    tested_jobs: list[int]  # empty: not run (or only cut short) on this workload
    fails_at: int | None = None
    failures: list[Failure] = Field(default_factory=list)  # at `fails_at`
    borderline_at: list[int] = Field(default_factory=list)  # job counts (below `fails_at`) judged borderline
    borderline: list[Failure] = Field(default_factory=list)  # at the first of those


class JobCountOutcome(BaseModel):
    """One job count of one workload: who held, who failed, and the cheapest of those that held."""

    jobs: int
    held: list[str]
    failed: dict[str, list[Failure]]
    borderline: dict[str, list[Failure]] = Field(default_factory=dict)
    cheapest_memory: str | None = None  # peak memory of the process that ran the jobs
    cheapest_memory_mb: float | None = None
    cheapest_cpu: str | None = None  # peak CPU of that process
    cheapest_cpu_percent: float | None = None


class WorkloadVerdict(BaseModel):
    workload: str
    tested_jobs: list[int]
    implementations: list[ImplementationOutcome]
    by_jobs: list[JobCountOutcome]
    sentence: str  # where the baseline fails and what every other implementation did
    held_line: str  # who held at each job count, and the cheapest of them


class FaultRow(BaseModel):
    """One implementation under one fault (and variant): what happened to its accepted jobs."""

    fault: str
    variant: str | None
    implementation: str
    workload: str
    middleware: str = "none"
    jobs: int
    lost: int
    duplicated: int
    recovered: int
    lost_ids: list[str]
    duplicated_ids: list[str]
    delivery: str | None  # the delivery setting the worker ran with
    promise: str  # what the queue promises under it
    broker: str = "redis"  # where its jobs waited (amqp: RabbitMQ, --broker amqp)
    resumed_after_s: float | None = None  # a partition: from the restore to the next job started (accepted: API)
    during_cut: str | None = None  # api-partition: what the submissions sent during the cut met


class TradeOffRow(BaseModel):
    """One implementation at one workload and job count: what it cost, and what matching the fastest would."""

    implementation: str
    title: str
    status: Status
    makespan_s: float | None
    total_p95_s: float | None
    peak_memory_mb: float | None
    peak_cpu_percent: float | None
    concurrency: int  # jobs at once, from the capacity model
    cores_bound: bool = False
    cpu_cores: int | None = None  # CPU-bound: the machine's cores cap what more concurrency can do
    slower: float | None = None  # makespan ÷ the fastest's
    needs_concurrency: int | None = None  # to drain as fast as the fastest (held and slower only)
    needs_memory_mb: float | None = None  # at that concurrency: extrapolated, or the same process's


class TradeOff(BaseModel):
    workload: str
    jobs: int
    fastest: str
    rows: list[TradeOffRow]
    sentence: str


class DecisionCell(BaseModel):
    implementation: str
    status: Status
    text: str  # after the status: "from 50 jobs: …" with the deciding figure
    memory_mb: float | None = None
    cheapest: bool = False  # the least memory of those that held throughout


class DecisionRow(BaseModel):
    workload: str
    cells: list[DecisionCell]


class SweepPoint(BaseModel):
    concurrency: int
    makespan_s: float | None
    peak_memory_mb: float | None
    responsive: bool | None
    status: Status


class SweepResult(BaseModel):
    """One worker-based implementation over the swept concurrency values, at one workload and job count."""

    workload: str
    jobs: int
    implementation: str
    points: list[SweepPoint]
    baseline_makespan_s: float | None  # BackgroundTasks' at the same workload and job count
    smallest: int | None  # the smallest concurrency that drained as fast (× 1.2) and stayed responsive


class RateLimit(BaseModel):
    """Sustained load, one implementation and workload (and concurrency): the highest rate it sustained and the
    lowest it did not, which bracket its saturation point."""

    implementation: str
    workload: str
    concurrency: int | None = None
    sustained_per_s: float | None  # the highest sustained rate (None: none was)
    saturated_per_s: float | None  # the lowest saturated rate above it (None: none was)
    inconclusive_per_s: list[float] = Field(default_factory=list)  # rates the harness could not offer
    margin: float | None = None  # (saturated − sustained) ÷ sustained: how tight the bracket is
    capacity_per_s: float | None = None  # the capacity model's ceiling: jobs at once ÷ job duration
    memory_mb: float | None = None  # the job process's peak at the highest sustained rate


class CapacityPlan(BaseModel):
    """--target-rate: the smallest concurrency that sustained the target rate, and Little's law as a check."""

    implementation: str
    workload: str
    target_per_s: float
    sustained: bool  # some step sustained the target rate
    concurrency: int | None  # None: none tried sustained it (or BackgroundTasks, which has no worker)
    tried: dict[int, str] = Field(default_factory=dict)  # concurrency → verdict
    memory_mb: float | None = None  # the job process's peak at that concurrency
    littles_running: float | None = None  # L = rate × mean execution time: jobs running at once, predicted
    measured_running: float | None = None  # the same, measured (depth samples over the steady part)
    queue_p95_s: float | None = None  # from the due time, at that concurrency
    sentence: str


class Ratio(BaseModel):
    """One figure of an implementation ÷ the reference's, with its range over repeats (the smallest ÷ the
    reference's largest … the largest ÷ its smallest), as hyperfine states "1.50 ± 0.03 times faster than"."""

    value: float
    low: float | None = None  # None: one run each
    high: float | None = None


class AnswerCell(BaseModel):
    """One implementation on one workload, at the largest job count it shares with the reference."""

    implementation: str
    title: str
    status: Status  # over the whole workload: failed from some count, borderline, or held at every count
    fails_at: int | None = None
    deciding: str = ""  # the rule that failed it, or made it borderline
    makespan_s: float | None = None
    total_p95_s: float | None = None
    peak_memory_mb: float | None = None
    cpu_s_per_1000: float | None = None  # CPU-seconds of its API and worker processes per 1 000 jobs
    concurrency: int = 0
    drain: Ratio | None = None  # each ÷ the reference's (None for the reference itself, or not measured)
    p95: Ratio | None = None
    memory: Ratio | None = None
    cpu: Ratio | None = None
    workers_to_match: int | None = None  # jobs at once it needs to drain as fast as the reference (held, slower)
    cheapest: bool = False  # the least CPU per job among two or more that held at every count


class WorkloadAnswer(BaseModel):
    """One workload's answer at a glance: every implementation against the reference."""

    workload: str
    jobs: int  # the job count the ratios compare
    reference: str
    cells: list[AnswerCell]  # the reference first
    sentence: str


class Verdict(BaseModel):
    """The computed answer; `lines` is what every report and the CLI print, headline first."""

    baseline: str
    workloads: list[WorkloadVerdict]
    faults: list[FaultRow]
    headline: list[str]
    lines: list[str]
    tradeoffs: list[TradeOff] = Field(default_factory=list)
    decisions: list[DecisionRow] = Field(default_factory=list)
    sweeps: list[SweepResult] = Field(default_factory=list)
    rate_limits: list[RateLimit] = Field(default_factory=list)  # sustained load (--rate)
    capacity_plans: list[CapacityPlan] = Field(default_factory=list)  # --target-rate
    reference: str = ""  # what the answer's ratios are against (--reference; "" in runs analysed before it was)
    answers: list[WorkloadAnswer] = Field(default_factory=list)  # per workload, against the reference


class ImplementationInfo(BaseModel):
    """How an implementation of the run works: its settings and how each workload of the run runs there."""

    name: str
    title: str
    job_process: str
    settings: dict[str, str] = Field(default_factory=dict)
    how_it_runs: dict[str, str] = Field(default_factory=dict)  # workload → how
    broker: str = ""  # where its jobs wait (Described.broker)
    in_registry: bool = True
    recorded: bool = True  # False: the run did not record it; described by the taskbench that rendered the report


class AnalysedRun(RunResult):
    """A run with its analysis: what `comparison_{timestamp}.json` holds and every report renders."""

    implementations: list[ImplementationInfo]
    summaries: list[ScenarioSummary]  # one per scenario, its repeats merged
    scenario_summaries: list[ScenarioSummary] = Field(default_factory=list)  # one per run of a scenario (file)
    verdict: Verdict
    # the revision whose rules judged its figures again (`taskbench report PAGE.json --page`); "": as recorded
    rejudged_by: str = ""

    def title(self, name: str) -> str:
        return next((i.title for i in self.implementations if i.name == name), name)

    def info(self, name: str) -> ImplementationInfo | None:
        """How `name` ran in this run (its settings, its broker); None for one the run does not describe."""
        return next((i for i in self.implementations if i.name == name), None)
