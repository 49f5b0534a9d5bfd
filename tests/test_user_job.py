"""`--job`: the user's own function, from a module outside the project, through every implementation."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from taskbench.cli.main import main
from taskbench.implementations import REGISTRY
from taskbench.record.results import RunSettings, ScenarioResult, ScenarioSpec
from taskbench.stack.stack import Stack
from taskbench.user_job import job_check
from tests.conftest import routed_client, run_on
from tests.user_jobs import JOBS, MODULE


def run_job(stack: Stack, implementation: str, index: int, jobs: int, out: Path) -> ScenarioResult:
    path = f"{MODULE}:{JOBS[index]}"
    spec = ScenarioSpec(implementation=implementation, workload=path, jobs=jobs, duration_s=0.05, job_index=index,
                        behaves_like="sleep")  # fmt: skip
    settings = RunSettings(implementations=[implementation], workloads=[], jobs=[jobs], duration_s=0.05,
                           memory_mb=0, concurrency=2)  # fmt: skip

    # A deadline for correctness, not speed: BullMQ for Python's worker can wait up to its drainDelay (5 s) on the
    # queue's marker before it takes a waiting job (docs/queues.md), longer than these jobs' own deadline.
    return run_on(stack, spec, settings, job_args={path: lambda i: {"n": i, "out": str(out)}}, timeout_s=30.0)


@pytest.mark.parametrize("implementation", list(REGISTRY))
@pytest.mark.parametrize("index", [0, 1], ids=["sync", "async"])
def test_a_users_function_runs_through_every_implementation(
    stack: Stack, implementation: str, index: int, tmp_path: Path
) -> None:
    out = tmp_path / "calls.jsonl"
    result = run_job(stack, implementation, index, 3, out)
    assert not result.timed_out, result.events
    assert sorted(j.status for j in result.jobs) == ["completed"] * 3
    calls = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(c["n"] for c in calls) == [0, 1, 2]  # each job ran once, with its own arguments
    assert {e.event for e in result.executions} == {"start", "end"} and all(e.ok for e in result.executions)
    api_pid = stack.api.pid if stack.api else None
    in_api = {c["pid"] for c in calls} == {api_pid}
    assert in_api == (implementation == "fastapi")  # BackgroundTasks run it in the API; queues in their workers


@pytest.mark.parametrize("implementation", ["fastapi", "celery", "rq", "saq"])
def test_a_job_that_raises_is_failed_with_its_error_and_the_run_goes_on(stack: Stack, implementation: str) -> None:
    result = run_job(stack, implementation, 2, 4, Path("/dev/null"))
    by_status = sorted(j.status for j in result.jobs)
    assert by_status == ["completed", "completed", "failed", "failed"], result.jobs
    errors = {j.error for j in result.jobs if j.status == "failed"}
    assert errors == {"ValueError: order 1 is odd", "ValueError: order 3 is odd"}
    assert sum(1 for e in result.executions if e.event == "end" and not e.ok) == 2


@pytest.mark.parametrize("implementation", ["fastapi", "celery", "arq", "dramatiq"])
def test_a_job_that_hangs_is_failed_after_the_job_timeout(stack: Stack, implementation: str) -> None:
    result = run_job(stack, implementation, 3, 2, Path("/dev/null"))
    assert not result.timed_out
    hung = next(j for j in result.jobs if j.status == "failed")
    assert hung.error is not None and hung.error.startswith("JobTimeout")
    assert hung.execution_time is not None and 0.9 <= hung.execution_time < 5


def test_the_api_runs_only_the_functions_the_stack_was_started_with(stack: Stack) -> None:
    with routed_client(stack) as http:
        unknown = http.post("/celery/job", json={"kind": "job", "job": len(JOBS), "args": {}})
        assert unknown.status_code == 422 and "started with 4 job function" in unknown.text
        stray = http.post("/fastapi/job", json={"kind": "sleep", "args": {"n": 1}})
        assert stray.status_code == 422
        named = http.post("/fastapi/job", json={"kind": "job", "job": "os:system"})
        assert named.status_code == 422  # a request selects by number, never by name


def test_the_trial_call_profiles_the_job(user_dir: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.syspath_prepend(str(user_dir))  # the trial's process gets the harness's import path
    arguments, source = job_check.job_args(json.dumps([{"n": 0, "out": str(tmp_path / "x")}]), None)
    sync = job_check.check(f"{MODULE}:record", 0, arguments, source).profile
    assert not sync.is_async and sync.duration_s >= 0.05 and sync.return_type == "int"
    assert sync.behaves_like == "sleep"  # it waits, it does not compute
    async_ = job_check.check(f"{MODULE}:record_async", 1, arguments, source).profile
    assert async_.is_async and async_.behaves_like == "async_sleep"
    cpu = job_check.check("examples.jobs:make_thumbnail", 0, lambda i: {}, "none").profile
    assert cpu.behaves_like == "cpu" and cpu.return_type == "list"
    audit = job_check.check("examples.jobs:write_audit_event", 0, lambda i: {"user_id": 1, "action": "login",
                            "directory": str(tmp_path)}, "test").profile  # fmt: skip
    # up to three trial calls, jobs 0-2, each with its own arguments
    assert audit.is_async and (tmp_path / "taskbench-audit.log").read_text().count("login") == audit.trial_calls == 3


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--job", "no_such_module_anywhere:f"], "cannot import 'no_such_module_anywhere'"),
        (["--job", "os.path"], "write it as package.module:function"),
        (["--job", f"{MODULE}:nope"], "has no callable 'nope'"),
        (["--job", f"{MODULE}:odd_fails", "--job-args", '{"n": 1}'], "raised ValueError: order 1 is odd"),
        (["--job", f"{MODULE}:record", "--job-args", '{"n": NaN, "out": "x"}'], "not JSON-serialisable"),
        (["--job", f"{MODULE}:record", "--job-args", "[1, 2]"], "must be a JSON object"),
        (["--job", f"{MODULE}:record", "--job-args-from", f"{MODULE}:not_json_args"], "not JSON-serialisable"),
        (["--job-args", "{}"], "go with --job"),
        # the trial call runs in a process of its own, within --job-timeout: the harness outlives any of these
        (["--job", f"{MODULE}:hangs", "--job-timeout", "2"], "did not return within 2 s"),
        (["--job", f"{MODULE}:exits"], "ended its process (exit code 3)"),
        (["--job", f"{MODULE}:exits_at_once"], "ended its process (exit code 5)"),
        (["--job", f"{MODULE}:kills_itself"], "ended its process (signal 9)"),
        # arguments pair with --job in command-line order, whichever of the two flags gives them
        (
            [
                "--job",
                f"{MODULE}:record",
                "--job-args-from",
                f"{MODULE}:not_json_args",
                "--job",
                f"{MODULE}:odd_fails",
                "--job-args",
                '{"n": 0}',
            ],
            "not JSON-serialisable",
        ),
        (
            [
                "--job",
                f"{MODULE}:record",
                "--job",
                f"{MODULE}:odd_fails",
                "--job-args",
                "{}",
                "--job-args",
                "{}",
                "--job-args",
                "{}",
            ],
            "3 --job-args/--job-args-from for 2 --job",
        ),
    ],
)
def test_a_job_that_cannot_run_is_one_line_and_exit_2_before_anything_starts(
    argv: list[str], says: str, user_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(user_dir)
    assert main(["run", "--quick", "--output", str(user_dir / "results"), *argv]) == 2
    err = capsys.readouterr().err
    assert says in err and err.count("\n") == 1, err
    assert not (user_dir / "results").exists()


def test_a_process_that_dies_mid_scenario_is_a_finding_and_the_run_goes_on(user_dir: Path, tmp_path: Path) -> None:
    """Job 3 ends the process that runs it (os._exit): BackgroundTasks' API, a Celery pool child. Each scenario
    states it, the stack starts the API again for the next one, and the run ends with its reports."""
    out = subprocess.run(
        [sys.executable, "-m", "taskbench", "run", "--job", f"{MODULE}:exits_on_3", "--job-args-from",
         f"{MODULE}:numbered", "--jobs", "6,8", "--implementations", "fastapi,celery", "--concurrency", "2",
         "--repeat", "1", "--output", str(tmp_path)],
        capture_output=True, text=True, timeout=300, cwd=user_dir,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr
    (comparison,) = tmp_path.glob("*/comparison_*.json")
    summaries = {(s["implementation"], s["jobs"]): s for s in json.loads(comparison.read_text())["summaries"]}
    for jobs in (6, 8):
        fastapi = summaries[("fastapi", jobs)]
        assert fastapi["status"] == "failed" and fastapi["died"], fastapi["died"]
        assert "exit code 1" in fastapi["died"][0]
        assert any(f["rule"] == "a process died" for f in fastapi["failures"])
        assert fastapi["submission"]["count"] >= 4  # the API answered again: the stack restarted it
        assert not summaries[("celery", jobs)]["died"]  # a pool child is the worker's to replace
