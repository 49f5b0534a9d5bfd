"""The failure rules: each names what failed and the evidence, against thresholds the report states.

`checks` evaluates every rule whether it fired or not, with the figure it compares and its limit, so that
the repeats of a scenario can say which rules fired in some runs only, or came near their limit
(`taskbench.analysis.repeats`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from taskbench.analysis.models import Failure, ProbeSummary, Rule, ScenarioSummary, Status
from taskbench.record.results import Thresholds


@dataclass(frozen=True)
class Check:
    """One rule on one run: fired or not, and its figure against its limit where it has one."""

    rule: Rule
    fired: bool
    evidence: str
    figure: float | None = None
    limit: float | None = None
    figure_name: str = ""
    unit: str = ""

    def near(self, margin: float) -> bool:
        """The figure within `margin` (a share) of its limit, on either side."""
        if self.figure is None or self.limit is None or self.limit <= 0:
            return False
        return abs(self.figure - self.limit) <= margin * self.limit

    def failure(self, runs: str = "") -> Failure:
        return Failure(
            rule=self.rule.value, evidence=self.evidence, figure=self.figure, limit=self.limit,
            figure_name=self.figure_name, unit=self.unit, runs=runs,
        )  # fmt: skip


def _fmt_s(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f} s"


def is_responsive(probes: ProbeSummary, thresholds: Thresholds) -> bool:
    return probes.unanswered == 0 and probes.p99 is not None and probes.p99 <= thresholds.responsive_p99_s


def checks(summary: ScenarioSummary, thresholds: Thresholds) -> list[Check]:
    """Every rule that applies to one run's summary, fired or not."""
    if summary.interrupted:  # stopped early by Ctrl-C: unfinished jobs are not the service's fault
        return []
    return [check for rule in RULES for check in rule(summary, thresholds)]


def _responsive(summary: ScenarioSummary, thresholds: Thresholds) -> list[Check]:
    return [
        Check(
            rule=Rule.unresponsive(endpoint),
            fired=not is_responsive(probes, thresholds),
            evidence=(
                f"probe p99 {_fmt_s(probes.p99)} (limit {thresholds.responsive_p99_s} s), "
                f"{probes.timeouts} of {probes.sent} probes timed out, {probes.errors} errors, "
                f"longest silence {probes.longest_silence_s:.2f} s"
            ),
            # unanswered probes fail the rule whatever the p99: then there is no figure to be near
            figure=probes.p99 if not probes.unanswered else None,
            limit=thresholds.responsive_p99_s,
            figure_name="probe p99",
            unit=" s",
        )
        for endpoint, probes in summary.probes.items()
        if probes.sent
    ]


def _submitted(summary: ScenarioSummary, thresholds: Thresholds) -> list[Check]:
    sub = summary.submission
    evidence = (
        f"{sub.timeouts} of {sub.attempted} submissions timed out (limit {thresholds.submit_timeout_s} s), "
        f"{sub.errors} were refused or failed; max accept time {_fmt_s(sub.max)}"
    )
    return [Check(rule=Rule.submission_timeouts, fired=bool(sub.timeouts or sub.errors), evidence=evidence)]


def _memory(summary: ScenarioSummary, thresholds: Thresholds) -> list[Check]:
    peak = summary.peak_memory_mb
    system_peak = summary.system.memory_peak_percent if summary.system else 0.0
    return [
        Check(
            rule=Rule.resource_exhaustion,
            fired=(peak is not None and peak > thresholds.memory_limit_mb)
            or system_peak > thresholds.system_memory_limit_percent,
            evidence=(
                f"{summary.job_process} peaked at {peak or 0:.0f} MB "
                f"(limit {thresholds.memory_limit_mb:.0f} MB); "
                f"system memory peaked at {system_peak:.1f} % "
                f"(limit {thresholds.system_memory_limit_percent:.0f} %)"
            ),
            figure=peak,
            limit=thresholds.memory_limit_mb,
            figure_name=f"{summary.job_process} peak memory",
            unit=" MB",
        )
    ]


def _completed(summary: ScenarioSummary, thresholds: Thresholds) -> list[Check]:
    done, execs = summary.completion, summary.executions
    lost = execs.lost if summary.fault else done.pending + done.missing_records
    evidence = (
        f"{lost} of {summary.jobs} jobs never completed "
        f"({done.pending} still queued or running, {done.missing_records} records gone)"
        + (f"; at the deadline {done.unfinished}" if done.unfinished else "")
    )
    fired = bool(done.pending or done.missing_records or (summary.fault and execs.lost))
    return [
        Check(rule=Rule.jobs_not_completed, fired=fired, evidence=evidence),
        Check(rule=Rule.jobs_failed, fired=bool(done.failed), evidence=f"{done.failed} jobs ended with an error"),
    ]


def _died(summary: ScenarioSummary, thresholds: Thresholds) -> list[Check]:
    return [Check(rule=Rule.process_died, fired=True, evidence="; ".join(summary.died))] if summary.died else []


def _duplicated(summary: ScenarioSummary, thresholds: Thresholds) -> list[Check]:
    if not summary.fault:
        return []
    duplicated = summary.executions.duplicated
    evidence = f"{duplicated} jobs completed more than once"
    return [Check(rule=Rule.jobs_duplicated, fired=bool(duplicated), evidence=evidence)]


def _sustained(summary: ScenarioSummary, thresholds: Thresholds) -> list[Check]:
    rate = summary.rate
    if rate is None or rate.verdict == "inconclusive":  # inconclusive: the harness's limit, not the queue's
        return []
    evidence = "; ".join(rate.reasons) or f"sustained {rate.offered_per_s:g}/s"
    return [Check(rule=Rule.rate_not_sustained, fired=rate.verdict == "saturated", evidence=evidence)]


def _makespan(summary: ScenarioSummary, thresholds: Thresholds) -> list[Check]:
    ratio, makespan, ideal = summary.makespan_ratio, summary.makespan_s, summary.ideal_makespan_s
    # Jobs whose own work (the model's waves, not the burst's arrival) is shorter than the slack (noop: none at
    # all) measure what the queue costs per job: the answer states that as throughput against the reference, and
    # slow is not failed. A 1 000-job no-op burst takes over a second to submit; that alone is no work to judge.
    work = summary.model_makespan_s if summary.model_makespan_s is not None else ideal
    if ratio is None or makespan is None or summary.fault or work < thresholds.makespan_slack_s:
        return []
    over_slack = makespan - ideal > thresholds.makespan_slack_s
    return [
        Check(
            rule=Rule.makespan_over_ideal,
            fired=ratio > thresholds.makespan_ratio_limit and over_slack,
            evidence=(
                f"makespan {makespan:.2f} s is {ratio:.2f}× the ideal {ideal:.2f} s (limit "
                f"{thresholds.makespan_ratio_limit}× and {thresholds.makespan_slack_s} s over; ideal assumes "
                f"{summary.capacity.reason}, and the burst's own arrival)"
            ),
            figure=ratio if over_slack else None,  # within the slack the ratio is not what decides
            limit=thresholds.makespan_ratio_limit,
            figure_name="makespan ÷ ideal",
            unit="×",
        )
    ]


# The rules that apply or not by the scenario's shape alone (its fault, jobs, concurrency and job length), the
# same in every run: the median of its repeats says so exactly (analysis.rejudge).
APPLIES_BY_SHAPE = frozenset({Rule.makespan_over_ideal.value})

# The rules in the order the reports list them.
RULES: tuple[Callable[[ScenarioSummary, Thresholds], list[Check]], ...] = (
    _responsive, _submitted, _memory, _completed, _died, _duplicated, _sustained, _makespan,
)  # fmt: skip


def detect(summary: ScenarioSummary, thresholds: Thresholds) -> list[Failure]:
    """Every failure found in one run's summary."""
    return [check.failure() for check in checks(summary, thresholds) if check.fired]


def judge(runs: Sequence[list[Check]], margin: float) -> tuple[list[Failure], list[Failure], Status]:
    """The failures (fired in every run, clear of the margin) and the borderline rules (fired in some runs
    only, or near the limit in any) of one scenario's runs, and its status."""
    failed: list[Failure] = []
    borderline: list[Failure] = []
    total = len(runs)
    for rule in dict.fromkeys(check.rule for run in runs for check in run):
        same = [check for run in runs for check in run if check.rule == rule]
        fired = [check for check in same if check.fired]
        runs_text = f"in {len(fired)} of {total} runs" if total > 1 and fired else ""
        example = fired[len(fired) // 2] if fired else max(same, key=lambda c: c.figure or 0.0)
        if fired and len(fired) == len(same) and not any(check.near(margin) for check in same):
            failed.append(example.failure(runs_text))
        elif fired or any(check.near(margin) for check in same):
            near = "" if fired and len(fired) < len(same) else f"within {margin:.0%} of its limit"
            borderline.append(example.failure(", ".join(p for p in (runs_text, near) if p)))
    status: Status = "failed" if failed else "borderline" if borderline else "held"
    return failed, borderline, status


def annotate(summary: ScenarioSummary, thresholds: Thresholds) -> ScenarioSummary:
    """One run's summary with its failures, borderline rules and the spec's "Server Responsive" column."""
    probes = [p for p in summary.probes.values() if p.sent]
    responsive = all(is_responsive(p, thresholds) for p in probes) if probes else None
    failed, borderline, status = judge([checks(summary, thresholds)], thresholds.borderline_margin)
    if summary.interrupted:  # its rules were not judged: it did not hold either
        status = "interrupted"
    return summary.model_copy(
        update={"responsive": responsive, "failures": failed, "borderline": borderline, "status": status}
    )
