"""A worker on another host (`taskbench worker --implementation NAME --join URL`): a second worker of a running
stack, started by the real command on this machine under a host label of its own (it stands for another host).
Its executions reach the scenario's ledger and its memory the scenario's samples through the stack's telemetry
Redis, attributed to its host; a --join that does not answer, names no stack or another release is one line and
exit 2."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import psutil
import pytest
import redis

from taskbench import faults, implementations
from taskbench.analysis import summarise
from taskbench.measure import telemetry
from taskbench.record.results import RunSettings, ScenarioResult, ScenarioSpec, Thresholds
from taskbench.report import blocks, content
from taskbench.report.content import CLOCK_SKEW_WARN_S
from taskbench.stack.redis_server import free_port
from taskbench.stack.stack import Stack, StackConfig
from taskbench_wire.health import Health
from tests.conftest import run_on, wait_for

QUEUES = tuple(q for q in ("celery", "arq") if q in implementations.REGISTRY)  # Celery, and an asyncio queue
HOST = "host-b"
pytestmark = pytest.mark.skipif(not QUEUES, reason="neither celery nor arq is in the registry (TASKBENCH_TEST_ONLY)")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    config = StackConfig(workdir=tmp_path_factory.mktemp("joined"), concurrency=2, implementations=QUEUES)
    with Stack(config) as running:
        yield running


def taskbench(*args: str, timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "taskbench", *args], capture_output=True, text=True, timeout=timeout_s)


def join_file(folder: Path, url: str) -> str:
    """The telemetry URL in a file of its own, as `taskbench worker --join FILE` takes it (never on argv)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"join-{uuid.uuid4().hex[:8]}.url"
    path.write_text(url + "\n")
    return str(path)


def worker_command(label: str, url: str, workdir: Path) -> list[str]:
    join = join_file(workdir, url)
    return [sys.executable, "-m", "taskbench", "worker", "--implementation", label, "--join", join,
            "--host-label", HOST, "--workdir", str(workdir)]  # fmt: skip


def workers_seen(stack: Stack, label: str) -> int:
    try:
        health = Health.of(httpx.get(f"{stack.url_for(label)}/health", timeout=2).json())
    except (httpx.HTTPError, ValueError):
        return 0
    return len(implementations.get(label).workers_seen(health))


def joined_pids(stack: Stack, label: str, agent: int) -> set[int]:
    """The pids of the heartbeats that come from the joined worker (a descendant of the `taskbench worker`)."""
    try:
        health = Health.of(httpx.get(f"{stack.url_for(label)}/health", timeout=2).json())
        family = {p.pid for p in psutil.Process(agent).children(recursive=True)}
    except (httpx.HTTPError, ValueError, psutil.Error):
        return set()
    return {w.pid for w in implementations.get(label).workers_seen(health) if w.pid in family}


def join_settings(stack: Stack, label: str) -> telemetry.JoinedLabel | None:
    info = telemetry.read_join(telemetry.client(stack.telemetry_url))
    return info.labels.get(label) if info else None


def scenario(stack: Stack, label: str, jobs: int) -> ScenarioResult:
    spec = ScenarioSpec(implementation=label, workload="sleep", jobs=jobs, duration_s=0.4)
    settings = RunSettings(implementations=[label], workloads=["sleep"], jobs=[jobs], duration_s=0.4, memory_mb=0,
                           concurrency=2, thresholds=Thresholds(responsive_p99_s=0.3))  # fmt: skip

    return run_on(stack, spec, settings)


@pytest.mark.parametrize("label", QUEUES)
def test_a_joined_worker_runs_jobs_and_is_measured_as_its_host(stack: Stack, label: str, tmp_path: Path) -> None:
    joined = subprocess.Popen(
        worker_command(label, stack.join_url, tmp_path), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip
    try:
        wait_for(lambda: workers_seen(stack, label) >= 2 or joined.poll() is not None, timeout_s=90, interval_s=0.2)
        assert joined.poll() is None, joined.stdout.read() if joined.stdout else ""
        # The scenario's settings (its redelivery timeout) restart the stack's worker, and the joined one with them:
        # wait for the new joined worker's heartbeat (the old one's stays fresh for a while)
        before, settings = joined_pids(stack, label, joined.pid), join_settings(stack, label)
        spec = ScenarioSpec(implementation=label, workload="sleep", jobs=16, duration_s=0.4)
        stack.apply(faults.of(spec).state(spec))
        old = before if join_settings(stack, label) != settings else set()
        wait_for(lambda: joined_pids(stack, label, joined.pid) - old or joined.poll() is not None, timeout_s=90)
        result = scenario(stack, label, jobs=16)
    finally:
        joined.send_signal(signal.SIGTERM)
        output, _ = joined.communicate(timeout=60)
    assert joined.returncode == 0, output
    assert "worker stopped" in output

    assert not result.timed_out, result.events
    ends = {e.job_id: e for e in result.executions if e.event == "end"}
    accepted = {s.job_id for s in result.submissions if s.job_id}
    assert accepted <= ends.keys()  # every job's end is in the ledger, whichever host ran it
    by_host = {e.host for e in ends.values()}
    assert HOST in by_host, by_host  # the joined worker ran some …
    assert socket.gethostname() in by_host, by_host  # … and the stack's own worker the others
    assert all(e.received_at is not None for e in result.executions)  # read from the stream, on the harness's clock

    role = f"{implementations.worker_role(label)}@{HOST}"
    readings = [s.processes[role] for s in result.samples if role in s.processes]
    assert len(readings) >= 3, "the joined worker's samples were merged into the scenario's"
    assert min(r.rss_mb for r in readings) > 10 and all(r.pss_mb for r in readings)

    host = next(h for h in result.hosts if h.host == HOST)
    assert not host.local and role in host.roles and host.batches >= 3
    assert host.jobs_ended == sum(1 for e in ends.values() if e.host == HOST)
    # one machine, one clock: the bound is the transit (and the stream id's millisecond), far under the warning
    assert host.behind_at_most_s is not None and abs(host.behind_at_most_s) < CLOCK_SKEW_WARN_S
    local = next(h for h in result.hosts if h.local)
    assert local.jobs_ended + host.jobs_ended == len(ends)

    summary = summarise(result)
    assert role in summary.resources
    (_, table, *_) = content.workers_by_host([summary])
    assert isinstance(table, blocks.Table)
    hosts = [row[1] for row in table.rows]
    assert HOST in hosts and f"{socket.gethostname()} (harness's machine)" in hosts


def test_the_ledger_stream_holds_what_the_file_holds(stack: Stack) -> None:
    """The stack writes both: the stream (read by the harness) and the file (the local copy, the spec's flow)."""
    label = QUEUES[0]
    tail = stack.ledger_tail(label)
    result = scenario(stack, label, jobs=4)
    streamed = [(e.job_id, e.event) for e in tail.read()]
    assert sorted(streamed) == sorted((e.job_id, e.event) for e in result.executions)
    lines = stack.ledger_path_for(label).read_text().splitlines()
    ids = {e.job_id for e in result.executions}
    assert sum(1 for line in lines if any(i in line for i in ids)) == len(streamed)


def test_a_host_whose_clock_is_off_is_reported(stack: Stack) -> None:
    """The skew bound from arrival times, on events whose stamps are 2 s behind and 1 s ahead."""
    remote = telemetry.RemoteSamples(stack.telemetry_url)
    base = scenario(stack, QUEUES[0], jobs=2)
    late = [e.model_copy(update={"host": "slow", "t": e.received_at - 2.0}) for e in base.executions if e.received_at]
    early = [e.model_copy(update={"host": "fast", "t": e.received_at + 1.0}) for e in base.executions if e.received_at]
    clocks = {h.host: h for h in remote.clocks([*late, *early], {socket.gethostname()})}
    assert clocks["slow"].behind_at_most_s == pytest.approx(2.0, abs=0.002)
    assert clocks["fast"].behind_at_most_s == pytest.approx(-1.0, abs=0.002)
    summary = summarise(base.model_copy(update={"hosts": list(clocks.values())}))
    text = " ".join(b.text for b in content.workers_by_host([summary]) if isinstance(b, blocks.Paragraph))
    assert "Clock skew" in text and "slow behind by ≤ 2.000s" in text and "fast ahead by ≥ 1.000s" in text


def one_line_exit_2(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 2, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


def test_a_join_url_that_does_not_answer_is_one_line_and_exit_2(tmp_path: Path) -> None:
    silent = f"redis://:pw@127.0.0.1:{free_port()}/0"
    line = one_line_exit_2(
        taskbench(
            "worker", "--implementation", "celery", "--join", join_file(tmp_path, silent), "--workdir", str(tmp_path)
        )
    )
    assert "does not answer" in line and ":pw@" not in line
    line = one_line_exit_2(
        taskbench(
            "worker",
            "--implementation",
            "celery",
            "--join",
            join_file(tmp_path, "http://127.0.0.1:8000"),
            "--workdir",
            str(tmp_path),
        )
    )
    assert "telemetry URL" in line


def test_a_redis_without_a_stack_or_a_label_it_lacks_is_one_line_and_exit_2(stack: Stack, tmp_path: Path) -> None:
    line = one_line_exit_2(
        taskbench(
            "worker",
            "--implementation",
            QUEUES[0],
            "--join",
            join_file(tmp_path, stack.redis_url),
            "--workdir",
            str(tmp_path),
        )
    )
    assert "no taskbench stack publishes there" in line
    line = one_line_exit_2(
        taskbench(
            "worker",
            "--implementation",
            "fastapi",
            "--join",
            join_file(tmp_path, stack.telemetry_url),
            "--workdir",
            str(tmp_path),
        )
    )
    assert "not a worker of that stack" in line


def test_a_worker_of_another_release_is_refused_in_one_line(stack: Stack, tmp_path: Path) -> None:
    """The stack's join document as it would be for another release of the queue (on a Redis of the test's own
    choosing, the stack's main one, so the stack's own document stays as it is)."""
    label = QUEUES[0]
    info = telemetry.read_join(telemetry.client(stack.telemetry_url))
    assert info is not None and info.labels[label].queue_version
    other = info.labels[label].model_copy(update={"queue_version": "0.0.1"})
    main = redis.Redis.from_url(stack.redis_url)
    main.set(telemetry.JOIN_KEY, info.model_copy(update={"labels": {label: other}}).model_dump_json())
    try:
        done = taskbench(
            "worker",
            "--implementation",
            label,
            "--join",
            join_file(tmp_path, stack.redis_url),
            "--workdir",
            str(tmp_path),
        )
    finally:
        main.delete(telemetry.JOIN_KEY)
    line = one_line_exit_2(done)
    assert f"the stack runs 0.0.1: add --with {other.queue_package}==0.0.1" in line


def test_a_joined_worker_leaves_when_its_stack_stops(tmp_path: Path) -> None:
    label = QUEUES[0]
    with Stack(StackConfig(workdir=tmp_path / "stack", concurrency=1, implementations=(label,))) as own:
        joined = subprocess.Popen(
            worker_command(label, own.telemetry_url, tmp_path), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True,
        )  # fmt: skip
        wait_for(lambda: workers_seen(own, label) >= 2 or joined.poll() is not None, timeout_s=90, interval_s=0.2)
        assert joined.poll() is None, joined.stdout.read() if joined.stdout else ""
        worker_pids = {p.pid for p in psutil.Process(joined.pid).children(recursive=True)}
    output, _ = joined.communicate(timeout=90)  # the stack withdrew its document: the worker reads it and leaves
    # (or finds its telemetry Redis gone, refusing connections)
    assert joined.returncode == 0, output
    assert "the stack it joined has stopped" in output, output
    assert not [pid for pid in worker_pids if psutil.pid_exists(pid)]


@pytest.mark.pure
def test_the_join_url_is_never_taken_from_the_command_line(tmp_path: Path) -> None:
    """On argv, `ps` shows the telemetry password to every local user of the host."""
    line = one_line_exit_2(
        taskbench("worker", "--implementation", "celery", "--join", "redis://:pw@127.0.0.1:1/0", "--workdir",
                  str(tmp_path))
    )  # fmt: skip
    assert "never the URL itself" in line and "pw" not in line


@pytest.mark.pure
def test_a_joined_worker_takes_only_the_contracts_variables_each_checked() -> None:
    """A crafted join document cannot point the worker's interpreter anywhere, nor its servers elsewhere."""
    from taskbench.errors import StackError
    from taskbench.stack.remote_worker import checked_variables

    kept = checked_variables(
        {"TASKBENCH_REDIS_URL": "redis://:pw@127.0.0.1:6400/0", "TASKBENCH_CONCURRENCY": "4",
         "PYTHONPATH": "/tmp/evil", "LD_PRELOAD": "/tmp/evil.so", "PATH": "/tmp/evil"}
    )  # fmt: skip
    assert kept == {"TASKBENCH_REDIS_URL": "redis://:pw@127.0.0.1:6400/0", "TASKBENCH_CONCURRENCY": "4"}
    for crafted in (
        {"TASKBENCH_REDIS_URL": "redis://:pw@attacker.example:6379/0"},
        {"CELERY_BROKER_URL": "file:///etc/passwd"},
        {"TASKBENCH_CONCURRENCY": "100000"},
        {"TASKBENCH_JOB_TIMEOUT": "nan-ish"},
        {"TASKBENCH_NAMESPACE": "public"},
    ):
        with pytest.raises(StackError):
            checked_variables(crafted)
    with pytest.raises(ValueError):
        telemetry.JoinInfo.model_validate({"stack": "x", "sample_interval_s": 0.0001, "labels": {}})


def test_a_joined_host_can_read_the_document_and_append_nothing_more(stack: Stack) -> None:
    """The join file names the telemetry Redis's `joiner` user: it reads the stack's document and appends to the
    ledger and samples streams; it cannot list, read back, overwrite or reconfigure anything."""
    assert stack.join_file.read_text().strip() == stack.join_url
    assert urlsplit(stack.join_url).username == telemetry.JOINER
    joiner = redis.Redis.from_url(stack.join_url)
    assert telemetry.read_join(joiner) is not None
    probe = telemetry.ledger_key("acl-probe")
    joiner.xadd(probe, {"e": "{}"})
    try:
        for refused in (
            lambda: joiner.keys("*"),
            lambda: joiner.xrange(probe),
            lambda: joiner.set(telemetry.JOIN_KEY, "{}"),
            lambda: joiner.get("some:other:key"),
            lambda: joiner.flushall(),
            lambda: joiner.client_kill_filter(_type="normal"),
        ):
            with pytest.raises(redis.exceptions.NoPermissionError):
                refused()
    finally:
        redis.Redis.from_url(stack.telemetry_url).delete(probe)
