"""The failure rules: each names what failed and the evidence, against thresholds the report states."""

from __future__ import annotations

from taskbench.analysis.models import Failure, ProbeSummary, ScenarioSummary
from taskbench.results import Thresholds


def _fmt_s(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f} s"


def is_responsive(probes: ProbeSummary, thresholds: Thresholds) -> bool:
    return probes.unanswered == 0 and probes.p99 is not None and probes.p99 <= thresholds.responsive_p99_s


def detect(summary: ScenarioSummary, thresholds: Thresholds) -> list[Failure]:
    """Every failure found in one scenario's summary."""
    if summary.interrupted:  # stopped early by Ctrl-C: unfinished jobs are not the service's fault
        return []
    found: list[Failure] = []
    for endpoint, probes in summary.probes.items():
        if probes.sent and not is_responsive(probes, thresholds):
            found.append(
                Failure(
                    rule=f"server unresponsive ({endpoint} endpoint)",
                    evidence=(
                        f"probe p99 {_fmt_s(probes.p99)} (limit {thresholds.responsive_p99_s} s), "
                        f"{probes.timeouts} of {probes.sent} probes timed out, {probes.errors} errors, "
                        f"longest silence {probes.longest_silence_s:.2f} s"
                    ),
                )
            )
    sub = summary.submission
    if sub.timeouts or sub.errors:
        found.append(
            Failure(
                rule="submission timeouts",
                evidence=(
                    f"{sub.timeouts} of {sub.attempted} submissions timed out "
                    f"(limit {thresholds.submit_timeout_s} s), {sub.errors} were refused or failed; "
                    f"max accept time {_fmt_s(sub.max)}"
                ),
            )
        )
    peak = summary.peak_memory_mb
    system_peak = summary.system.memory_peak_percent if summary.system else 0.0
    if (peak is not None and peak > thresholds.memory_limit_mb) or system_peak > thresholds.system_memory_limit_percent:
        found.append(
            Failure(
                rule="resource exhaustion",
                evidence=(
                    f"{summary.job_process} peaked at {peak or 0:.0f} MB "
                    f"(limit {thresholds.memory_limit_mb:.0f} MB); "
                    f"system memory peaked at {system_peak:.1f} % "
                    f"(limit {thresholds.system_memory_limit_percent:.0f} %)"
                ),
            )
        )
    done, execs = summary.completion, summary.executions
    if done.pending or done.missing_records or (summary.fault and execs.lost):
        lost = execs.lost if summary.fault else done.pending + done.missing_records
        found.append(
            Failure(
                rule="jobs not completed",
                evidence=(
                    f"{lost} of {summary.jobs} jobs never completed "
                    f"({done.pending} still queued or running, {done.missing_records} records gone)"
                ),
            )
        )
    if done.failed:
        found.append(Failure(rule="jobs failed", evidence=f"{done.failed} jobs ended with an error"))
    if summary.fault and execs.duplicated:
        found.append(Failure(rule="jobs duplicated", evidence=f"{execs.duplicated} jobs completed more than once"))
    ratio, makespan = summary.makespan_ratio, summary.makespan_s
    ideal = summary.ideal_makespan_s
    if (
        ratio is not None
        and makespan is not None
        and not summary.fault
        and ratio > thresholds.makespan_ratio_limit
        and makespan - ideal > thresholds.makespan_slack_s
    ):
        found.append(
            Failure(
                rule="makespan far over ideal",
                evidence=(
                    f"makespan {makespan:.2f} s is {ratio:.2f}× the ideal {ideal:.2f} s (limit "
                    f"{thresholds.makespan_ratio_limit}× and {thresholds.makespan_slack_s} s over; ideal assumes "
                    f"{summary.capacity.reason}, and the burst's own arrival)"
                ),
            )
        )
    return found


def annotate(summary: ScenarioSummary, thresholds: Thresholds) -> ScenarioSummary:
    """The summary with its failures and the spec's "Server Responsive" column filled in."""
    probes = [p for p in summary.probes.values() if p.sent]
    responsive = all(is_responsive(p, thresholds) for p in probes) if probes else None
    return summary.model_copy(update={"responsive": responsive, "failures": detect(summary, thresholds)})
