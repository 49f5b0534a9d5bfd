"""An implementation whose API or worker cannot start, or whose worker does not come back, is a finding of the run
(which part, why, its log's last lines), and the run goes on with the others."""

from __future__ import annotations

import asyncio
import dataclasses
import stat
from pathlib import Path

from taskbench.analysis import analyse
from taskbench.envs import environment, venvs
from taskbench.load.client import ServiceClient
from taskbench.record.results import RunEnvironment, RunResult, RunSettings, ScenarioSpec
from taskbench.report import markdown
from taskbench.run.run import _run_or_give_up
from taskbench.run.scenario import ScenarioContext
from taskbench.stack.stack import Stack, StackConfig

SECRET_LINE = "boom: this interpreter refuses to start"


def _broken(label: str, tmp_path: Path, leak: str = "") -> venvs.Env:
    """`label`'s real environment with an interpreter that prints a line (and `leak`) and exits 1."""
    env = environment.prepare([label])[label]
    script = tmp_path / f"python-{label}"
    script.write_text(f"#!/bin/sh\necho '{SECRET_LINE} {leak}' >&2\nexit 1\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return dataclasses.replace(env, python=str(script))


def test_an_api_that_cannot_start_is_given_up_and_the_others_run(tmp_path: Path) -> None:
    config = StackConfig(
        workdir=tmp_path / "stack", concurrency=1, implementations=("fastapi", "huey"),
        environments={"huey": _broken("huey", tmp_path)},
    )  # fmt: skip
    with Stack(config) as stack:
        assert stack.labels == ["fastapi"] and set(stack.urls()) == {"fastapi"}
        gone = stack.unavailable["huey"]
        assert gone.when == "at start" and "huey" in gone.part.lower()
        assert "exited while starting" in gone.reason and SECRET_LINE in gone.log_tail
        assert not stack.workers.get("huey") and not stack.apis.get("huey")
        assert stack.apis["fastapi"].alive()


def test_a_worker_that_does_not_come_back_is_given_up_after_one_restart_and_reported(tmp_path: Path) -> None:
    settings = RunSettings(
        implementations=["fastapi", "huey"], workloads=["sleep"], jobs=[2], duration_s=0.2, memory_mb=0, concurrency=1
    )
    config = StackConfig(workdir=tmp_path / "stack", concurrency=1, implementations=("fastapi", "huey"))
    spec = ScenarioSpec(implementation="huey", workload="sleep", jobs=2, duration_s=0.2)
    with Stack(config) as stack:
        # From now on huey's worker cannot start again: its interpreter is broken, and the stack's password leaks
        # into what it prints (it must not reach the report).
        stack.environments["huey"] = _broken("huey", tmp_path, leak=stack.redis_url)
        stack.workers["huey"].kill()

        async def go() -> object:
            client = ServiceClient(stack.url, urls=stack.urls(), token=stack.api_token)
            try:
                ctx = ScenarioContext(client=client, settings=settings, environment=RunEnvironment(), stack=stack)
                return await _run_or_give_up(ctx, spec, lambda done, total: None)
            finally:
                await client.aclose()

        assert asyncio.run(go()) is None
        gone = stack.unavailable["huey"]
        assert gone.when == f"before {spec.label}" and "worker" in gone.part
        assert stack.labels == ["fastapi"]
        password = stack._redis_password
        unavailable = list(stack.unavailable.values())
    run = RunResult(
        timestamp="t", settings=settings, environment=RunEnvironment(), scenario_files=[], unavailable=unavailable
    )
    analysed = analyse(run, [])
    said = [line for line in analysed.verdict.lines if "could not run" in line]
    assert said and said[0].startswith("Huey could not run (before huey")
    page = markdown.comparison(analysed)
    assert "## Could not run" in page and SECRET_LINE in page
    assert password not in page and password not in analysed.model_dump_json()
