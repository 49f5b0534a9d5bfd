"""Production topologies (issue 12): the API behind a BaseHTTPMiddleware, on real processes, short jobs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from taskbench import plan
from taskbench.analysis import analyse
from taskbench.report import content, files
from taskbench.results import RunSettings, load_scenario


def _settings(**changes: object) -> RunSettings:
    base = RunSettings(implementations=["fastapi", "celery"], workloads=["sleep"], jobs=[2], duration_s=0.1,
                       memory_mb=1, concurrency=2, faults=["api-crash"])  # fmt: skip
    return base.model_copy(update=changes)


def test_every_scenario_runs_under_each_middleware_grouped_and_labelled() -> None:
    specs = plan.scenarios(_settings(middleware=["none", "base-http"]), fault_jobs=3)
    middlewares = [s.middleware for s in specs]
    assert middlewares == sorted(middlewares, key=["none", "base-http"].index)  # one API restart, not one each
    plain = [s for s in specs if s.middleware == "none"]
    behind = [s for s in specs if s.middleware == "base-http"]
    assert [s.model_copy(update={"middleware": "none"}) for s in behind] == plain
    assert all(s.label.endswith("· base-http") for s in behind)
    assert all(s.file_stem.startswith(f"{s.implementation}_base-http") for s in behind)
    assert len({s.file_stem for s in specs}) == len(specs)


def test_cli_runs_each_scenario_with_and_without_base_http_middleware(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "taskbench.cli", "run", "--implementations", "fastapi", "--jobs", "4",
         "--duration", "0.3", "--middleware", "none,base-http", "--output", str(tmp_path)],
        capture_output=True, text=True, timeout=180, cwd=tmp_path,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    (folder,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    _, run, scenarios = files.load(folder)
    assert run.settings.middleware == ["none", "base-http"]
    assert [s.spec.middleware for s in scenarios] == ["none", "base-http"]
    behind = load_scenario(next(folder.glob("fastapi_base-http_4_jobs_*.json")))
    assert behind.spec.middleware == "base-http"
    analysed = analyse(run, scenarios)
    for summary in analysed.summaries:  # BackgroundTasks jobs behind the middleware complete, once each
        assert summary.completion.completed == 4 and summary.executions.completed_once == 4, summary.label
    report = next(folder.glob("comparison_*.md")).read_text()
    starlette = run.environment["versions"]["starlette"]
    assert "Without and with the middleware" in report
    assert f"Starlette {starlette}" in report and "BaseHTTPMiddleware" in report
    assert "FASTAPI [base-http]" in report
    assert content.middleware_table(analysed.summaries).rows[0][3] == "4/4"
    assert "sleep [base-http]" in " ".join(analysed.verdict.lines)  # judged apart in the verdict
    scenario_md = next(folder.glob("fastapi_base-http_4_jobs_*.md")).read_text()
    assert "behind a do-nothing BaseHTTPMiddleware" in scenario_md


def test_middleware_needs_a_stack_taskbench_started() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "taskbench.cli", "run", "--url", "http://127.0.0.1:9", "--middleware", "base-http"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1 and "--middleware" in out.stderr
