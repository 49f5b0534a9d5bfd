"""The failure rules: each names what failed and the evidence, against thresholds the report states."""

from __future__ import annotations

from typing import Any

from taskbench import stats
from taskbench.results import ScenarioResult, Thresholds


def _fmt_s(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f} s"


def is_responsive(probes: dict[str, Any], thresholds: Thresholds) -> bool:
    unanswered = probes["timeouts"] + probes["errors"]
    p99 = probes["p99"]
    return unanswered == 0 and p99 is not None and p99 <= thresholds.responsive_p99_s


def detect(summary: dict[str, Any], thresholds: Thresholds) -> list[dict[str, str]]:
    """Every failure found in one scenario's summary, as {rule, evidence}."""
    if summary.get("interrupted"):  # stopped early by Ctrl-C: unfinished jobs are not the service's fault
        return []
    found: list[dict[str, str]] = []
    for endpoint, probes in summary["probes"].items():
        if probes["sent"] and not is_responsive(probes, thresholds):
            found.append(
                {
                    "rule": f"server unresponsive ({endpoint} endpoint)",
                    "evidence": (
                        f"probe p99 {_fmt_s(probes['p99'])} (limit {thresholds.responsive_p99_s} s), "
                        f"{probes['timeouts']} of {probes['sent']} probes timed out, {probes['errors']} errors, "
                        f"longest silence {probes['longest_silence_s']:.2f} s"
                    ),
                }
            )
    sub = summary["submission"]
    if sub["timeouts"] or sub["errors"]:
        found.append(
            {
                "rule": "submission timeouts",
                "evidence": (
                    f"{sub['timeouts']} of {sub['attempted']} submissions timed out "
                    f"(limit {thresholds.submit_timeout_s} s), {sub['errors']} were refused or failed; "
                    f"max accept time {_fmt_s(sub['max'])}"
                ),
            }
        )
    peak = summary.get("peak_memory_mb")
    system = summary["resources"].get("system", {})
    if (peak is not None and peak > thresholds.memory_limit_mb) or system.get(
        "memory_peak_percent", 0
    ) > thresholds.system_memory_limit_percent:
        found.append(
            {
                "rule": "resource exhaustion",
                "evidence": (
                    f"{summary['job_process']} peaked at {peak or 0:.0f} MB "
                    f"(limit {thresholds.memory_limit_mb:.0f} MB); "
                    f"system memory peaked at {system.get('memory_peak_percent', 0):.1f} % "
                    f"(limit {thresholds.system_memory_limit_percent:.0f} %)"
                ),
            }
        )
    done = summary["completion"]
    execs = summary["executions"]
    if done["pending"] or done["missing_records"] or (summary["fault"] and execs["lost"]):
        lost = execs["lost"] if summary["fault"] else done["pending"] + done["missing_records"]
        found.append(
            {
                "rule": "jobs not completed",
                "evidence": (
                    f"{lost} of {summary['jobs']} jobs never completed "
                    f"({done['pending']} still queued or running, {done['missing_records']} records gone)"
                ),
            }
        )
    if done["failed"]:
        found.append({"rule": "jobs failed", "evidence": f"{done['failed']} jobs ended with an error"})
    if summary["fault"] and execs["duplicated"]:
        found.append({"rule": "jobs duplicated", "evidence": f"{execs['duplicated']} jobs completed more than once"})
    ratio = summary.get("makespan_ratio")
    if ratio is not None and not summary["fault"] and ratio > thresholds.makespan_ratio_limit:
        found.append(
            {
                "rule": "makespan far over ideal",
                "evidence": (
                    f"makespan {summary['makespan_s']:.2f} s is {ratio:.2f}× the ideal "
                    f"{summary['ideal_makespan_s']:.2f} s (limit {thresholds.makespan_ratio_limit}×; "
                    f"ideal assumes {summary['capacity']['reason']})"
                ),
            }
        )
    return found


def annotate(summary: dict[str, Any], thresholds: Thresholds) -> dict[str, Any]:
    """The summary with its failures and the spec's "Server Responsive" column added."""
    probes = [p for p in summary["probes"].values() if p["sent"]]
    return {
        **summary,
        "responsive": all(is_responsive(p, thresholds) for p in probes) if probes else None,
        "failures": detect(summary, thresholds),
    }


def evaluate(result: ScenarioResult) -> dict[str, Any]:
    """A scenario's figures and failures, from its raw data and the thresholds it ran with."""
    return annotate(stats.summarize(result), result.settings.thresholds)
