"""`TASKBENCH_RUN_<OPTION>`: every `run` option from the environment, named after its flag, as a CI passes it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from taskbench.cli.main import build_parser, main

pytestmark = pytest.mark.pure


@pytest.mark.parametrize(
    ("variable", "value", "dest", "expected"),
    [
        ("TASKBENCH_RUN_FAIL_ON", "failed", "fail_on", "failed"),
        ("TASKBENCH_RUN_JSON", "-", "json_out", "-"),  # the flag's name, not argparse's `json_out`
        ("TASKBENCH_RUN_FOR", "90s", "for_s", 90.0),
        ("TASKBENCH_RUN_TARGET_P95", "2", "queue_p95", 2.0),
        ("TASKBENCH_RUN_WITH", "celery==5.5.3", "with_packages", ["celery==5.5.3"]),
        ("TASKBENCH_RUN_QUICK", "yes", "quick", True),
        ("TASKBENCH_RUN_QUICK", "off", "quick", False),
    ],
)
def test_a_run_option_comes_from_the_variable_named_after_its_flag(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, dest: str, expected: object
) -> None:
    monkeypatch.setenv(variable, value)
    assert getattr(build_parser().parse_args(["run"]), dest) == expected


def test_a_flag_given_wins_over_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKBENCH_RUN_FAIL_ON", "failed")
    assert build_parser().parse_args(["run", "--fail-on", "borderline"]).fail_on == "borderline"


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("TASKBENCH_RUN_QUICK", "abc", "TASKBENCH_RUN_QUICK='abc': give one of 1, true, yes, on, 0, false, no, off"),
        ("TASKBENCH_RUN_FAILON", "failed", "TASKBENCH_RUN_FAILON: no `run` option is named so (did you mean "
         "TASKBENCH_RUN_FAIL_ON?)"),
        ("TASKBENCH_RUN_FAIL_ON", "sometimes", "TASKBENCH_RUN_FAIL_ON='sometimes': choose from failed, borderline"),
    ],
)  # fmt: skip
def test_a_variable_that_means_nothing_is_one_line_and_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], variable: str, value: str, message: str
) -> None:
    monkeypatch.setenv(variable, value)
    assert main(["report", "nowhere"]) == 2
    assert capsys.readouterr().err == f"taskbench: {message}\n"


def test_in_a_log_a_line_is_never_wrapped(capsys: pytest.CaptureFixture[str]) -> None:
    """A CI log is not a terminal: a verdict or a `worse:` line stays one line, whatever its length."""
    from taskbench.cli.main import console_for

    console = console_for(build_parser().parse_args(["run"]))
    long = "worse: celery · sleep · 20 jobs · worker-crash (acks_late+reject_on_worker_lost): Submission p99 " * 2
    console.print(long, markup=False)
    assert capsys.readouterr().out == long + "\n"


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("taskbench run --workloads ", {"sleep", "async_sleep", "blocking_async", "cpu", "memory", "noop", "all"}),
        ("taskbench report --refer", {"--reference"}),
    ],
)
def test_a_shell_completes_commands_flags_and_their_words(line: str, expected: set[str], tmp_path: Path) -> None:
    """What `taskbench completion bash|zsh|fish` installs asks the CLI itself (argcomplete): its answer, here."""
    out = tmp_path / "completions"
    environment = {**os.environ, "_ARGCOMPLETE": "1", "COMP_LINE": line, "COMP_POINT": str(len(line)),
                   "_ARGCOMPLETE_STDOUT_FILENAME": str(out)}  # fmt: skip
    done = subprocess.run([sys.executable, "-m", "taskbench"], env=environment, capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr
    words = {w.strip() for w in out.read_text().split("\013") if w.strip()}
    assert expected <= words, words


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_prints_each_shells_script(shell: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["completion", shell]) == 0
    script = capsys.readouterr().out
    assert "taskbench" in script and "_ARGCOMPLETE" in script
