"""Reports rebuilt from a small recorded run (tests/fixtures/small_run, schema 1, migrated on read): the typed
analysis, Markdown, charts, HTML and compare.

No stack is started: everything renders from the saved JSON, as `taskbench report` does.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import struct
import subprocess
from collections import Counter
from io import BytesIO
from pathlib import Path

import pytest
from matplotlib.figure import Figure

from taskbench.analysis import analyse
from taskbench.analysis.models import AnalysedRun
from taskbench.errors import SchemaError, UsageError
from taskbench.record.results import Event, Execution, ScenarioResult, Submission
from taskbench.report import charts, compare, digest, files, html, markdown, step_summary
from taskbench_wire.records import JobRecord

pytestmark = pytest.mark.pure  # the fast tier: `pytest -m pure`

FIXTURE = Path(__file__).parent / "fixtures" / "small_run"
TIMESTAMP = "20261125_061235"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# What the code before the typed analysis said about this run (git HEAD's taskbench/verdict.py on the fixture;
# the fixture's own comparison JSON holds the last three, from a version without the headline).
OLD_CODE_LINES = [
    "Answer: BackgroundTasks were enough for sleep (tested up to 20 jobs); they failed for cpu from 5 jobs "
    "(Celery not run).",
    "sleep: BackgroundTasks did not fail in the tested range (5–20 jobs). Celery did not fail in 5–20 jobs.",
    "cpu: BackgroundTasks fail from 5 jobs (server unresponsive (async endpoint), server unresponsive "
    "(sync endpoint)).",
    "api-crash: fastapi lost 8/8; celery lost 0/8.",
]


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


def analysed_fixture() -> tuple[AnalysedRun, list[ScenarioResult]]:
    _, run, scenarios = files.load(FIXTURE)
    return analyse(run, scenarios), scenarios


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fixture run rebuilt once by `files.rerender` for the whole module (rendering takes seconds)."""
    folder = copy_fixture(tmp_path_factory.mktemp("report") / "run")
    (folder / "charts").mkdir()
    (folder / "charts" / "comparison_sleep.png").write_bytes(b"drawn by an earlier version")  # now an SVG
    assert files.rerender(folder) == folder / f"comparison_{TIMESTAMP}.md"
    return folder


# The old rules failed BackgroundTasks on `cpu` for probe p99s of 0.53 and 0.58 s against a 0.5 s limit: a
# coin toss (issue 13). Today a figure within 20 % of its limit is borderline, and only that line differs.
BORDERLINE_LINES = [
    "Answer: BackgroundTasks were enough for sleep (tested up to 20 jobs); they are borderline for cpu at 5 jobs "
    "(no failure up to 5 jobs).",
    OLD_CODE_LINES[1],
    "cpu: BackgroundTasks are borderline at 5 jobs (server unresponsive (async endpoint) within 20% of its limit, "
    "server unresponsive (sync endpoint) within 20% of its limit), and did not fail in 5 jobs.",
    OLD_CODE_LINES[-1],
]


def test_the_fixture_s_verdict_is_the_old_code_s_with_the_near_miss_borderline() -> None:
    analysed, _ = analysed_fixture()
    held = [w.held_line for w in analysed.verdict.workloads]
    costs = [t.sentence for t in analysed.verdict.tradeoffs]
    assert [line for line in analysed.verdict.lines if line not in held + costs] == BORDERLINE_LINES
    recorded = json.loads((FIXTURE / f"comparison_{TIMESTAMP}.json").read_text())["verdict"]["lines"]
    assert recorded == OLD_CODE_LINES[1:]
    assert held == [
        "sleep, who held (peaks of the process that ran the jobs): 5 jobs: BackgroundTasks, Celery (least memory "
        "BackgroundTasks 59 MB; least CPU BackgroundTasks 4.0%); 20 jobs: BackgroundTasks, Celery (least memory "
        "BackgroundTasks 63 MB; least CPU Celery 7.8%).",
        "cpu, who held (peaks of the process that ran the jobs): 5 jobs: none.",
    ]


def test_the_trade_off_says_how_much_slower_and_what_matching_would_take() -> None:
    """The fixture's Celery (4 prefork processes) held at 20 × 0.5 s jobs but drained them in 4.7× the time
    BackgroundTasks' 40 threads took: matching needs 19 at once, and memory grows with the processes. At 5 jobs
    the gap (0.6 s) is within the noise: no "slower" there."""
    analysed, _ = analysed_fixture()
    (five, twenty) = [t for t in analysed.verdict.tradeoffs if t.workload == "sleep"]
    assert (five.jobs, twenty.jobs, twenty.fastest) == (5, 20, "fastapi")
    assert [r.slower for r in five.rows] == [None, None] and "slower" not in five.sentence
    fastapi, celery = twenty.rows
    assert (fastapi.status, fastapi.slower, fastapi.needs_concurrency) == ("held", None, None)
    assert celery.status == "held" and celery.slower == pytest.approx(4.67, abs=0.05)
    assert celery.needs_concurrency == 19  # ceil(4 × 4.67)
    assert celery.peak_memory_mb is not None
    assert celery.needs_memory_mb == pytest.approx(celery.peak_memory_mb * 20 / 5)  # a main process and 19
    assert "Celery held, 4.7× slower than BackgroundTasks" in twenty.sentence
    assert "draining as fast needs ≈ 19 at once (4 now)" in twenty.sentence
    (row,) = [r for r in analysed.verdict.decisions if r.workload == "sleep"]
    assert [(c.implementation, c.status, c.cheapest) for c in row.cells] == [
        ("fastapi", "held", True), ("celery", "held", False)]  # fmt: skip


def test_the_typed_summaries_keep_the_recorded_figures() -> None:
    """The schema-1 fixture stored the old summaries: the typed analysis gives the same figures."""
    analysed, _ = analysed_fixture()
    recorded = json.loads((FIXTURE / f"comparison_{TIMESTAMP}.json").read_text())["summaries"]
    assert [s.label for s in analysed.summaries] == [r["label"] for r in recorded]
    for s, r in zip(analysed.summaries, recorded, strict=True):
        assert s.peak_memory_mb == pytest.approx(r["peak_memory_mb"])
        assert s.peak_cpu_percent == pytest.approx(r["peak_cpu_percent"])
        assert s.submission.p99 == pytest.approx(r["submission"]["p99"])
        assert s.probes["sync"].p99 == pytest.approx(r["probes"]["sync"]["p99"])
        # the ideal now also allows for the burst's arrival; the capacity model's is kept beside it
        assert (s.makespan_s, s.model_makespan_s) == pytest.approx((r["makespan_s"], r["ideal_makespan_s"]))
        assert (s.executions.lost, s.responsive) == (r["executions"]["lost"], r["responsive"])
        assert [f.rule for f in [*s.failures, *s.borderline]] == [f["rule"] for f in r["failures"]]
        assert s.job_process == {"api": "api", "worker": "celery-worker"}[r["job_process"]]


def test_report_writes_markdown_html_and_valid_charts(rendered: Path) -> None:
    _, run, scenarios = files.load(rendered)  # reads back the comparison file written as an AnalysedRun
    analysed = AnalysedRun.model_validate_json((rendered / f"comparison_{TIMESTAMP}.json").read_text())
    assert [s.label for s in analysed.summaries] == [r.spec.label for r in scenarios]
    comparison = (rendered / f"comparison_{TIMESTAMP}.md").read_text()
    page = (rendered / "report.html").read_text()
    for name in run.scenario_files:
        md = (rendered / name).with_suffix(".md").read_text()
        assert "## Charts" in md and "_timeline.png)" in md and "_probes.png)" in md and "_resources.png)" in md
    assert "![Jobs lost per fault](charts/comparison_faults.svg)" in comparison
    assert "charts/comparison_sleep.svg" in comparison and "charts/comparison_cpu.svg" in comparison
    assert comparison.rstrip().endswith("- api-crash: fastapi lost 8/8; celery lost 0/8.")
    # BackgroundTasks' scenarios ran beside Celery's idle worker: what it cost them is said
    assert re.search(
        r"Idle neighbours, .*: running, polling their queues, they used \d+\.\d% of one core on average over \d+ "
        r"scenarios \(at most \d+\.\d%, in fastapi",
        comparison,
    )
    # the first screen: the answer against BackgroundTasks, a row per workload, before the decision
    answer = comparison.index("## Answer")
    assert answer < comparison.index("## Decision")
    assert "| Workload | BackgroundTasks (reference) | Celery |" in comparison
    assert "charts/comparison_answer.svg" in comparison[answer : comparison.index("## Decision")]
    assert page.index('<table class="answer">') < page.index("Decision")

    pngs = sorted((rendered / "charts").glob("*.png"))
    assert len(pngs) == 3 * len(scenarios)  # three per scenario
    for png in pngs:
        width, height = png_size(png)
        assert 500 <= width <= 2000 and 200 <= height <= 1500, png.name
    svgs = sorted((rendered / "charts").glob("*.svg"))  # the answer's, sleep, cpu and faults comparisons: vectors
    assert [p.name for p in svgs] == [f"comparison_{n}.svg" for n in ("answer", "cpu", "faults", "sleep")]
    assert all(p.read_bytes().lstrip().startswith(b"<?xml") and b"<svg" in p.read_bytes()[:2000] for p in svgs)

    inlined = re.findall(r'<img width="\d+" src="data:image/png;base64,([^"]+)"', page)
    assert len(inlined) == len(pngs)  # every chart inside the page, none by path
    assert {base64.b64decode(data)[:8] for data in inlined} == {PNG_SIGNATURE}
    vectors = re.findall(r'<img width="(\d+)" src="data:image/svg\+xml;base64,([^"]+)"', page)
    assert len(vectors) == len(svgs) and all(500 <= int(w) <= 2000 for w, _ in vectors), [w for w, _ in vectors]
    assert "http://" not in page and "https://" not in page  # self-contained: nothing fetched
    assert page.index("Verdict") < page.index("Results (the spec") < page.index('class="scenario"')
    for line in analysed.verdict.lines:
        assert html.esc(line) in page


def test_every_report_states_each_implementation_s_settings_and_how_it_runs(rendered: Path) -> None:
    comparison = (rendered / f"comparison_{TIMESTAMP}.md").read_text()
    page = (rendered / "report.html").read_text()
    celery = (rendered / f"celery_5_jobs_{TIMESTAMP}.md").read_text()
    for text in (comparison, page):
        assert "worker_prefetch_multiplier" in text and "anyio default limiter" in text
        assert "sync def in a prefork child" in text and "sync def in Starlette" in text
    assert "How `sleep` runs | How `cpu` runs" in comparison
    assert "Runs as: sync def in a prefork child." in celery and "## Settings of celery" in celery


def test_html_tables_come_from_the_data(rendered: Path) -> None:
    page = (rendered / "report.html").read_text()
    assert "<th>Server Responsive</th>" in page
    assert "<td>5</td><td>FASTAPI (cpu)</td><td>5/5</td><td>0</td>" in page
    assert "|---|" not in page


def test_write_run_writes_each_file_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each file once, and whole: written beside and renamed into place (files._replacing)."""
    analysed, scenarios = analysed_fixture()
    written: list[str] = []
    replace = os.replace

    def record(source: str, destination: str | Path) -> None:
        written.append(Path(destination).name)
        replace(source, destination)

    monkeypatch.setattr(os, "replace", record)
    files.write_run(tmp_path, analysed, scenarios)
    assert [name for name, n in Counter(written).items() if n > 1] == []
    on_disk = {p.name for p in tmp_path.rglob("*") if p.is_file()}
    assert set(written) == on_disk  # no temporary file left
    # .md each, comparison (.md, .json), html, csv, charts
    assert len(on_disk) == len(scenarios) + 2 + 1 + 1 + 3 * len(scenarios) + 4


def test_write_scenario_data_writes_the_json_and_its_history(tmp_path: Path) -> None:
    _, scenarios = analysed_fixture()
    name = files.write_scenario_data(tmp_path, "20990101_000000", scenarios[0])
    assert name == "fastapi_5_jobs_20990101_000000.json"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fastapi_5_jobs_20990101_000000.history.jsonl", name]
    assert ScenarioResult.model_validate_json((tmp_path / name).read_text()).spec == scenarios[0].spec


def test_spec_table_has_one_row_per_implementation_and_job_count() -> None:
    analysed, _ = analysed_fixture()
    table = markdown.spec_table(analysed.summaries).splitlines()
    assert table[0].startswith("| Jobs | Implementation | Completed | Failed | Avg Submission Time |")
    assert [row.split(" | ")[1] for row in table[2:]] == ["FASTAPI", "CELERY", "FASTAPI", "CELERY", "FASTAPI (cpu)"]


def with_more_implementations(analysed: AnalysedRun, names: list[str]) -> AnalysedRun:
    """The fixture's sleep scenarios copied under other implementation names, as a run of N queues."""
    copies = [
        s.model_copy(update={"implementation": name, "label": s.label.replace("celery", name)})
        for name in names
        for s in analysed.summaries
        if s.implementation == "celery" and not s.fault
    ]
    infos = [i.model_copy(update={"name": n, "title": n.title()}) for n in names for i in analysed.implementations[1:]]
    return analysed.model_copy(
        update={"summaries": [*analysed.summaries, *copies], "implementations": [*analysed.implementations, *infos]}
    )


def test_comparison_charts_draw_one_line_per_implementation_in_its_own_colour() -> None:
    analysed, _ = analysed_fixture()
    run = with_more_implementations(analysed, ["ducky", "goose", "heron"])
    sleep = [s for s in run.summaries if s.workload == "sleep" and not s.fault]
    fig = charts.workload_chart(run, "sleep", sleep)
    for ax in fig.axes[:5]:
        lines = [line for line in ax.get_lines() if line.get_marker() == "o"]  # not the threshold
        assert len(lines) == 5  # fastapi, celery, ducky, goose, heron
        assert len({line.get_color() for line in lines}) == 5
    assert "| DUCKY |" in markdown.spec_table(run.summaries)


def test_html_escapes_recorded_text() -> None:
    analysed, scenarios = analysed_fixture()
    result = scenarios[0].model_copy(deep=True)
    result.events.append(Event(t=result.started_at + 0.1, name="fault", detail="<script>alert(1)</script>"))
    section = html.scenario_section(result, analysed.summaries[0], "stem", [])
    assert "<script>" not in section and "&lt;script&gt;alert(1)&lt;/script&gt;" in section


def test_comparison_chart_handles_missing_values_and_single_points() -> None:
    analysed, _ = analysed_fixture()
    cpu = [s for s in analysed.summaries if s.workload == "cpu"]  # fastapi only, one job count
    assert len(cpu) == 1
    cpu = [cpu[0].model_copy(update={"makespan_ratio": None, "peak_memory_mb": None})]
    out = BytesIO()
    charts.workload_chart(analysed, "cpu", cpu).savefig(out, format="png")
    assert out.getvalue()[:8] == PNG_SIGNATURE


def _timeline_of(n: int) -> Figure:
    _, scenarios = analysed_fixture()
    base = scenarios[0]
    t0 = base.started_at
    jobs = [
        JobRecord(job_id=f"j{i}", implementation="fastapi", kind="sleep", duration=1.0,
                status="completed" if i % 97 else "failed", submitted_at=t0 + i * 1e-4,
                started_at=t0 + 0.5 + i * 1e-3, finished_at=t0 + 1.5 + i * 1e-3)
        for i in range(n)
    ]  # fmt: skip
    submissions = [Submission(index=i, sent_at=t0 + i * 1e-4, latency_s=0.001, job_id=f"j{i}") for i in range(n)]
    big = base.model_copy(update={"jobs": jobs, "submissions": submissions, "executions": [], "ended_at": t0 + 12.0})
    return charts.timeline_chart(big)


def test_timeline_of_ten_thousand_jobs_draws_as_few_artists_as_of_a_hundred() -> None:
    """Its cost grows with the jobs only in the data (one collection a kind of mark, not an artist a job): a
    timing here would measure the machine (on a loaded one it does), the count is what keeps it fast."""
    artists = [sum(len(ax.get_children()) for ax in _timeline_of(n).axes) for n in (100, 10_000)]
    assert artists[0] == artists[1], artists
    out = BytesIO()
    _timeline_of(10_000).savefig(out, format="png", dpi=charts.DPI)
    assert out.getvalue()[:8] == PNG_SIGNATURE


def test_compare_writes_side_by_side_beside_run_b(tmp_path: Path) -> None:
    run_a = copy_fixture(tmp_path / "a" / "run")
    run_b = copy_fixture(tmp_path / "b" / "run")
    written, _ = compare.compare(run_a, run_b / f"comparison_{TIMESTAMP}.json", None)
    assert written == tmp_path / "b" / f"compare_{TIMESTAMP}_vs_{TIMESTAMP}.md"
    text = written.read_text()
    assert "## Verdict of A" in text and "## Verdict of B" in text and "## Settings" in text
    assert "### fastapi · sleep · 8 jobs · api-crash" in text
    assert "| Lost | 8 | 8 | same |" in text
    assert "| Settings of celery | pool: prefork, --concurrency 4;" in text

    as_html, _ = compare.compare(run_a, run_b, tmp_path / "side_by_side.html")
    page = as_html.read_text()
    assert "<table>" in page and "<td>Lost</td><td>8</td><td>8</td><td>same</td>" in page


def test_unsupported_schema_version_fails_with_one_clear_line(tmp_path: Path) -> None:
    old = copy_fixture(tmp_path / "old")
    comparison = old / f"comparison_{TIMESTAMP}.json"
    data = json.loads(comparison.read_text())
    data["schema_version"] = 99
    comparison.write_text(json.dumps(data))
    with pytest.raises(SchemaError, match="schema_version 99") as raised:
        files.rerender(old)
    assert "\n" not in str(raised.value)
    with pytest.raises(SchemaError, match="schema_version 99"):
        compare.compare(FIXTURE, old, tmp_path / "out.md")


def _browser() -> str | None:
    return next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)


def test_report_html_shows_verdict_and_every_chart_in_headless_chromium(rendered: Path, tmp_path: Path) -> None:
    """The page's own script sets data-images="ok" once every <img> has loaded with a real size, whether the page
    is wider than the window, and where the answer's table starts. At a laptop's 1280×800 the answer is on the
    first screen; at a phone's 390×844 nothing makes the page scroll sideways (tables and charts scroll in
    place). Screenshots of both are left in the test's folder. In CI (`CI=true`, set by .ci/run, which installs
    Debian's chromium) a missing browser fails the test."""
    browser = _browser()
    if browser is None:
        message = "no chromium, chromium-browser or google-chrome on PATH"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message + " (CI=true: .ci/run installs Debian's chromium)")
        pytest.skip(message)
    alone = tmp_path / "alone"  # report.html copied alone, as it is mailed or attached to a CI job
    alone.mkdir()
    shutil.copy(rendered / "report.html", alone / "report.html")
    images = len(list((rendered / "charts").glob("*.*")))
    for width, height in ((1280, 800), (390, 844)):
        command = [
            browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
            f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000", f"--window-size={width},{height}",
        ]  # fmt: skip
        shot = tmp_path / f"report-{width}x{height}.png"
        subprocess.run([*command, f"--screenshot={shot}", (alone / "report.html").as_uri()], capture_output=True,
                       timeout=60, check=True)  # fmt: skip
        assert png_size(shot) == (width, height)
        dom = subprocess.run([*command, "--dump-dom", (alone / "report.html").as_uri()], capture_output=True,
                             text=True, timeout=60, check=True).stdout  # fmt: skip
        root = re.search(r"<html[^>]*>", dom)
        assert root is not None, dom[:500]
        assert 'data-images="ok"' in root.group(0), root.group(0)
        assert f'data-image-count="{images}"' in root.group(0)
        assert 'data-page-overflow="false"' in root.group(0), f"{width}×{height}: {root.group(0)}"
        top = re.search(r'data-answer-top="(-?\d+)"', root.group(0))
        assert top is not None and (width < 1000 or int(top.group(1)) < height), root.group(0)
        assert "api-crash: fastapi lost 8/8; celery lost 0/8." in dom
    print(f"screenshots: {tmp_path}/report-*.png")


def test_timeline_shows_attempts_killed_by_a_crash_and_run_again() -> None:
    _, scenarios = analysed_fixture()
    result = next(r for r in scenarios if r.spec.implementation == "celery").model_copy(deep=True)
    first, second = sorted((s for s in result.submissions if s.job_id), key=lambda s: s.sent_at)[:2]
    assert first.job_id and second.job_id
    t0 = result.started_at
    result.events = [Event(t=t0 + 1.0, name="fault")]
    result.executions = [
        Execution(job_id=first.job_id, implementation="celery", event="start", t=t0 + 0.5),  # killed at the fault
        Execution(job_id=first.job_id, implementation="celery", event="start", t=t0 + 6.0),  # run again at 6 s
        Execution(job_id=first.job_id, implementation="celery", event="end", ok=True, t=t0 + 6.5),
        Execution(job_id=second.job_id, implementation="celery", event="start", t=t0 + 0.6),  # ran once
        Execution(job_id=second.job_id, implementation="celery", event="end", ok=True, t=t0 + 1.1),
    ]
    ((row, start, stop),) = charts.killed_attempts(result)
    assert row == 0 and start == pytest.approx(0.5) and stop == pytest.approx(1.0)


def _scale_memory(folder: Path, factor: float) -> None:
    """Every memory reading of every scenario of a copied run × factor: a run whose memory grew."""
    for path in folder.glob("*_jobs_*.json"):
        data = json.loads(path.read_text())
        for sample in data["samples"]:
            for reading in sample["processes"].values():
                reading["rss_mb"] *= factor
                if reading.get("pss_mb") is not None:
                    reading["pss_mb"] *= factor
        path.write_text(json.dumps(data))


def test_compare_gates_on_a_figure_that_got_worse(tmp_path: Path) -> None:
    """Issue 21: `compare A B --fail-above 10%` exits 3 when a watched figure got worse past the limit, 0 when
    none did, and says which."""
    from taskbench.cli.main import main
    from taskbench.cli.options import GATE_FAILED

    run_a = copy_fixture(tmp_path / "a" / "run")
    run_b = copy_fixture(tmp_path / "b" / "run")
    assert main(["compare", str(run_a), str(run_b), "--fail-above", "10%"]) == 0
    _scale_memory(run_b, 3.0)
    out = tmp_path / "gate.md"
    assert (
        main(["compare", str(run_a), str(run_b), "--fail-above", "10%", "--figures", "memory", "--output", str(out)])
        == GATED
    )
    assert "Gate: figures worse by more than 10%" in out.read_text() and "Peak memory" in out.read_text()
    assert main(["compare", str(run_a), str(run_b), "--fail-above", "500%", "--figures", "memory"]) == 0
    assert GATE_FAILED == GATED


GATED = 3  # the documented exit code of a gate that failed


def test_compare_refuses_runs_measured_differently(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from taskbench.cli.main import main

    run_a = copy_fixture(tmp_path / "a" / "run")
    run_b = copy_fixture(tmp_path / "b" / "run")
    comparison = run_b / f"comparison_{TIMESTAMP}.json"
    data = json.loads(comparison.read_text())
    data["settings"]["duration_s"] = 30.0
    comparison.write_text(json.dumps(data))
    assert main(["compare", str(run_a), str(run_b)]) == 2
    error = capsys.readouterr().err
    assert "measured differently" in error and "job duration: 0.5 in A, 30.0 in B" in error
    assert main(["compare", str(run_a), str(run_b), "--allow-different"]) == 0


def test_report_html_stands_alone_and_the_csv_holds_the_spec_table(rendered: Path, tmp_path: Path) -> None:
    """Issue 21: report.html carries its charts inside (copied alone it shows them all); results_*.csv holds
    one row per scenario with its status."""
    page = (rendered / "report.html").read_text()
    assert 'src="charts/' not in page and page.count('src="data:image/png;base64,') >= 10
    (csv_file,) = rendered.glob("results_*.csv")
    lines = csv_file.read_text().splitlines()
    assert lines[0].startswith("label,implementation,workload,jobs,rate_per_s,status")
    assert len(lines) == 1 + len(json.loads(next(rendered.glob("comparison_*.json")).read_text())["summaries"])


def test_report_renders_the_settings_the_run_recorded_not_todays() -> None:
    """Issue 21: a run renders what it recorded about each implementation (a later registry may describe it
    differently); a run recorded before that was kept says its descriptions are today's. (The comparison as
    `taskbench report` writes it, without drawing its charts: `rendered` covers the files.)"""
    _, run, scenarios = files.load(FIXTURE)
    assert "not recorded by the run" in markdown.comparison(analyse(run, scenarios))
    data = run.model_dump()
    data["taskbench"], data["git_revision"] = "0.0.9", "abc123def456"
    data["described"] = {
        "celery": {"title": "Celery", "job_process": "celery-worker", "settings": {"pool": "recorded-pool"},
                   "how_it_runs": {"sleep": "as it ran then"}},
    }  # fmt: skip
    text = markdown.comparison(analyse(type(run).model_validate(data), scenarios))
    assert "pool: recorded-pool" in text and "as it ran then" in text
    assert "Measured by taskbench 0.0.9 (abc123def456)" in text


def test_report_reference_restates_a_recorded_run_against_another_implementation() -> None:
    """`taskbench report RUN --reference celery`: the same run, its answer against Celery; a name the run does not
    have is one line (UsageError: exit 2)."""
    _, run, scenarios = files.load(FIXTURE)
    assert analyse(run, scenarios).verdict.reference == "fastapi"
    against_celery = analyse(files.with_reference(run, "celery"), scenarios)
    assert against_celery.settings.reference == "celery"  # recorded in the comparison file it writes
    assert against_celery.verdict.answers and all(
        a.reference == "celery" and a.cells[0].implementation == "celery" for a in against_celery.verdict.answers
    )
    with pytest.raises(UsageError, match="--reference arq: this run has no such implementation; name one of"):
        files.with_reference(run, "arq")


def test_under_github_actions_the_answer_and_the_gate_go_to_the_job_summary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    analysed, _ = analysed_fixture()
    monkeypatch.delenv(step_summary.VARIABLE, raising=False)
    assert step_summary.append_run(analysed, tmp_path, 0) is None  # not under Actions: nothing written
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n")
    monkeypatch.setenv(step_summary.VARIABLE, str(summary))
    step_summary.append_run(analysed, tmp_path / "run", 3)
    step_summary.append_compare(tmp_path / "comparison.md", ["fastapi · sleep · 20 jobs: makespan +40%"], 0.15)
    text = summary.read_text()
    assert text.startswith("earlier step\n")  # appended, as every step of the job does
    assert "### Answer" in text and "| Workload | BackgroundTasks (reference) | Celery |" in text
    assert "### Decision" in text and "Exit: **exit 3" in text and "comparison_answer" not in text
    assert "## taskbench compare: worse by more than 15%" in text and "- worse: fastapi · sleep" in text


def test_the_json_digest_carries_its_schema_version_and_the_answer(tmp_path: Path) -> None:
    analysed, _ = analysed_fixture()
    data = json.loads(digest.of(analysed, tmp_path, 0).model_dump_json())
    assert data["schema_version"] == digest.SCHEMA_VERSION == 2
    assert data["reference"] == "fastapi" and data["answers"][0]["cells"][0]["implementation"] == "fastapi"
    assert all("cpu_s_per_1000_jobs" in s for s in data["scenarios"])
