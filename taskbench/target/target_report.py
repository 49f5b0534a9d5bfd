"""`taskbench run --target`: the figures of a measured deployment (`summarise`, pure), its Markdown report and the
terminal's short answer, and the run itself (`run`: measure, then write `target_<stamp>.json` and `.md`).

Every latency counts from the submission's *origin*: its due time under `--rate` (an open loop: a stall in the target
shows as latency instead of slowing the load down), its send time in a burst. The queue time ends when a poll first
saw the job running, the total time when one first saw it done: both as precise as the poll interval, which the
report states with the gap measured between two polls of one job.

Under `--rate`, completions kept up with arrivals when, over the step's steady part (after its first 20 %, the
warm-up):
- the jobs finished (done or failed) in it are at least (1 − 10 %) of the accepted jobs due in it, the due window
  shifted by the median execution seen (first seen running → first seen done), less one job for counting whole jobs;
- the backlog (jobs accepted but not yet seen finished, every 0.5 s) does not grow: its least-squares slope is at most
  10 % of the rate, or adds under one job over the steady part;
- every submission was accepted.
It is inconclusive when the harness could not offer the rate (it sent late: schedule lag p99 over 0.1 s, or slower
than 95 % of a uniform rate, or fewer than scheduled) or the run was interrupted. The rule is the one
`taskbench.analysis.rates` applies to taskbench's own stack, without what only the stack shows (its queue counts,
the ledger's execution stamps, the API's two probes).
"""

from __future__ import annotations

import contextlib
import itertools
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from rich.console import Console

from taskbench.analysis import rates
from taskbench.analysis.rates import MAX_LAG_S, SEND_RATE_SHARE, slope
from taskbench.report import markdown as md
from taskbench.report import terminal
from taskbench.report.blocks import Table
from taskbench.run.run import claim_folder, timestamp
from taskbench.target import target
from taskbench.target.target import (
    JobTrace,
    KeepingUp,
    Percentiles,
    ProbeFigures,
    TargetOptions,
    TargetRun,
    TargetSubmission,
    TargetSummary,
)

BACKLOG_STEP_S = 0.5
TOP_ERRORS = 5


# ── figures ───────────────────────────────────────────────────────────────────────────────────────────────────────


def percentiles(values: Iterable[float]) -> Percentiles:
    data = np.fromiter(values, dtype=float)
    if data.size == 0:
        return Percentiles()
    p50, p95, p99 = (float(v) for v in np.percentile(data, [50, 95, 99]))
    return Percentiles(count=int(data.size), p50=p50, p95=p95, p99=p99, max=float(data.max()))


def origin(run: TargetRun, submission: TargetSubmission) -> float:
    return submission.due_at if run.settings.mode == "rate" else submission.sent_at


def _finished_at(trace: JobTrace) -> float | None:
    return trace.transitions[-1].seen_at if trace.finished else None


def longest_silence(run: TargetRun) -> float:
    """The longest stretch, from the first send to the end of the wait, in which no probe got an answer."""
    start, end = run.sending_from, run.waited_until
    answers = sorted(p.sent_at + p.latency_s for p in run.probes if p.latency_s is not None)
    marks = [start, *(t for t in answers if start <= t <= end), end]
    return max((b - a for a, b in itertools.pairwise(marks)), default=0.0)


def probe_figures(run: TargetRun) -> ProbeFigures | None:
    if run.settings.probe is None:
        return None
    latencies = percentiles(p.latency_s for p in run.probes if p.latency_s is not None)
    return ProbeFigures(
        path=run.settings.probe,
        sent=len(run.probes),
        answered=latencies.count,
        timeouts=sum(p.error == "timeout" for p in run.probes),
        errors=sum(p.latency_s is None and p.error != "timeout" for p in run.probes),
        server_errors=sum((p.status_code or 0) >= 500 for p in run.probes),
        p50=latencies.p50,
        p99=latencies.p99,
        max=latencies.max,
        longest_silence_s=longest_silence(run),
    )


def keeping_up(run: TargetRun) -> KeepingUp | None:
    settings = run.settings
    if settings.mode != "rate" or settings.rate_per_s is None or settings.for_s is None:
        return None
    rate, start = settings.rate_per_s, run.sending_from
    steady_from, steady_to = start + settings.warmup_share * settings.for_s, start + settings.for_s
    window = steady_to - steady_from
    subs = {s.index: s for s in run.submissions}
    executions = [
        done - running
        for t in run.jobs
        if (running := t.first("running")) is not None and (done := t.first("done")) is not None
    ]
    shift = float(np.median(executions)) if executions else 0.0
    finished = [f for t in run.jobs if (f := _finished_at(t)) is not None]
    done_in = sum(1 for f in finished if steady_from <= f < steady_to)
    due_in = sum(1 for t in run.jobs if steady_from - shift <= subs[t.index].due_at < steady_to - shift)
    accepted_at = sorted(s.answered_at for s in run.submissions if s.job_id and s.answered_at is not None)
    finished.sort()

    def backlog(at: float) -> int:
        return int(np.searchsorted(accepted_at, at, side="right") - np.searchsorted(finished, at, side="right"))

    steady = [(t - start, backlog(t)) for t in np.arange(steady_from, steady_to + 1e-9, BACKLOG_STEP_S)]
    backlog_slope = slope([(float(t), float(b)) for t, b in steady])
    whole = [backlog(t) for t in np.arange(start, run.waited_until + 1e-9, BACKLOG_STEP_S)]
    sending = rates.send_rate(s.sent_at for s in run.submissions)
    lag = percentiles(s.sent_at - s.due_at for s in run.submissions).p99
    inconclusive = ["the run was interrupted"] if run.interrupted else []
    uniform = settings.arrivals == "uniform"
    inconclusive += rates.harness_shortfalls(len(run.submissions), settings.jobs, lag, sending, rate, uniform)
    reasons = []
    refused = sum(1 for s in run.submissions if not s.job_id)
    if refused:
        reasons.append(f"{refused} of {len(run.submissions)} submissions failed")
    margin = settings.throughput_margin
    if done_in < (1 - margin) * due_in - 1:
        reasons.append(
            f"completions fell behind: {done_in} finished in the steady {window:.1f} s against {due_in} due "
            f"(margin {margin:.0%})"
        )
    if backlog_slope is not None and backlog_slope > margin * rate and backlog_slope * window > 1:
        reasons.append(f"the backlog grew {backlog_slope:.2f} jobs/s over the steady part")
    verdict = "inconclusive" if inconclusive else "fell behind" if reasons else "kept up"
    return KeepingUp(
        offered_per_s=rate,
        send_rate_per_s=sending,
        schedule_lag_p99_s=lag,
        steady_from_s=steady_from - start,
        steady_to_s=steady_to - start,
        shift_s=shift,
        due_in_steady=due_in,
        done_in_steady=done_in,
        completion_per_s=done_in / window,
        expected_per_s=due_in / window,
        backlog_slope_per_s=backlog_slope,
        backlog_max=max(whole, default=0),
        verdict=verdict,
        reasons=inconclusive or reasons,
    )


def summarise(run: TargetRun) -> TargetSummary:
    subs = {s.index: s for s in run.submissions}
    accepted = [s for s in run.submissions if s.job_id]
    origins = {t.job_id: origin(run, subs[t.index]) for t in run.jobs}
    done = [t for t in run.jobs if t.last_status == "done"]
    failed = [t for t in run.jobs if t.last_status == "failed"]
    lost = [t for t in run.jobs if not t.finished]
    running_seen = {t.job_id: r for t in run.jobs if (r := t.first("running")) is not None}
    done_seen = {t.job_id: d for t in done if (d := t.first("done")) is not None}
    gaps = [
        (t.last_poll_at - t.first_poll_at) / (t.polls - 1)
        for t in run.jobs
        if t.polls > 1 and t.first_poll_at is not None and t.last_poll_at is not None
    ]
    first_origin = min((origin(run, s) for s in run.submissions), default=None)
    last_done = max(done_seen.values(), default=None)
    span = last_done - first_origin if last_done is not None and first_origin is not None else 0.0
    errors = Counter(s.error or "no job id" for s in run.submissions if not s.job_id)
    summary = TargetSummary(
        scheduled=run.settings.jobs,
        sent=len(run.submissions),
        accepted=len(accepted),
        refused=len(run.submissions) - len(accepted),
        errors=dict(errors.most_common(TOP_ERRORS)),
        latency_from="due" if run.settings.mode == "rate" else "sent",
        submit=percentiles(s.answered_at - origin(run, s) for s in accepted if s.answered_at is not None),
        queue=percentiles(at - origins[job] for job, at in running_seen.items()),
        total=percentiles(at - origins[job] for job, at in done_seen.items()),
        execution=percentiles(at - running_seen[job] for job, at in done_seen.items() if job in running_seen),
        never_seen_running=sum(1 for job in done_seen if job not in running_seen),
        done=len(done),
        failed=len(failed),
        lost=0 if run.interrupted else len(lost),
        lost_last_seen={} if run.interrupted else dict(Counter(t.last_status or "never answered" for t in lost)),
        unfinished=len(lost) if run.interrupted else 0,
        throughput_per_s=len(done) / span if span > 0 else None,
        polls=sum(t.polls for t in run.jobs),
        poll_errors=sum(t.poll_errors for t in run.jobs),
        poll_gap_s=float(np.median(gaps)) if gaps else None,
        probe=probe_figures(run),
        keeping_up=keeping_up(run),
    )
    return summary.model_copy(update={"answer": answer(run, summary)})


# ── words ─────────────────────────────────────────────────────────────────────────────────────────────────────────


def _s(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


def _p(p: Percentiles) -> str:
    return " / ".join(_s(v) for v in (p.p50, p.p95, p.p99, p.max)) if p.count else "–"


def load_text(run: TargetRun) -> str:
    s = run.settings
    if s.mode == "rate":
        return f"{s.jobs} jobs at {s.rate_per_s:g}/s for {s.for_s:g} s ({s.arrivals} arrivals, open loop)"
    return f"a burst of {s.jobs} jobs"


def answer(run: TargetRun, s: TargetSummary) -> str:
    fate = (
        f"{s.unfinished} not finished when the run was interrupted"
        if run.interrupted
        else f"{s.lost} lost (not done within {run.settings.deadline_s:g} s of the last submission)"
    )
    parts = [
        f"{s.accepted} of {s.sent} submissions accepted; of those, {s.done} done, {s.failed} failed and {fate}"
        + (f"; total time p50 {_s(s.total.p50)}, p95 {_s(s.total.p95)}" if s.total.count else "")
        + "."
    ]
    k = s.keeping_up
    if k is not None:
        verdict = {
            "kept up": "completions kept up with arrivals",
            "fell behind": "completions fell behind arrivals",
            "inconclusive": "whether completions kept up is inconclusive",
        }[k.verdict]
        parts.append(
            f"At {k.offered_per_s:g}/s {verdict}: {k.completion_per_s:.1f}/s finished "
            f"against {k.expected_per_s:.1f}/s due in the steady part"
            + (f", backlog trend {k.backlog_slope_per_s:+.2f} jobs/s" if k.backlog_slope_per_s is not None else "")
            + (f" ({'; '.join(k.reasons)})" if k.reasons else "")
            + "."
        )
    if s.probe is not None:
        p = s.probe
        parts.append(
            f"GET {p.path}: p99 {_s(p.p99)}, longest silence {_s(p.longest_silence_s)}"
            + (f", {p.sent - p.answered} of {p.sent} unanswered" if p.sent - p.answered else "")
            + "."
        )
    for fault in run.faults:
        outcome = f"exit {fault.exit_code}" if fault.exit_code is not None else (fault.note or "no exit code")
        parts.append(f"Fault {fault.name}: {outcome}.")
    if run.interrupted:
        parts.append("Interrupted: partial results.")
    return " ".join(parts)


def _summary(run: TargetRun) -> TargetSummary:
    return run.summary if run.summary is not None else summarise(run)


def figures_table(run: TargetRun) -> Table:
    """The short answer's figures, for the terminal and the top of the report."""
    s = _summary(run)
    origin_word = "due time" if s.latency_from == "due" else "send"
    rows: list[list[str | list[str]]] = [
        ["submissions", f"{s.accepted} accepted of {s.sent} sent ({s.refused} failed)"],
        [f"submit latency p50 / p95 / p99 / max (from the {origin_word})", _p(s.submit)],
        [f"queue time ({origin_word} → first seen running)", _p(s.queue)],
        [f"total time ({origin_word} → first seen done)", _p(s.total)],
        ["jobs done / failed / lost", f"{s.done} / {s.failed} / {s.lost}"]
        if not run.interrupted
        else ["jobs done / failed / not finished (interrupted)", f"{s.done} / {s.failed} / {s.unfinished}"],
        ["throughput", f"{s.throughput_per_s:.2f} jobs/s" if s.throughput_per_s else "–"],
    ]
    if s.keeping_up is not None:
        k = s.keeping_up
        rows.append(
            [
                "kept up with arrivals?",
                f"{k.verdict}: {k.completion_per_s:.1f}/s finished, {k.expected_per_s:.1f}/s due (offered "
                f"{k.offered_per_s:g}/s); backlog "
                + (f"{k.backlog_slope_per_s:+.2f} jobs/s" if k.backlog_slope_per_s is not None else "–"),
            ]
        )
    if s.probe is not None:
        p = s.probe
        rows.append(
            [
                f"GET {p.path} p50 / p99, longest silence",
                f"{_s(p.p50)} / {_s(p.p99)}, {_s(p.longest_silence_s)} ({p.answered} of {p.sent} answered)",
            ]
        )
    for fault in run.faults:
        rows.append([f"fault {fault.name}", fault.note or f"exit {fault.exit_code}"])
    rows.append(["precision of job times", f"poll gap {_s(s.poll_gap_s)} (asked: {_s(run.settings.poll_interval_s)})"])
    return Table(headers=["figure", "value"], rows=rows)


def markdown(run: TargetRun) -> str:
    s = _summary(run)
    sections = [
        _head_and_submissions(run, s),
        _jobs(run, s),
        _keeping_up_section(run, s),
        _probe_section(run, s),
        _fault_commands(run),
        _how_measured(run),
    ]
    return "\n".join(line for section in sections for line in section) + "\n"


def _origin_word(s: TargetSummary) -> str:
    return "due time" if s.latency_from == "due" else "send"


def _head_and_submissions(run: TargetRun, s: TargetSummary) -> list[str]:
    st, origin_word = run.settings, _origin_word(s)
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(run.started_at))
    lines = [
        f"# Your deployment: {st.target}",
        "",
        f"**{s.answer}**",
        "",
        f"- Load: {load_text(run)}; measured {when}, taskbench {st.taskbench_version}"
        + (f" ({st.git_revision})" if st.git_revision else ""),
        f"- Scenario: `{st.scenario}` (sha256 `{st.scenario_sha256}`)",
        f"- Command: `{st.command_line}`",
        f"- Trial call before the load: submit → `{run.trial.job_id}` in {_s(run.trial.submit_s)}, status → "
        f"{run.trial.status} in {_s(run.trial.status_s)} (that job is not in the figures)",
        "",
        md.table(figures_table(run)),
        "",
        "## Submissions",
        "",
        f"{s.sent} sent of {s.scheduled} scheduled, {s.accepted} accepted, {s.refused} failed. Latency counts from "
        f"each submission's {origin_word}"
        + (
            " (open loop: each was sent at its due time whether or not earlier ones had answered, so a stall "
            "shows as latency instead of slowing the load down)."
            if s.latency_from == "due"
            else "."
        ),
        "",
        md.table(
            Table(
                headers=["", "p50", "p95", "p99", "max", "count"],
                rows=[["submit latency", *_cells(s.submit)]],
            )
        ),
    ]
    if s.errors:
        lines += ["", "Errors (most frequent first):", ""]
        lines += [f"- {count} × `{error}`" for error, count in s.errors.items()]
    return lines


def _jobs(run: TargetRun, s: TargetSummary) -> list[str]:
    st, origin_word = run.settings, _origin_word(s)
    lines = [
        "",
        "## Jobs",
        "",
        (
            f"{s.done} done, {s.failed} failed, {s.unfinished} not finished when the run was interrupted"
            if run.interrupted
            else f"{s.done} done, {s.failed} failed, {s.lost} lost (accepted, not seen done or failed within "
            f"{st.deadline_s:g} s of the last submission)"
        )
        + (f": last seen {_counts(s.lost_last_seen)}" if s.lost_last_seen else "")
        + ". Throughput: "
        + (
            f"{s.throughput_per_s:.2f} jobs done a second ({origin_word} of the first → last seen done)."
            if s.throughput_per_s
            else "–."
        ),
        "",
        md.table(
            Table(
                headers=["", "p50", "p95", "p99", "max", "count"],
                rows=[
                    [f"queue time ({origin_word} → first seen running)", *_cells(s.queue)],
                    [f"total time ({origin_word} → first seen done)", *_cells(s.total)],
                    ["execution (first seen running → first seen done)", *_cells(s.execution)],
                ],
            )
        ),
        "",
        f"Precision: each job's status was read through the scenario's `status` every {_s(st.poll_interval_s)} "
        f"(at most {st.poll_concurrency} calls in flight); the gap measured between two polls of one job was "
        f"{_s(s.poll_gap_s)} (median). A status change is stamped on the harness's clock when the first poll that "
        "answered it returned, so queue, total and execution times are late by up to that gap, and short ones are "
        f"not resolved below it. {s.never_seen_running} done jobs went from queued to done between two polls (they "
        f"are not in the queue time). {s.polls} polls answered, {s.poll_errors} raised or timed out.",
    ]
    return lines


def _keeping_up_section(run: TargetRun, s: TargetSummary) -> list[str]:
    st, k = run.settings, s.keeping_up
    if k is None:
        return []
    lines = [
        "",
        "## Did completions keep up with arrivals?",
        "",
        f"**{k.verdict}**" + (f": {'; '.join(k.reasons)}" if k.reasons else "") + ".",
        "",
        md.table(
            Table(
                headers=[
                    "offered",
                    "sent",
                    "schedule lag p99",
                    "steady part",
                    "due in it",
                    "finished in it",
                    "finished/s",
                    "due/s",
                    "backlog trend",
                    "backlog max",
                ],
                rows=[
                    [
                        f"{k.offered_per_s:g}/s",
                        f"{k.send_rate_per_s:.2f}/s" if k.send_rate_per_s is not None else "–",
                        _s(k.schedule_lag_p99_s),
                        f"{k.steady_from_s:.1f}–{k.steady_to_s:.1f} s",
                        str(k.due_in_steady),
                        str(k.done_in_steady),
                        f"{k.completion_per_s:.2f}",
                        f"{k.expected_per_s:.2f}",
                        f"{k.backlog_slope_per_s:+.2f} jobs/s" if k.backlog_slope_per_s is not None else "–",
                        str(k.backlog_max),
                    ]
                ],
            )
        ),
        "",
        f"The rule: over the steady part (after the first {st.warmup_share:.0%} of the step), the jobs finished "
        f"(done or failed) must reach {1 - st.throughput_margin:.0%} of the accepted jobs due in it, less one "
        f"(the due window shifted by the median execution seen, {_s(k.shift_s)}); the backlog (accepted, not yet "
        f"seen finished, every {BACKLOG_STEP_S:g} s) may grow by at most {st.throughput_margin:.0%} of the rate "
        "or one job over the part (least squares); every submission must be accepted. Inconclusive when the "
        f"harness itself sent late (schedule lag p99 over {MAX_LAG_S:g} s, or under {SEND_RATE_SHARE:.0%} of a "
        "uniform rate) or was interrupted. Finishes are seen by polling, so they lag by up to the poll gap.",
    ]
    return lines


def _probe_section(run: TargetRun, s: TargetSummary) -> list[str]:
    st, p = run.settings, s.probe
    if p is None:
        return []
    lines = [
        "",
        f"## Responsiveness: GET {p.path}",
        "",
        f"One GET every {_s(st.probe_interval_s)} on a thread and event loop of the harness's own (a probe "
        f"unanswered after {st.probe_timeout_s:g} s is a timeout), from the first submission to the end of the "
        "wait.",
        "",
        md.table(
            Table(
                headers=["sent", "answered", "timeouts", "errors", "5xx", "p50", "p99", "max", "longest silence"],
                rows=[
                    [
                        str(p.sent),
                        str(p.answered),
                        str(p.timeouts),
                        str(p.errors),
                        str(p.server_errors),
                        _s(p.p50),
                        _s(p.p99),
                        _s(p.max),
                        _s(p.longest_silence_s),
                    ]
                ],
            )
        ),
    ]
    return lines


def _fault_commands(run: TargetRun) -> list[str]:
    if not run.faults:
        return []
    lines = [
        "",
        "## Fault commands",
        "",
        "Each ran once, in a shell, when half the accepted jobs had been seen running or finished; the run then "
        "waited for the jobs as usual.",
        "",
        md.table(
            Table(
                headers=["name", "command", "when", "started", "took", "exit code", "note"],
                rows=[
                    [
                        f.name,
                        f"`{f.command}`",
                        f.trigger or "–",
                        f"{f.started_at - run.sending_from:.2f} s into the load" if f.started_at else "–",
                        _s(f.ended_at - f.started_at) if f.started_at and f.ended_at else "–",
                        str(f.exit_code) if f.exit_code is not None else "–",
                        f.note or "",
                    ]
                    for f in run.faults
                ],
            )
        ),
    ]
    for f in run.faults:
        if f.output.strip():
            tail = "\n".join(f.output.strip().splitlines()[-10:])
            lines += ["", f"Output of {f.name} (last lines):", "", "```", tail, "```"]
    return lines


def _how_measured(run: TargetRun) -> list[str]:
    st = run.settings
    lines = [
        "",
        "## How this was measured",
        "",
        "- From outside, like any client: the scenario file's `submit` and `status` ran in the harness's process "
        "against the target; nothing was started, purged, restarted or sampled there, and no fault was injected "
        "but the commands listed above.",
        "- Times are the harness's clock (`time.time()`), latencies `perf_counter`; the jobs' own stamps, which only "
        "the deployment knows, are not read.",
        f"- A submit or status call that took over {st.call_timeout_s:g} s counts as a timeout.",
    ]
    return lines


def _cells(p: Percentiles) -> list[str | list[str]]:
    return [_s(p.p50), _s(p.p95), _s(p.p99), _s(p.max), str(p.count)]


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {status}" for status, n in counts.items())


# ── the run ───────────────────────────────────────────────────────────────────────────────────────────────────────


def run(options: TargetOptions, output: Path, console: Console) -> tuple[Path, TargetRun]:
    """Measure, then write `target_<stamp>.json` (the record, with its figures) and `.md` into a folder of its own
    under `output`, and print the short answer."""
    stamp = timestamp()
    folder = claim_folder(output, f"{stamp}_target", "--output")
    try:
        record = target.measure(options, console)
    except BaseException:
        with contextlib.suppress(OSError):
            folder.rmdir()  # nothing measured: no empty folder left behind
        raise
    record.summary = summarise(record)
    (folder / f"target_{stamp}.json").write_text(record.model_dump_json(indent=2) + "\n")
    (folder / f"target_{stamp}.md").write_text(markdown(record))
    console.print()
    terminal.show(console, figures_table(record), f"Your deployment: {record.settings.target}")
    console.print(f"\n{record.summary.answer}", markup=False)
    console.print(f"\nreport: {folder / f'target_{stamp}.md'}", soft_wrap=True)
    return folder, record
