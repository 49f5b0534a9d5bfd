"""This host's ceilings (`run --calibrate`): what a Redis of the run's binary serves here, alone, and how many jobs
a second a PostgreSQL queue's dequeue can take on the private server, measured before the first scenario with every
implementation paused. A queue's no-op rate is then read as a share of what its broker can do on the same host
(taskbench.analysis.tradeoff.broker_share): a queue far below it is limited by its own Python, not by its broker.

Redis is measured with `redis-benchmark` (C, as Redis's own figures are) where one is installed, else with redis-py
(one client, the Python side's own limit, and said so). PostgreSQL with `pgbench` beside the private server.
Only servers taskbench owns are measured: a Redis or PostgreSQL named by URL is someone else's."""

from __future__ import annotations

import contextlib
import csv
import re
import secrets
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg
import redis
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from taskbench.errors import StackError
from taskbench.record.results import HostCeilings, PostgresCeilings, RedisCeilings
from taskbench.stack.redis_server import RedisBinary, free_port, reachable_copy, redis_command, write_password_config
from taskbench.stack.services import Service

if TYPE_CHECKING:
    from taskbench.stack.stack import Stack

CLIENTS = 50  # redis-benchmark's default: enough connections that the server, not one client, is the bound
PIPELINE = 16
ROUND_TRIPS = 20_000  # requests of the one-connection test (~0.5 s here)
REQUESTS = 50_000  # of each test with CLIENTS connections (~0.5 s each here)
PYTHON_SECONDS = 0.5  # each test of the redis-py fallback
# Renamed away on the throwaway server: redis-benchmark takes a password only on its command line, where `ps` shows
# it; whoever reads it there meets a server that holds nothing, lives seconds, and can write no file.
DISABLED = ("CONFIG", "DEBUG", "MODULE", "SAVE", "BGSAVE", "BGREWRITEAOF", "REPLICAOF", "SLAVEOF", "MIGRATE")
SCHEMA = "taskbench_calibration"  # in the private PostgreSQL's database, dropped once measured
PG_CLIENTS = 4
PG_SECONDS = 2
PG_ROWS = 100_000
DEQUEUE = (  # one job a transaction, as a PostgreSQL queue takes it: the oldest row no one else holds
    f"WITH next AS (SELECT id FROM {SCHEMA}.queue ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED)\n"
    f"DELETE FROM {SCHEMA}.queue AS q USING next WHERE q.id = next.id;\n"
)


def measure(stack: Stack) -> HostCeilings:
    """Every ceiling this stack's own servers allow, its implementations paused meanwhile."""
    ceilings = HostCeilings()
    stack.pause_all()
    try:
        if stack.embedded_redis:
            with _said_when_failing("Redis", stack, ceilings):
                ceilings.redis = measure_redis(stack)
        else:
            ceilings.not_measured.append("Redis: the run's Redis is not taskbench's (--redis-url)")
        bin_dir = stack.postgres_bin_dir
        if bin_dir is not None:
            with _said_when_failing("PostgreSQL", stack, ceilings):
                ceilings.postgres = measure_postgres(stack.postgres_url, bin_dir, stack.config.workdir)
        elif stack.needs_postgres:
            ceilings.not_measured.append("PostgreSQL: the run's PostgreSQL is not taskbench's (--postgres-url)")
    finally:
        stack.resume_neighbours()
    return ceilings


@contextlib.contextmanager
def _said_when_failing(server: str, stack: Stack, ceilings: HostCeilings) -> Iterator[None]:
    """A ceiling that cannot be measured is a line in the report; the run goes on."""
    try:
        yield
    except (StackError, OSError, subprocess.SubprocessError, psycopg.Error, redis.RedisError) as exc:
        first = str(exc).strip().splitlines()
        ceilings.not_measured.append(f"{server}: {stack.redact(first[0] if first else type(exc).__name__)}")


def measure_redis(stack: Stack) -> RedisCeilings:
    """A throwaway server of the stack's Redis binary (loopback, a password of its own, no persistence), alone."""
    binary = stack.redis_binary
    home, user = stack.server_home("calibration", stack.config.workdir / "calibration")
    password = secrets.token_urlsafe(16)
    config = write_password_config(home, password, user, DISABLED)
    port = free_port()
    argv = redis_command(reachable_copy(binary.path, home, user), port, home, False, config)
    log = stack.config.workdir / "logs" / "calibration-redis.log"
    ready = lambda _: _answers(port, password)  # noqa: E731
    try:
        with Service("calibration-redis", argv, stack.tag({}), log, ready, "the calibration redis-server", user=user):
            config.unlink()  # read at its start; the password is nowhere on disk
            bench = shutil.which("redis-benchmark") or shutil.which("valkey-benchmark")
            return _with_benchmark(bench, port, password, binary) if bench else _with_redis_py(port, password, binary)
    finally:
        config.unlink(missing_ok=True)


def _answers(port: int, password: str) -> bool:
    try:
        with redis.Redis(port=port, password=password, socket_timeout=1) as client:
            return bool(client.ping())
    except redis.RedisError:
        return False


def _server_name(binary: RedisBinary) -> str:
    return binary.label.split(" (")[0]


def _with_benchmark(bench: str, port: int, password: str, binary: RedisBinary) -> RedisCeilings:
    def run(clients: int, pipeline: int, requests: int, tests: str) -> dict[str, float]:
        argv = [bench, "-h", "127.0.0.1", "-p", str(port), "-a", password, "-c", str(clients), "-P", str(pipeline),
                "-n", str(requests), "-t", tests, "--csv"]  # fmt: skip
        done = subprocess.run(argv, capture_output=True, text=True, timeout=300)
        rates = parse_benchmark_csv(done.stdout)
        if done.returncode != 0 or not rates:
            raise StackError(f"{Path(bench).name} failed: {(done.stderr or done.stdout).strip()[-300:]}")
        return rates

    one = run(1, 1, ROUND_TRIPS, "ping_mbulk")
    many = run(CLIENTS, 1, REQUESTS, "ping_mbulk,lpush,rpop")
    piped = run(CLIENTS, PIPELINE, REQUESTS * PIPELINE, "ping_mbulk")
    version = subprocess.run([bench, "--version"], capture_output=True, text=True, timeout=10).stdout.split()
    return RedisCeilings(
        tool=" ".join(version[:2]) or Path(bench).name,
        server=_server_name(binary),
        round_trips_per_s=one["PING_MBULK"],
        commands_per_s=many["PING_MBULK"],
        pipelined_per_s=piped["PING_MBULK"],
        push_pop_pairs_per_s=pair_rate(many["LPUSH"], many["RPOP"]),
        clients=CLIENTS,
        pipeline=PIPELINE,
    )


def parse_benchmark_csv(out: str) -> dict[str, float]:
    """redis-benchmark --csv: a test a line, `"PING_MBULK","86956.52",…` (Redis 7 adds a header line first)."""
    rates: dict[str, float] = {}
    for row in csv.reader(out.splitlines()):
        if len(row) >= 2:
            try:
                rates[row[0].upper()] = float(row[1])
            except ValueError:
                continue  # the header
    return rates


def pair_rate(push_per_s: float, pop_per_s: float) -> float:
    """One LPUSH and one RPOP a job: the pairs a second the server serves when it does nothing else."""
    return 1.0 / (1.0 / push_per_s + 1.0 / pop_per_s)


def _rate(call: Callable[[], object], per_call: int = 1) -> float:
    start = time.perf_counter()
    calls = 0
    while (elapsed := time.perf_counter() - start) < PYTHON_SECONDS:
        call()
        calls += 1
    return calls * per_call / elapsed


def _with_redis_py(port: int, password: str, binary: RedisBinary) -> RedisCeilings:
    """Without redis-benchmark: one redis-py client, so every figure is what one Python client reaches."""
    with redis.Redis(port=port, password=password) as client:

        def piped() -> None:
            pipe = client.pipeline(transaction=False)
            for _ in range(PIPELINE):
                pipe.ping()
            pipe.execute()

        round_trips = _rate(client.ping)
        pipelined = _rate(piped, PIPELINE)
        pairs = _rate(lambda: (client.lpush("q", "x"), client.rpop("q")))
    return RedisCeilings(
        tool=f"redis-py {redis.__version__} (one Python client: no redis-benchmark installed)",
        server=_server_name(binary),
        round_trips_per_s=round_trips,
        commands_per_s=None,
        pipelined_per_s=pipelined,
        push_pop_pairs_per_s=pairs,
        clients=1,
        pipeline=PIPELINE,
    )


def measure_postgres(url: str, bin_dir: Path, workdir: Path) -> PostgresCeilings:
    """pgbench taking one row a transaction from a table of PG_ROWS, PG_CLIENTS at once, for PG_SECONDS."""
    schema = sql.Identifier(SCHEMA)
    with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(schema))
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(schema))
        conn.execute(sql.SQL("CREATE TABLE {}.queue (id bigserial PRIMARY KEY, payload jsonb NOT NULL)").format(schema))
        fill = "INSERT INTO {}.queue (payload) SELECT jsonb_build_object('n', n) FROM generate_series(1, %s) AS n"
        conn.execute(sql.SQL(fill).format(schema), (PG_ROWS,))
        conn.execute(sql.SQL("VACUUM ANALYZE {}.queue").format(schema))
        try:
            tps, tool = _pgbench(url, bin_dir, workdir)
            left = conn.execute(sql.SQL("SELECT count(*) FROM {}.queue").format(schema)).fetchone()
        finally:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(schema))
    return PostgresCeilings(tool=tool, dequeues_per_s=tps, clients=PG_CLIENTS, at_least=not left or left[0] == 0)


def _pgbench(url: str, bin_dir: Path, workdir: Path) -> tuple[float, str]:
    """tps of the dequeue script and pgbench's version; its password in its environment, never on its command line."""
    pgbench = bin_dir / "pgbench"
    if not pgbench.exists():
        found = shutil.which("pgbench")
        if found is None:
            raise StackError(f"no pgbench beside {bin_dir / 'postgres'} nor on PATH")
        pgbench = Path(found)
    script = workdir / "calibration-dequeue.sql"
    script.write_text(DEQUEUE)
    info = conninfo_to_dict(url)
    env = {"PGPASSWORD": str(info.get("password", "")), "PATH": "/usr/bin:/bin"}
    argv = [str(pgbench), "-n", "-c", str(PG_CLIENTS), "-j", "2", "-T", str(PG_SECONDS), "-f", str(script),
            "-h", str(info["host"]), "-p", str(info["port"]), "-U", str(info["user"]), str(info["dbname"])]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=PG_SECONDS + 60, env=env)
    found_tps = re.search(r"tps = ([\d.]+) \(without initial connection", done.stdout)
    if done.returncode != 0 or found_tps is None:
        raise StackError(f"pgbench failed: {(done.stderr or done.stdout).strip()[-300:]}")
    version = subprocess.run([str(pgbench), "--version"], capture_output=True, text=True, timeout=10).stdout.strip()
    return float(found_tps.group(1)), version or "pgbench"
