"""The Markdown reports: one per scenario, and the comparison that answers the question."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from taskbench.report.fmt import mb, ms, percent, ratio, seconds, table
from taskbench.results import RunResult, RunSettings, ScenarioResult

Charts = Sequence[tuple[str, str]]  # (title, path relative to the report), e.g. ("Job timeline", "charts/x.png")


def charts_section(charts: Charts) -> str:
    """Image lines for the charts drawn beside this report; empty when there are none."""
    if not charts:
        return ""
    return "## Charts\n\n" + "\n\n".join(f"![{title}]({path})" for title, path in charts)


def spec_table(summaries: list[dict[str, Any]]) -> str:
    """The spec's table, same columns."""
    headers = [
        "Jobs", "Implementation", "Completed", "Failed", "Avg Submission Time",
        "Avg Total Time", "Peak CPU", "Peak Memory", "Server Responsive",
    ]  # fmt: skip
    rows = [
        [
            str(s["jobs"]),
            s["implementation"].upper() + ("" if s["workload"] == "sleep" else f" ({s['workload']})"),
            f"{s['completion']['completed']}/{s['jobs']}",
            str(s["completion"]["failed"]),
            seconds(s["submission"]["avg"]),
            seconds(s["total_time"]["avg"], 1),
            percent(s["peak_cpu_percent"]),
            mb(s["peak_memory_mb"]),
            "✓" if s["responsive"] else "✗",
        ]
        for s in summaries
        if not s["fault"]
    ]
    return table(headers, rows)


def extended_table(summaries: list[dict[str, Any]]) -> str:
    headers = [
        "Scenario", "Submit p50 / p99 / max", "Async probe p99 / max", "Sync probe p99 / max",
        "Probes lost", "Queue avg / p95 / max", "Exec avg", "Total avg (from client send)", "Makespan / ideal",
        "Max running",
    ]  # fmt: skip
    rows = []
    for s in summaries:
        sub, pa, ps, q = s["submission"], s["probes"]["async"], s["probes"]["sync"], s["queue_time"]
        rows.append(
            [
                s["label"],
                f"{ms(sub['p50'])} / {ms(sub['p99'])} / {ms(sub['max'])}",
                f"{ms(pa['p99'])} / {ms(pa['max'])}",
                f"{ms(ps['p99'])} / {ms(ps['max'])}",
                f"{pa['timeouts'] + pa['errors']} / {ps['timeouts'] + ps['errors']}",
                f"{seconds(q['avg'], 2)} / {seconds(q['p95'], 2)} / {seconds(q['max'], 2)}",
                seconds(s["execution_time"]["avg"], 2),
                f"{seconds(s['total_time']['avg'], 2)} ({seconds(s['client_total_time']['avg'], 2)})",
                f"{seconds(s['makespan_s'], 2)} / {seconds(s['ideal_makespan_s'], 2)} ({ratio(s['makespan_ratio'])})",
                f"{s['max_running']} of {s['capacity']['concurrency']}",
            ]
        )
    return table(headers, rows)


def resources_table(summaries: list[dict[str, Any]]) -> str:
    headers = ["Scenario", "API CPU peak/avg", "API RSS peak", "Worker CPU peak/avg", "Worker RSS peak",
               "Redis CPU peak", "System CPU peak (all cores)", "System mem peak", "Harness CPU"]  # fmt: skip
    rows = []
    for s in summaries:
        r = s["resources"]
        api, worker, redis, system = (r.get(k, {}) for k in ("api", "worker", "redis", "system"))
        rows.append(
            [
                s["label"],
                f"{percent(api.get('cpu_peak'))} / {percent(api.get('cpu_avg'))}",
                mb(api.get("rss_peak_mb")),
                f"{percent(worker.get('cpu_peak'))} / {percent(worker.get('cpu_avg'))}",
                mb(worker.get("rss_peak_mb")),
                percent(redis.get("cpu_peak")),
                percent(system.get("cpu_peak")),
                percent(system.get("memory_peak_percent")),
                percent(s["harness"].get("cpu_percent")),
            ]
        )
    return table(headers, rows)


def faults_table(summaries: list[dict[str, Any]]) -> str:
    headers = ["Fault", "Implementation", "Accepted", "Completed once", "Lost", "Duplicated", "Redelivered",
               "Redelivery delay (visibility timeout)", "Completed after fault", "Lost / duplicated ids"]  # fmt: skip
    rows = []
    for s in (s for s in summaries if s["fault"]):
        e = s["executions"]
        ids = [*(f"lost {i}" for i in e["lost_ids"]), *(f"dup {i}" for i in e["duplicated_ids"])]
        rows.append(
            [
                s["fault"] + (f" ({s['variant']})" if s["variant"] else ""),
                s["implementation"],
                str(e["accepted"]),
                str(e["completed_once"]),
                str(e["lost"]),
                str(e["duplicated"]),
                str(e["recovered"]),
                f"{seconds(e.get('redelivery_delay_s'), 1)} ({seconds(s['delivery'].get('visibility_timeout_s'), 0)})"
                if s["implementation"] == "celery"
                else "–",
                str(e["completed_after_fault"]),
                "<br>".join(ids) or "–",
            ]
        )
    return table(headers, rows)


def thresholds_text(settings: RunSettings) -> str:
    t = settings.thresholds
    return (
        f"Responsive: no probe unanswered within {t.probe_timeout_s} s and probe p99 ≤ {t.responsive_p99_s} s, "
        f"on `/health` (async endpoint) and `/health/sync` (sync endpoint, needs a threadpool thread), probed every "
        f"{settings.probe_interval_s * 1000:.0f} ms. Submission timeout: {t.submit_timeout_s} s. Resource exhaustion: "
        f"the process running the jobs over {t.memory_limit_mb:.0f} MB RSS, or system memory over "
        f"{t.system_memory_limit_percent:.0f} %. "
        f"Makespan far over ideal: more than {t.makespan_ratio_limit}× ceil(N / concurrency) × duration. "
        f"Process CPU is % of one core (200 % = two cores busy); system CPU is % of all cores."
    )


def when_fastapi_fails(summaries: list[dict[str, Any]]) -> str:
    lines = []
    for s in summaries:
        if s["implementation"] != "fastapi":
            continue
        if not s["failures"]:
            lines.append(f"- **{s['label']}**: no failure detected.")
            continue
        lines.append(f"- **{s['label']}**:")
        lines += [f"  - {f['rule']}: {f['evidence']}" for f in s["failures"]]
    celery = [s for s in summaries if s["implementation"] == "celery" and s["failures"]]
    if celery:
        lines.append("\nCelery's failures, for the same scenarios:")
        for s in celery:
            lines += [f"- **{s['label']}** — {f['rule']}: {f['evidence']}" for f in s["failures"]]
    return "\n".join(lines) or "No FastAPI scenario was run."


def settings_text(run: RunResult) -> str:
    s, env = run.settings, run.environment
    versions = ", ".join(f"{k} {v}" for k, v in env.get("versions", {}).items())
    machine = env.get("machine", {})
    return "\n".join(
        [
            f"- Implementations: {', '.join(s.implementations)}; workloads: {', '.join(s.workloads)}; "
            f"job counts: {', '.join(map(str, s.jobs))}; job duration {s.duration_s} s"
            + (" (quick profile)" if s.quick else ""),
            f"- Celery: concurrency {s.concurrency}, prefetch 1, JSON, UTC, task_track_started; "
            f"faults: {', '.join(s.faults) or 'none'} (visibility timeout for faults: see each scenario)",
            f"- Service: {s.url or 'started by taskbench'}; Redis: {s.redis}",
            f"- Machine: {machine.get('platform', '?')}, {machine.get('cpu_count', '?')} cores, "
            f"{machine.get('memory_gb', 0):.1f} GB RAM; Python {machine.get('python', '?')}",
            f"- Versions: {versions}",
        ]
    )


def comparison(run: RunResult, charts: Charts = ()) -> str:
    summaries = run.summaries
    parts = [
        f"# FastAPI BackgroundTasks vs Celery — comparison ({run.timestamp})",
        "" if not run.interrupted else "> **Interrupted**: this run was stopped early; the results below are partial.",
        "## Results (the spec's table)",
        spec_table(summaries),
        "## Extended figures",
        extended_table(summaries),
        "### Resources",
        resources_table(summaries),
    ]
    if any(s["fault"] for s in summaries):
        parts += ["## Faults", faults_table(summaries)]
    parts += [
        charts_section(charts),
        "## When FastAPI fails",
        when_fastapi_fails(summaries),
        "## How to read this",
        thresholds_text(run.settings),
        "## Settings",
        settings_text(run),
        "## Verdict",  # last, computed from everything above (report.html shows it first)
        "\n".join(f"- {line}" for line in run.verdict.get("lines", [])) or "- No scenario completed.",
    ]
    return "\n\n".join(p for p in parts if p) + "\n"


def scenario(result: ScenarioResult, summary: dict[str, Any], charts: Charts = ()) -> str:
    spec, s = result.spec, summary
    sub, done = s["submission"], s["completion"]
    events = "\n".join(
        f"- {e.name} at +{e.t - result.started_at:.2f} s" + (f": {e.detail}" if e.detail else "") for e in result.events
    )
    failures = "\n".join(f"- **{f['rule']}**: {f['evidence']}" for f in s["failures"]) or "- none detected"
    probe_rows = [
        [
            endpoint,
            f"{p['answered']}/{p['sent']}",
            ms(p["avg"]),
            ms(p["p50"]),
            ms(p["p99"]),
            ms(p["max"]),
            str(p["timeouts"]),
            str(p["errors"]),
            seconds(p["longest_silence_s"], 2),
        ]
        for endpoint, p in s["probes"].items()
    ]
    return (
        "\n\n".join(
            [
                f"# {spec.label}",
                f"{spec.jobs} × `{spec.workload}` jobs of {spec.duration_s} s on **{spec.implementation}**"
                + (f", fault **{spec.fault}**" + (f" ({spec.variant})" if spec.variant else "") if spec.fault else "")
                + f". Capacity: {s['capacity']['concurrency']} at once ({s['capacity']['reason']}). "
                f"Deadline {result.deadline_s:.1f} s"
                + (" — **passed before all jobs finished**." if result.timed_out else "."),
                "## Failures detected",
                failures,
                "## Submission",
                table(
                    ["Accepted", "Timeouts", "Errors", "Avg", "p50", "p95", "p99", "Max"],
                    [
                        [
                            f"{sub['accepted']}/{sub['attempted']}",
                            str(sub["timeouts"]),
                            str(sub["errors"]),
                            *(ms(sub[k]) for k in ("avg", "p50", "p95", "p99", "max")),
                        ]
                    ],
                ),
                "## Responsiveness",
                table(
                    ["Endpoint", "Answered", "Avg", "p50", "p99", "Max", "Timeouts", "Errors", "Longest silence"],
                    probe_rows,
                ),
                "## Completion",
                table(
                    [
                        "Completed",
                        "Failed",
                        "Pending",
                        "Queue avg",
                        "Queue p95",
                        "Queue max",
                        "Exec avg",
                        "Total avg",
                        "Makespan",
                        "Ideal",
                        "Ratio",
                        "Max running",
                    ],
                    [
                        [
                            str(done["completed"]),
                            str(done["failed"]),
                            str(done["pending"]),
                            seconds(s["queue_time"]["avg"], 2),
                            seconds(s["queue_time"]["p95"], 2),
                            seconds(s["queue_time"]["max"], 2),
                            seconds(s["execution_time"]["avg"], 2),
                            seconds(s["total_time"]["avg"], 2),
                            seconds(s["makespan_s"], 2),
                            seconds(s["ideal_makespan_s"], 2),
                            ratio(s["makespan_ratio"]),
                            str(s["max_running"]),
                        ]
                    ],
                ),
                "## Resources",
                resources_table([s]),
                "## Executions"
                + (" (execution ledger)" if s["executions"]["source"] == "ledger" else " (job records)"),
                table(
                    ["Accepted", "Completed once", "Lost", "Duplicated", "Redelivered", "Max attempts"],
                    [
                        [
                            str(s["executions"][k])
                            for k in ("accepted", "completed_once", "lost", "duplicated", "recovered", "attempts_max")
                        ]
                    ],
                ),
                "## Timeline",
                events or "- no events",
                *([charts_section(charts)] if charts else []),
                "## How to read this",
                thresholds_text(result.settings),
            ]
        )
        + "\n"
    )
