"""A page of answers (`taskbench report RUN --page …/questions.md`): the questions queue users ask in their trackers,
each answered from what the run staged, per queue, with the setting that decides it and the command that measured
it. A question the run did not stage is left out; the page says which and how to stage it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from taskbench.analysis.models import AnalysedRun, ScenarioSummary
from taskbench.report import held_behind
from taskbench.report.blocks import Block, Bullet, Bullets, Cell, Heading, Paragraph, Table
from taskbench.report.content import LEFT_BEHIND_HEADERS, autoscaler_table, left_behind_cells, rejudged_text


@dataclass(frozen=True)
class Question:
    title: str
    asked: str  # in the trackers' words
    stage: str  # the flags that stage it
    setting: str  # the key of each implementation's settings that decides it ("" when none)
    rows: Callable[[AnalysedRun], list[ScenarioSummary]]


def _fault(*names: str) -> Callable[[AnalysedRun], list[ScenarioSummary]]:
    return lambda run: [s for s in run.summaries if s.fault in names]


def _largest_bursts(run: AnalysedRun) -> list[ScenarioSummary]:
    """Per implementation and workload, its largest burst without a fault."""
    plain = [s for s in run.summaries if not s.fault and not s.rate and s.broker is not None]
    largest = {(s.implementation, s.workload): s for s in sorted(plain, key=lambda s: s.jobs)}
    return list(largest.values())


def _waiting_bursts(run: AnalysedRun) -> list[ScenarioSummary]:
    """Per implementation, its largest burst without a fault whose jobs waited (its broker's count was read)."""
    read = [s for s in run.summaries if s.depth_seen is not None and s.depth_seen.peak_waiting]
    largest = {s.implementation: s for s in sorted(read, key=lambda s: s.jobs)}
    return list(largest.values())


def _uneven_bursts(run: AnalysedRun) -> list[ScenarioSummary]:
    """Per implementation, its largest `uneven` burst whose long job ran to its end."""
    read = [s for s in run.summaries if s.held_behind is not None]
    return list({s.implementation: s for s in sorted(read, key=lambda s: s.jobs)}.values())


QUESTIONS = (
    Question(
        "A worker dies mid-job: is the job lost, or run again?",
        "“Tasks lost when the worker is OOM-killed”, “acks_late did not requeue my task” (Celery, RQ, Dramatiq "
        "trackers)",
        "--faults worker-crash",
        "",
        _fault("worker-crash"),
    ),
    Question(
        "A worker that keeps dying: what share of the jobs still completes?",
        "“Workers OOM-killed 15–24 times an hour”, a crash loop under Kubernetes (the recovery ratio a "
        "PostgreSQL-queue benchmark publishes per queue)",
        "--faults worker-crash-loop",
        "",
        _fault("worker-crash-loop"),
    ),
    Question(
        "A deploy under load: are jobs lost or run twice?",
        "“Tasks lost on warm shutdown”, “jobs re-run after every deploy” (a rolling restart: SIGTERM, then SIGKILL "
        "after the grace period)",
        "--faults worker-deploy",
        "on SIGTERM",
        _fault("worker-deploy"),
    ),
    Question(
        "A job longer than the redelivery timeout: does it run twice?",
        "“Long tasks executed twice” (Celery's visibility_timeout with acks_late; taskiq-redis idle_timeout #101)",
        "--faults long-job",
        "a job outliving its timeout",
        _fault("long-job"),
    ),
    Question(
        "A job blocks the worker's event loop (or holds the GIL): is it taken for dead and run twice?",
        "“CPU-bound task holds the GIL, the heartbeat starves, the message is redelivered while it still runs” "
        "(Dramatiq #692); here for the asyncio workers that renew a running job's claim on the loop the job blocks",
        "--faults blocked-loop",
        "a job that blocks its event loop",
        _fault("blocked-loop"),
    ),
    Question(
        "The broker drops every connection (a failover, a proxy's restart): do the workers come back, and the jobs?",
        "“Worker stops consuming after Redis reconnect”, “ConnectionError: Connection closed by server” (Celery, "
        "RQ, arq trackers), pg_terminate_backend under a PostgreSQL queue; kombu's restore lock left held by a "
        "dropped connection (found here)",
        "--faults redis-connections-killed,postgres-connections-killed",
        "",
        _fault("redis-connections-killed", "postgres-connections-killed"),
    ),
    Question(
        "What does the broker keep that nobody reads, and does the worker's memory only grow?",
        "“Redis memory keeps growing”, “the stream is never trimmed”, “worker memory only goes up”",
        "--workloads noop --noop-jobs 1000",
        "",
        _largest_bursts,
    ),
    Question(
        "Prefetching: do workers hold jobs that an autoscaler and idle workers cannot see?",
        "“acks_late prefetch drifts to ~700 reserved per worker, KEDA never scales” (Celery), “--max-prefetch is "
        "off by one” (taskiq)",
        "--workloads sleep --duration 0.3 --jobs 40 --concurrency 2",
        "",
        _waiting_bursts,
    ),
    Question(
        "One long job among short ones: do the short ones wait behind it while another worker idles?",
        "“Short tasks stuck behind a long one on a busy worker while the others idle” (Celery: why -Ofair and "
        "worker_prefetch_multiplier = 1 exist), “a worker process holds the messages it prefetched”",
        "--workloads uneven --jobs 12 --duration 0.1 --concurrency 2",
        "",
        _uneven_bursts,
    ),
)


def _outcome_table(run: AnalysedRun, summaries: Sequence[ScenarioSummary], setting: str) -> Table:
    headers = ["Queue", "Setting", "Exactly once", "Never finished", "Run twice (concurrent / sequential)"]
    headers += ["What decides it" if setting else "Its promise"]
    rows: list[list[Cell]] = []
    for s in summaries:
        h = s.history
        if h is None:
            continue
        decides = _setting(run, s.implementation, setting) if setting else (s.delivery.promise if s.delivery else "")
        rows.append(
            [
                run.title(s.implementation),
                s.variant or "default",
                "–" if h.exactly_once is None else f"{h.exactly_once:.0%} of {h.acknowledged}",
                str(h.lost + h.unfinished),
                f"{h.duplicated} ({h.concurrent} / {h.sequential})",
                decides,
            ]
        )
    return Table(headers, rows)


def _left_behind_table(run: AnalysedRun, summaries: Sequence[ScenarioSummary]) -> Table:
    rows: list[list[Cell]] = [
        [run.title(s.implementation), f"{s.jobs} {s.workload}", *left_behind_cells(s)] for s in summaries
    ]
    return Table(["Queue", "Burst", *LEFT_BEHIND_HEADERS], rows)


def _setting(run: AnalysedRun, implementation: str, key: str) -> str:
    info = run.info(implementation)
    return "" if info is None else info.settings.get(key, "")


def blocks(run: AnalysedRun) -> list[Block]:
    out: list[Block] = [
        Heading("Questions queue users ask, answered by measurement", 1),
        Paragraph(
            f"Each answer is measured by the run {run.timestamp} (its command below), per queue on its settings as "
            "taskbench runs it (each report prints them): the counts are Jepsen's, over each job's history "
            "(docs/workloads-and-faults.md): exactly once, never finished (acknowledged, never run to its end), run "
            "twice (concurrently, or again after the first ended or died)."
        ),
    ]
    left_out: list[Bullet] = []
    for q in QUESTIONS:
        summaries = q.rows(run)
        if not summaries:
            left_out.append(Bullet(f"{q.title} Stage it with `{q.stage}`."))
            continue
        out += [Heading(q.title, 2), Paragraph(f"Asked: {q.asked}. Staged with `{q.stage}`.")]
        if q.rows is _largest_bursts:
            out.append(_left_behind_table(run, summaries))
        elif q.rows is _waiting_bursts:
            out.append(autoscaler_table(run, summaries))
        elif q.rows is _uneven_bursts:
            out += [Paragraph(held_behind.MEANING), held_behind.table(run, summaries)]
        else:
            out.append(_outcome_table(run, summaries, q.setting))
    if left_out:
        out += [Heading("Not staged in this run", 2), Bullets(left_out)]
    command = run.command or "(not recorded)"
    machine = run.environment.machine
    out += [
        Heading("How it was measured", 2),
        Paragraph(
            f"`{command}`, by taskbench {run.taskbench or '?'} ({run.git_revision or 'no revision recorded'}) on "
            f"{machine.cpu_count} cores, {machine.memory_gb:.1f} GB, Python {machine.python}{rejudged_text(run)}."
        ),
    ]
    return out
