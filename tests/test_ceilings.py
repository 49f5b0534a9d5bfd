"""This host's ceilings (`run --calibrate`): measured on taskbench's own servers with the real tools, and each
queue's no-op rate read as a share of what its broker can do."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import psycopg
import pytest

from taskbench.analysis import tradeoff
from taskbench.analysis.models import ProcessResources
from taskbench.record.results import HostCeilings, PostgresCeilings, RedisCeilings
from taskbench.report import content
from taskbench.stack import ceilings, postgres_server
from taskbench.stack.redis_server import free_port
from taskbench.stack.services import Service
from taskbench.stack.stack import Stack, StackConfig
from tests.test_stats import summary

REDIS_7_CSV = """"test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms"
"PING_MBULK","86956.52","0.3","0.1","0.3","0.5"
"LPUSH","80000.00","0.3","0.1","0.3","0.5"
"""
REDIS_6_CSV = '"PING_MBULK","71942.45"\n"RPOP","64516.13"\n'
CEILINGS = HostCeilings(
    redis=RedisCeilings(
        tool="redis-benchmark 7.0.15",
        server="Redis 7.0.15",
        round_trips_per_s=20_000.0,
        commands_per_s=100_000.0,
        pipelined_per_s=900_000.0,
        push_pop_pairs_per_s=45_000.0,
        clients=50,
        pipeline=16,
    ),
    postgres=PostgresCeilings(tool="pgbench (PostgreSQL) 16.4", dequeues_per_s=4_000.0, clients=4),
)


@pytest.mark.pure
def test_redis_benchmark_csv_of_redis_6_and_7_is_read() -> None:
    assert ceilings.parse_benchmark_csv(REDIS_7_CSV) == {"PING_MBULK": 86956.52, "LPUSH": 80000.0}
    assert ceilings.parse_benchmark_csv(REDIS_6_CSV) == {"PING_MBULK": 71942.45, "RPOP": 64516.13}


@pytest.mark.pure
def test_a_push_and_a_pop_a_job_take_the_time_of_both() -> None:
    assert ceilings.pair_rate(100.0, 100.0) == pytest.approx(50.0)
    assert ceilings.pair_rate(300.0, 150.0) == pytest.approx(100.0)


@pytest.mark.pure
def test_a_queue_is_read_against_its_own_broker() -> None:
    redis_queue = summary("taskiq", 1000, workload="noop").model_copy(
        update={"redis_commands_per_job": 20.0, "throughput_jobs_per_s": 1000.0}
    )
    assert tradeoff.broker_bound(redis_queue, "redis", CEILINGS) == pytest.approx(5000.0)  # 100 000 ÷ 20
    assert tradeoff.broker_share(redis_queue, "redis", CEILINGS) == pytest.approx(0.2)
    pg_queue = summary("procrastinate", 1000, workload="noop").model_copy(update={"throughput_jobs_per_s": 400.0})
    assert tradeoff.broker_share(pg_queue, "postgres", CEILINGS) == pytest.approx(0.1)
    assert tradeoff.broker_bound(redis_queue, "redis", None) is None  # not calibrated
    assert tradeoff.broker_bound(summary("fastapi", 10, workload="noop"), "", CEILINGS) is None  # no broker
    lines = content.ceiling_lines(CEILINGS)
    assert any("100,000 commands/s" in line for line in lines) and any("4,000/s" in line for line in lines)


def test_redis_is_measured_alone_and_the_stack_runs_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A throwaway server of the stack's binary, measured with the implementations paused; none of its password
    is left on disk, and the stack's API answers again after."""
    monkeypatch.setattr(ceilings, "ROUND_TRIPS", 2_000)  # correctness here; the figures are the run's business
    monkeypatch.setattr(ceilings, "REQUESTS", 5_000)
    with Stack(StackConfig(workdir=tmp_path, implementations=("fastapi",))) as stack:
        measured = ceilings.measure(stack)
        assert not measured.not_measured and measured.postgres is None  # no PostgreSQL queue: none measured
        redis = measured.redis
        assert redis is not None and redis.round_trips_per_s > 100 and redis.push_pop_pairs_per_s
        assert redis.server.startswith(("Redis", "Valkey"))
        if shutil.which("redis-benchmark"):
            assert redis.tool.startswith("redis-benchmark") and redis.commands_per_s and redis.pipelined_per_s
        assert not (tmp_path / "calibration" / "redis.conf").exists()
        health = httpx.get(f"{stack.url}/health", timeout=5)
        assert health.status_code == 200


@pytest.mark.skipif(
    not postgres_server.available() and os.environ.get("CI") != "true",
    reason="no PostgreSQL server here (apt install postgresql); CI installs it",
)
def test_a_postgres_dequeue_rate_is_measured_and_its_table_dropped(tmp_path: Path) -> None:
    cluster = postgres_server.PostgresCluster.create(free_port(), "test-ceilings")
    ready = lambda _: postgres_server.problem(cluster.admin_url) is None  # noqa: E731
    server = Service("postgres", cluster.argv(), {}, tmp_path / "pg.log", ready, "PostgreSQL", signal.SIGINT,
                     cluster.user)  # fmt: skip
    try:
        with server:
            cluster.create_database()
            before = postgres_server.statements_so_far(cluster.url)
            measured = ceilings.measure_postgres(cluster.url, cluster.bin_dir, tmp_path)
            assert measured.dequeues_per_s > 10 and measured.tool.startswith("pgbench") and not measured.at_least
            after = postgres_server.statements_so_far(cluster.url)
            if cluster.counts_statements:  # what a PostgreSQL queue's statements and rows per job are read from
                assert before is not None and after is not None
                dequeued = measured.dequeues_per_s * ceilings.PG_SECONDS * 0.5  # pgbench's count, roughly
                assert after[0] - before[0] >= dequeued and after[1] - before[1] >= ceilings.PG_ROWS
            with psycopg.connect(cluster.url) as conn:
                left = "SELECT 1 FROM information_schema.schemata WHERE schema_name = %s"
                assert conn.execute(left, (ceilings.SCHEMA,)).fetchone() is None
    finally:
        cluster.remove()


def test_calibrating_a_service_taskbench_did_not_start_is_one_line_and_exit_2() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "taskbench", "run", "--url", "http://127.0.0.1:9", "--calibrate"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "--calibrate" in lines[0] and "drop --url" in lines[0], out.stderr


@pytest.mark.pure
def test_cpu_per_job_is_split_by_part_and_the_broker_counted_only_when_it_served_the_queue_alone() -> None:
    def used(cpu_s: float) -> ProcessResources:
        return ProcessResources(samples=10, cpu_peak=50.0, cpu_avg=20.0, rss_peak_mb=50.0, rss_avg_mb=50.0, cpu_s=cpu_s)

    base = summary("taskiq", 1000, workload="noop")
    parts = {"api": used(2.0), "taskiq-worker": used(3.0), "redis": used(0.5)}
    alone = base.model_copy(update={"resources": parts, "worker_role": "taskiq-worker", "neighbours_paused": True})
    assert tradeoff.cpu_by_part(alone, "redis") == pytest.approx({"API": 2.0, "worker": 3.0, "broker": 0.5})
    shared = alone.model_copy(update={"neighbours_paused": False})  # Redis served the idle others too
    assert tradeoff.cpu_by_part(shared, "redis") == pytest.approx({"API": 2.0, "worker": 3.0})
    assert tradeoff.cpu_by_part(alone, "amqp") == pytest.approx(
        {"API": 2.0, "worker": 3.0}
    )  # RabbitMQ: its clients are never paused
