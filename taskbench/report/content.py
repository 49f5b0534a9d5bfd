"""What the reports say, as data: blocks (headings, paragraphs, bullets, tables, figures) built from the
typed analysis. `markdown` and `html` each render the same blocks, so both show the same columns and words.

Text may use two bits of Markdown, `code` and **bold**; the HTML renderer escapes it and keeps those two.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from taskbench import implementations
from taskbench.analysis import tradeoff
from taskbench.analysis.models import AnalysedRun, Failure, ImplementationInfo, ProcessResources, ScenarioSummary
from taskbench.analysis.verdict import BASELINE
from taskbench.record.results import HostCeilings, RunResult, RunSettings, ScenarioResult
from taskbench.report import at_a_glance, held_behind
from taskbench.report.blocks import (
    Block,
    Bullet,
    Bullets,
    Cell,
    ChartRef,
    Figures,
    Heading,
    Paragraph,
    Table,
    bullets,
)
from taskbench.report.fmt import mb, ms, one_decimal, percent, ratio, seconds, size, yes_no
from taskbench_wire.enums import PARTITION_FAULTS

SPEC_WORKLOAD = "sleep"  # the spec's own job: its rows and files carry no workload name

CLOCK_SKEW_WARN_S = 0.05  # a host whose clock bound is past this is named in the report


BROKER_NAMES = {"redis": "Redis", "amqp": "RabbitMQ", "postgres": "PostgreSQL"}


def fault_name(fault: str, variant: str | None) -> str:
    return fault + (f" ({variant})" if variant else "")


def run_title(run: AnalysedRun) -> str:
    """ "BackgroundTasks vs Celery vs arq": the implementations the run compared."""
    return " vs ".join(i.title for i in run.implementations) or "taskbench"


# --- tables --------------------------------------------------------------------------------------------------


def spread(summary: ScenarioSummary, path: str, value: float | None, render: Callable[[float | None], str]) -> str:
    """A figure, and with repeats its range over the runs: `0.51s (0.49s–0.60s)`."""
    over = summary.spread.get(path)
    return render(value) + ("" if over is None else f" ({render(over.min)}–{render(over.max)})")


def responsive_cell(summary: ScenarioSummary) -> str:
    """The spec's ✓ / ✗, or "borderline" where a responsiveness rule fired in some runs or came near."""
    if any(f.rule.startswith("server unresponsive") for f in summary.borderline):
        return "≈ borderline"
    return "✓" if summary.responsive else "✗"


def spec_table(summaries: Sequence[ScenarioSummary]) -> Table:
    """The spec's table, same columns (with repeats, medians and their range), and each cell's status."""
    headers = [
        "Jobs", "Implementation", "Completed", "Failed", "Avg Submission Time",
        "Avg Total Time", "Peak CPU", "Peak Memory", "Server Responsive", "Status",
    ]  # fmt: skip
    rows: list[list[Cell]] = [
        [
            str(s.jobs),
            s.implementation.upper()
            + ("" if s.workload == SPEC_WORKLOAD else f" ({s.workload})")
            + ("" if s.concurrency is None else f" at concurrency {s.concurrency}")
            + ("" if s.middleware == "none" else f" [{s.middleware}]"),
            f"{s.completion.completed}/{s.jobs}",
            str(s.completion.failed),
            spread(s, "submission.avg", s.submission.avg, seconds),
            spread(s, "total_time.avg", s.total_time.avg, lambda v: seconds(v, 1)),
            spread(s, "peak_cpu_percent", s.peak_cpu_percent, percent),
            spread(s, "peak_memory_mb", s.peak_memory_mb, mb),
            responsive_cell(s),
            s.status,
        ]
        for s in summaries
        if not s.fault
    ]
    return Table(headers, rows)


DECISION_MEANING = (
    "Each workload run, each implementation: held, borderline or failed, with the deciding figure; ★ marks the "
    "cheapest of two or more that held at every count (the least CPU per job, or memory where CPU was not "
    "measured). Computed from the run, as is the verdict below."
)


def decision_table(run: AnalysedRun) -> Table:
    """Workloads × implementations: held / borderline / failed with the deciding figure, the cheapest of
    those that held marked; every word computed from the run."""
    names = [i.name for i in run.implementations]
    rows: list[list[Cell]] = []
    for row in run.verdict.decisions:
        cells = {c.implementation: c for c in row.cells}
        row_cells: list[Cell] = [f"`{row.workload}`"]
        for name in names:
            cell = cells.get(name)
            if cell is None:
                row_cells.append("–")
                continue
            mark = " ★ cheapest" if cell.cheapest else ""
            row_cells.append(f"**{cell.status}** {cell.text}{mark}")
        rows.append(row_cells)
    return Table(["Workload", *(run.title(n) for n in names)], rows, "decisions")


SOAK_S = 60.0  # steps at least this long show each process's memory trend (shorter ones: warm-up, not a leak)


def _rate_figure(value: float | None, unit: str = "/s") -> str:
    return "–" if value is None else f"{value:.1f}{unit}"


def rate_table(summaries: Sequence[ScenarioSummary]) -> Table:
    """Sustained load: each step's offered and achieved rate, latency from the due time, and its verdict."""
    steps = [s for s in summaries if s.rate is not None]
    soak = any(s.rate and s.rate.for_s >= SOAK_S for s in steps)
    headers = [
        "Implementation", "Workload", "Offered", "Sent (lag p99)", "Completed (steady)", "Backlog trend",
        "Queue p95", "Total p50 / p99 / p99.9 / max", "Running: λ×exec / measured",
        "CPU per job: API (probes included) / worker", "Verdict",
    ]  # fmt: skip
    if soak:
        headers.insert(-1, "Memory trend (job process)")
    rows: list[list[Cell]] = []
    for s in steps:
        r = s.rate
        assert r is not None
        name = s.implementation + ("" if s.concurrency is None else f" at concurrency {s.concurrency}")
        littles = None if r.execution.mean is None else r.offered_per_s * r.execution.mean
        t = r.total
        row: list[Cell] = [
            name, s.workload_key, f"{r.offered_per_s:g}/s × {r.for_s:g} s ({r.arrivals})",
            f"{_rate_figure(r.send_rate_per_s)} ({ms(r.schedule_lag_p99_s)})",
            _rate_figure(r.throughput_per_s), _rate_figure(r.depth_slope_per_s, " jobs/s"),
            seconds(r.queue_p95_s, 2),
            " / ".join(seconds(v, 2) for v in (t.p50, t.p99, t.p999, t.max)),
            f"{_rate_figure(littles, '')} / {_rate_figure(r.mean_running, '')}",
            f"{_rate_figure(r.api_cpu_ms_per_job, ' ms')} / {_rate_figure(r.worker_cpu_ms_per_job, ' ms')}",
            f"**{r.verdict}**" + (f": {'; '.join(r.reasons)}" if r.reasons else ""),
        ]  # fmt: skip
        if soak:
            trend = r.memory_trend_mb_per_h.get(s.job_process)
            row.insert(-1, "–" if trend is None or r.for_s < SOAK_S else f"{trend:+.0f} MB/h")
        rows.append(row)
    return Table(headers, rows, "rates")


def rate_notes(run: AnalysedRun) -> list[Block]:
    load = run.settings.load
    if load is None:
        return []
    text = (
        f"Open-loop steps: each submission is sent at its due time ({load.arrivals} arrivals) whether or not "
        "earlier ones have answered, and every latency counts from that due time, so a stall cannot hide "
        "(coordinated omission corrected, as wrk2 and k6 do; percentiles from an HDR histogram). A step is "
        f"**sustained** when, after its first {load.warmup_share:.0%}, completions keep within "
        f"{load.throughput_margin:.0%} of the arrivals, the backlog (queued + running, least-squares trend) does not "
        f"grow by more than {load.throughput_margin:.0%} of the rate, the queue time p95 stays under "
        f"{load.queue_p95_s:g} s and the API stays responsive; **inconclusive** when the harness itself sent late "
        "(lag p99 over 0.1 s): then the limit is taskbench's, not the queue's. λ×exec is Little's law: the rate "
        "times the mean execution time is how many jobs run at once when the rate is sustained."
    )
    blocks: list[Block] = [Paragraph(text)]
    if run.verdict.rate_limits:
        rows: list[list[Cell]] = [
            [
                run.title(x.implementation) + ("" if x.concurrency is None else f" at concurrency {x.concurrency}"),
                x.workload,
                _rate_figure(x.sustained_per_s),
                _rate_figure(x.saturated_per_s),
                "–" if x.margin is None else f"{x.margin:.0%}",
                _rate_figure(x.capacity_per_s),
                mb(x.memory_mb),
            ]
            for x in run.verdict.rate_limits
        ]
        headers = ["Implementation", "Workload", "Sustains up to", "Saturated at", "Bracket", "Model", "Memory"]
        blocks.append(Table(headers, rows, "rate-limits"))
    if run.verdict.capacity_plans:
        plan_rows: list[list[Cell]] = [
            [
                run.title(c.implementation), c.workload, f"{c.target_per_s:g}/s",
                "–" if c.concurrency is None else str(c.concurrency),
                ", ".join(f"{k}: {v}" for k, v in c.tried.items()) or "–",
                mb(c.memory_mb), seconds(c.queue_p95_s, 2),
                f"{_rate_figure(c.littles_running, '')} / {_rate_figure(c.measured_running, '')}",
            ]
            for c in run.verdict.capacity_plans
        ]  # fmt: skip
        headers = ["Implementation", "Workload", "Target", "Smallest concurrency", "Tried", "Memory", "Queue p95",
                   "Running: Little / measured"]  # fmt: skip
        blocks += [Heading("Capacity plan (--target-rate)", 3), Table(headers, plan_rows, "capacity-plan")]
    return blocks


def extended_table(summaries: Sequence[ScenarioSummary]) -> Table:
    headers = [
        "Scenario", "Submit p50 / p99 / max", "Async probe p99 / max", "Sync probe p99 / max",
        "Probes lost", "Queue avg / p95 / max", "Exec avg", "Total avg (from client send)", "Makespan / ideal",
        "Max running", "FIFO: τ / most overtaken",
    ]  # fmt: skip
    rows: list[list[Cell]] = []
    for s in summaries:
        sub, pa, ps, q = s.submission, s.probes["async"], s.probes["sync"], s.queue_time
        rows.append(
            [
                s.label,
                f"{ms(sub.p50)} / {ms(sub.p99)} / {ms(sub.max)}",
                f"{spread(s, 'probes.async.p99', pa.p99, ms)} / {ms(pa.max)}",
                f"{spread(s, 'probes.sync.p99', ps.p99, ms)} / {ms(ps.max)}",
                f"{pa.unanswered} / {ps.unanswered}",
                f"{seconds(q.avg, 2)} / {seconds(q.p95, 2)} / {seconds(q.max, 2)}",
                seconds(s.execution_time.avg, 2),
                f"{seconds(s.total_time.avg, 2)} ({seconds(s.client_total_time.avg, 2)})",
                f"{spread(s, 'makespan_s', s.makespan_s, lambda v: seconds(v, 2))} / {seconds(s.ideal_makespan_s, 2)} "
                f"({ratio(s.makespan_ratio)})",
                f"{s.max_running} of {s.capacity.concurrency}",
                fifo_cell(s),
            ]
        )
    return Table(headers, rows)


def fifo_cell(summary: ScenarioSummary) -> str:
    """Kendall's τ of start order against acceptance order (1 = first in, first out), and the most
    later-accepted jobs that started before one earlier job."""
    f = summary.fifo
    if f is None or f.kendall_tau is None:
        return "–"
    return f"{f.kendall_tau:.2f} / {f.max_overtaken}"


def short_jobs_table(summaries: Sequence[ScenarioSummary], run: AnalysedRun | None = None) -> Table:
    """The `noop` workload: what each runner itself costs, in jobs per second; with the host's ceilings
    (`--calibrate`), what its broker alone could serve it and the share of that it used."""
    calibrated = run is not None and run.ceilings is not None
    headers = ["Scenario", "Jobs/s end to end", "Submissions/s", "Queue p50 / p99", "Job process CPU peak / avg",
               "Job process RSS peak", "API CPU avg", "Harness CPU"]  # fmt: skip
    headers += ["CPU-s per 1 000 jobs: API / worker / broker"]
    headers += ["Its broker's bound · used"] if calibrated else []
    rows: list[list[Cell]] = []
    for s in summaries:
        if s.workload != "noop" or s.fault:
            continue
        job, api = s.resources.get(s.job_process), s.resources.get("api")
        row: list[Cell] = [
            s.label,
            "–" if s.throughput_jobs_per_s is None else f"{s.throughput_jobs_per_s:.0f}",
            "–" if s.submission_rate_per_s is None else f"{s.submission_rate_per_s:.0f}",
            f"{ms(s.queue_time.p50)} / {ms(s.queue_time.p99)}",
            _cpu_peak_avg(job),
            mb(None if job is None else job.rss_peak_mb),
            percent(None if api is None else api.cpu_avg),
            percent(None if s.harness is None else s.harness.cpu_percent),
        ]
        info = None if run is None else run.info(s.implementation)
        broker = "" if info is None else info.broker
        row.append(_cpu_parts_cell(s, broker))
        if run is not None and calibrated:
            row.append(_bound_cell(s, broker, run))
        rows.append(row)
    return Table(headers, rows)


def _cpu_parts_cell(s: ScenarioSummary, broker: str) -> str:
    parts = tradeoff.cpu_by_part(s, broker)
    return " / ".join(f"{parts[p]:.1f}" if p in parts else "–" for p in ("API", "worker", "broker"))


def _bound_cell(s: ScenarioSummary, broker: str, run: AnalysedRun) -> str:
    bound = tradeoff.broker_bound(s, broker, run.ceilings)
    share = tradeoff.broker_share(s, broker, run.ceilings)
    if bound is None:
        return "–"
    return f"{bound:,.0f}/s · {share:.0%}" if share is not None else f"{bound:,.0f}/s"


SHORT_JOBS_MEANING = (
    "Jobs that do nothing, so each figure is what the runner itself costs. CPU-seconds per 1 000 completed jobs, "
    "split by the part that spent them: the API, the worker (with its children) and the broker (Redis or "
    "PostgreSQL) where it served this queue alone (its neighbours paused; not RabbitMQ, whose clients keep running). "
    "The broker's share includes taskbench's own record of each job (10 Redis commands a job), which "
    "BackgroundTasks keep in the API's memory: the verdict's cheapest is judged on the API and worker alone."
)


CEILINGS_MEANING = (
    "Measured before the first scenario with every implementation paused (`--calibrate`). A Redis of the run's own "
    "binary, alone on a throwaway server; a PostgreSQL queue's dequeue (one row a transaction, `FOR UPDATE SKIP "
    "LOCKED`) on the run's private server. In the short-jobs table, a queue's broker bound is the Redis commands a "
    "second with many clients ÷ its Redis commands per job (or the PostgreSQL dequeues a second), and used is its "
    "no-op jobs a second against that bound: far below 100 %, the queue's own Python is its limit, not its broker."
)


def ceiling_lines(ceilings: HostCeilings) -> list[str]:
    """This host's ceilings in words, each with the tool that measured it."""
    lines = []
    if (r := ceilings.redis) is not None:
        many = f"{r.clients} clients"
        lines.append(
            f"{r.server}, one client one command at a time: {r.round_trips_per_s:,.0f} round trips/s ({r.tool})"
        )
        if r.commands_per_s is not None:
            lines.append(f"{r.server}, {many}: {r.commands_per_s:,.0f} commands/s")
        if r.pipelined_per_s is not None:
            lines.append(f"{r.server}, {r.clients if r.commands_per_s else 1} × {r.pipeline} pipelined: "
                         f"{r.pipelined_per_s:,.0f} commands/s")  # fmt: skip
        if r.push_pop_pairs_per_s is not None:
            lines.append(f"{r.server}, LPUSH + RPOP pairs: {r.push_pop_pairs_per_s:,.0f}/s")
    if (p := ceilings.postgres) is not None:
        least = "at least " if p.at_least else ""
        lines.append(
            f"PostgreSQL, SKIP LOCKED dequeues ({p.clients} clients): {least}{p.dequeues_per_s:,.0f}/s ({p.tool})"
        )
    lines += [f"not measured: {why}" for why in ceilings.not_measured]
    return lines


LEFT_BEHIND_MEANING = (
    "What a burst leaves behind once its jobs are done. In the broker: the bytes of the queue's keys in Redis "
    "(Redis's MEMORY USAGE of each; taskbench's own records, beats and ledger left out) or of its tables in "
    "PostgreSQL, what the burst added key by key (a key that another queue or an earlier burst let go meanwhile not "
    "subtracted), and that per 1 000 completed jobs: results and job records that no "
    "one reads, and streams never trimmed, stay until the queue's own expiry removes them (see each queue's "
    "settings); not read on RabbitMQ. In the process that ran the jobs: its RSS (with its children) before the burst "
    "and once the jobs were done: memory a Python process took for its jobs is seldom given back, so a worker that "
    "never restarts grows toward its largest burst; that growth per 1 000 completed jobs beside it, and how many "
    "processes ran its jobs (the ledger's pids: a pool's children, a fork per job, children replaced by a recycling "
    "setting). Redis commands per job: every command taskbench's private Redis "
    "served from the burst to its last job, less the idle rate read just before it (probes, heartbeats, polling), "
    "per completed job, with its neighbours paused (completion read from the ledger, on another server). "
    "taskbench's own record of each queued job takes 10 of them (4 in the script that stores it as it is accepted, "
    "3 for each of its running and finished stamps); BackgroundTasks keep theirs in the API's memory. PostgreSQL "
    "statements and rows per job likewise, on taskbench's private PostgreSQL (pg_stat_statements: the top-level "
    "statements its clients sent, a function a queue calls counting once, and the rows they returned or changed)."
)


LEFT_BEHIND_HEADERS = [
    "Kept in the broker",
    "Per 1 000 jobs",
    "Job process RSS before → after",
    "RSS growth per 1 000 jobs",
    "Processes that ran its jobs",
    "Redis commands per job",
    "PostgreSQL statements · rows per job",
]


def left_behind_cells(s: ScenarioSummary) -> list[Cell]:
    """What one burst left behind, as every table of it shows it (this report's, the page of answers')."""
    job = s.resources.get(s.job_process)
    kept = s.broker
    rss = "–" if job is None or job.rss_first_mb is None else f"{mb(job.rss_first_mb)} → {mb(job.rss_last_mb)}"
    return [size(None if kept is None else kept.kept_bytes), size(None if kept is None else kept.kept_per_1000_bytes),
            rss, _growth_cell(s), str(s.job_processes or "–"), one_decimal(s.redis_commands_per_job),
            _statements_cell(s)]  # fmt: skip


def _growth_cell(s: ScenarioSummary) -> str:
    """The job process's RSS once its jobs were done less before them, per 1 000 completed jobs."""
    job, completed = s.resources.get(s.job_process), s.completion.completed
    if job is None or job.rss_first_mb is None or job.rss_last_mb is None or not completed:
        return "–"
    return f"{(job.rss_last_mb - job.rss_first_mb) / completed * 1000:+.1f} MB"


def _statements_cell(s: ScenarioSummary) -> str:
    if s.postgres_statements_per_job is None:
        return "–"
    return f"{one_decimal(s.postgres_statements_per_job)} · {one_decimal(s.postgres_rows_per_job)}"


def left_behind_table(summaries: Sequence[ScenarioSummary]) -> Table:
    rows: list[list[Cell]] = []
    for s in summaries:
        job = s.resources.get(s.job_process)
        if s.fault or s.rate or (s.broker is None and (job is None or job.rss_first_mb is None)):
            continue
        rows.append([s.label, *left_behind_cells(s)])
    return Table(["Scenario", *LEFT_BEHIND_HEADERS], rows)


def rejudged_text(run: AnalysedRun) -> str:
    """What a page says when its figures were judged again by a later revision's rules (analysis.rejudge)."""
    return f"; judged again by the rules of {run.rejudged_by}, its figures as recorded" if run.rejudged_by else ""


def api_processes_table(summaries: Sequence[ScenarioSummary]) -> Table:
    """Under --api-workers: CPU and memory of each API process and of all together, and what a user's status
    poll got (BackgroundTasks keep a record in the one process that took the job)."""
    headers = ["Scenario", "API processes", "Each process: CPU peak / avg, RSS peak", "All together: CPU peak / avg, "
               "RSS peak", "Max running, each process (in all)", "Status polls answered 404 (record in another "
               "process)", "Records"]  # fmt: skip
    rows: list[list[Cell]] = []
    for s in summaries:
        each = sorted((role for role in s.resources if role.startswith("api#")), key=lambda r: int(r.split("#")[1]))
        if s.api_processes <= 1 and not each:
            continue
        total = s.resources.get("api")
        polls = s.status_polls
        share = polls.not_found_share if polls else None
        polled = (
            "–"
            if polls is None
            else f"{polls.not_found}/{polls.answered} ({percent(None if share is None else 100 * share)})"
        )
        rows.append(
            [
                s.label,
                str(s.api_processes),
                [f"{role}: {_cpu_peak_avg(s.resources[role])}, {mb(s.resources[role].rss_peak_mb)}" for role in each]
                or "–",
                f"{_cpu_peak_avg(total)}, {mb(None if total is None else total.rss_peak_mb)}",
                " + ".join(map(str, s.max_running_by_pid.values())) + f" ({s.max_running} of {s.capacity.concurrency})"
                if s.max_running_by_pid
                else "–",
                polled,
                "rebuilt from the ledger" if s.records_from == "ledger" else "from the API",
            ]
        )
    return Table(headers, rows)


def topology_text(settings: RunSettings) -> str:
    """The processes' layout (--api-workers, --graceful-timeout) and each implementation's own options."""
    a = settings.api
    api = f"{a.api_workers} uvicorn worker processes (--workers {a.api_workers})" if a.api_workers > 1 else "1 process"
    graceful = "no limit (uvicorn's default)" if a.graceful_timeout_s is None else f"{a.graceful_timeout_s:g} s"
    keys = dict.fromkeys(implementations.options_key(label) for label in settings.implementations)  # +app apart
    own = [
        f"{implementations.title(key)} {flags}"
        for key in keys
        if implementations.known(key) and (flags := implementations.get(key).option_flags(settings.options_of(key)))
    ]
    limits = [
        f"{part} in cgroups of their own: {limit.text()} ({flags})"
        for part, limit, flags in (
            ("workers", settings.worker_limits, "--worker-cpus, --worker-memory"),
            ("APIs", settings.api_limits, "--api-cpus, --api-memory"),
        )
        if limit.is_set
    ]  # container limits (taskbench.hosts.cgroups)
    return f"Topology: API {api} each (--api-workers), graceful shutdown {graceful} (--graceful-timeout)" + (
        "; " + "; ".join(own + limits) if own or limits else ""
    )


def hosts_text(settings: RunSettings) -> str:
    """Which part ran on which address (--hosts: network namespaces on one machine)."""
    delay = f", {settings.link_delay_ms:g} ms link delay" if settings.link_delay_ms else ""
    parts = "; ".join(f"{part} {where}" for part, where in settings.topology.items()) or "not recorded"
    return f"Hosts (--hosts {settings.hosts}: network namespaces on this machine{delay}): {parts}"


MIDDLEWARE_TITLES = {"none": "no middleware", "base-http": "a do-nothing BaseHTTPMiddleware"}


def middleware_table(summaries: Sequence[ScenarioSummary]) -> Table:
    """The same scenario without and with each middleware, side by side: what it does to submission latency,
    job start delay (queue time) and completed jobs."""
    middlewares = list(dict.fromkeys(s.middleware for s in summaries))
    headers = ["Scenario"] + [
        f"{column} [{m}]" for m in middlewares for column in ("Submit p50 / p99", "Queue p50 / p99", "Completed")
    ]
    by_key: dict[tuple[str, str, int, str | None, str | None], dict[str, ScenarioSummary]] = {}
    for s in summaries:
        by_key.setdefault((s.implementation, s.workload, s.jobs, s.fault, s.variant), {})[s.middleware] = s
    rows: list[list[Cell]] = []
    for (implementation, workload, jobs, fault, variant), seen in by_key.items():
        label = f"{implementation} · {workload} · {jobs} jobs" + (f" · {fault_name(fault, variant)}" if fault else "")
        row: list[Cell] = [label]
        for m in middlewares:
            x = seen.get(m)
            row += (
                ["–", "–", "–"]
                if x is None
                else [
                    f"{ms(x.submission.p50)} / {ms(x.submission.p99)}",
                    f"{ms(x.queue_time.p50)} / {ms(x.queue_time.p99)}",
                    f"{x.completion.completed}/{x.jobs}",
                ]
            )
        rows.append(row)
    return Table(headers, rows)


def middleware_text(middlewares: Sequence[str], versions: dict[str, str]) -> str:
    """Which middleware each scenario ran behind, with the Starlette version that implements it."""
    shown = "; ".join(f"`{m}` = {MIDDLEWARE_TITLES.get(m, m)}" for m in middlewares)
    return (
        f"API middleware (--middleware): {shown} (Starlette {versions.get('starlette', '?')}, "
        f"FastAPI {versions.get('fastapi', '?')}); scenarios behind one are marked [name]"
    )


def middleware_finding(summaries: Sequence[ScenarioSummary], versions: dict[str, str]) -> str | None:
    """Whether BaseHTTPMiddleware held BackgroundTasks' responses until their jobs ended (starlette #919), from the
    submissions: a 202 that took as long as the job would have waited for it."""
    behind = [s for s in summaries if s.middleware == "base-http" and s.implementation == BASELINE
              and s.duration_s > 0 and s.submission.max is not None]  # fmt: skip
    if not behind:
        return None
    starlette = f"Starlette {versions.get('starlette', '?')}"
    held = [s for s in behind if (s.submission.max or 0) >= s.duration_s]
    if held:
        return f"Behind BaseHTTPMiddleware on {starlette}, responses waited for the background job: " + "; ".join(
            f"{s.label}: slowest submission {seconds(s.submission.max, 2)} for {s.duration_s:g} s jobs" for s in held
        )
    slowest = max(behind, key=lambda s: s.submission.max or 0)
    return (
        f"Behind BaseHTTPMiddleware on {starlette}, no response waited for its background job (starlette #919 does "
        f"not show here): the slowest BackgroundTasks submission took {seconds(slowest.submission.max, 3)}, "
        f"shorter than the {slowest.duration_s:g} s job ({slowest.label})."
    )


def _cpu_peak_avg(p: ProcessResources | None) -> str:
    return "– / –" if p is None else f"{percent(p.cpu_peak)} / {percent(p.cpu_avg)}"


def resources_table(summaries: Sequence[ScenarioSummary]) -> Table:
    headers = ["Scenario", "API CPU peak/avg", "API RSS peak", "Worker CPU peak/avg", "Worker RSS peak",
               "Redis CPU peak", "System CPU peak (all cores)", "System mem peak",
               "Harness / service CPU avg (of the machine)"]  # fmt: skip
    rows: list[list[Cell]] = []
    for s in summaries:
        api, redis, system = s.resources.get("api"), s.resources.get("redis"), s.system
        worker = s.resources.get(s.worker_role) if s.worker_role else None
        rows.append(
            [
                s.label,
                _cpu_peak_avg(api),
                mb(None if api is None else api.rss_peak_mb),
                _cpu_peak_avg(worker),
                mb(None if worker is None else worker.rss_peak_mb),
                percent(None if redis is None else redis.cpu_peak),
                percent(None if system is None else system.cpu_peak),
                percent(None if system is None else system.memory_peak_percent),
                _shares(s),
            ]
        )
    return Table(headers, rows)


def _shares(s: ScenarioSummary) -> str:
    c = s.cpu_shares
    if c is None:
        return "–"
    return f"{percent(c.harness_percent)} / {percent(c.service_percent)}" + (" ⚠" if c.harness_over_limit else "")


def _clock(bound: float | None) -> str:
    if bound is None:
        return "–"
    return f"ahead by ≥ {seconds(-bound, 3)}" if bound < 0 else f"behind by ≤ {seconds(bound, 3)}"


def workers_by_host(summaries: Sequence[ScenarioSummary]) -> list[Block]:
    """The workers by host, when a worker ran elsewhere (`taskbench worker --join`): each one's CPU, memory, the
    jobs its ledger events show ended there, and its clock against the harness's (taskbench.measure.telemetry)."""
    remote = [s for s in summaries if any(not h.local for h in s.hosts) or len(s.hosts) > 1]
    if not remote:
        return []
    rows: list[list[Cell]] = []
    skewed: dict[str, float] = {}
    for s in remote:
        for h in s.hosts:
            # the stack's own worker of the scenario ran the jobs that ended on a host of this machine
            roles = list(h.roles) or ([s.job_process] if h.local and h.jobs_ended else [])
            for role in roles or ["–"]:
                r = s.resources.get(role)
                memory = mb(None if r is None else r.memory_peak_mb)
                where = h.host + (" (harness's machine)" if h.local else "")
                rows.append([s.label, where, role, _cpu_peak_avg(r), memory, str(h.jobs_ended),
                             _clock(h.behind_at_most_s)])  # fmt: skip
            if h.behind_at_most_s is not None and abs(h.behind_at_most_s) > CLOCK_SKEW_WARN_S:
                skewed[h.host] = h.behind_at_most_s
    headers = ["Scenario", "Host", "Worker", "CPU peak/avg", "Memory peak", "Jobs ended there", "Clock vs harness"]
    blocks: list[Block] = [
        Heading("Workers by host", 3),
        Table(headers, rows),
        Paragraph(
            "Each host's clock: the least (arrival on the harness's machine − the host's own stamp) over its ledger "
            "events and samples, an upper bound on how far it is behind (transit only adds). Makespans and latencies "
            "use the harness's clock; a worker's own stamps only split a job's time."
        ),
    ]
    if skewed:
        blocks.append(
            Paragraph(
                f"**Clock skew** over {seconds(CLOCK_SKEW_WARN_S, 3)}: "
                + "; ".join(f"{host} {_clock(bound)}" for host, bound in skewed.items())
                + ": its jobs' start and end stamps are that far off the harness's clock."
            )
        )
    return blocks


def resources_notes(summaries: Sequence[ScenarioSummary], paused: bool = False) -> list[Block]:
    """What the harness / service column means, then the harness warning when there is one."""
    shares = [s.cpu_shares for s in summaries if s.cpu_shares is not None]
    if not shares:
        return []
    c = shares[0]
    roles = ", ".join(sorted({role for share in shares for role in share.service_roles}))
    note = Paragraph(
        f"Harness / service CPU: each one's average over the scenario as % of the whole machine ({c.cores} cores); "
        f"the service is {roles} (the scenario's own worker only). ⚠ marks a harness above "
        f"{c.harness_limit_percent:.0f} % of the machine."
    )
    return [note, *neighbours_note(summaries, paused), *connections_note(summaries), *harness_warning(summaries)]


def neighbours_cpu(summary: ScenarioSummary) -> float | None:
    """The other implementations' workers, idle while this one is measured (each polls its queue): their CPU
    averages summed, 100 = one core; None with no other worker sampled."""
    others = [
        r.cpu_avg for role, r in summary.resources.items() if role.endswith("-worker") and role != summary.worker_role
    ]
    return sum(others) if others else None


def neighbours_note(summaries: Sequence[ScenarioSummary], paused: bool = False) -> list[Block]:
    """What the idle neighbours cost the one measured: a stack of every implementation shares its cores. `paused`:
    the run paused them through the scenarios without a fault (RunSettings.pause_neighbours)."""
    parts = []
    for these, how in (
        ([s for s in summaries if not (paused and not s.fault)], "running, polling their queues"),
        ([s for s in summaries if paused and not s.fault], "paused (SIGSTOP) through each scenario without a fault"),
    ):
        costs = [(s.label, c) for s in these if (c := neighbours_cpu(s)) is not None]
        if costs:
            average = sum(c for _, c in costs) / len(costs)
            label, most = max(costs, key=lambda item: item[1])
            parts.append(
                f"{how}, they used {percent(average)} of one core on average over {len(costs)} scenarios (at most "
                f"{percent(most)}, in {label})"
            )
    said = "; ".join(parts)
    return (
        [Paragraph(f"Idle neighbours, the other implementations' workers while one is measured: {said}.")]
        if parts
        else []
    )


def connections_note(summaries: Sequence[ScenarioSummary]) -> list[Block]:
    """The PostgreSQL queues' connections: a cost teams meet at the server's `max_connections` (100 by default)."""
    held = []
    for s in summaries:
        api, worker = s.resources.get("api"), s.resources.get(s.worker_role) if s.worker_role else None
        counts = [
            f"{what} {r.connections_peak}" for what, r in (("API", api), ("worker", worker)) if r and r.connections_peak
        ]
        if counts:
            held.append(f"{s.label}: {', '.join(counts)}")
    if not held:
        return []
    return [Paragraph("PostgreSQL connections held (peak, TCP connections of each process tree): " + "; ".join(held))]


def harness_warning(summaries: Sequence[ScenarioSummary]) -> list[Block]:
    """A warning naming every scenario whose harness took more than its limit of the machine: it competed for
    the cores with the service it measured."""
    heavy = [(s.label, s.cpu_shares) for s in summaries if s.cpu_shares is not None and s.cpu_shares.harness_over_limit]
    if not heavy:
        return []
    limit = heavy[0][1].harness_limit_percent
    where = "; ".join(
        f"{label} ({percent(c.harness_percent)} against the service's {percent(c.service_percent)})"
        for label, c in heavy
    )
    return [
        Paragraph(
            f"> **Warning: the harness used more than {limit:.0f} % of the machine** in {where}: it competed for the "
            "cores with the service it measured, so read the submission and responsiveness figures there as upper "
            "bounds."
        )
    ]


def _redelivery_delay(s: ScenarioSummary) -> str:
    e = s.executions
    timeout = s.delivery.redelivery_timeout_s if s.delivery else None
    if s.delivery and s.delivery.broker == "amqp":  # no timeout: requeued when the connection drops (or on a reject)
        return f"{seconds(e.redelivery_delay_s, 1)} (no timeout)" if e.redelivery_delay_s is not None else "–"
    if e.redelivery_delay_s is None and timeout is None:
        return "–"
    return f"{seconds(e.redelivery_delay_s, 1)} ({seconds(timeout, 0)})"


def faults_table(summaries: Sequence[ScenarioSummary]) -> Table:
    """Per fault scenario, what became of each job: Jepsen's queue categories from its history (`HISTORY_MEANING`);
    a run analysed before there was a history check (a committed page's JSON) keeps the earlier columns."""
    faulted = [s for s in summaries if s.fault]
    if not any(s.history is not None for s in faulted):
        return _faults_table_before_history(faulted)
    headers = ["Fault", "Implementation", "Broker", "Delivery", "Acknowledged", "Exactly once", "Lost", "Recovered",
               "Unexpected", "Duplicated (concurrent / sequential)", "In flight at the fault (never finished)",
               "Redelivery delay (timeout)", "Completed after fault", "Job ids"]  # fmt: skip
    partitioned, api_cut = _partition_columns(headers, faulted)
    rows: list[list[Cell]] = []
    for s in faulted:
        e, h = s.executions, s.history
        broker = s.delivery.broker if s.delivery else "redis"
        if h is None:
            checked: list[Cell] = [str(e.accepted), *["–"] * 6]
            ids: Cell = "–"
        else:
            refused = f" ({h.refused_yet_ran} refused)" if h.refused_yet_ran else ""
            checked = [
                str(h.acknowledged),
                "–" if h.exactly_once is None else percent(h.exactly_once * 100),
                str(h.lost),
                f"{h.recovered}{refused}",
                str(h.unexpected),
                f"{h.duplicated} ({h.concurrent} / {h.sequential})" if h.duplicated else "0",
                "–" if h.in_flight_at_fault is None else f"{h.in_flight_at_fault} ({h.unfinished})",
            ]
            concurrent = set(h.concurrent_ids)
            ids = [
                *(f"lost {i}" for i in h.lost_ids),
                *(f"dup {i} ({'concurrent' if i in concurrent else 'sequential'})" for i in h.duplicated_ids),
                *(f"recovered {i}" for i in h.recovered_ids),
                *(f"unexpected {i}" for i in h.unexpected_ids),
                *(f"never finished {i}" for i in h.unfinished_ids),
            ] or "–"
        rows.append(
            [
                s.fault_label,
                s.implementation,
                BROKER_NAMES.get(broker, broker),
                s.delivery.name if s.delivery else "default",
                *checked,
                _redelivery_delay(s),
                str(e.completed_after_fault),
                *([seconds(e.resumed_after_s, 2)] if partitioned else []),
                *([e.cut.text if e.cut else "–"] if api_cut else []),
                ids,
            ]
        )
    return Table(headers, rows, "faults")


def _partition_columns(headers: list[str], faulted: Sequence[ScenarioSummary]) -> tuple[bool, bool]:
    """A partition: the time from the restore to the next job started (api-partition: accepted), and what the
    clients met while the API was cut off from its servers; inserted before the ids."""
    partitioned = any(s.fault in PARTITION_FAULTS for s in faulted)
    api_cut = any(s.fault == "api-partition" for s in faulted)
    if partitioned:
        headers.insert(-1, "Resumed after restore")
    if api_cut:
        headers.insert(-1, "Submissions during the cut")
    return partitioned, api_cut


def _faults_table_before_history(faulted: Sequence[ScenarioSummary]) -> Table:
    headers = ["Fault", "Implementation", "Broker", "Delivery", "Accepted", "Completed once",
               "Lost (cut off / never started)", "Duplicated", "Redelivered", "Redelivery delay (timeout)",
               "Completed after fault", "Lost / duplicated ids"]  # fmt: skip
    partitioned, api_cut = _partition_columns(headers, faulted)
    rows: list[list[Cell]] = []
    for s in faulted:
        e = s.executions
        broker = s.delivery.broker if s.delivery else "redis"
        rows.append(
            [
                s.fault_label,
                s.implementation,
                BROKER_NAMES.get(broker, broker),
                s.delivery.name if s.delivery else "default",
                str(e.accepted),
                str(e.completed_once),
                f"{e.lost} ({e.cut_off} / {e.never_started})" if e.lost else "0",
                str(e.duplicated),
                str(e.recovered),
                _redelivery_delay(s),
                str(e.completed_after_fault),
                *([seconds(e.resumed_after_s, 2)] if partitioned else []),
                *([e.cut.text if e.cut else "–"] if api_cut else []),
                [*(f"lost {i}" for i in e.lost_ids), *(f"dup {i}" for i in e.duplicated_ids)] or "–",
            ]
        )
    return Table(headers, rows, "faults")


HISTORY_MEANING = (
    "Each scenario's history (`{scenario}.history.jsonl` beside its JSON: every submission, every start and end "
    "of a job in the ledger, the fault) counted per job id as Jepsen's queue checker (`total-queue`) counts. "
    "**Acknowledged**: the API answered with the job's id. **Lost**: acknowledged, and no runner ever started it. "
    "**Recovered**: started though its submission was refused or went unanswered (the client could not know it "
    "was queued; *refused*: a definite refusal that ran all the same). **Unexpected**: started though this "
    "scenario never submitted it. **Duplicated**: started more than once, *concurrent* when two runs of it "
    "overlapped in time, *sequential* when it was run again after the first ended or died (a redelivery). "
    "**Exactly once**: the share of acknowledged jobs started once and run to their end. **In flight at the "
    "fault**: started and not yet ended when the fault struck; *never finished*: acknowledged jobs started and "
    "never ended (cut off mid-job, by the fault or a process that died). Jepsen calls a queue valid when nothing "
    "is lost or unexpected; a job cut off mid-run is not lost there (it was delivered), so read exactly once for "
    "the work that got done."
)


def history_meaning(summaries: Sequence[ScenarioSummary]) -> list[Block]:
    """What the faults table's categories mean, when it shows them."""
    return [Paragraph(HISTORY_MEANING)] if any(s.fault and s.history is not None for s in summaries) else []


def promises_table(run: AnalysedRun) -> Table:
    """What each implementation's delivery setting promised, for the fault scenarios run."""
    seen = dict.fromkeys((r.implementation, r.delivery or "default", r.promise) for r in run.verdict.faults)
    rows: list[list[Cell]] = [[run.title(name), delivery, promise or "–"] for name, delivery, promise in seen]
    return Table(["Implementation", "Delivery", "What it promises"], rows)


def workloads_run(run: AnalysedRun) -> list[str]:
    """The built-in workloads, then the user's jobs by their path."""
    return [*run.settings.workloads, *(job.path for job in run.settings.user_jobs)]


def implementations_table(implementations: Sequence[ImplementationInfo], workloads: Sequence[str]) -> Table:
    """Each implementation's timing-relevant settings, and how each workload runs there."""
    headers = ["Implementation", "Settings", *(f"How `{w}` runs" for w in workloads)]
    rows: list[list[Cell]] = []
    for info in implementations:
        settings: Cell = [f"{k}: {v}" for k, v in info.settings.items()] or (
            "–" if info.in_registry else "not in this taskbench's registry")  # fmt: skip
        name = f"{info.title} (`{info.name}`)" + ("" if info.recorded else NOT_RECORDED)
        rows.append([name, settings, *(info.how_it_runs.get(w, "–") for w in workloads)])
    return Table(headers, rows)


NOT_RECORDED = " — not recorded by the run: described by the taskbench that rendered this report"


def scenario_settings_table(summary: ScenarioSummary) -> Table:
    rows: list[list[Cell]] = [[k, v] for k, v in summary.settings.items()]
    return Table(["Setting", "Value"], rows)


def submission_table(summary: ScenarioSummary) -> Table:
    sub = summary.submission
    return Table(
        ["Accepted", "Timeouts", "Errors", "Avg", "p50", "p95", "p99", "Max"],
        [
            [f"{sub.accepted}/{sub.attempted}", str(sub.timeouts), str(sub.errors),
             *(ms(v) for v in (sub.avg, sub.p50, sub.p95, sub.p99, sub.max))]
        ],
    )  # fmt: skip


def probes_table(summary: ScenarioSummary) -> Table:
    rows: list[list[Cell]] = [
        [endpoint, f"{p.answered}/{p.sent}", ms(p.avg), ms(p.p50), ms(p.p99), ms(p.max), str(p.timeouts),
         str(p.errors), seconds(p.longest_silence_s, 2)]
        for endpoint, p in summary.probes.items()
    ]  # fmt: skip
    return Table(["Endpoint", "Answered", "Avg", "p50", "p99", "Max", "Timeouts", "Errors", "Longest silence"], rows)


def completion_table(summary: ScenarioSummary) -> Table:
    s, done, q = summary, summary.completion, summary.queue_time
    headers = ["Completed", "Failed", "Pending", "Queue avg", "Queue p95", "Queue max", "Exec avg", "Total avg",
               "Makespan", "Ideal", "Ratio", "Max running"]  # fmt: skip
    row: list[Cell] = [
        str(done.completed), str(done.failed), str(done.pending), seconds(q.avg, 2), seconds(q.p95, 2),
        seconds(q.max, 2), seconds(s.execution_time.avg, 2), seconds(s.total_time.avg, 2), seconds(s.makespan_s, 2),
        seconds(s.ideal_makespan_s, 2), ratio(s.makespan_ratio), str(s.max_running),
    ]  # fmt: skip
    return Table(headers, [row])


def executions_table(summary: ScenarioSummary) -> Table:
    e = summary.executions
    values = (e.accepted, e.completed_once, e.lost, e.duplicated, e.recovered, e.attempts_max)
    return Table(
        ["Accepted", "Completed once", "Lost", "Duplicated", "Redelivered", "Max attempts"], [[str(v) for v in values]]
    )


def key_figures(summary: ScenarioSummary) -> Table:
    """The figures the verdict is made of, for one scenario, in one row."""
    s = summary
    headers = ["Completed", "Failed", "Lost", "Makespan ÷ ideal", "Submission p99", "Async probe p99",
               "Sync probe p99", f"Peak memory ({s.job_process})", "Responsive"]  # fmt: skip
    row: list[Cell] = [
        f"{s.completion.completed}/{s.jobs}", str(s.completion.failed), str(s.executions.lost), ratio(s.makespan_ratio),
        ms(s.submission.p99), ms(s.probes["async"].p99), ms(s.probes["sync"].p99), mb(s.peak_memory_mb),
        yes_no(s.responsive),
    ]  # fmt: skip
    return Table(headers, [row])


# --- texts ---------------------------------------------------------------------------------------------------


# What Peak Memory is, by what the platform could read (taskbench.measure.sampler.memory_measure).
MEMORY_DEFINITIONS = {
    "PSS": "Peak Memory is its PSS (RSS in runs saved before taskbench read PSS): RSS with each page that several "
    "processes share split among them, so a forked pool's shared code and data count once, as in the memory the "
    "machine really gives it.",
    "USS": "Peak Memory is its USS (this platform has no PSS): the pages no other process shares, so a forked "
    "pool's shared code and data count in none of its processes: a lower bound of what it holds.",
    "RSS": "Peak Memory is its RSS (this platform reads neither PSS nor USS): a page shared by a forked pool's "
    "processes counts in each of them, so a pool's figure is too high.",
}


def job_memory(run: RunResult | ScenarioResult) -> str:
    """PSS, USS or RSS: what the run read as the job process's memory (PSS for runs saved before it was said)."""
    return run.environment.machine.job_memory.upper()


def thresholds_text(settings: RunSettings, measure: str = "PSS") -> str:
    t = settings.thresholds
    return (
        f"Responsive: no probe unanswered within {t.probe_timeout_s} s and probe p99 ≤ {t.responsive_p99_s} s, "
        f"on `/health` (async endpoint) and `/health/sync` (sync endpoint, needs a threadpool thread), probed every "
        f"{settings.probe_interval_s * 1000:.0f} ms. Submission timeout: {t.submit_timeout_s} s "
        "from when the request has a connection (the wait for a free one counts as latency, not as timeout). "
        "Resource exhaustion: "
        f"the process running the jobs over {t.memory_limit_mb:.0f} MB ({measure}), or system memory over "
        f"{t.system_memory_limit_percent:.0f} %. "
        f"Makespan far over ideal: more than {t.makespan_ratio_limit}× the ideal and {t.makespan_slack_s} s over "
        "it, where the ideal is ceil(N / concurrency) × duration, and no less than the submission span plus one "
        "job (the last job cannot finish before it arrives); jobs whose own work, ceil(N / concurrency) × duration, is "
        "under that slack (noop) are not judged on it, however long the burst took to submit: their ratio measures "
        "what the queue costs per job, which the throughput figure and the answer's drain against the reference "
        "show. "
        "Jobs not completed: still queued or running, or their records gone, when the deadline struck; without a "
        "fault the deadline moves on while jobs still complete (slow is not lost), and a burst that ends "
        "unfinished says how many finished and at what rate. "
        f"Borderline: a rule that fired in some runs of a scenario but not all (--repeat), or a figure within "
        f"{t.borderline_margin:.0%} of its limit; a cell fails only when its rule fired in every run, clear of "
        "the margin. With repeats every figure is the median over the runs, with its range in brackets. "
        "Why these limits: a sync request that waits for a job to free a thread waits up to one job duration, "
        "so the p99 limit is at most half a job (within 0.25-0.5 s) and such a wait is never judged on the "
        "limit's edge; the makespan slack keeps start-up and polling of very short jobs from reading as "
        '"far over". '
        "Peak CPU and Peak Memory are those of the process that ran the jobs, with its children for a worker. "
        + MEMORY_DEFINITIONS[measure]
        + " The resource tables show RSS, which counts a page shared by several processes in every one of them. "
        "Process CPU is % of one core (200 % = two cores busy); system CPU is % of all cores."
    )


def broker_text(settings: RunSettings) -> str:
    if settings.broker != "amqp":
        return "broker: Redis for every queue"
    return f"broker (--broker amqp): RabbitMQ ({settings.amqp}) for Celery and Dramatiq, Redis for the other queues"


def pins_text(settings: RunSettings) -> str:
    shown = ", ".join(settings.project_pins[:12]) + (", …" if len(settings.project_pins) > 12 else "")
    return (
        f"Your pins (--requirements {settings.requirements_file}): {len(settings.project_pins)} packages in every "
        f"environment ({shown}); --with and NAME@VERSION win over them"
    )


def run_facts(run: RunResult) -> list[str]:
    """The run's settings, service and machine, one line each."""
    s, env = run.settings, run.environment
    versions = ", ".join(f"{k} {v}" for k, v in env.versions.items())
    machine = env.machine
    return [
        f"Implementations: {', '.join(s.implementations)}; workloads: {', '.join(s.workloads)}; "
        f"job counts: {', '.join(map(str, s.jobs))}; job duration {s.duration_s} s"
        + (" (quick profile)" if s.quick else ""),
        f"Concurrency (--concurrency): {s.concurrency}; faults: {', '.join(s.faults) or 'none'} "
        "(redelivery timeout for faults: see each scenario)",
        f"Service: {s.url or 'started by taskbench'}; Redis: {s.redis}; " + broker_text(s),
        "Other implementations while one is measured: "
        + ("paused (SIGSTOP) through each scenario without a fault" if s.pause_neighbours else "running"),
        middleware_text(s.middleware, env.versions),
        topology_text(s),
        *([hosts_text(s)] if s.hosts else []),
        f"Machine: {machine.platform}, {machine.cpu_count or '?'} cores, "
        f"{machine.memory_gb or 0:.1f} GB RAM; Python {machine.python}",
        f"Versions: {versions}",
        *([pins_text(s)] if s.project_pins else []),
        f"Command: `{run.command}`" if run.command else "Command: not recorded (a run made before it was kept)",
        "Measured by "
        + (f"taskbench {run.taskbench}" if run.taskbench else "a taskbench that did not record its version")
        + (f" ({run.git_revision})" if run.git_revision else "")
        + (rejudged_text(run) if isinstance(run, AnalysedRun) else ""),
    ]


def verdict_lines(run: AnalysedRun) -> list[str]:
    return run.verdict.lines or ["No scenario completed."]


def unavailable(run: RunResult) -> list[Block]:
    """The implementations the run could not measure: which part failed, when, why, and its log's last lines."""
    if not run.unavailable:
        return []
    items = [
        Bullet(
            f"**{implementations.title(u.implementation)}**: {u.part} ({u.when}): {u.reason}",
            tuple(f"`{line}`" for line in u.log_tail.splitlines()[-8:] if line.strip()),
        )
        for u in run.unavailable
    ]
    note = "Not measured; the run went on with the others. Each with the last lines of its log:"
    return [Heading("Could not run"), Paragraph(note), Bullets(items)]


def when_baseline_fails(run: AnalysedRun) -> list[Block]:
    """Every failure of the baseline's scenarios with its evidence, then the other implementations'."""
    baseline = [s for s in run.summaries if s.implementation == BASELINE]
    blocks: list[Block] = []
    if baseline:
        blocks.append(
            Bullets(
                [
                    Bullet(f"**{s.label}**: {s.status}", tuple(findings(s)))
                    if s.failures or s.borderline
                    else Bullet(f"**{s.label}**: no failure detected.")
                    for s in baseline
                ]
            )
        )
    else:
        blocks.append(Paragraph(f"No {run.title(BASELINE)} scenario was run."))
    for info in run.implementations:
        failing = [s for s in run.summaries if s.implementation == info.name != BASELINE and s.status != "held"]
        if failing:
            blocks.append(Paragraph(f"{info.title}'s failures and borderline results, for the same scenarios:"))
            blocks.append(bullets([f"**{s.label}** — {line}" for s in failing for line in findings(s)]))
    return blocks


def findings(summary: ScenarioSummary) -> list[str]:
    """Each failure, then each borderline rule, with its evidence (and in how many runs)."""

    def line(f: Failure, what: str) -> str:
        return f"{what}{f.rule}" + (f" ({f.runs})" if f.runs else "") + f": {f.evidence}"

    return [line(f, "") for f in summary.failures] + [line(f, "borderline: ") for f in summary.borderline]


# --- documents -----------------------------------------------------------------------------------------------


def cost_blocks(run: AnalysedRun) -> list[Block]:
    """What each runner costs per short job, against this host's ceilings, and what a burst leaves behind."""
    summaries, blocks = run.summaries, list[Block]()
    if any(s.workload == "noop" and not s.fault for s in summaries):
        blocks += [
            Heading("Short jobs (noop): what each runner costs", 3),
            Paragraph(SHORT_JOBS_MEANING),
            short_jobs_table(summaries, run),
        ]
    if run.ceilings is not None:
        blocks += [
            Heading("This host's ceilings", 3),
            Paragraph(CEILINGS_MEANING),
            bullets(ceiling_lines(run.ceilings)),
        ]
    if left_behind_table(summaries).rows:
        blocks += [
            Heading("What a burst leaves behind", 3),
            Paragraph(LEFT_BEHIND_MEANING),
            left_behind_table(summaries),
        ]
    return blocks


AUTOSCALER_MEANING = (
    "What an autoscaler that scales on the broker's queue length (KEDA's Redis-list, RabbitMQ or PostgreSQL "
    "scalers, a CloudWatch alarm) would have seen through each burst and sustained step without a fault. Jobs "
    "waiting: accepted by the API and not yet started (the ledger's first start), read every 0.25 s in a burst, "
    "0.5 s at a rate; the broker's count: the jobs its API counts as not yet "
    "taken by a worker (`/health` `queued`) at the same instants: a list's length for Celery, RQ, Dramatiq, Huey, "
    "taskiq and SAQ, the rows to do for the PostgreSQL queues; for the stream queues (streaQ, Docket) and BullMQ the "
    "entries less those a live worker runs, so what their workers prefetched counts as waiting there. A job a worker "
    "has taken and holds unstarted (prefetched, reserved) is waiting, yet not in a list's length: idle workers "
    "elsewhere cannot take it, and an autoscaler reading that length does not count it. First → last quarter: the "
    "median not counted early and late in the scenario (from 40 samples with jobs waiting): what workers hold "
    "growing over a long run (`--rate R --for 3600`) shows there."
)


def autoscaler_table(run: AnalysedRun, summaries: Sequence[ScenarioSummary] | None = None) -> Table:
    """Per burst or sustained step: the jobs waiting at most, those its broker's count missed (and whether that grew
    over the scenario), and the share it counted."""
    rows: list[list[Cell]] = []
    for s in run.summaries if summaries is None else summaries:
        seen = s.depth_seen
        if seen is None or not seen.peak_waiting:
            continue
        share = "–" if seen.seen_share is None else f"{seen.seen_share:.0%}"
        info = run.info(s.implementation)
        settings = {} if info is None else info.settings
        prefetch = next((f"{k}: {v}" for k, v in settings.items() if "prefetch" in k), "–")
        rows.append(
            [
                s.label,
                str(seen.peak_waiting),
                f"{'–' if seen.median_unseen is None else f'{seen.median_unseen:g}'} / {seen.peak_unseen}",
                share,
                "–" if seen.first_unseen is None else f"{seen.first_unseen:g} → {seen.last_unseen:g}",
                prefetch,
            ]
        )
    headers = ["Scenario", "Jobs waiting, at most", "Waiting but not in the broker's count: median / most",
               "Broker's count ÷ jobs waiting", "Not counted: first → last quarter",
               "Prefetch (its settings)"]  # fmt: skip
    return Table(headers, rows)


def autoscaler_blocks(run: AnalysedRun) -> list[Block]:
    table = autoscaler_table(run)
    return [Heading("What an autoscaler sees", 3), Paragraph(AUTOSCALER_MEANING), table] if table.rows else []


def comparison(run: AnalysedRun, charts: Sequence[ChartRef] = ()) -> list[Block]:
    """`comparison_{timestamp}.md`: the spec's table, the figures behind it, and last the verdict."""
    summaries = run.summaries
    blocks: list[Block] = [Heading(f"{run_title(run)} — comparison ({run.timestamp})", 1)]
    if run.interrupted:
        blocks.append(Paragraph("> **Interrupted**: this run was stopped early; the results below are partial."))
    blocks += unavailable(run)
    blocks += at_a_glance.blocks(run, charts)
    if run.verdict.decisions:
        blocks += [Heading("Decision"), Paragraph(DECISION_MEANING), decision_table(run)]
    if any(s.rate for s in summaries):
        blocks += [Heading("Sustained load"), *rate_notes(run), rate_table(summaries)]
    blocks += [
        Heading("Results (the spec's table)"),
        spec_table(summaries),
        Heading("Extended figures"),
        extended_table(summaries),
        Heading("Resources", 3),
        resources_table(summaries),
        *resources_notes(summaries, run.settings.pause_neighbours),
        *workers_by_host(summaries),
    ]
    if any(s.api_processes > 1 for s in summaries):
        blocks += [Heading("Several API processes (--api-workers)", 3), api_processes_table(summaries)]
    blocks += cost_blocks(run) + autoscaler_blocks(run) + held_behind.blocks(run)
    if len({s.middleware for s in summaries}) > 1:
        blocks += [
            Heading("Without and with the middleware", 3),
            Paragraph(middleware_text(list(dict.fromkeys(s.middleware for s in summaries)), run.environment.versions)),
            middleware_table(summaries),
        ]
        finding = middleware_finding(summaries, run.environment.versions)
        if finding:
            blocks.append(Paragraph(finding))
    if any(s.fault for s in summaries):
        blocks += [Heading("Faults"), faults_table(summaries), *history_meaning(summaries), promises_table(run)]
    if rest := [c for c in charts if not c.path.endswith(at_a_glance.ANSWER_CHART)]:
        blocks += [Heading("Charts"), Figures(rest)]
    blocks += [
        Heading(f"When {run.title(BASELINE)} fail"),
        *when_baseline_fails(run),
        Heading("How to read this"),
        Paragraph(thresholds_text(run.settings, job_memory(run))),
        Heading("Settings"),
        bullets(run_facts(run)),
        implementations_table(
            run.implementations, [*run.settings.workloads, *(j.path for j in run.settings.user_jobs)]
        ),
        Heading("Verdict"),  # last, computed from everything above (report.html shows it first)
        bullets(verdict_lines(run)),
    ]
    return blocks


def scenario_intro(result: ScenarioResult, summary: ScenarioSummary) -> str:
    spec = result.spec
    fault = f", fault **{fault_name(spec.fault, spec.variant)}**" if spec.fault else ""
    runs = f" Runs as: {summary.how_it_runs}." if summary.how_it_runs else ""
    versions = result.environment.versions
    behind = (
        f" The API ran behind {MIDDLEWARE_TITLES.get(spec.middleware, spec.middleware)} "
        f"(Starlette {versions.get('starlette', '?')})."
        if spec.middleware != "none"
        else ""
    )
    return (
        f"{spec.jobs} × `{spec.workload}` jobs of {spec.duration_s} s on **{spec.implementation}**{fault}.{runs}"
        f"{behind} "
        f"Capacity: {summary.capacity.concurrency} at once ({summary.capacity.reason}). "
        f"Deadline {result.deadline_s:.1f} s" + (" — **passed before all jobs finished**." if result.timed_out else ".")
    )


def failure_bullets(summary: ScenarioSummary) -> list[str]:
    return findings(summary)


def event_lines(result: ScenarioResult) -> list[str]:
    return [
        f"{e.name} at +{e.t - result.started_at:.2f} s" + (f": {e.detail}" if e.detail else "") for e in result.events
    ]


def scenario(result: ScenarioResult, summary: ScenarioSummary, charts: Sequence[ChartRef] = ()) -> list[Block]:
    """`{implementation}_{N}_jobs_{timestamp}.md`: every figure of one scenario."""
    s = summary
    source = " (execution ledger)" if s.executions.source == "ledger" else " (job records)"
    api_blocks: list[Block] = [Heading("API processes"), api_processes_table([s])] if s.api_processes > 1 else []
    rate_blocks: list[Block] = [Heading("Sustained load"), rate_table([s])] if s.rate else []
    blocks: list[Block] = [
        Heading(result.run_label, 1),
        Paragraph(scenario_intro(result, summary)),
        Heading("Failures detected"),
        bullets(failure_bullets(s) or ["none detected"]),
        *rate_blocks,
        Heading("Submission"),
        submission_table(s),
        Heading("Responsiveness"),
        probes_table(s),
        Heading("Completion"),
        completion_table(s),
        Heading("Resources"),
        resources_table([s]),
        *resources_notes([s], result.settings.pause_neighbours),
        *workers_by_host([s]),
        *api_blocks,
        Heading("Executions" + source),
        executions_table(s),
        Heading("Timeline"),
        bullets(event_lines(result) or ["no events"]),
    ]
    if rest := [c for c in charts if not c.path.endswith(at_a_glance.ANSWER_CHART)]:
        blocks += [Heading("Charts"), Figures(rest)]
    if s.settings:
        blocks += [Heading(f"Settings of {s.implementation}"), scenario_settings_table(s)]
    blocks += [Heading("How to read this"), Paragraph(thresholds_text(result.settings, job_memory(result)))]
    return blocks
