"""`--hosts N`: the APIs and each worker in network namespaces of their own on a bridge (taskbench.hosts.netns), the
`network-partition` and `api-partition` faults, and nothing left behind however the run ends. Real namespaces,
real servers and workers: as root only, skipped with the reason elsewhere, failing under CI=true (CI runs as
root)."""

from __future__ import annotations

import ipaddress
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import psutil
import pytest

from taskbench.analysis import summarise
from taskbench.analysis.models import ScenarioSummary
from taskbench.hosts import netns
from taskbench.record.results import RunSettings, ScenarioResult, ScenarioSpec, Thresholds
from taskbench.stack.stack import Stack, StackConfig
from tests.conftest import run_on, run_until_jobs_start, sigkill_and_wait_until_clean

PROBLEM = netns.missing_privilege()
as_root = pytest.mark.skipif(
    PROBLEM is not None and os.environ.get("CI") != "true", reason=f"{PROBLEM} (CI runs these as root)"
)
QUEUES = ("celery", "arq")  # Celery, and an asyncio queue


def _own_namespace(pid: int) -> str:
    return os.readlink(f"/proc/{pid}/ns/net")


def _tcp_peers(pid: int) -> set[tuple[str, int]]:
    """The remote ends of the established TCP connections in `pid`'s network namespace."""
    peers = set()
    for line in Path(f"/proc/{pid}/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[3] != "01":  # ESTABLISHED
            continue
        address, port = fields[2].split(":")
        peers.add((str(ipaddress.IPv4Address(int(address, 16).to_bytes(4, "little"))), int(port, 16)))
    return peers


def _inode(namespace: str) -> int:
    return os.stat(netns.NETNS_DIR / namespace).st_ino


@pytest.fixture(scope="module")
def hosts_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    config = StackConfig(workdir=tmp_path_factory.mktemp("hosts"), concurrency=2, implementations=QUEUES, hosts=2)
    with Stack(config) as stack:
        yield stack
    assert netns.leftovers(stack.id) == []  # stopped: no namespace, veth or bridge of its own left


def scenario(stack: Stack, implementation: str, jobs: int, fault: str | None = None) -> ScenarioResult:
    variant = "5s" if fault else None
    spec = ScenarioSpec(implementation=implementation, workload="sleep", jobs=jobs, duration_s=0.3, fault=fault,
                        variant=variant)  # fmt: skip
    settings = RunSettings(implementations=[implementation], workloads=["sleep"], jobs=[jobs], duration_s=0.3,
                           memory_mb=0, concurrency=2, thresholds=Thresholds(responsive_p99_s=0.3))  # fmt: skip

    return run_on(stack, spec, settings)


@as_root
def test_each_worker_runs_in_a_namespace_of_its_own_and_reaches_redis_over_the_bridge(hosts_stack: Stack) -> None:
    network = hosts_stack.network
    assert network is not None and network.subnet.subnet_of(netns.POOL)
    harness = _own_namespace(os.getpid())
    for host, label in enumerate(QUEUES, start=1):
        worker = hosts_stack.workers[label]
        assert worker.pid is not None
        assert _own_namespace(worker.pid) != harness
        assert os.stat(f"/proc/{worker.pid}/ns/net").st_ino == _inode(network.namespace(host))
        redis_port = int(hosts_stack.redis_url.rsplit(":", 1)[1].split("/")[0])
        peers = _tcp_peers(worker.pid)  # its namespace's connections (psutil reads the harness's)
        assert (network.servers, redis_port) in peers, peers  # Redis over IP, from the worker's host address
        assert hosts_stack.topology()[f"{label}-worker"].startswith(network.address(host))
    assert ipaddress.IPv4Address(network.address(1)) in network.subnet


@as_root
def test_the_apis_run_on_a_host_of_their_own_and_reach_the_servers_and_the_telemetry_apart(hosts_stack: Stack) -> None:
    """Host 0 holds the APIs: the harness reaches them there, and they reach Redis on the servers' address and
    the telemetry Redis on another (what lets api-partition cut the first alone)."""
    network = hosts_stack.network
    assert network is not None
    api = hosts_stack.apis["arq"]
    assert api.pid is not None
    assert os.stat(f"/proc/{api.pid}/ns/net").st_ino == _inode(network.namespace(netns.API_HOST))
    assert hosts_stack.url_for("arq").startswith(f"http://{network.address(netns.API_HOST)}:")
    redis_port = int(hosts_stack.redis_url.rsplit(":", 1)[1].split("/")[0])
    assert (network.servers, redis_port) in _tcp_peers(api.pid)
    telemetry = urlsplit(hosts_stack.api_env("arq")["TASKBENCH_TELEMETRY_URL"])
    assert telemetry.hostname == network.gateway and telemetry.port == urlsplit(hosts_stack.telemetry_url).port
    assert hosts_stack.topology()["arq-api"].startswith(network.address(netns.API_HOST))


@as_root
@pytest.mark.parametrize("implementation", QUEUES)
def test_every_execution_and_each_workers_memory_are_measured(hosts_stack: Stack, implementation: str) -> None:
    result = scenario(hosts_stack, implementation, jobs=6)
    summary = summarise(result)
    assert not result.timed_out, result.events
    assert summary.executions.source == "ledger" and summary.executions.completed_once == 6
    worker = hosts_stack.workers[implementation]
    family = {worker.pid, *(c.pid for c in psutil.Process(worker.pid).children(recursive=True))}
    assert {e.pid for e in result.executions} <= family  # run by the worker in its namespace
    memory = summary.resources[f"{implementation}-worker"]
    assert memory.samples > 0 and memory.rss_peak_mb > 10


@as_root
@pytest.mark.parametrize("implementation", QUEUES)
def test_a_network_partition_cuts_the_workers_host_off_and_the_queue_resumes(
    hosts_stack: Stack, implementation: str
) -> None:
    result = scenario(hosts_stack, implementation, jobs=12, fault="network-partition")
    summary: ScenarioSummary = summarise(result)
    names = [e.name for e in result.events]
    assert names.index("fault") < names.index("restored") < names.index("recovered"), result.events
    fault = next(e for e in result.events if e.name == "fault")
    restored = next(e for e in result.events if e.name == "restored")
    assert 4.9 < restored.t - fault.t < 7, result.events  # 5 s down
    assert "link down" in fault.detail
    e = summary.executions
    assert e.accepted == 12 and e.completed_once + e.lost + e.duplicated == 12
    assert e.resumed_after_s is not None and e.resumed_after_s >= 0, e
    host = hosts_stack.host_of(implementation)
    assert host is not None and hosts_stack.network is not None and hosts_stack.network.link_is_up(host)


@as_root
@pytest.mark.parametrize("implementation", QUEUES)
def test_an_api_partition_cuts_the_api_off_from_redis_alone_and_it_takes_jobs_again(
    hosts_stack: Stack, implementation: str
) -> None:
    """While the APIs' host cannot reach Redis, the harness still reaches the API and keeps submitting: each
    submission is refused, unanswered, or accepted only once the cut is over (its request waited on a stalled
    connection); the jobs already queued run on, and after the cut the API accepts jobs again."""
    result = scenario(hosts_stack, implementation, jobs=6, fault="api-partition")
    summary = summarise(result)
    names = [e.name for e in result.events]
    assert names.index("fault") < names.index("restored") < names.index("recovered"), result.events
    assert "blackhole" in next(e.detail for e in result.events if e.name == "fault")
    e = summary.executions
    assert e.cut is not None and e.cut.sent >= 5, e  # 5 s of submissions, one every 0.5 s
    assert e.cut.accepted + e.cut.refused + e.cut.no_answer == e.cut.sent, e.cut
    fault_at, restored_at = (next(x.t for x in result.events if x.name == n) for n in ("fault", "restored"))
    for s in result.submissions:  # nothing is stored while cut off: a request sent then is accepted only after
        if s.job_id and fault_at <= s.sent_at < restored_at:
            assert s.latency_s is not None and s.sent_at + s.latency_s >= restored_at, s
    burst = {s.job_id for s in result.submissions if s.index < 6}
    assert None not in burst and burst <= {x.job_id for x in result.executions if x.event == "end" and x.ok}
    assert e.resumed_after_s is not None and e.lost == 0, e  # and every job it accepted ran
    accepted = {s.job_id for s in result.submissions if s.job_id}
    unaccepted = [(j.job_id, j.status) for j in result.jobs if j.job_id not in accepted]  # a refused one's record
    assert not result.timed_out and not unaccepted, (result.events, unaccepted, [j.status for j in result.jobs])
    network = hosts_stack.network
    assert network is not None and network.servers_reachable(netns.API_HOST)


@as_root
def test_rabbitmq_and_postgresql_answer_the_workers_on_the_bridge(tmp_path: Path) -> None:
    """--broker amqp and a PostgreSQL queue: the private servers listen on the bridge address too, and the
    workers in namespaces (where 127.0.0.1 is their own loopback) reach them there."""
    from taskbench.errors import UsageError
    from taskbench.stack import postgres_server, rabbitmq_server

    try:
        rabbitmq_server.find_rabbitmq_server()
        postgres_server.find_bin_dir()
    except UsageError as exc:
        if os.environ.get("CI") == "true":
            raise
        pytest.skip(str(exc))
    labels = ("celery", "procrastinate")
    config = StackConfig(workdir=tmp_path, concurrency=2, implementations=labels, broker="amqp", hosts=2)
    with Stack(config) as stack:
        assert stack.network is not None
        assert {"rabbitmq", "postgres"} <= set(stack.topology())
        for label in labels:
            summary = summarise(scenario(stack, label, jobs=4))
            assert summary.executions.completed_once == 4, summary.executions
    assert netns.leftovers(stack.id) == []


@as_root
def test_link_delay_is_refused_in_one_line_where_the_kernel_has_no_netem(tmp_path: Path) -> None:
    if netns.netem_problem("feedface00") is None:
        pytest.skip("this kernel has netem")
    done = subprocess.run(
        [sys.executable, "-m", "taskbench", "run", "--hosts", "2", "--link-delay", "2ms", "--implementations",
         "arq", "--output", str(tmp_path)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and "netem" in done.stderr
    assert netns.leftovers("feedface00") == []


@as_root
def test_a_partition_without_hosts_or_without_privilege_is_one_line_and_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "taskbench", "run", "--faults", "network-partition", "--implementations", "arq",
         "--output", str(tmp_path)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "--hosts" in done.stderr, done.stderr
    monkeypatch.setattr(netns, "_effective_caps", lambda: 0)
    assert "CAP_NET_ADMIN and CAP_SYS_ADMIN" in (netns.missing_privilege() or "")
    if shutil.which("setpriv"):  # root without the two capabilities, for real
        done = subprocess.run(
            ["setpriv", "--bounding-set", "-net_admin,-sys_admin", sys.executable, "-m", "taskbench", "run",
             "--hosts", "2", "--implementations", "arq", "--output", str(tmp_path)],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert done.returncode == 2 and done.stderr.count("\n") == 1 and "CAP_NET_ADMIN" in done.stderr, done.stderr


@as_root
def test_a_killed_harness_leaves_no_namespace_or_link(tmp_path: Path) -> None:
    """SIGKILL runs no `finally`: the watchdog removes the namespaces, veth pairs and bridge after the processes."""
    args = ["--hosts", "2", "--implementations", "arq", "--jobs", "4", "--duration", "30", "--concurrency", "2",
            "--repeat", "1"]  # fmt: skip
    with run_until_jobs_start(args, tmp_path, "arq", starts=2) as (run, stack_id):
        assert netns.leftovers(stack_id)  # three namespaces, three veth ends and the bridge
        sigkill_and_wait_until_clean(run, stack_id, lambda: netns.leftovers(stack_id))


def test_resumed_after_restore_is_the_first_start_after_the_link_came_back() -> None:
    """The figure the fault table adds for network-partition, from the ledger and the `restored` event alone."""
    from taskbench.analysis.stats import execution_summary
    from taskbench.record.results import Event, Execution, Submission

    def line(job: str, event: str, t: float) -> Execution:
        return Execution.model_validate({"job_id": job, "implementation": "arq", "event": event, "t": t})

    fields: dict[str, object] = {
        "spec": ScenarioSpec(implementation="arq", workload="sleep", jobs=2, duration_s=0.5, fault="network-partition"),
        "submissions": [Submission(index=i, sent_at=0.0, latency_s=0.01, job_id=j) for i, j in enumerate("ab")],
        "executions": [line("a", "start", 1.0), line("a", "end", 1.5), line("b", "start", 9.2), line("b", "end", 9.7)],
        "events": [Event(t=2.0, name="fault"), Event(t=7.0, name="restored"), Event(t=7.0, name="recovered")],
        "jobs": [],
    }
    summary = execution_summary(ScenarioResult.model_construct(**fields), fault_at=2.0)  # type: ignore[arg-type]
    assert summary.resumed_after_s == pytest.approx(2.2) and summary.lost == 0
    without = ScenarioResult.model_construct(**{**fields, "events": [Event(t=2.0, name="fault")]})  # type: ignore[arg-type]
    assert execution_summary(without, fault_at=2.0).resumed_after_s is None  # other faults: no such figure


def test_submissions_during_an_api_cut_are_counted_by_what_the_client_met() -> None:
    """api-partition's figures from the submissions alone: refused, unanswered, accepted, run though refused, and
    the time from the restore to the first job the API accepted."""
    from taskbench.analysis.stats import execution_summary
    from taskbench.record.results import Event, Execution, Submission

    spec = ScenarioSpec(implementation="celery", workload="sleep", jobs=1, duration_s=0.5, fault="api-partition")
    submissions = [
        Submission(index=0, sent_at=0.0, latency_s=0.01, status_code=202, job_id="a"),
        Submission(index=1, sent_at=2.5, latency_s=0.02, status_code=503, error="HTTP 503"),
        Submission(index=2, sent_at=3.0, latency_s=None, error="timeout"),
        Submission(index=3, sent_at=7.1, latency_s=0.4, status_code=202, job_id="b"),
    ]
    executions = [
        Execution.model_validate({"job_id": j, "implementation": "celery", "event": "start", "t": t})
        for j, t in (("a", 1.0), ("ghost", 7.5), ("b", 8.0))
    ]
    events = [Event(t=2.0, name="fault"), Event(t=7.0, name="restored"), Event(t=7.0, name="recovered")]
    fields = {"spec": spec, "submissions": submissions, "executions": executions, "events": events, "jobs": []}
    result = ScenarioResult.model_construct(**fields)  # type: ignore[arg-type]
    summary = execution_summary(result, fault_at=2.0)
    assert summary.cut is not None
    assert (summary.cut.sent, summary.cut.refused, summary.cut.no_answer, summary.cut.accepted) == (2, 1, 1, 0)
    assert summary.cut.ran_unaccepted == 1 and summary.cut.answered_max_s == pytest.approx(0.02)
    assert summary.resumed_after_s == pytest.approx(0.5)  # 7.1 + 0.4 - 7.0: accepted, not started
    assert summary.cut.text == "2: 1 refused in ≤ 0.02 s, 1 no answer, 1 ran though not accepted"


@as_root
def test_two_stacks_on_one_machine_get_subnets_of_their_own() -> None:
    first = netns.Network.create("feedfa01" + "0" * 24, 1)
    try:
        second = netns.Network.create("feedfa02" + "0" * 24, 1)
        try:
            assert first.subnet != second.subnet and second.subnet.subnet_of(netns.POOL)
        finally:
            second.remove()
    finally:
        first.remove()
    assert netns.leftovers(first.stack_id) == netns.leftovers(second.stack_id) == []
