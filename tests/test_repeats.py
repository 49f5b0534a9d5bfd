"""`--repeat`: the interleaved order, the statistics of repeats and the borderline rule, on recorded data
(tests/fixtures/small_run) whose probe latencies are scaled to make each case."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from taskbench.analysis import analyse, repeats, stats
from taskbench.analysis.models import ScenarioSummary
from taskbench.cli.main import main
from taskbench.record.results import RunSettings, ScenarioResult, Thresholds, load_run, load_scenario
from taskbench.report import charts, files
from taskbench.run import plan

pytestmark = pytest.mark.pure  # the fast tier: `pytest -m pure`

FIXTURE = Path(__file__).parent / "fixtures" / "small_run"
TIMESTAMP = "20261125_061235"
THRESHOLDS = Thresholds()  # probe p99 limit 0.5 s, borderline within 20 %


def recorded(name: str = "fastapi_5_jobs") -> ScenarioResult:
    return load_scenario(FIXTURE / f"{name}_{TIMESTAMP}.json")


def with_probe_latency(result: ScenarioResult, seconds: float, repeat: int) -> ScenarioResult:
    """The recorded run with every probe answered in `seconds`: one more run of the same scenario."""
    probes = [p.model_copy(update={"latency_s": seconds}) for p in result.probes]
    spec = result.spec.model_copy(update={"repeat": repeat})
    return result.model_copy(update={"probes": probes, "spec": spec})


def merged(*probe_latencies: float) -> ScenarioSummary:
    base = recorded()
    runs = [stats.figures_of(with_probe_latency(base, s, i)) for i, s in enumerate(probe_latencies)]
    return repeats.merge(runs, THRESHOLDS)


def test_repeats_run_interleaved_a_b_a_b() -> None:
    settings = RunSettings(implementations=["fastapi", "celery"], workloads=["sleep"], jobs=[10, 50], duration_s=0.5,
                           memory_mb=0, concurrency=4, repeat=2)  # fmt: skip
    order = [(s.repeat, s.implementation, s.jobs) for s in plan.scenarios(settings, fault_jobs=5)]
    once = [("fastapi", 10), ("celery", 10), ("fastapi", 50), ("celery", 50)]
    assert order == [(0, *s) for s in once] + [(1, *s) for s in once]
    names = {s.file_stem for s in plan.scenarios(settings, fault_jobs=5)}
    assert {"fastapi_10_jobs", "fastapi_10_jobs_rep2"} <= names and len(names) == 8  # the spec's name first


def test_figures_are_medians_with_their_range() -> None:
    s = merged(0.010, 0.030, 0.020)
    assert s.repeats == 3 and s.status == "held"
    assert s.probes["sync"].p99 == pytest.approx(0.020)
    assert (s.spread["probes.sync.p99"].min, s.spread["probes.sync.p99"].max) == pytest.approx((0.010, 0.030))
    assert "submission.avg" not in s.spread  # the same recorded submissions in every run: no range
    assert s.completion.completed == 5


def test_a_rule_that_fires_in_some_runs_only_is_borderline() -> None:
    s = merged(0.010, 1.5, 0.012)
    assert s.status == "borderline" and s.failures == []
    assert {f.rule for f in s.borderline} == {
        "server unresponsive (async endpoint)",
        "server unresponsive (sync endpoint)",
    }
    assert all(f.runs == "in 1 of 3 runs" for f in s.borderline)
    assert s.probes["async"].p99 == pytest.approx(0.012)  # the median run held


def test_a_rule_that_fires_in_every_run_clear_of_the_margin_fails() -> None:
    s = merged(1.0, 1.5, 0.9)
    assert s.status == "failed" and s.borderline == []
    assert [f.runs for f in s.failures] == ["in 3 of 3 runs", "in 3 of 3 runs"]


def test_a_figure_near_its_limit_is_borderline_even_in_one_run() -> None:
    near = merged(0.48)  # 478 ms against 500 ms: the coin toss issue 13 reported
    assert near.status == "borderline" and "within 20% of its limit" in near.borderline[0].runs
    assert merged(0.61).status == "failed" and merged(0.39).status == "held"


def test_the_verdict_says_borderline_then_fails(tmp_path: Path) -> None:
    """BackgroundTasks borderline at 5 jobs (one run of three over the limit) and failing at 20 (all over)."""
    base5, base20 = recorded("fastapi_5_jobs"), recorded("fastapi_20_jobs")
    celery5, celery20 = recorded("celery_5_jobs"), recorded("celery_20_jobs")
    scenarios = [
        *(with_probe_latency(base5, s, i) for i, s in enumerate((0.01, 1.2, 0.01))),
        *(with_probe_latency(base20, s, i) for i, s in enumerate((1.1, 1.2, 1.3))),
        *(with_probe_latency(c, 0.01, i) for c in (celery5, celery20) for i in range(3)),
    ]
    run = load_run(FIXTURE / f"comparison_{TIMESTAMP}.json")
    run.settings = run.settings.model_copy(update={"repeat": 3, "workloads": ["sleep"], "faults": []})
    analysed = analyse(run, scenarios)
    assert len(analysed.summaries) == 4 and len(analysed.scenario_summaries) == 12
    assert analysed.verdict.headline == [
        "Answer: BackgroundTasks are borderline for sleep at 5 jobs and fail from 20 jobs (Celery held there)."
    ]
    assert analysed.verdict.lines[1].startswith(
        "sleep: BackgroundTasks are borderline at 5 jobs (server unresponsive (async endpoint) in 1 of 3 runs"
    )


def test_a_repeated_run_renders_every_run_and_the_merged_tables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run with two runs of each scenario on disk: a report per run, one comparison of medians and ranges. (No
    chart is drawn: 42 of them would take most of the test's time, and tests/test_report_render.py draws them.)"""
    monkeypatch.setattr(charts, "scenario_charts", lambda *_args, **_kwargs: [])
    monkeypatch.setattr(charts, "comparison_charts", lambda *_args, **_kwargs: [])
    folder = tmp_path / "run"
    shutil.copytree(FIXTURE, folder)
    comparison = json.loads((folder / f"comparison_{TIMESTAMP}.json").read_text())
    comparison["settings"]["repeat"] = 2
    for name in list(comparison["scenario_files"]):
        data = json.loads((folder / name).read_text())
        data["settings"]["repeat"] = 2
        (folder / name).write_text(json.dumps(data))
        second = with_probe_latency(load_scenario(folder / name), 0.2, repeat=1)
        stem = f"{second.spec.file_stem}_{TIMESTAMP}.json"
        (folder / stem).write_text(second.model_dump_json())
        comparison["scenario_files"].append(stem)
    (folder / f"comparison_{TIMESTAMP}.json").write_text(json.dumps(comparison))
    md = files.rerender(folder).read_text()
    assert (folder / f"fastapi_5_jobs_rep2_{TIMESTAMP}.md").exists()
    assert "# fastapi · sleep · 5 jobs · run 2 of 2" in (folder / f"fastapi_5_jobs_rep2_{TIMESTAMP}.md").read_text()
    spec_rows = [line for line in md.splitlines() if line.startswith("| 5 | FASTAPI |")]
    assert len(spec_rows) == 1 and spec_rows[0].rstrip(" |").endswith(("held", "borderline", "failed"))
    assert "ms (" in md  # probe p99 medians with their range in the extended table


def test_quick_repeats_by_default_and_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["run", "--quick", "--repeat", "0", "--output", str(tmp_path)])
    assert exit_.value.code == 2 and "--repeat: 0 is out of range [1, 20]" in capsys.readouterr().err
    assert plan.QUICK_REPEAT >= 3 and plan.SPEC_REPEAT == 1
    assert plan.responsive_limit_s(plan.QUICK_DURATION_S) <= plan.QUICK_DURATION_S / 2
    assert plan.responsive_limit_s(plan.SPEC_DURATION_S) == 0.5
