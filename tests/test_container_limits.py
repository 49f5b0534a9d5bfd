"""Container limits (`--worker-cpus/--worker-memory`, `--api-cpus/--api-memory`: taskbench.hosts.cgroups) and the
`worker-oom` fault. The layout logic is checked on fake cgroup trees (v1 and v2) anywhere; the real parts (cgroups,
servers, workers, the kernel's OOM killer) as root only: skipped with the reason elsewhere, failing under CI=true
(CI runs as root)."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from taskbench import faults, implementations
from taskbench.analysis import summarise
from taskbench.errors import UsageError
from taskbench.faults.oom import OOM_HEADROOM_MB
from taskbench.hosts import cgroups
from taskbench.record.results import ContainerLimits, RunSettings, ScenarioResult, ScenarioSpec
from taskbench.report.content import faults_table, topology_text
from taskbench.stack.stack import Stack, StackConfig
from tests.conftest import run_on, run_until_jobs_start, sigkill_and_wait_until_clean

QUEUES = ("celery", "arq")  # Celery (a prefork pool: the kernel kills a child), and an asyncio queue (one process)


def _problem() -> str | None:
    if os.geteuid() != 0:
        return "container limits need root (cgroups)"
    try:
        cgroups.layout()
    except UsageError as exc:
        return str(exc)
    return None


PROBLEM = _problem()
needs_cgroups = pytest.mark.skipif(
    PROBLEM is not None and os.environ.get("CI") != "true", reason=f"{PROBLEM} (CI runs these as root)"
)


# --- anywhere: the flags, the layouts, the limits' files ---------------------------------------------------------


def test_the_flags_read_sizes_and_cpus_as_docker_and_kubernetes_write_them() -> None:
    assert [cgroups.memory_mb(t) for t in ("256M", "256Mi", "1G", "1.5Gi", "300")] == [256, 256, 1024, 1536, 300]
    assert [cgroups.cpus(t) for t in ("0.5", "2", "500m")] == [0.5, 2.0, 0.5]
    for bad in ("lots", "10M", "-1G"):
        with pytest.raises(argparse.ArgumentTypeError):
            cgroups.memory_mb(bad)
    for bad in ("0", "half", "5000"):
        with pytest.raises(argparse.ArgumentTypeError):
            cgroups.cpus(bad)


def test_a_cpu_limit_is_what_the_capacity_models_see_as_cores() -> None:
    settings = RunSettings(implementations=["celery", "fastapi"], workloads=["cpu"], jobs=[4], duration_s=0.5,
                           memory_mb=0, concurrency=4, worker_limits=ContainerLimits(cpus=0.5),
                           api_limits=ContainerLimits(cpus=1.5))  # fmt: skip
    assert cgroups.cores_for(settings, "celery", 8, has_worker=True) == 1  # 0.5 CPU: one at a time, at half speed
    assert cgroups.cores_for(settings, "fastapi", 8, has_worker=False) == 2  # BackgroundTasks: the API's limit
    assert cgroups.cores_for(settings, "celery", 1, has_worker=True) == 1
    assert cgroups.cores_for(None, "celery", 8, has_worker=True) == 8
    assert "workers in cgroups of their own: 0.5 CPU, no memory limit" in topology_text(settings)


def test_worker_oom_runs_memory_jobs_that_fit_alone_but_not_two_at_once() -> None:
    settings = RunSettings(implementations=["celery"], workloads=[], jobs=[4], duration_s=0.5, memory_mb=50,
                           concurrency=4, faults=["worker-oom"])  # fmt: skip
    from taskbench.run import plan

    specs = plan.scenarios(settings, fault_jobs=6)
    assert specs and all(s.fault == "worker-oom" and s.workload == "memory" for s in specs)
    assert {s.variant for s in specs} == {d.name for d in implementations.get("celery").deliveries}
    spec, headroom = specs[0], OOM_HEADROOM_MB
    assert spec.memory_limit_mb is None and spec.memory_mb < headroom < 2 * spec.memory_mb  # one fits, two do not
    state = faults.of(spec).state(spec)  # the limit: the worker's idle usage + the headroom, when the scenario starts
    assert state.worker_memory_mb is None and state.worker_memory_headroom_mb == headroom
    limited = settings.model_copy(update={"worker_limits": ContainerLimits(memory_mb=400)})
    (first, *_) = plan.scenarios(limited, fault_jobs=6)
    assert first.memory_limit_mb == 400 and first.memory_mb == 240  # --worker-memory is the limit
    assert faults.of(first).state(first).worker_memory_mb == 400
    assert all(
        faults.get("worker-oom").applies(implementations.get(i), {}) for i in ("fastapi", "arq")
    )  # API or worker


def _tree(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)


def test_on_cgroup_v2_the_stack_goes_under_the_nearest_cgroup_that_delegates_cpu_and_memory(tmp_path: Path) -> None:
    proc = tmp_path / "proc-self-cgroup"
    proc.write_text("0::/user.slice/app.slice/harness.scope\n")
    root = tmp_path / "cgroup"
    _tree(root, {"cgroup.controllers": "cpuset cpu io memory pids", "cgroup.subtree_control": "memory pids",
                 "user.slice/cgroup.subtree_control": "cpu memory", "user.slice/app.slice/cgroup.subtree_control":
                 "cpu memory pids", "user.slice/app.slice/harness.scope/cgroup.subtree_control": ""})  # fmt: skip
    found = cgroups.layout(root, proc)
    assert found.version == 2 and found.parents == dict.fromkeys(("cpu", "memory"), root / "user.slice/app.slice")
    group = cgroups.StackCgroups("abc", found).group("arq-worker", ContainerLimits(cpus=0.5, memory_mb=256))
    (group.dirs["memory"] / "memory.events").write_text("low 0\nhigh 0\nmax 3\noom 2\noom_kill 2\n")
    assert group.read("cpu", "cpu.max") == "50000 100000"
    assert group.read("memory", "memory.max") == str(256 * 2**20)
    assert group.oom_kills() == 2
    assert cgroups.leftovers("abc", root, proc) == [root / "user.slice/app.slice/taskbench-abc-arq-worker"]


def test_on_cgroup_v2_without_delegation_or_root_it_says_what_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    proc = tmp_path / "proc-self-cgroup"
    proc.write_text("0::/user.slice/harness.scope\n")
    root = tmp_path / "cgroup"
    _tree(root, {"cgroup.controllers": "cpu memory", "cgroup.subtree_control": "",
                 "user.slice/cgroup.subtree_control": "pids"})  # fmt: skip
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(UsageError, match="need root, or cgroup v2 cpu and memory delegated"):
        cgroups.layout(root, proc)
    with pytest.raises(UsageError, match="need Linux cgroups"):
        cgroups.layout(tmp_path / "nowhere", proc)


def test_without_the_privilege_a_limit_or_worker_oom_is_one_line_and_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from taskbench.cli import main as cli

    def missing() -> cgroups.Layout:
        raise UsageError("container limits need root, or cgroup v2 cpu and memory delegated to you")

    monkeypatch.setattr(cgroups, "check", missing)
    out = str(tmp_path / "out")
    for flags in (["--worker-memory", "256M"], ["--api-cpus", "0.5"], ["--faults", "worker-oom"]):
        assert cli.main(["run", "--implementations", "arq", "--output", out, *flags]) == 2
        (line,) = capsys.readouterr().err.strip().splitlines()
        assert "need root" in line, line
    for flags in (["--worker-memory", "lots"], ["--worker-cpus", "0"]):  # argparse's own one line, exit 2
        with pytest.raises(SystemExit) as bad:
            cli.main(["run", "--output", out, *flags])
        assert bad.value.code == 2
    assert not list(tmp_path.glob("out/*"))  # nothing started


def test_on_cgroup_v1_each_hierarchy_gets_a_cgroup_under_the_harnesss_own(tmp_path: Path) -> None:
    proc = tmp_path / "proc-self-cgroup"
    proc.write_text("4:memory:/sessions/me\n2:cpu,cpuacct:/\n0::/\n")
    root = tmp_path / "cgroup"
    _tree(root, {"memory/memory.limit_in_bytes": "", "cpu/cpu.cfs_quota_us": "", "memory/sessions/me/tasks": ""})
    found = cgroups.layout(root, proc)
    assert found.version == 1 and found.parents == {"cpu": root / "cpu", "memory": root / "memory/sessions/me"}
    group = cgroups.StackCgroups("abc", found).group("celery-worker", ContainerLimits(cpus=1.5, memory_mb=200))
    assert group.read("cpu", "cpu.cfs_quota_us") == "150000" and group.read("cpu", "cpu.cfs_period_us") == "100000"
    assert group.read("memory", "memory.limit_in_bytes") == str(200 * 2**20)
    (group.dirs["memory"] / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 5\n")
    assert group.oom_kills() == 5


# --- as root: real cgroups, real workers, the kernel's OOM killer --------------------------------------------------


def _settings(faults_run: list[str], worker: ContainerLimits, api: ContainerLimits) -> RunSettings:
    return RunSettings(implementations=list(QUEUES), workloads=["sleep"], jobs=[2], duration_s=0.5, memory_mb=0,
                       concurrency=2, faults=faults_run, worker_limits=worker, api_limits=api)  # fmt: skip


@needs_cgroups
def test_workers_and_apis_run_under_their_limits_and_leave_no_cgroup(tmp_path: Path) -> None:
    worker, api = ContainerLimits(cpus=0.5, memory_mb=256), ContainerLimits(cpus=1, memory_mb=512)
    config = StackConfig(workdir=tmp_path / "stack", concurrency=2, implementations=QUEUES, worker_limits=worker,
                         api_limits=api)  # fmt: skip
    with Stack(config) as stack:
        assert stack.cgroups is not None
        for label in QUEUES:
            for service, limits in ((stack.workers[label], worker), (stack.apis[label], api)):
                group = stack.cgroups.groups[service.name]
                quota = group.read("cpu", "cpu.cfs_quota_us" if group.version == 1 else "cpu.max").split()[0]
                assert int(quota) == round((limits.cpus or 0) * cgroups.CFS_PERIOD_US)
                memory = group.read("memory", "memory.limit_in_bytes" if group.version == 1 else "memory.max")
                assert int(memory) == (limits.memory_mb or 0) * 2**20
                assert service.pid is not None
                family = {service.pid, *(c.pid for c in psutil.Process(service.pid).children(recursive=True))}
                assert family <= group.pids(), (service.name, family, group.pids())  # children born inside
        made = {path for group in stack.cgroups.groups.values() for path in group.dirs.values()}
        assert len(stack.cgroups.groups) == 2 * len(QUEUES) and set(cgroups.leftovers(stack.id)) == made
    assert cgroups.leftovers(stack.id) == []


def oom_scenario(stack: Stack, name: str) -> ScenarioResult:
    settings = _settings(["worker-oom"], ContainerLimits(), ContainerLimits())
    spec = ScenarioSpec(implementation=name, workload="sleep", jobs=6, duration_s=0.5, fault="worker-oom",
                        variant="default")  # fmt: skip
    spec = faults.of(spec).shaped(spec, settings)

    return run_on(stack, spec, settings)


@needs_cgroups
def test_worker_oom_gets_the_kernel_to_kill_a_worker_process_and_counts_what_each_queue_lost(tmp_path: Path) -> None:
    config = StackConfig(workdir=tmp_path / "stack", concurrency=2, implementations=QUEUES, contained=True)
    with Stack(config) as stack:
        for name in QUEUES:
            result = oom_scenario(stack, name)
            fault = next(e for e in result.events if e.name == "fault")
            assert "OOM-killed" in fault.detail and "MiB used idle" in fault.detail, result.events
            kills = next(e for e in result.events if e.name == "oom_kills")
            assert int(kills.detail.split()[0]) >= 1
            assert fault.t >= next(e.t for e in result.events if e.name == "burst_start")
            summary = summarise(result)
            (row,) = faults_table([summary]).rows
            assert str(row[0]).startswith("worker-oom") and row[1] == name, row
            assert summary.executions.accepted == 6
            # a killed job started and never ended there: the ledger shows it cut off (lost) or run again
            assert summary.executions.lost + summary.executions.recovered >= 1, summary.executions
            others = [label for label in QUEUES if label != name]
            for other in others:  # only the scenario's worker was under the limit
                group = stack.job_cgroup(other)
                memory = group.read("memory", "memory.limit_in_bytes" if group.version == 1 else "memory.max")
                assert memory == "max" or int(memory) > 2**50, (other, memory)  # v1's "no limit" is 2**63 - a page
    assert cgroups.leftovers(stack.id) == []


@needs_cgroups
def test_worker_oom_kills_the_api_that_runs_background_tasks_and_it_is_started_again(tmp_path: Path) -> None:
    """BackgroundTasks' jobs run in the API process: under the same limit the kernel kills the API itself, every
    job it held goes with it, and it is started again as an orchestrator would."""
    config = StackConfig(workdir=tmp_path / "stack", concurrency=2, implementations=("fastapi",), contained=True)
    with Stack(config) as stack:
        result = oom_scenario(stack, "fastapi")
        fault = next(e for e in result.events if e.name == "fault")
        assert "OOM-killed" in fault.detail and "API server" in fault.detail, result.events
        assert any(e.name == "restart" and "API server" in e.detail for e in result.events), result.events
        summary = summarise(result)
        e = summary.executions  # a kill during the burst refuses its last submissions: fewer than 6 accepted
        assert e.accepted >= 1 and e.lost >= 1 and e.completed_once + e.lost == e.accepted, e
        assert stack.apis["fastapi"].alive()
    assert cgroups.leftovers(stack.id) == []


@needs_cgroups
def test_a_run_with_limits_reports_them_and_its_watchdog_removes_the_cgroups_after_sigkill(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "taskbench", "run", "--implementations", "arq", "--jobs", "2", "--duration", "0.2",
         "--repeat", "1", "--worker-cpus", "0.5", "--worker-memory", "256M", "--api-memory", "512M",
         "--output", str(tmp_path / "done")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode in (0, 3), done.stdout + done.stderr
    (comparison,) = (tmp_path / "done").glob("*/comparison_*.json")
    saved = json.loads(comparison.read_text())
    assert saved["settings"]["worker_limits"] == {"cpus": 0.5, "memory_mb": 256}
    report = comparison.with_suffix(".md").read_text()
    assert "workers in cgroups of their own: 0.5 CPU, 256 MiB" in report
    assert "APIs in cgroups of their own: no CPU limit, 512 MiB" in report

    args = ["--implementations", "arq", "--jobs", "4", "--duration", "30", "--repeat", "1", "--worker-memory", "256M"]
    with run_until_jobs_start(args, tmp_path / "killed", "arq", starts=2) as (run, stack_id):
        assert cgroups.leftovers(stack_id)
        sigkill_and_wait_until_clean(run, stack_id, lambda: cgroups.leftovers(stack_id))
