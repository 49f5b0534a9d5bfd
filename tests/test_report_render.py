"""Reports rebuilt from a small recorded run (tests/fixtures/small_run): Markdown, charts, HTML, compare.

No stack is started: everything renders from the saved JSON, as `taskbench report` does.
"""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
import time
from io import BytesIO
from pathlib import Path

import pytest

from taskbench.cli import main
from taskbench.report import charts, html
from taskbench.report.files import load
from taskbench.results import Event, ScenarioResult

FIXTURE = Path(__file__).parent / "fixtures" / "small_run"
TIMESTAMP = "20261125_061235"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from the IHDR chunk, after checking the signature: a PNG a browser can show."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, f"{path.name} is not a PNG"
    assert data[12:16] == b"IHDR", f"{path.name} has no IHDR chunk first"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def copy_fixture(dest: Path) -> Path:
    shutil.copytree(FIXTURE, dest)
    return dest


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fixture run rebuilt once by `taskbench report` for the whole module (rendering takes seconds)."""
    folder = copy_fixture(tmp_path_factory.mktemp("report") / "run")
    assert main(["report", str(folder)]) == 0
    return folder


def test_report_writes_markdown_html_and_valid_charts(rendered: Path) -> None:
    _, run, scenarios = load(rendered)
    comparison = (rendered / f"comparison_{TIMESTAMP}.md").read_text()
    page = (rendered / "report.html").read_text()
    for name in run.scenario_files:
        md = (rendered / name).with_suffix(".md").read_text()
        assert "## Charts" in md and "_timeline.png)" in md and "_probes.png)" in md and "_resources.png)" in md
    assert "![Jobs lost per fault](charts/comparison_faults.png)" in comparison
    assert "charts/comparison_sleep.png" in comparison and "charts/comparison_cpu.png" in comparison

    pngs = sorted((rendered / "charts").glob("*.png"))
    assert len(pngs) == 3 * len(scenarios) + 3  # three per scenario; sleep, cpu and faults comparisons
    for png in pngs:
        width, height = png_size(png)
        assert 500 <= width <= 2000 and 200 <= height <= 1500, f"{png.name}: {width}×{height}"

    referenced = re.findall(r'<img src="([^"]+)"', page)
    assert len(referenced) == len(pngs)
    assert all((rendered / src).is_file() for src in referenced)
    assert "http://" not in page and "https://" not in page  # self-contained: nothing fetched
    assert page.index("Verdict") < page.index("Results (the spec") < page.index('class="scenario"')
    for line in run.verdict["lines"]:
        assert html.esc(line) in page


def test_html_escapes_recorded_text() -> None:
    _, run, scenarios = load(FIXTURE)
    result = scenarios[0].model_copy(deep=True)
    result.events.append(Event(t=result.started_at + 0.1, name="fault", detail="<script>alert(1)</script>"))
    section = html.scenario_section(result, run.summaries[0], "stem", [])
    assert "<script>" not in section and "&lt;script&gt;alert(1)&lt;/script&gt;" in section


def test_comparison_chart_handles_missing_values_and_single_points() -> None:
    _, run, _ = load(FIXTURE)
    cpu = [dict(s) for s in run.summaries if s["workload"] == "cpu"]  # fastapi only, one job count
    assert len(cpu) == 1
    cpu[0]["makespan_ratio"] = None
    cpu[0]["peak_memory_mb"] = None
    out = BytesIO()
    charts.workload_chart(run, "cpu", cpu).savefig(out, format="png")
    assert out.getvalue()[:8] == PNG_SIGNATURE


def test_timeline_of_ten_thousand_jobs_renders_quickly() -> None:
    _, _, scenarios = load(FIXTURE)
    base = scenarios[0]
    n = 10_000
    t0 = base.started_at
    jobs = [
        {"job_id": f"j{i}", "status": "completed" if i % 97 else "failed", "submitted_at": t0 + i * 1e-4,
         "started_at": t0 + 0.5 + i * 1e-3, "finished_at": t0 + 1.5 + i * 1e-3}
        for i in range(n)
    ]  # fmt: skip
    submissions = [{"index": i, "sent_at": t0 + i * 1e-4, "latency_s": 0.001, "job_id": f"j{i}"} for i in range(n)]
    big = ScenarioResult.model_validate(
        {**base.model_dump(), "jobs": jobs, "submissions": submissions, "executions": [], "ended_at": t0 + 12.0}
    )
    started = time.perf_counter()
    out = BytesIO()
    charts.timeline_chart(big, {"executions": {"lost_ids": []}}).savefig(out, format="png", dpi=charts.DPI)
    assert time.perf_counter() - started < 5.0
    assert out.getvalue()[:8] == PNG_SIGNATURE


def test_compare_writes_side_by_side_beside_run_b(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_a = copy_fixture(tmp_path / "a" / "run")
    run_b = copy_fixture(tmp_path / "b" / "run")
    assert main(["compare", str(run_a), str(run_b / f"comparison_{TIMESTAMP}.json")]) == 0
    written = tmp_path / "b" / f"compare_{TIMESTAMP}_vs_{TIMESTAMP}.md"
    text = written.read_text()
    assert str(written) in capsys.readouterr().out.replace("\n", "")
    assert "## Verdict of A" in text and "## Verdict of B" in text and "## Settings" in text
    assert "### fastapi · sleep · 8 jobs · api-crash" in text
    assert "| Lost | 8 | 8 | same |" in text

    as_html = tmp_path / "side_by_side.html"
    assert main(["compare", str(run_a), str(run_b), "--output", str(as_html)]) == 0
    assert "<table>" in as_html.read_text()


def test_unsupported_schema_version_fails_with_one_clear_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = copy_fixture(tmp_path / "old")
    comparison = old / f"comparison_{TIMESTAMP}.json"
    data = json.loads(comparison.read_text())
    data["schema_version"] = 99
    comparison.write_text(json.dumps(data))
    capsys.readouterr()

    assert main(["report", str(old)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "schema_version 99" in err and "Traceback" not in err

    assert main(["compare", str(FIXTURE), str(old)]) == 2
    assert "schema_version 99" in capsys.readouterr().err


def _browser() -> str | None:
    return next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)


@pytest.mark.skipif(_browser() is None, reason="no chromium, chromium-browser or google-chrome on PATH")
def test_report_html_shows_verdict_and_every_chart_in_headless_chromium(rendered: Path, tmp_path: Path) -> None:
    """The page's own script sets data-images="ok" once every <img> has loaded with a real size."""
    browser = _browser()
    assert browser is not None
    command = [
        browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000", "--dump-dom",
        (rendered / "report.html").as_uri(),
    ]  # fmt: skip
    dom = subprocess.run(command, capture_output=True, text=True, timeout=60, check=True).stdout
    root = re.search(r"<html[^>]*>", dom)
    assert root is not None, dom[:500]
    images = len(list((rendered / "charts").glob("*.png")))
    assert 'data-images="ok"' in root.group(0), root.group(0)
    assert f'data-image-count="{images}"' in root.group(0)
    assert "api-crash: fastapi lost 8/8; celery lost 0/8." in dom


def test_timeline_shows_attempts_killed_by_a_crash_and_run_again() -> None:
    result = ScenarioResult.model_validate_json((FIXTURE / "celery_5_jobs_20261125_061235.json").read_text())
    first, second = sorted((s for s in result.submissions if s.job_id), key=lambda s: s.sent_at)[:2]
    t0 = result.started_at
    result.events = [Event(t=t0 + 1.0, name="fault")]
    result.executions = [
        {"job_id": first.job_id, "event": "start", "t": t0 + 0.5},  # killed at the fault, run again at 6 s
        {"job_id": first.job_id, "event": "start", "t": t0 + 6.0},
        {"job_id": first.job_id, "event": "end", "ok": True, "t": t0 + 6.5},
        {"job_id": second.job_id, "event": "start", "t": t0 + 0.6},  # ran once
        {"job_id": second.job_id, "event": "end", "ok": True, "t": t0 + 1.1},
    ]
    assert charts.killed_attempts(result) == [(0, pytest.approx(0.5), pytest.approx(1.0))]
