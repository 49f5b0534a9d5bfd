"""A private RabbitMQ for the embedded stack (`--broker amqp` without `--broker-url`), beside the machine's own.

It gets its own node name, data and log directories, config file (no plugins, so no management port), Erlang
cookie (HOME), loopback AMQP and distribution ports, and its own `epmd` on a free port started in the
foreground (`-start_epmd false`), so it never meets a RabbitMQ or epmd already running and leaves no daemon
behind. Readiness is an AMQP handshake as its one user, whose password is generated per stack (no `guest`).
"""

from __future__ import annotations

import math
import os
import secrets
import shutil
import socket
import uuid
from dataclasses import dataclass
from pathlib import Path

from amqp.exceptions import AMQPError
from kombu.connection import Connection
from kombu.exceptions import KombuError

from taskbench.errors import UsageError
from taskbench.stack.redis_server import free_port

INSTALL_HINT = (
    "--broker amqp needs RabbitMQ: no rabbitmq-server on PATH; install it (apt install rabbitmq-server / brew install "
    "rabbitmq) or give --broker-url amqp://USER:PASSWORD@HOST:5672/VHOST"
)
EPMD_HINT = "--broker amqp found rabbitmq-server but no epmd (Erlang) on PATH: install erlang, or give --broker-url"
USER = "taskbench"
DEBIAN_WRAPPER = "rabbitmq-script-wrapper"  # switches to the `rabbitmq` user and /var/lib/rabbitmq


def find_rabbitmq_server() -> str:
    """The server script on PATH; Debian's wrapper is replaced by the script it wraps, beside it."""
    found = shutil.which("rabbitmq-server")
    if not found:
        raise UsageError(INSTALL_HINT)
    real = Path(found).resolve()
    wrapped = real.parent / "rabbitmq-server"
    return str(wrapped if real.name == DEBIAN_WRAPPER and wrapped.is_file() else found)


def find_epmd() -> str:
    found = shutil.which("epmd")
    if not found:
        raise UsageError(EPMD_HINT)
    return found


@dataclass(frozen=True)
class RabbitNode:
    """One private node: its ports, directory and the files and environment that confine it there."""

    home: Path
    port: int
    dist_port: int
    epmd_port: int
    name: str
    password: str  # of its one user, USER: generated per stack, so no other local process gets in
    also_listen: str | None = None  # --hosts: AMQP on the bridge's address too, for the workers' namespaces
    user: tuple[int, int] | None = None  # who runs it (and its epmd) when the harness is root: never root

    @classmethod
    def create(cls, home: Path, also_listen: str | None = None, user: tuple[int, int] | None = None) -> RabbitNode:
        """A node in `home`; with `user` (the harness is root), run as that user, `home` being theirs."""
        name = f"taskbench-{uuid.uuid4().hex[:8]}@localhost"
        ports = free_port(), free_port(), free_port()
        node = cls(home, *ports, name, secrets.token_urlsafe(24), also_listen, user)
        node.write_files()
        return node

    @property
    def url(self) -> str:
        return f"amqp://{USER}:{self.password}@127.0.0.1:{self.port}/%2F"  # vhost "/", as kombu and pika agree

    def write_files(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        config = self.home / "rabbitmq.conf"
        config.touch(mode=0o600)
        config.chmod(0o600)  # it holds the password
        # One user of its own instead of `guest` (which a fresh node creates, and any local process knows).
        config.write_text(
            f"listeners.tcp.1 = 127.0.0.1:{self.port}\ndefault_user = {USER}\ndefault_pass = {self.password}\n"
            + (f"listeners.tcp.2 = {self.also_listen}:{self.port}\n" if self.also_listen else "")
        )
        (self.home / "enabled_plugins").write_text("[].\n")
        (self.home / "rabbitmq-env.conf").write_text("")  # not the machine's /etc/rabbitmq/rabbitmq-env.conf
        # its Erlang cookie (the distribution's password), strong and read by its owner alone
        cookie = self.home / ".erlang.cookie"
        cookie.touch(mode=0o400)
        cookie.chmod(0o600)
        cookie.write_text(secrets.token_urlsafe(32))
        cookie.chmod(0o400)
        if self.user is not None:
            for path in (self.home, config, self.home / "enabled_plugins", self.home / "rabbitmq-env.conf", cookie):
                os.chown(path, *self.user)

    def environ(self) -> dict[str, str]:
        home = str(self.home)
        return {
            "HOME": home,  # its own Erlang cookie
            "ERL_EPMD_PORT": str(self.epmd_port),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "RABBITMQ_CONF_ENV_FILE": f"{home}/rabbitmq-env.conf",
            "RABBITMQ_CONFIG_FILE": f"{home}/rabbitmq.conf",
            "RABBITMQ_ADVANCED_CONFIG_FILE": f"{home}/advanced.config",
            "RABBITMQ_ENABLED_PLUGINS_FILE": f"{home}/enabled_plugins",
            "RABBITMQ_NODENAME": self.name,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": f"{home}/mnesia",
            "RABBITMQ_PLUGINS_EXPAND_DIR": f"{home}/plugins-expand",
            "RABBITMQ_PID_FILE": f"{home}/rabbitmq.pid",
            "RABBITMQ_LOG_BASE": f"{home}/log",
            "RABBITMQ_LOGS": "-",  # to standard output: the service's log file
            # our epmd, not a detached daemon; Erlang distribution on loopback only (it listens on every address
            # otherwise: RABBITMQ_NODE_IP_ADDRESS binds AMQP alone)
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-start_epmd false -kernel inet_dist_use_interface {127,0,0,1}",
            # its CLI tools (rabbitmqctl, used by the node's own scripts) talk to it on loopback too
            "RABBITMQ_CTL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        }

    def epmd_argv(self, binary: str) -> list[str]:
        return [binary, "-address", "127.0.0.1", "-port", str(self.epmd_port)]

    def epmd_listens(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.epmd_port), timeout=0.5).close()
            return True
        except OSError:
            return False


def amqp_problem(url: str, timeout_s: float = 1.0) -> str | None:
    """What stops an AMQP handshake at `url` (RabbitMQ listens only once it has booted), or None; never a hang."""
    try:
        with Connection(url, connect_timeout=timeout_s) as connection:  # type: ignore[no-untyped-call]  # kombu
            connection.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=math.ceil(timeout_s))
            return None
    except (KombuError, AMQPError, OSError) as exc:
        return f"{type(exc).__name__}: {exc}"


def server_version(url: str) -> str:
    try:
        with Connection(url, connect_timeout=2) as connection:  # type: ignore[no-untyped-call]  # kombu
            connection.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=2)
            properties = connection.connection.server_properties
            return f"{properties.get('product', 'RabbitMQ')} {properties.get('version', '?')}"
    except (KombuError, AMQPError, OSError):
        return "unreachable"
