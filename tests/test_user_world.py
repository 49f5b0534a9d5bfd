"""taskbench in the user's world: run from their project (which has its own `app` package), on the releases the
package index serves today, one environment per implementation, other releases side by side."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.version import Version

from taskbench import implementations
from taskbench.envs import environment, venvs
from taskbench.errors import UsageError
from taskbench.record.results import load_run, load_scenario

USER_APP = '''"""The user's own FastAPI app, in FastAPI's "Bigger Applications" layout."""
from pathlib import Path

from fastapi import FastAPI

Path(__file__).with_name("IMPORTED").write_text("the user's app was imported")
app = FastAPI()
'''

USER_JOB = '''"""The user's job: notes which interpreter ran it, so the test can tell the environments apart."""
import os
import sys
import time


def notify(order: int = 0, log: str = "") -> dict:
    time.sleep(0.05)
    with open(log, "a") as f:
        f.write(f"{os.getpid()} {sys.executable} {'app' in sys.modules}\\n")
    return {"order": order}
'''


def _project(tmp_path: Path) -> Path:
    project = tmp_path / "shop"
    (project / "app").mkdir(parents=True)
    (project / "app" / "__init__.py").write_text("")
    (project / "app" / "main.py").write_text(USER_APP)
    (project / "shopjobs.py").write_text(USER_JOB)
    return project


def _taskbench(cwd: Path, *args: str, timeout: float = 400) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "taskbench", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


def _comparison(output: Path) -> Path:
    (folder,) = [p for p in output.iterdir() if p.is_dir()]
    (comparison,) = folder.glob("comparison_*.json")
    return comparison


@pytest.mark.timeout(900)  # fourteen environments built with the project's pins, then a stack of them all: 3–5 min
def test_a_project_with_its_own_app_package_runs_its_job_through_every_implementation(tmp_path: Path) -> None:
    project = _project(tmp_path)
    log = project / "ran.log"
    out = _taskbench(
        project, "run", "--job", "shopjobs:notify", "--job-args", json.dumps({"log": str(log)}), "--jobs", "2",
        "--implementations", "all", "--concurrency", "1", "--repeat", "1", "--output", str(project / "out"),
        "--timeout", "30",  # BullMQ's worker may wait its drainDelay (5 s) on its marker before it takes a job
        timeout=840,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr
    assert not (project / "app" / "IMPORTED").exists(), "taskbench started the user's app instead of its own"
    comparison = _comparison(project / "out")
    run = load_run(comparison)
    envs = run.environment.environments
    assert set(envs) == set(implementations.REGISTRY)
    ran_by = {line.split()[1] for line in log.read_text().splitlines()}
    for name in implementations.REGISTRY:
        (path,) = [f for f in run.scenario_files if Path(f).name.startswith(f"{name}_")]
        result = load_scenario(comparison.parent / path)
        assert [j.status for j in result.jobs] == ["completed"] * 2, name
        assert result.spec.workload == "shopjobs:notify" and all(j.kind == "job" for j in result.jobs), name
        assert str(Path(envs[name].where) / "bin" / "python") in ran_by, name  # its own environment ran it
    # the releases the package index serves today, each in its own environment
    assert Version(envs["celery"].packages["celery"]) >= Version("5.7")
    assert Version(envs["celery"].packages["kombu"]) >= Version("5.7")
    assert Version(envs["taskiq"].packages["taskiq-redis"]) >= Version("1.2")
    assert "celery" not in envs["arq"].packages and "arq" not in envs["celery"].packages


def test_two_releases_of_one_queue_run_side_by_side(tmp_path: Path) -> None:
    out = _taskbench(
        tmp_path, "run", "--implementations", "celery@5.5.3,celery", "--jobs", "3", "--duration", "0.2",
        "--concurrency", "2", "--repeat", "1", "--output", str(tmp_path / "out"),
    )  # fmt: skip
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr
    assert "Celery 5.5.3" in out.stdout and "| CELERY@5.5.3 |" in out.stdout.upper()
    comparison = _comparison(tmp_path / "out")
    run = load_run(comparison)
    envs = run.environment.environments
    assert envs["celery@5.5.3"].packages["celery"] == "5.5.3"
    assert Version(envs["celery"].packages["celery"]) >= Version("5.7")
    assert run.environment.versions["celery (celery@5.5.3)"] == "5.5.3"
    for stem in ("celery_5.5.3_3_jobs", "celery_3_jobs"):
        (path,) = [f for f in run.scenario_files if Path(f).name.startswith(stem)]
        result = load_scenario(comparison.parent / path)
        assert [j.status for j in result.jobs] == ["completed"] * 3, stem
        assert len({e.job_id for e in result.executions}) == 3, stem  # each took its own jobs, not the other's


def test_with_pins_a_release_only_where_it_is_used() -> None:
    envs = environment.prepare(["celery", "arq"], ["celery==5.5.3"])
    assert envs["celery"].version("celery") == "5.5.3" and envs["celery"].constraints == ("celery==5.5.3",)
    assert envs["arq"].version("celery") is None


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("nosuchpackage-taskbench==1.0", "nosuchpackage-taskbench"),  # the index does not have it
        ("celery==0.0.1", "celery"),  # nor that release
        ("celery===", "not a requirement"),
        ("pillow==10.4.0", "no environment of"),  # no queue here uses it
    ],
)
def test_with_what_cannot_be_installed_is_one_line_and_exit_2(tmp_path: Path, spec: str, message: str) -> None:
    out = _taskbench(tmp_path, "run", "--implementations", "celery", "--with", spec, "--jobs", "1", timeout=120)
    assert out.returncode == 2, out.stdout + out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], out.stderr
    assert "stack up" not in out.stdout  # before any service started


def test_requirements_pin_the_queue_of_a_release_label() -> None:
    assert "celery[redis]==5.5.3" in environment.requirements_for("celery@5.5.3", {})
    assert "taskiq==0.12.1" in environment.requirements_for("taskiq@0.12.1", {})
    with pytest.raises(UsageError):
        environment.parse_with("celery>=5 ; python_version < '3'")


def test_an_environment_that_cannot_be_built_is_one_line_and_a_stale_one_is_kept(tmp_path: Path) -> None:
    """Offline (uv told so, with an empty cache of its own): no environment yet is a usage error naming it; one
    built earlier but older than a week is kept, with a line saying so."""
    offline = {**os.environ, "TASKBENCH_ENV_DIR": str(tmp_path / "envs"), "UV_OFFLINE": "1",
               "UV_CACHE_DIR": str(tmp_path / "empty-cache")}  # fmt: skip
    argv = [sys.executable, "-m", "taskbench", "env", "--implementations", "arq"]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=offline)
    assert out.returncode == 2, out.stdout + out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "the arq environment could not be built" in lines[0], out.stderr
    online = {k: v for k, v in offline.items() if k not in ("UV_OFFLINE", "UV_CACHE_DIR")}
    assert subprocess.run(argv, capture_output=True, text=True, timeout=300, env=online).returncode == 0
    (marker,) = [m for m in (tmp_path / "envs").glob("arq-*/taskbench-env.json") if m.parent.is_symlink()]
    record = json.loads(marker.read_text())
    marker.write_text(json.dumps(record | {"built_at": record["built_at"] - 30 * 86400}))
    out = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=offline)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "kept the arq environment" in out.stdout and "arq " in out.stdout


def test_a_rebuild_never_deletes_an_environment_in_use(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A rebuild is built beside the cached one and switched to by one rename; the old one stays while a process
    runs from it (a running stack's worker), and goes at the next build once nothing does."""
    monkeypatch.setenv("TASKBENCH_ENV_DIR", str(tmp_path / "envs"))
    request = venvs.EnvRequest("fastapi", environment.requirements_for("fastapi", {}), ())
    first = venvs.ensure(request, say=lambda _: None)
    running = subprocess.Popen([first.python, "-c", "import time; time.sleep(60)"])
    try:
        second = venvs.ensure(request, rebuild=True, say=lambda _: None)
        assert second.path != first.path and Path(first.path).is_dir()  # kept: a process runs from it
        assert venvs.load(venvs.cache_dir() / request.key) == second  # the cache names the new one
    finally:
        running.kill()
        running.wait(10)
    third = venvs.ensure(request, rebuild=True, say=lambda _: None)
    assert not Path(first.path).exists() and not Path(second.path).exists() and Path(third.path).is_dir()


def test_an_environment_cache_others_can_write_is_refused_in_one_line(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    argv = [sys.executable, "-m", "taskbench", "env", "--implementations", "fastapi"]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "TASKBENCH_ENV_DIR": str(shared)})  # fmt: skip
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert "must be yours alone" in out.stderr
