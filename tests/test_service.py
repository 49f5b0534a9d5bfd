"""The service under test, over real HTTP, against a real Redis and every implementation's real worker."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
import redis

from taskbench.implementations import REGISTRY
from taskbench.stack.stack import Stack
from tests.conftest import routed_client, wait_for

IMPLEMENTATIONS = list(REGISTRY)
QUEUES = [name for name in IMPLEMENTATIONS if REGISTRY[name].has_worker]
JOB_ENDPOINTS = {"POST /{}/job", "GET /{}/status/{{job_id}}", "GET /{}/jobs", "DELETE /{}/jobs"}
SPEC_ENDPOINTS = {
    *(e.format(name) for name in ("fastapi", "celery") for e in JOB_ENDPOINTS),
    "GET /",
    "GET /metrics",
    "GET /health",
}


def test_root_lists_every_endpoint_of_the_spec(stack: Stack) -> None:
    endpoints: set[str] = set()
    for name in ("fastapi", "celery"):
        info = httpx.get(f"{stack.url_for(name)}/", headers=stack.api_headers).json()
        endpoints |= set(info["endpoints"])
        if name == "fastapi":
            assert info["implementations"]["fastapi"]["threadpool_tokens"] == 40
    assert endpoints >= SPEC_ENDPOINTS


def test_each_api_offers_its_implementation_alone_with_the_same_endpoints(stack: Stack) -> None:
    """One API per environment: each serves its own implementation's endpoints, and the app's own."""
    for name in IMPLEMENTATIONS:
        info = httpx.get(f"{stack.url_for(name)}/", headers=stack.api_headers).json()
        assert list(info["implementations"]) == [name]
        own = {e.format(name) for e in JOB_ENDPOINTS}
        assert own <= set(info["endpoints"]) and {"GET /", "GET /metrics", "GET /health"} <= set(info["endpoints"])
        assert not any(e.startswith(("POST /", "DELETE /")) for e in set(info["endpoints"]) - own), name


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_job_goes_queued_running_completed_with_consistent_times(
    stack: Stack, http: httpx.Client, implementation: str
) -> None:
    accepted = http.post(f"/{implementation}/job", json={"duration": 0.6})
    assert accepted.status_code == 202
    job = accepted.json()
    assert job["status"] == "queued" and job["kind"] == "sleep" and job["duration"] == 0.6
    seen: list[dict[str, Any]] = []

    def finished() -> bool:
        seen.append(http.get(f"/{implementation}/status/{job['job_id']}").json())
        return seen[-1]["status"] == "completed"

    def last_seen() -> str:
        worker = stack.workers.get(implementation)
        return f"last seen {seen[-1]}; its worker's log ends:\n{worker.log_tail() if worker else '(none)'}"

    # 30 s: BullMQ's worker waits 15 s (its runRetryDelay) after a connection error before it asks for a job again
    wait_for(finished, timeout_s=30, describe=last_seen)
    statuses = [s["status"] for s in seen]
    assert "running" in statuses, statuses
    assert statuses.index("running") < statuses.index("completed")
    done = seen[-1]
    assert done["submitted_at"] <= done["started_at"] <= done["finished_at"]
    assert done["queue_time"] == pytest.approx(done["started_at"] - done["submitted_at"])
    assert done["execution_time"] == pytest.approx(done["finished_at"] - done["started_at"])
    assert done["total_time"] == pytest.approx(done["finished_at"] - done["submitted_at"])
    assert 0.6 <= done["execution_time"] < 3
    assert done["pid"] and done["thread"] and done["error"] is None
    assert done["submitted_at"] == pytest.approx(time.time(), abs=60)  # wall-clock epoch seconds


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_list_and_clear(http: httpx.Client, implementation: str) -> None:
    http.delete(f"/{implementation}/jobs")
    ids = {http.post(f"/{implementation}/job", json={"duration": 0}).json()["job_id"] for _ in range(3)}
    wait_for(lambda: http.get(f"/{implementation}/jobs").json()["counts"]["completed"] == 3)
    listed = http.get(f"/{implementation}/jobs").json()
    assert listed["count"] == 3 and {j["job_id"] for j in listed["jobs"]} == ids
    assert http.get(f"/{implementation}/jobs", params={"limit": 0}).json()["jobs"] == []
    assert http.delete(f"/{implementation}/jobs").json()["cleared"] == 3
    assert http.get(f"/{implementation}/jobs").json() == {
        "count": 0,
        "counts": {"queued": 0, "running": 0, "completed": 0, "failed": 0},
        "jobs": [],
    }


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"duration": -1}, "duration"),
        ({"duration": 3601}, "duration"),
        ({"duration": "soon"}, "duration"),
        ({"kind": "teleport"}, "kind"),
        ({"memory_mb": 10**6}, "memory_mb"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_invalid_job_is_422_naming_the_field(
    http: httpx.Client, implementation: str, body: dict[str, Any], field: str
) -> None:
    response = http.post(f"/{implementation}/job", json=body)
    assert response.status_code == 422
    assert any(field in error["loc"] for error in response.json()["detail"])


@pytest.mark.parametrize("implementation", ["fastapi", "celery"])
@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b'{"duration": NaN}', "duration"),
        (b'{"duration": Infinity}', "duration"),
        (b'{"duration": -Infinity}', "duration"),
        (b'{"kind": "job", "args": {"x": NaN}}', "args"),
    ],
)
def test_non_finite_numbers_are_422_not_500(http: httpx.Client, implementation: str, body: bytes, field: str) -> None:
    response = http.post(f"/{implementation}/job", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text
    assert field in response.text


def test_oversized_body_is_413_with_or_without_content_length(http: httpx.Client) -> None:
    json_body = {"content-type": "application/json"}
    response = http.post(
        "/fastapi/job", content=b'{"duration": 1, "pad": "' + b"x" * 100_000 + b'"}', headers=json_body
    )
    assert response.status_code == 413
    assert "larger than" in response.json()["detail"]
    chunked = http.post("/celery/job", content=(b"x" * 1000 for _ in range(100)), headers=json_body)  # no length
    assert chunked.status_code == 413


def test_only_the_stacks_clients_reach_the_api(stack: Stack) -> None:
    """Without the stack's token nothing but the probes' /health answers; a page of another site (a Host it
    names, a form's body) is refused too; the token alone is not enough for those."""
    url = stack.url_for("fastapi")
    assert httpx.get(f"{url}/health", timeout=10).status_code == 200  # the probes need no token
    for method, path in (("POST", "/fastapi/job"), ("GET", "/fastapi/jobs"), ("DELETE", "/fastapi/jobs"),
                         ("GET", "/"), ("GET", "/metrics"), ("GET", "/fastapi/status/x")):  # fmt: skip
        answer = httpx.request(method, url + path, timeout=10)
        assert answer.status_code == 401, (method, path, answer.text)
        wrong = httpx.request(method, url + path, timeout=10, headers={"Authorization": "Bearer not-the-token"})
        assert wrong.status_code == 401
    rebound = httpx.post(f"{url}/fastapi/job", timeout=10, headers={**stack.api_headers, "Host": "evil.example"})
    assert rebound.status_code == 421
    form = httpx.post(f"{url}/fastapi/job", data={"duration": "0"}, timeout=10, headers=stack.api_headers)
    assert form.status_code == 415
    accepted = httpx.post(f"{url}/fastapi/job", json={"duration": 0}, timeout=10, headers=stack.api_headers)
    assert accepted.status_code == 202


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_unknown_job_is_404(http: httpx.Client, implementation: str) -> None:
    response = http.get(f"/{implementation}/status/no-such-job")
    assert response.status_code == 404
    assert "no-such-job" in response.json()["detail"]


def test_metrics_and_health(http: httpx.Client, stack: Stack) -> None:
    metrics = http.get("/metrics").json()
    assert metrics["system"]["memory_total_mb"] > 0 and metrics["process"]["rss_mb"] > 0
    for name in QUEUES:
        health = httpx.get(f"{stack.url_for(name)}/health")
        assert health.status_code == 200
        body = health.json()
        assert body["redis"]["status"] == "ok"
        worker = stack.workers[name]
        family = {worker.pid, *(c.pid for c in psutil.Process(worker.pid).children(recursive=True))}
        assert body[name]["workers"] and {w["pid"] for w in body[name]["workers"]} <= family, name
        assert all(w["concurrency"] == 2 for w in body[name]["workers"]), name
    assert http.get("/health/sync").json()["status"] == "ok"


def test_redis_down_is_503_for_every_queue_while_fastapi_works_and_stop_leaves_no_process(tmp_path: Any) -> None:
    """Also submits the spec's default job (no body: a 30 s sleep) to each implementation. The APIs alone (no job
    needs to run), on a stack of their own: Redis goes down."""
    from taskbench.stack.stack import StackConfig

    config = StackConfig(workdir=tmp_path, concurrency=2, implementations=tuple(IMPLEMENTATIONS), workers=False)
    with Stack(config) as stack, routed_client(stack) as http:
        assert not stack.workers
        pids = [*stack.pids().values()]
        pids += [api.pid for api in stack.apis.values() if api.pid and api.pid not in pids]
        assert len(pids) >= len(IMPLEMENTATIONS) + 1  # each API, redis
        for implementation in IMPLEMENTATIONS:
            default = http.post(f"/{implementation}/job")
            assert default.status_code == 202
            assert (default.json()["kind"], default.json()["duration"]) == ("sleep", 30.0)
        assert stack.redis is not None
        stack.redis.stop()
        paths = [("POST", "/{}/job"), ("GET", "/{}/jobs"), ("GET", "/{}/status/x"), ("DELETE", "/{}/jobs")]
        asks = [("GET", "/health"), *((method, path.format(name)) for name in QUEUES for method, path in paths)]
        with ThreadPoolExecutor(len(QUEUES)) as pool:  # each API in its own time: a refused connection is retried
            answers = list(pool.map(lambda ask: (*ask, http.request(*ask)), asks))
        for method, path, response in answers:
            assert response.status_code == 503, (method, path, response.text)
            assert "Redis" in response.text or "unreachable" in response.text or "broker" in response.text
        assert http.post("/fastapi/job", json={"duration": 0}).status_code == 202
        assert http.get("/fastapi/jobs").json()["count"] == 2
    wait_for(lambda: not any(psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie" for pid in pids))


def test_delete_drops_the_jobs_a_celery_worker_holds_prefetched(stack: Stack, http: httpx.Client) -> None:
    """Two run (concurrency 2), two wait prefetched in the worker, two in Redis: DELETE purges the queue and
    revokes the prefetched ones, so no job starts after its record was cleared."""
    from taskbench.measure.ledger import LedgerTail

    http.delete("/celery/jobs")
    ledger = LedgerTail(stack.ledger_path_for("celery"))
    ledger.read()  # what earlier tests left
    for _ in range(6):
        assert http.post("/celery/job", json={"duration": 1.5}).status_code == 202
    wait_for(lambda: http.get("/celery/jobs", params={"limit": 0}).json()["counts"]["running"] == 2)
    time.sleep(0.3)  # the worker has taken its prefetch
    started: set[str] = set()  # the two running: their start events may reach the ledger later on a loaded machine

    def both_started() -> bool:
        started.update(e.job_id for e in ledger.read() if e.event == "start")
        return len(started) >= 2

    wait_for(both_started)
    answer = http.delete("/celery/jobs").json()
    assert answer["purged"] >= 2, answer
    time.sleep(3.5)  # the two running end; nothing else may start
    assert [e.job_id for e in ledger.read() if e.event == "start" and e.job_id not in started] == []


def test_the_memory_that_jobs_accepted_by_one_api_process_may_hold_is_bounded() -> None:
    """BackgroundTasks run `memory` jobs in the API process: past 8 GB accepted and not finished, one more is a
    503 with the reason (a queue runs them in its workers, --concurrency at a time). Pure logic: no job runs."""
    from fastapi import HTTPException

    from taskbench_service.implementations.fastapi import BackgroundTasksImplementation
    from taskbench_service.jobs import JobRequest, new_record

    impl = BackgroundTasksImplementation()
    big = new_record("fastapi", JobRequest.model_validate({"kind": "memory", "memory_mb": 2048, "duration": 1}))
    for _ in range(4):
        impl.admit(big)
        impl._count(+1, 2048)
    with pytest.raises(HTTPException) as refused:
        impl.admit(big)
    assert refused.value.status_code == 503 and "8192 MB" in str(refused.value.detail)
    impl.admit(new_record("fastapi", JobRequest()))  # a sleep holds nothing
    impl._count(-1, 2048)  # one ended
    impl.admit(big)


def test_a_record_write_that_lands_late_neither_brings_back_a_refused_record_nor_undoes_a_finished_one(
    tmp_path: Path,
) -> None:
    """A record write sent on a stalled connection (api-partition) can reach Redis late: after its request got the
    503 (the refusal's tombstone makes it a no-op, and removes a record that got there first), or after the client's
    retry on a new connection got through and the job ran (a record that exists is left as it is)."""
    from taskbench.stack.redis_server import find_redis_server, free_port, redis_command
    from taskbench_service.jobs import JobRequest, RedisJobStore, new_record

    port = free_port()
    server = subprocess.Popen(redis_command(find_redis_server(), port, tmp_path, persistent=False),
                              stdout=subprocess.DEVNULL)  # fmt: skip

    async def check() -> None:
        store = RedisJobStore("arq", f"redis://127.0.0.1:{port}/0", 1.0)
        refused_first, landed_first, accepted = (new_record("arq", JobRequest(duration=0.1)) for _ in range(3))
        await store.refuse(refused_first.job_id)  # the client had its 503 ...
        await store.add(refused_first)  # ... then the stalled write arrives: nothing
        await store.add(landed_first)  # the stalled write arrives first ...
        await store.refuse(landed_first.job_id)  # ... and the refusal removes it
        await store.add(accepted)
        await store.update(accepted.job_id, {"status": "completed"})  # the job ran (a retry's write got through) ...
        await store.add(accepted)  # ... then the first, stalled attempt of the same write arrives: nothing
        assert (await store.get(accepted.job_id)).status == "completed"  # type: ignore[union-attr]
        listed = await store.list(None)
        assert [job.job_id for job in listed.jobs] == [accepted.job_id] and listed.count == 1
        assert await store.get(refused_first.job_id) is None and await store.get(landed_first.job_id) is None
        await store.aclose()

    try:
        wait_for(lambda: _answers(port), timeout_s=10, interval_s=0.05)
        asyncio.run(check())
    finally:
        server.terminate()
        server.wait(10)


def _answers(port: int) -> bool:
    import redis

    try:
        return bool(redis.Redis(port=port, socket_connect_timeout=0.5).ping())
    except redis.ConnectionError:
        return False


def test_private_servers_run_unprivileged_and_the_telemetry_redis_has_no_config(stack: Stack) -> None:
    """As root, a password holder of a Redis running as root could make it write root's files (CONFIG SET dir):
    the stack's run as `nobody`, and the telemetry Redis, which joined hosts reach, has no CONFIG at all."""
    if os.geteuid() != 0:
        if os.environ.get("CI") == "true":
            pytest.fail("CI runs as root: this test checks what a root harness starts")
        pytest.skip("the harness is not root here: its servers run as this user")
    for server in (stack.redis, stack.telemetry, stack.postgres):
        assert server is not None and server.pid is not None
        assert psutil.Process(server.pid).uids().effective != 0, server.name
    with pytest.raises(redis.ResponseError, match="unknown command"):
        redis.Redis.from_url(stack.telemetry_url).config_get("dir")


@pytest.mark.pure
def test_a_worker_refuses_what_the_api_would_refuse() -> None:
    """What reaches a broker is not always what the API accepted: a worker validates a job with the same bounds."""
    from pydantic import ValidationError

    from taskbench_service.jobs import JobCall
    from taskbench_service.settings import MAX_BODY_BYTES, MAX_DURATION_S, MAX_MEMORY_MB

    ok = {"job_id": "j", "implementation": "rq", "kind": "sleep", "duration": 0.1}
    assert JobCall.model_validate(ok).duration == 0.1
    oversized = {"kind": "job", "args": {"pad": "x" * MAX_BODY_BYTES}}
    for bad in ({"duration": MAX_DURATION_S + 1}, {"duration": -1}, {"kind": "memory", "memory_mb": MAX_MEMORY_MB + 1},
                {"duration": float("nan")}, {"job_id": "x" * 1000}, oversized):  # fmt: skip
        with pytest.raises(ValidationError):
            JobCall.model_validate(ok | bad)


def test_worker_liveness_is_judged_on_redis_clock(stack: Stack) -> None:
    """A beat is stamped and read on Redis's clock (TIME): a step of this host's clock, or another host's, neither
    keeps a dead worker alive nor drops a live one."""
    import json

    import redis.asyncio as aredis

    from taskbench_service.heartbeat import WORKERS_KEY, live_beats, server_time

    client = redis.Redis.from_url(stack.redis_url)
    now = server_time(client.time())
    key = WORKERS_KEY.format("clock-test")
    beats = {"fresh": {"pid": 1, "concurrency": 1, "t": now}, "stale": {"pid": 2, "concurrency": 1, "t": now - 60}}
    client.hset(key, mapping={worker: json.dumps(beat) for worker, beat in beats.items()})
    try:

        async def alive() -> list[int | None]:
            async with aredis.Redis.from_url(stack.redis_url) as reader:
                return [beat.pid for beat in await live_beats(reader, "clock-test")]

        assert asyncio.run(alive()) == [1]
    finally:
        client.delete(key)


def test_a_deadline_moves_on_while_jobs_complete_and_says_how_far_they_got(stack: Stack) -> None:
    """Concurrency 2 and 0.5 s jobs: 24 take 6 s, past a 4.5 s deadline but within the extensions it allows while
    jobs keep completing (twice the time left after the burst); 96 take 24 s, past a 6 s deadline and its
    extensions (at most 6 + 2 × 6 s): the scenario ends unfinished, saying how many finished and at what rate
    they were completing (4/s). On a loaded machine the burst itself eats into the deadline, and the extensions
    with it (a burst of 64 took over 4 s here with the suite's three workers busy): 6 s leaves the wait time to
    see jobs finish and their rate."""
    from taskbench.record.results import RunSettings, ScenarioSpec
    from tests.conftest import purge, run_on

    def burst(jobs: int, timeout_s: float) -> Any:
        spec = ScenarioSpec(implementation="celery", workload="sleep", jobs=jobs, duration_s=0.5)
        settings = RunSettings(implementations=["celery"], workloads=["sleep"], jobs=[jobs], duration_s=0.5,
                               memory_mb=0, concurrency=2)  # fmt: skip
        stack.select("celery")
        return run_on(stack, spec, settings, timeout_s=timeout_s)

    extended = burst(24, 4.5)  # 6 s of jobs: past 4.5 s, within its extensions even on a loaded machine
    names = [e.name for e in extended.events]
    assert "deadline_extended" in names and not extended.timed_out, extended.events
    assert [j.status for j in extended.jobs] == ["completed"] * 24
    cut = burst(96, 6.0)
    assert cut.timed_out
    (unfinished,) = [e.detail for e in cut.events if e.name == "unfinished"]
    finished, rate = int(unfinished.split()[0]), float(unfinished.split("completing at ")[1].split("/s")[0])
    purge(stack, "celery")  # the rest: the stack is shared
    assert 0 < finished < 96 and rate == pytest.approx(4.0, rel=0.5), unfinished


def test_what_the_broker_keeps_is_the_queues_not_taskbenchs_own_records(stack: Stack) -> None:
    """BackgroundTasks put nothing in Redis but taskbench's own records of them, which are not counted: their
    burst keeps (next to) nothing there, whatever the other queues' idle workers rewrite meanwhile; Celery keeps a
    result per job (its result backend, expired after a day)."""
    from tests.conftest import burst

    fastapi = burst(stack, "fastapi", 20, 0.05, 4).broker_bytes
    celery = burst(stack, "celery", 20, 0.05, 4).broker_bytes
    assert fastapi is not None and celery is not None
    # what the burst added, key by key (the keys of other queues' earlier tests expire meanwhile: 3 KB once in CI)
    assert fastapi.grown is not None and 0 <= fastapi.grown < 1024, fastapi
    assert celery.grown is not None and celery.grown >= 20 * 150, celery


def test_a_burst_reads_what_the_broker_counts_against_the_jobs_really_waiting(stack: Stack) -> None:
    """Through a burst, the queue's own count of waiting jobs (what an autoscaler reads) is sampled; Celery's
    worker reserves a job per process beyond those it runs (prefetch multiplier 1), which that count misses."""
    from taskbench.analysis.stats import depth_seen
    from tests.conftest import burst

    result = burst(stack, "celery", 24, 0.25, 2)
    seen = depth_seen(result)
    assert len(result.broker_depth) >= 4 and seen is not None, result.broker_depth
    assert seen.peak_waiting >= 10 and 1 <= seen.peak_unseen <= seen.peak_waiting, seen
    assert not burst(stack, "fastapi", 5, 0.05, 2).broker_depth  # BackgroundTasks: no broker to read


def test_a_worker_process_that_prefetches_holds_short_jobs_behind_a_long_one(stack: Stack) -> None:
    """An `uneven` burst (one job twice as long as the eleven others together, two slots): a Dramatiq process takes
    a second message while it runs the long job (its prefetch, 2 × threads), which waits for it though the other
    process is idle; taskiq's processes take a job only for a free slot, and nothing waits."""
    from taskbench.analysis import summarise
    from tests.conftest import burst

    dramatiq = summarise(burst(stack, "dramatiq", 12, 0.1, 2, workload="uneven")).held_behind
    taskiq = summarise(burst(stack, "taskiq", 12, 0.1, 2, workload="uneven")).held_behind
    assert dramatiq is not None and taskiq is not None
    assert dramatiq.long_s == pytest.approx(2.2) and dramatiq.short_jobs == 11
    assert dramatiq.held_by_its_process >= 1 and dramatiq.cost_s is not None and dramatiq.cost_s >= 0.1, dramatiq
    assert taskiq.held == 0, taskiq


def test_idle_neighbours_wait_paused_through_a_scenario_without_a_fault(stack: Stack) -> None:
    """Every other implementation's API and worker is stopped (SIGSTOP) while one is measured, so their polling
    takes no CPU from it (issue 33 item 6), and runs again, its worker seen by its service, once it is over."""
    from taskbench.analysis import summarise
    from taskbench.analysis.stats import process_resources
    from taskbench.record.results import EventName, RunSettings, ScenarioSpec
    from taskbench_wire.health import Health
    from tests.conftest import run_on

    name = "huey"
    spec = ScenarioSpec(implementation=name, workload="sleep", jobs=4, duration_s=0.2)
    settings = RunSettings(implementations=[name], workloads=["sleep"], jobs=[4], duration_s=0.2, memory_mb=0,
                           concurrency=2, pause_neighbours=True)  # fmt: skip
    stack.select(name)
    result = run_on(stack, spec, settings)
    (paused,) = [e.detail.split(", ") for e in result.events if e.name == EventName.neighbours_paused]
    assert set(paused) == set(stack.labels) - {name}
    neighbours = {role: r for role, r in process_resources(result).items() if role.endswith("-worker")}
    neighbours.pop(f"{name}-worker")
    assert len(neighbours) > 2 and all(r.samples >= 2 for r in neighbours.values())
    assert {role: r.cpu_avg for role, r in neighbours.items() if r.cpu_avg > 0.5} == {}
    # with its neighbours paused, what the burst cost in Redis commands is its own (and the records')
    assert len(result.redis_commands) == 3 and (summarise(result).redis_commands_per_job or 0) > 1
    for label in paused:
        for service in (stack.apis[label], stack.workers.get(label)):
            assert service is None or psutil.Process(service.pid).status() != psutil.STATUS_STOPPED, label
        health = Health.of(httpx.get(f"{stack.url_for(label)}/health", timeout=2).json())
        assert label not in stack.workers or health.section(label).workers, label
