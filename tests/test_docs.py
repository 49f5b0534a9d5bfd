"""The README and docs/ stay navigable: no heading twice in a page, every relative link and anchor resolves,
the README fits a screen or so, and docs/cli.md is what the parser says today."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest

from taskbench.cli import cli_docs

pytestmark = pytest.mark.pure  # the fast tier: `pytest -m pure`

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", REPO / "DESIGN.md", *sorted((REPO / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def headings(page: Path) -> list[str]:
    text = FENCE.sub("", page.read_text())
    return [line.lstrip("#").strip() for line in text.splitlines() if re.match(r"^#{1,6} ", line)]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_no_heading_twice(page: Path) -> None:
    twice = [h for h, n in Counter(headings(page)).items() if n > 1]
    assert twice == [], f"{page.name}: {twice}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_relative_link_resolves(page: Path) -> None:
    broken = []
    for target in LINK.findall(FENCE.sub("", page.read_text())):
        if re.match(r"^[a-z]+:", target):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        where = (page.parent / path).resolve() if path else page
        missing_anchor = where.exists() and anchor and where.suffix == ".md"
        if not where.exists() or (missing_anchor and anchor not in {slug(h) for h in headings(where)}):
            broken.append(target)
    assert broken == [], f"{page.name}: {broken}"


def test_the_readme_fits_a_screen_or_so() -> None:
    assert len((REPO / "README.md").read_text().splitlines()) <= 210


def test_the_cli_reference_is_generated_from_the_parser() -> None:
    """Regenerate with `python -m taskbench.cli.cli_docs > docs/cli.md` after changing a flag."""
    assert (REPO / "docs" / "cli.md").read_text() == cli_docs.render()


@pytest.mark.parametrize("page", sorted((REPO / "docs" / "results").glob("*.md")), ids=lambda p: p.name)
def test_measured_pages_are_what_their_recorded_runs_render_to(page: Path) -> None:
    """docs/results/*.md are generated (`taskbench report RUN --page docs/results/NAME.md`), never edited."""
    from taskbench.report.files import render_page

    assert page.read_text() == render_page(page.with_suffix(".json"))


# Pages recorded before a run kept its command, or from a tree with uncommitted changes: to be recorded again.
UNREPRODUCIBLE_PAGES: set[str] = set()


@pytest.mark.parametrize("page", sorted((REPO / "docs" / "results").glob("*.json")), ids=lambda p: p.stem)
def test_measured_pages_come_from_a_committed_tree_and_say_their_command(page: Path) -> None:
    """A figure in the docs can be measured again: its run recorded the command and a commit without changes."""
    from taskbench.analysis.models import AnalysedRun

    run = AnalysedRun.model_validate_json(page.read_text())
    reproducible = run.command is not None and run.git_revision is not None and "+dirty" not in run.git_revision
    assert reproducible != (page.stem in UNREPRODUCIBLE_PAGES), (page.stem, run.command, run.git_revision)


def test_a_page_is_judged_again_from_its_own_json_and_says_by_which_revision(tmp_path: Path) -> None:
    """`taskbench report docs/results/NAME.json --page docs/results/NAME.md` after a rule changed."""
    from taskbench.analysis.models import AnalysedRun
    from taskbench.cli.main import main

    page = tmp_path / "broker-kept.json"
    page.write_text((REPO / "docs" / "results" / "broker-kept.json").read_text())
    assert main(["report", str(page), "--page", str(page.with_suffix(".md"))]) == 0
    again = AnalysedRun.model_validate_json(page.read_text())
    assert again.rejudged_by and again.rejudged_by in page.with_suffix(".md").read_text()
    celery = next(s for s in again.summaries if s.label == "celery · noop · 1000 jobs")
    assert "makespan far over ideal" not in {f.rule for f in celery.failures}
    assert main(["report", str(tmp_path / "nothing.json"), "--page", str(tmp_path / "x.md")]) == 2


def test_the_page_of_answers_answers_what_its_run_staged_and_says_how_to_stage_the_rest() -> None:
    from taskbench.analysis.models import AnalysedRun
    from taskbench.report import markdown, questions

    deploys = AnalysedRun.model_validate_json((REPO / "docs" / "results" / "worker-deploy.json").read_text())
    page = markdown.document(questions.blocks(deploys))
    assert "## A deploy under load: are jobs lost or run twice?" in page
    assert "| Huey | long-grace | 80% of 20 | 4 | 0 (0 / 0) | Huey's immediate shutdown" in page
    assert "Stage it with `--faults long-job`" in page and "## How it was measured" in page


def test_the_ci_recipe_is_valid_yaml_and_every_taskbench_command_in_it_parses() -> None:
    """docs/running.md's GitHub Actions workflow: a YAML that loads, whose `taskbench` commands the parser takes."""
    import shlex

    import yaml

    from taskbench.cli.main import build_parser

    (recipe,) = re.findall(r"```yaml\n(.*?)```", (REPO / "docs" / "running.md").read_text(), re.S)
    steps = yaml.safe_load(recipe)["jobs"]["background-jobs"]["steps"]
    commands = [
        line.split("taskbench ", 1)[1].split("||")[0]
        for step in steps
        for line in step.get("run", "").replace("\n               ", " ").splitlines()
        if "taskbench " in line and not line.lstrip().startswith("pip ")
    ]
    assert [c.split()[0] for c in commands] == ["run", "compare"]
    for command in commands:
        build_parser().parse_args(shlex.split(command))


FAKE_GH = """#!/bin/sh
# `gh run list …` names main's last run (none when MAIN_RUN is empty); `gh run download … --dir base` fetches it
case "$2" in
  list) [ -z "$MAIN_RUN" ] || echo 4242 ;;
  download) mkdir -p base && cp -r "$MAIN_RUN" base/ ;;
esac
"""


@pytest.mark.parametrize("main", ["same", "faster", "none"])
def test_the_ci_recipe_compare_step_runs_on_two_recorded_runs(main: str, tmp_path: Path) -> None:
    """The pull request's step of the recipe, executed as Actions would (bash -e), with `gh` standing in for
    GitHub's artifacts: main's recorded run fetched, compared with the pull request's, the gate's result in the
    job's summary; a pull request whose processes hold twice main's memory fails the job (exit 3); before main has
    a run, a line saying so and a pass."""
    import os
    import shutil
    import subprocess
    import sys

    import yaml

    (recipe,) = re.findall(r"```yaml\n(.*?)```", (REPO / "docs" / "running.md").read_text(), re.S)
    steps = yaml.safe_load(recipe)["jobs"]["background-jobs"]["steps"]
    (step,) = [s for s in steps if s.get("if") == "github.event_name == 'pull_request'"]
    script = step["run"].replace("${{ github.workflow }}", "background-jobs")
    fixture = REPO / "tests" / "fixtures" / "small_run"
    shutil.copytree(fixture, tmp_path / "runs" / "20261125_061235")  # the pull request's run (the same figures)
    main_run = tmp_path / "main" / "20261125_061235"
    shutil.copytree(fixture, main_run)
    if main == "faster":  # main's processes held half the memory: the pull request's hold 100 % more
        for scenario in main_run.glob("*_jobs_*.json"):
            data = json.loads(scenario.read_text())
            for sample in data["samples"]:
                for process in sample["processes"].values():
                    process["rss_mb"] /= 2
            scenario.write_text(json.dumps(data))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "gh").write_text(FAKE_GH)
    (bin_dir / "gh").chmod(0o755)
    summary = tmp_path / "summary.md"
    environment = {
        **os.environ, "PATH": f"{bin_dir}:{Path(sys.executable).parent}:{os.environ['PATH']}",
        "GITHUB_STEP_SUMMARY": str(summary), "MAIN_RUN": "" if main == "none" else str(main_run),
    }  # fmt: skip
    done = subprocess.run(["bash", "-e", "-c", script], cwd=tmp_path, env=environment, capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    if main == "faster":
        assert done.returncode == 3, done.stdout + done.stderr
        assert "worse by more than 15%" in summary.read_text() and "memory" in summary.read_text().lower()
        return
    assert done.returncode == 0, done.stdout + done.stderr
    if main == "same":
        assert (tmp_path / "comparison.md").exists()
        assert "## taskbench compare: no figure worse by more than 15%" in summary.read_text()
    else:
        assert summary.read_text() == "no run of main yet: nothing to compare with\n"
