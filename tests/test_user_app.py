"""`--app celery=package.module:attribute`: the jobs run through the user's own Celery app (`celery+app`), from their
working directory, with its own settings (tests/fixtures/user_celery_app: acks late, prefetch 1, queue `emails`, a
task of its own, production's broker and backend, which taskbench replaces with its own servers), side by side with
Celery as taskbench sets it up."""

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


def test_the_jobs_run_through_the_users_app_beside_taskbenchs_celery(project: Path, tmp_path: Path) -> None:
    output = tmp_path / "results"
    run = taskbench(
        project, "--app", f"celery={APP}", "--implementations", "celery", "--jobs", "4", "--duration", "0.2",
        "--repeat", "1", "--reference", "celery+app", "--output", str(output),
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    folder = next(output.iterdir())
    result = json.loads(next(folder.glob("comparison_*.json")).read_text())
    assert result["settings"]["implementations"] == ["celery", "celery+app"]  # --app adds yours beside it
    summaries = {s["implementation"]: s for s in result["summaries"]}
    for label in ("celery", "celery+app"):
        completion = summaries[label]["completion"]
        assert completion["completed"] == 4 and completion["failed"] == 0, label

    # the run records the app and what its app.conf said, under celery+app only; every report prints them
    recorded = result["settings"]["options"]["celery+app"]
    assert recorded["app"] == APP and "app" not in result["settings"]["options"].get("celery", {})
    app_settings = json.loads(recorded["app_settings"])
    assert (app_settings["task_acks_late"], app_settings["worker_prefetch_multiplier"]) == ("True", "1")
    assert (app_settings["task_default_queue"], app_settings["job_queue"]) == ("emails", "emails")
    shown = result["described"]["celery+app"]["settings"]
    assert shown["app"].startswith(f"{APP}: your Celery app")
    assert (shown["task_acks_late"], shown["worker_prefetch_multiplier"]) == ("True", "1")
    assert shown["queue"].startswith("`emails`")
    assert "your app's: rpc" in shown["result backend"]  # its backend replaced by taskbench's Redis, and said so
    ours = result["described"]["celery"]["settings"]
    assert ours["worker_prefetch_multiplier"].startswith("1 (the spec)") and "app" not in ours
    report = next(folder.glob("comparison_*.md")).read_text()
    for line in ("task_acks_late: True", "worker_prefetch_multiplier: 1", "queue: `emails`", f"--app celery={APP}"):
        assert line in report, line
    assert "Celery (your app)" in report and "against Celery (your app)" in run.stdout  # --reference celery+app

    # its worker was the user's app, consuming its queue, on taskbench's Redis (not production's); Celery's own
    # worker beside it ran taskbench's app
    logs = folder / "stack" / "logs"
    log = (logs / "celery+app-worker.log").read_text()
    assert ".> emails" in log and "shopapp.celery_app.send_receipt" in log, log[-3000:]
    assert log.count("Task taskbench.run_job[") >= 8  # received and succeeded, 4 each
    assert "shop-redis.invalid" not in log
    assert "send_receipt" not in (logs / "celery-worker.log").read_text()


def test_the_jobs_run_through_the_users_arq_settings_beside_taskbenchs_arq(project: Path, tmp_path: Path) -> None:
    output = tmp_path / "results"
    app = "shopapp.arq_worker:WorkerSettings"
    run = taskbench(
        project, "--app", f"arq={app}", "--implementations", "arq", "--jobs", "4", "--duration", "0.2",
        "--repeat", "1", "--output", str(output),
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    folder = next(output.iterdir())
    result = json.loads(next(folder.glob("comparison_*.json")).read_text())
    assert result["settings"]["implementations"] == ["arq", "arq+app"]
    for s in result["summaries"]:
        assert s["completion"]["completed"] == 4 and s["completion"]["failed"] == 0, s["implementation"]
    read = json.loads(result["settings"]["options"]["arq+app"]["app_settings"])
    assert (read["queue_name"], read["max_tries"], read["keep_result"], read["job_timeout"]) == (
        "emails",
        "3",
        "60",
        "120",
    )
    shown = result["described"]["arq+app"]["settings"]
    assert shown["app"].startswith(f"{app}: your arq WorkerSettings") and shown["max_tries"] == "3"
    assert "send_receipt" in shown["functions"] and shown["max_jobs"].startswith("4: taskbench's --concurrency")
    log = (folder / "stack" / "logs" / "arq+app-worker.log").read_text()
    assert "send_receipt" in log and "shop-redis.invalid" not in log, log[-3000:]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--app", "celery=shopapp.broken:app"],
            "cannot import 'shopapp.broken' (RuntimeError: SHOP_SETTINGS is not set)",
        ),
        (["--app", "celery=shopapp.celery_app:settings"], "is a builtins.dict, not a celery.Celery app"),
        (["--app", "rq=shopapp.celery_app:app"], "--app runs your own app on celery, arq only, for now (not rq)"),
        (["--app", "arq=shopapp.arq_worker:send_receipt"], "not arq WorkerSettings (a class or a dict)"),
        (
            ["--app", f"celery={APP}", "--implementations", "fastapi", "--pool", "threads"],
            "--pool set Celery's worker: add celery to --implementations (--app runs your app on its own settings)",
        ),
        (["--implementations", "celery+app"], "celery+app runs your own celery app: add --app celery=PACKAGE.MODULE:"),
    ],
    ids=[
        "import-fails",
        "not-an-app",
        "other-queue",
        "not-arq-settings",
        "pool-flag-for-no-celery",
        "app-label-without-app",
    ],
)
def test_an_app_that_cannot_run_is_one_line_and_exit_2(
    project: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    output = tmp_path / "results"
    run = taskbench(project, *args, "--jobs", "4", "--duration", "0.2", "--output", str(output), timeout=120)
    assert run.returncode == 2, run.stdout + run.stderr
    assert message in run.stderr and len(run.stderr.strip().splitlines()) == 1, run.stderr
    assert not output.exists() or not any(output.iterdir())  # nothing started


@pytest.mark.pure
def test_the_apps_settings_make_its_one_delivery_and_leave_taskbenchs_celery_alone() -> None:
    """With --app, the worker faults run once on `celery+app`, under the app's own settings, and the promise states
    them; `celery` beside it keeps taskbench's delivery variants."""
    read = celery.CeleryOptions(
        app=APP,
        app_settings={"task_acks_late": "True", "task_reject_on_worker_lost": "None", "visibility_timeout": "None",
                      "worker_pool": "prefork"},
    )  # fmt: skip
    plugin = implementations.get("celery+app")
    assert plugin is implementations.APPS["celery"] and plugin is not implementations.get("celery")
    assert isinstance(plugin, celery.CeleryImplementation)
    plugin._app = read  # as read_app leaves it
    try:
        assert faults.get("worker-crash").variants(plugin) == ["app"]
        assert faults.get("worker-crash").variants(implementations.get("celery")) == [
            d.name for d in celery.IMPLEMENTATION.own_deliveries
        ]
        [delivery] = plugin.deliveries
        assert delivery.promise.startswith(
            "your app's settings: task_acks_late=True, task_reject_on_worker_lost=False, visibility_timeout=3600 s"
        )
        assert (delivery.worker_crash, delivery.child_crash) == ("redelivered", "lost")
        [amqp] = plugin.amqp_deliveries
        assert "as soon as its connection drops" in amqp.promise
    finally:
        plugin._app = None
    options = read.model_dump(exclude_defaults=True)
    assert isinstance(options["app_settings"], str)  # options are scalars: the settings as one JSON text
    argv = plugin.worker_argv(6, options)
    assert "--pool" not in argv and "--prefetch-multiplier" not in argv  # the app's own, from its config
    assert argv[argv.index("--concurrency") + 1] == "6"  # taskbench's
    assert plugin.settings(6, options, ApiOptions())["pool"].startswith("prefork (your worker_pool), --concurrency 6")


@pytest.mark.pure
def test_a_label_names_the_queue_its_release_and_whether_it_runs_your_app() -> None:
    assert [implementations.plugin_name(x) for x in ("celery", "celery@5.5.3", "celery+app")] == ["celery"] * 3
    assert [implementations.release(x) for x in ("celery", "celery@5.5.3", "celery+app")] == [None, "5.5.3", None]
    assert implementations.title("celery+app") == "Celery (your app)" and implementations.title("celery") == "Celery"
    assert not implementations.known("rq+app")  # only queues that can run an app
    options = {"celery": {"pool": "threads"}, "celery+app": {"app": APP}}
    assert implementations.options_of(options, "celery@5.5.3") == {"pool": "threads"}  # a release: its queue's
    assert implementations.options_of(options, "celery+app") == {"app": APP}  # the app: its own alone
