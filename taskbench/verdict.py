"""The computed answer: per workload, the smallest job count at which BackgroundTasks fail and how, what
Celery did there, and per fault how many jobs each implementation lost. Built from summaries only."""

from __future__ import annotations

from typing import Any


def _first_failure(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    return next((r for r in sorted(rows, key=lambda r: r["jobs"]) if r["failures"]), None)


def _rules(row: dict[str, Any] | None) -> str:
    return ", ".join(f["rule"] for f in row["failures"]) if row else ""


def compute(summaries: list[dict[str, Any]]) -> dict[str, Any]:
    """`summaries` carry a `failures` list each (see taskbench.failures)."""
    # A scenario cut short by Ctrl-C says nothing about where an implementation fails.
    plain = [s for s in summaries if not s["fault"] and not s.get("interrupted")]
    workloads: dict[str, Any] = {}
    lines: list[str] = []
    for workload in dict.fromkeys(s["workload"] for s in plain):
        rows = {
            impl: [s for s in plain if s["workload"] == workload and s["implementation"] == impl]
            for impl in ("fastapi", "celery")
        }
        tested = sorted({s["jobs"] for s in plain if s["workload"] == workload})
        fastapi_fail = _first_failure(rows["fastapi"])
        celery_fail = _first_failure(rows["celery"])
        celery_same = next((r for r in rows["celery"] if fastapi_fail and r["jobs"] == fastapi_fail["jobs"]), None)
        entry = {
            "tested_jobs": tested,
            "fastapi_tested": bool(rows["fastapi"]),
            "fastapi_fails_at": fastapi_fail["jobs"] if fastapi_fail else None,
            "fastapi_failures": fastapi_fail["failures"] if fastapi_fail else [],
            "celery_at_that_count": celery_same["failures"] if celery_same else None,
            "celery_fails_at": celery_fail["jobs"] if celery_fail else None,
            "celery_failures": celery_fail["failures"] if celery_fail else [],
        }
        workloads[workload] = entry
        span = f"{tested[0]}–{tested[-1]} jobs" if len(tested) > 1 else f"{tested[0]} jobs" if tested else "nothing"
        if not rows["fastapi"]:
            sentence = f"{workload}: BackgroundTasks not tested."
        elif fastapi_fail:
            sentence = f"{workload}: BackgroundTasks fail from {fastapi_fail['jobs']} jobs ({_rules(fastapi_fail)})"
            if celery_same is not None:
                sentence += "; Celery at that count: " + (_rules(celery_same) or "no failure")
            sentence += "."
        else:
            sentence = f"{workload}: BackgroundTasks did not fail in the tested range ({span})."
        if celery_fail and rows["celery"]:
            sentence += f" Celery fails from {celery_fail['jobs']} jobs ({_rules(celery_fail)})."
        elif rows["celery"]:
            sentence += f" Celery did not fail in {span}."
        lines.append(sentence)

    fault_rows = []
    for s in (s for s in summaries if s["fault"] and not s.get("interrupted")):
        execs = s["executions"]
        fault_rows.append(
            {
                "fault": s["fault"],
                "variant": s["variant"],
                "implementation": s["implementation"],
                "workload": s["workload"],
                "jobs": s["jobs"],
                "lost": execs["lost"],
                "duplicated": execs["duplicated"],
                "recovered": execs["recovered"],
                "lost_ids": execs["lost_ids"],
                "duplicated_ids": execs["duplicated_ids"],
            }
        )
    for fault in dict.fromkeys((r["fault"], r["variant"]) for r in fault_rows):
        rows_f = [r for r in fault_rows if (r["fault"], r["variant"]) == fault]
        name = fault[0] + (f" ({fault[1]})" if fault[1] else "")
        parts = [
            f"{r['implementation']} lost {r['lost']}/{r['jobs']}"
            + (f", duplicated {r['duplicated']}" if r["duplicated"] else "")
            + (f", redelivered {r['recovered']}" if r["recovered"] else "")
            for r in rows_f
        ]
        lines.append(f"{name}: " + "; ".join(parts) + ".")
    headline = _headline(workloads)
    return {"workloads": workloads, "faults": fault_rows, "headline": headline, "lines": [*headline, *lines]}


def _headline(workloads: dict[str, Any]) -> list[str]:
    """One sentence a reader can act on: where BackgroundTasks were enough, and where they were not."""
    held = [f"{w} (tested up to {max(v['tested_jobs'])} jobs)" for w, v in workloads.items()
            if v["fastapi_fails_at"] is None and v["fastapi_tested"]]  # fmt: skip
    broke = [
        f"{w} from {v['fastapi_fails_at']} jobs ("
        + ("Celery held there" if v["celery_at_that_count"] == [] else "Celery failed there too"
           if v["celery_at_that_count"] else "Celery not run") + ")"
        for w, v in workloads.items()
        if v["fastapi_fails_at"]
    ]  # fmt: skip
    parts = []
    if held:
        parts.append(f"BackgroundTasks were enough for {', '.join(held)}")
    if broke:
        parts.append(f"{'they' if held else 'BackgroundTasks'} failed for {', '.join(broke)}")
    return [f"Answer: {'; '.join(parts)}."] if parts else []
