"""`--app celery=package.module:attribute`: the jobs run through the user's own Celery app, from their working
directory, with its own settings (tests/fixtures/user_celery_app: acks late, prefetch 1, queue `emails`, a task of
its own, production's broker and backend, which taskbench replaces with its own servers)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from taskbench import faults, implementations
from taskbench.implementations import celery
from taskbench.record.results import ApiOptions

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "user_celery_app"
APP = "shopapp.celery_app:app"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """The user's project, copied where nothing else is on the path: taskbench imports it from there alone."""
    return Path(shutil.copytree(FIXTURE, tmp_path / "shop"))


def taskbench(project: Path, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "taskbench", "run", *args], cwd=project, capture_output=True, text=True,
        timeout=timeout,
    )  # fmt: skip


def test_the_jobs_run_through_the_users_app_with_its_settings(project: Path, tmp_path: Path) -> None:
    output = tmp_path / "results"
    run = taskbench(
        project, "--app", f"celery={APP}", "--implementations", "celery", "--jobs", "4", "--duration", "0.2",
        "--repeat", "1", "--output", str(output),
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    folder = next(output.iterdir())
    result = json.loads(next(folder.glob("comparison_*.json")).read_text())
    [summary] = result["summaries"]
    assert summary["completion"]["completed"] == 4 and summary["completion"]["failed"] == 0

    # the run records the app and what its app.conf said; every report prints them as the app's
    recorded = result["settings"]["options"]["celery"]
    assert recorded["app"] == APP
    app_settings = json.loads(recorded["app_settings"])
    assert (app_settings["task_acks_late"], app_settings["worker_prefetch_multiplier"]) == ("True", "1")
    assert (app_settings["task_default_queue"], app_settings["job_queue"]) == ("emails", "emails")
    shown = result["described"]["celery"]["settings"]
    assert shown["app"].startswith(f"{APP}: your Celery app")
    assert (shown["task_acks_late"], shown["worker_prefetch_multiplier"]) == ("True", "1")
    assert shown["queue"].startswith("`emails`")
    assert "your app's: rpc" in shown["result backend"]  # its backend replaced by taskbench's Redis, and said so
    report = next(folder.glob("comparison_*.md")).read_text()
    for line in ("task_acks_late: True", "worker_prefetch_multiplier: 1", "queue: `emails`", f"--app celery={APP}"):
        assert line in report, line

    # the worker was the user's app, consuming its queue, on taskbench's Redis (not production's)
    log = (folder / "stack" / "logs" / "celery-worker.log").read_text()
    assert ".> emails" in log and "shopapp.celery_app.send_receipt" in log, log[-3000:]
    assert log.count("Task taskbench.run_job[") >= 8  # received and succeeded, 4 each
    assert "shop-redis.invalid" not in log


@pytest.mark.parametrize(
    ("app", "extra", "message"),
    [
        ("celery=shopapp.broken:app", [], "cannot import 'shopapp.broken' (RuntimeError: SHOP_SETTINGS is not set)"),
        ("celery=shopapp.celery_app:settings", [], "is a builtins.dict, not a celery.Celery app"),
        ("arq=shopapp.celery_app:app", [], "--app runs your own app on celery only, for now (not arq)"),
        (f"celery={APP}", ["--pool", "threads"], "--pool with --app celery="),
        (f"celery={APP}", ["--implementations", "fastapi"], "add celery to --implementations"),
    ],
    ids=["import-fails", "not-an-app", "other-queue", "pool-flag", "queue-not-run"],
)
def test_an_app_that_cannot_run_is_one_line_and_exit_2(
    project: Path, tmp_path: Path, app: str, extra: list[str], message: str
) -> None:
    output = tmp_path / "results"
    args = ["--implementations", "celery", *extra, "--jobs", "4", "--duration", "0.2", "--output", str(output)]
    run = taskbench(project, "--app", app, *args, timeout=120)
    assert run.returncode == 2, run.stdout + run.stderr
    assert message in run.stderr and len(run.stderr.strip().splitlines()) == 1, run.stderr
    assert not output.exists() or not any(output.iterdir())  # nothing started


@pytest.mark.pure
def test_the_apps_settings_make_its_one_delivery() -> None:
    """With --app, the worker faults run once, under the app's own settings, and the promise states them."""
    read = celery.CeleryOptions(
        app=APP,
        app_settings={"task_acks_late": "True", "task_reject_on_worker_lost": "None", "visibility_timeout": "None",
                      "worker_pool": "prefork"},
    )  # fmt: skip
    plugin = celery.IMPLEMENTATION
    plugin._app = read
    try:
        assert faults.get("worker-crash").variants(implementations.get("celery")) == ["app"]
        [delivery] = plugin.deliveries
        assert delivery.promise.startswith(
            "your app's settings: task_acks_late=True, task_reject_on_worker_lost=False, visibility_timeout=3600 s"
        )
        assert (delivery.worker_crash, delivery.child_crash) == ("redelivered", "lost")
        [amqp] = plugin.amqp_deliveries
        assert "as soon as its connection drops" in amqp.promise
    finally:
        plugin._app = None
    assert plugin.deliveries == plugin.own_deliveries  # taskbench's own app: its variants again
    options = read.model_dump(exclude_defaults=True)
    assert isinstance(options["app_settings"], str)  # options are scalars: the settings as one JSON text
    argv = plugin.worker_argv(6, options)
    assert "--pool" not in argv and "--prefetch-multiplier" not in argv  # the app's own, from its config
    assert argv[argv.index("--concurrency") + 1] == "6"  # taskbench's
    assert plugin.settings(6, options, ApiOptions())["pool"].startswith("prefork (your worker_pool), --concurrency 6")
