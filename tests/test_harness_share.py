"""The harness's CPU share beside the service's, and the flag above a tenth of the machine (issue 13), on the
recorded run in tests/fixtures/small_run: no stack is started."""

from __future__ import annotations

import pytest

from taskbench.analysis import analyse, summarise
from taskbench.record.results import RunEnvironment, ScenarioResult
from taskbench.report import html, markdown
from taskbench.report.files import load
from tests.test_report_render import FIXTURE

pytestmark = pytest.mark.pure  # the fast tier: `pytest -m pure`

WARNING = "Warning: the harness used more than 10 % of the machine"


def recorded() -> list[ScenarioResult]:
    _, _, scenarios = load(FIXTURE)
    return scenarios


def with_harness_at(result: ScenarioResult, percent_of_a_core: float) -> ScenarioResult:
    """The recorded scenario with every harness reading set to `percent_of_a_core`."""
    samples = [
        sample.model_copy(
            update={
                "processes": {
                    **sample.processes,
                    "harness": sample.processes["harness"].model_copy(update={"cpu_percent": percent_of_a_core}),
                }
            }
        )
        for sample in result.samples
    ]
    return result.model_copy(update={"samples": samples})


def average(result: ScenarioResult, role: str) -> float:
    readings = [s.processes[role].cpu_percent for s in result.samples if role in s.processes]
    return sum(readings) / len(readings)


def test_shares_are_the_sampled_averages_over_the_machine_s_cores() -> None:
    for result in recorded():
        shares = summarise(result).cpu_shares
        assert shares is not None
        worker = [f"{result.spec.implementation}-worker"] if result.spec.implementation == "celery" else []
        assert shares.cores == 2 and shares.service_roles == ["api", "redis", *worker]
        assert shares.harness_percent == pytest.approx(average(result, "harness") / 2)
        service = sum(average(result, role) for role in shares.service_roles)
        assert shares.service_percent == pytest.approx(service / 2)
        # recorded: the harness took 3–9 % of this 2-core machine, under the limit everywhere
        assert 0 < shares.harness_percent < 10 and not shares.harness_over_limit


def test_only_a_harness_above_a_tenth_of_the_machine_is_flagged() -> None:
    result = recorded()[0]
    at_limit = summarise(with_harness_at(result, 20.0)).cpu_shares  # 20 % of a core = 10 % of 2 cores
    above = summarise(with_harness_at(result, 21.0)).cpu_shares
    assert at_limit is not None and at_limit.harness_percent == pytest.approx(10.0)
    assert not at_limit.harness_over_limit
    assert above is not None and above.harness_over_limit and above.harness_percent == pytest.approx(10.5)


def test_the_reports_show_both_shares_and_warn_about_the_heavy_scenario_only() -> None:
    _, run, scenarios = load(FIXTURE)
    heavy = with_harness_at(scenarios[0], 40.0)  # 20 % of the machine
    calm = analyse(run, scenarios)
    flagged = analyse(run, [heavy, *scenarios[1:]])

    calm_md = markdown.comparison(calm)
    assert "Harness / service CPU avg (of the machine)" in calm_md
    assert "of the whole machine (2 cores)" in calm_md and WARNING not in calm_md
    assert WARNING not in html.report(calm, scenarios)

    summary = flagged.summaries[0]
    assert summary.cpu_shares is not None and summary.cpu_shares.harness_over_limit
    assert [s.label for s in flagged.summaries if s.cpu_shares and s.cpu_shares.harness_over_limit] == [summary.label]
    flagged_md = markdown.comparison(flagged)
    (line,) = [line for line in flagged_md.splitlines() if WARNING in line]
    assert summary.label in line and "20.0%" in line
    rows = [r for r in flagged_md.splitlines() if r.startswith(f"| {summary.label} |")]
    (row,) = [r for r in rows if "⚠" in r]  # the resources table's
    assert row.endswith(f"| 20.0% / {summary.cpu_shares.service_percent:.1f}% ⚠ |")
    assert WARNING in markdown.scenario(heavy, summary)
    page = html.report(flagged, [heavy, *scenarios[1:]])
    assert page.count(WARNING) == 2  # under the resources table, and in the scenario's own section
    assert '<p class="banner"><strong>' + WARNING in page


def test_no_core_count_no_share() -> None:
    result = recorded()[0].model_copy(update={"environment": RunEnvironment()})
    summary = summarise(result)
    assert summary.cpu_shares is None
    text = markdown.scenario(result, summary)
    assert "of the whole machine" not in text and "⚠" not in text
