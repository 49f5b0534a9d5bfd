"""Hosts on one machine (`--hosts N`): a Linux bridge and N network namespaces, each linked to it by a veth pair,
so that the parts of a stack talk over IP, not loopback, and a fault can cut one host off (`network-partition`).

Addresses come from 198.18.0.0/15 (RFC 2544: reserved for benchmarking): each stack takes a free /24 of it (under
a file lock, so parallel runs get different ones). In the root namespace the bridge holds `.1`, the harness's own
address (its HTTP client, the telemetry Redis), and `.2`, the servers' (Redis, RabbitMQ, PostgreSQL); host 0 is the
APIs' (`.10`), host i (1..N) a worker's (`.(10+i)`), each inside its namespace. Two addresses in the root, so that
a route inside the API's namespace can cut it off from the servers alone (`api-partition`: a blackhole route to
`.2`) while the harness still reaches it and it still reaches the telemetry. The bridge has no uplink and no
route leads out of a namespace: nothing outside this machine can reach what listens on these addresses, and
nothing the run creates can reach anything but this subnet.

Every name carries the stack's short id (interface names are limited to 15 characters): namespaces
`taskbench-<id8>-<i>`, links `tb<id8>br` (the bridge), `tb<id8>h<i>` (the root end of host i's veth) and
`tb<id8>n<i>` (its end inside the namespace). `remove_leftovers(stack_id)` deletes every one of them: the stack
calls it at its stop, the watchdog (`taskbench.stack.watchdog`) after a killed harness.

A process enters its namespace between fork and exec (`preexec`, with setns(2)): it stays the harness's child,
with the same PID, sampled like any other; its command line is unchanged.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import ipaddress
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from taskbench.errors import StackError, UsageError

POOL = ipaddress.IPv4Network("198.18.0.0/15")  # RFC 2544
NAMESPACE_PREFIX = "taskbench-"
LINK_PREFIX = "tb"
MAX_HOSTS = 16  # `tb<id8>h<i>` stays within IFNAMSIZ - 1 = 15 characters
HOST_OFFSET = 10  # host i is .(10+i)
API_HOST = 0  # the APIs' host; the workers' are 1..N
NETNS_DIR = Path("/run/netns")
# Root's own runtime folder (namespaces need root): not the shared temporary folder, where another user could put a
# symbolic link by that name first
LOCK_DIR = Path("/run/taskbench") if Path("/run").is_dir() else Path(tempfile.gettempdir()) / "taskbench-root"
LOCK_PATH = LOCK_DIR / "netns.lock"
LOCK_TIMEOUT_S = 60.0  # another run holding it this long is stuck: say so rather than wait for ever
CLONE_NEWNET = 0x40000000
CAP_NET_ADMIN, CAP_SYS_ADMIN = 12, 21
IP_TIMEOUT_S = 10.0


def _load_setns() -> Callable[[int, int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).setns
    except (OSError, AttributeError):
        return None


# Loaded here, in the parent: between fork and exec the child may only call what is already loaded.
_setns = _load_setns()


def short_id(stack_id: str) -> str:
    return stack_id[:8]


def namespace_name(stack_id: str, host: int) -> str:
    return f"{NAMESPACE_PREFIX}{short_id(stack_id)}-{host}"


def _effective_caps() -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("CapEff:"):
                return int(line.split()[1], 16)
    except (OSError, ValueError):
        pass
    return 0


def missing_privilege() -> str | None:
    """What stops this process from creating namespaces, veth pairs and a bridge (one line), or None."""
    if not sys.platform.startswith("linux"):
        return f"--hosts needs Linux network namespaces (this is {sys.platform})"
    if shutil.which("ip") is None:
        return "--hosts needs iproute2's `ip` on PATH (apt install iproute2)"
    caps = _effective_caps()
    missing = [
        name
        for bit, name in ((CAP_NET_ADMIN, "CAP_NET_ADMIN"), (CAP_SYS_ADMIN, "CAP_SYS_ADMIN"))
        if not caps >> bit & 1
    ]
    if missing:
        return (
            f"--hosts needs root (or {' and '.join(missing)}) to create network namespaces, veth pairs and a bridge: "
            "run as root, or drop --hosts"
        )
    if _setns is None:
        return "--hosts needs setns(2) from libc, which this Python cannot load"
    return None


def check_privilege() -> None:
    problem = missing_privilege()
    if problem:
        raise UsageError(problem)


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=IP_TIMEOUT_S)
    if check and done.returncode != 0:
        raise StackError(f"`ip {' '.join(args)}` failed: {done.stderr.strip() or done.stdout.strip()}")
    return done


def _tc(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["tc", *args], capture_output=True, text=True, timeout=IP_TIMEOUT_S)


@contextlib.contextmanager
def _allocation_lock() -> Iterator[None]:
    """Two runs choosing a subnet at once would choose the same one. The lock file is root's (a folder only root
    writes, opened without following a symbolic link), and waited for at most LOCK_TIMEOUT_S."""
    LOCK_DIR.mkdir(mode=0o700, exist_ok=True)
    info = LOCK_DIR.lstat()
    if stat.S_ISLNK(info.st_mode) or info.st_uid != os.geteuid() or info.st_mode & 0o022:
        raise StackError(f"{LOCK_DIR} is not a folder of root's alone: remove it, then run again")
    fd = os.open(LOCK_PATH, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        deadline = time.monotonic() + LOCK_TIMEOUT_S
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise StackError(
                        f"another taskbench run has held {LOCK_PATH} for {LOCK_TIMEOUT_S:.0f} s while choosing its "
                        "subnet: is one stuck?"
                    ) from None
                time.sleep(0.1)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _subnets_in_use() -> set[ipaddress.IPv4Network]:
    """The /24s of the pool that an address of the root namespace is in (another run's bridge)."""
    used = set()
    for line in _ip("-4", "-o", "addr", "show").stdout.splitlines():
        fields = line.split()
        if "inet" not in fields:
            continue
        address = ipaddress.IPv4Interface(fields[fields.index("inet") + 1])
        if address.ip in POOL:
            used.add(ipaddress.IPv4Network(f"{address.ip}/24", strict=False))
    return used


def _links() -> list[str]:
    names = []
    for line in _ip("-o", "link", "show").stdout.splitlines():
        parts = line.split(":", 2)
        if len(parts) >= 2:
            names.append(parts[1].strip().split("@", 1)[0])
    return names


def _namespaces() -> list[str]:
    return [line.split()[0] for line in _ip("netns", "list").stdout.splitlines() if line.strip()]


def leftovers(stack_id: str) -> list[str]:
    """The namespaces and links of this stack that exist now."""
    short = short_id(stack_id)
    spaces = [ns for ns in _namespaces() if ns.startswith(f"{NAMESPACE_PREFIX}{short}-")]
    return spaces + [link for link in _links() if link.startswith(f"{LINK_PREFIX}{short}")]


def remove_leftovers(stack_id: str) -> None:
    """Delete every link and namespace named after this stack: the root ends of the veth pairs (which takes
    their peers), the bridge, the test pair of `netem_problem`, then the namespaces. Quiet about what is already
    gone; a namespace a process still lives in is unnamed now and freed by the kernel when the process ends."""
    if not sys.platform.startswith("linux") or shutil.which("ip") is None:
        return
    short = short_id(stack_id)
    with contextlib.suppress(subprocess.SubprocessError, OSError):
        for link in _links():
            if link.startswith(f"{LINK_PREFIX}{short}"):
                _ip("link", "delete", link, check=False)
    with contextlib.suppress(subprocess.SubprocessError, OSError):
        for space in _namespaces():
            if space.startswith(f"{NAMESPACE_PREFIX}{short}-"):
                _ip("netns", "delete", space, check=False)


def netem_problem(stack_id: str) -> str | None:
    """Why `--link-delay` cannot be had here (one line), or None: tried on a veth pair of the stack's own,
    removed at once, since only the kernel knows whether it has the netem qdisc."""
    if shutil.which("tc") is None:
        return "--link-delay needs iproute2's `tc` on PATH"
    short = short_id(stack_id)
    a, b = f"{LINK_PREFIX}{short}t0", f"{LINK_PREFIX}{short}t1"
    try:
        _ip("link", "add", a, "type", "veth", "peer", "name", b)
        done = _tc("qdisc", "add", "dev", a, "root", "netem", "delay", "1ms")
    finally:
        _ip("link", "delete", a, check=False)
    if done.returncode != 0:
        why = done.stderr.strip().splitlines()[0] if done.stderr.strip() else f"exit code {done.returncode}"
        return f"--link-delay needs the kernel's netem qdisc, which this kernel lacks (tc: {why}): drop --link-delay"
    return None


@dataclass
class Network:
    """A bridge and `hosts` namespaces of one stack: create it, put processes in it (`preexec`), cut a host off
    (`set_link`), remove it."""

    stack_id: str
    hosts: int
    subnet: ipaddress.IPv4Network

    @classmethod
    def create(cls, stack_id: str, hosts: int, link_delay_ms: float | None = None) -> Network:
        check_privilege()
        if not 1 <= hosts <= MAX_HOSTS:
            raise UsageError(f"--hosts {hosts}: between 1 and {MAX_HOSTS}")
        if link_delay_ms:
            problem = netem_problem(stack_id)
            if problem:
                raise UsageError(problem)
        with _allocation_lock():
            free = [net for net in POOL.subnets(new_prefix=24) if net not in _subnets_in_use()]
            if not free:
                raise StackError(f"every /24 of {POOL} is in use on this machine: another run's bridges")
            network = cls(stack_id, hosts, free[0])
            try:
                _ip("link", "add", network.bridge, "type", "bridge")
                _ip("addr", "add", f"{network.gateway}/24", "dev", network.bridge)  # first: the source of the root's
                _ip("addr", "add", f"{network.servers}/24", "dev", network.bridge)  # connections to the hosts
                _ip("link", "set", network.bridge, "up")
            except BaseException:
                network.remove()
                raise
        try:
            for host in range(API_HOST, hosts + 1):
                network._add_host(host, link_delay_ms)
        except BaseException:
            network.remove()
            raise
        return network

    @property
    def bridge(self) -> str:
        return f"{LINK_PREFIX}{short_id(self.stack_id)}br"

    @property
    def gateway(self) -> str:
        """The harness's address on the bridge: where it connects from, and where the telemetry Redis answers."""
        return str(self.subnet.network_address + 1)

    @property
    def servers(self) -> str:
        """The servers' address on the bridge: where Redis, RabbitMQ and PostgreSQL answer the hosts."""
        return str(self.subnet.network_address + 2)

    def address(self, host: int) -> str:
        return str(self.subnet.network_address + HOST_OFFSET + host)

    def namespace(self, host: int) -> str:
        return namespace_name(self.stack_id, host)

    def root_link(self, host: int) -> str:
        return f"{LINK_PREFIX}{short_id(self.stack_id)}h{host}"

    def host_link(self, host: int) -> str:
        return f"{LINK_PREFIX}{short_id(self.stack_id)}n{host}"

    def _add_host(self, host: int, link_delay_ms: float | None) -> None:
        space, root, inside = self.namespace(host), self.root_link(host), self.host_link(host)
        _ip("netns", "add", space)
        _ip("link", "add", root, "type", "veth", "peer", "name", inside, "netns", space)
        _ip("link", "set", root, "master", self.bridge)
        _ip("link", "set", root, "up")
        _ip("-n", space, "addr", "add", f"{self.address(host)}/24", "dev", inside)
        _ip("-n", space, "link", "set", inside, "up")
        _ip("-n", space, "link", "set", "lo", "up")
        if link_delay_ms:  # both ends: the delay applies each way, as between two hosts
            delay = ("root", "netem", "delay", f"{link_delay_ms:g}ms")
            for prefix, dev in (((), root), (("-n", space), inside)):
                done = _tc(*prefix, "qdisc", "add", "dev", dev, *delay)
                if done.returncode != 0:
                    raise StackError(f"tc netem on {dev} failed: {done.stderr.strip()}")

    def set_link(self, host: int, up: bool) -> None:
        """Host `host`'s link inside its namespace down (cut off from every other host and the root's parts) or
        up again."""
        _ip("-n", self.namespace(host), "link", "set", self.host_link(host), "up" if up else "down")

    def set_servers_reachable(self, host: int, reachable: bool) -> None:
        """Inside host `host`'s namespace, drop (or stop dropping) whatever it sends to the servers' address: a
        blackhole route, so a new connection fails at once (EINVAL) and an established one stalls, its packets
        dropped, until the route goes, while every other address still answers."""
        _ip("-n", self.namespace(host), "route", "add" if not reachable else "del", "blackhole", f"{self.servers}/32")

    def servers_reachable(self, host: int) -> bool:
        return "blackhole" not in _ip("-n", self.namespace(host), "route", "show", f"{self.servers}/32").stdout

    def link_is_up(self, host: int) -> bool:
        done = _ip("-n", self.namespace(host), "-o", "link", "show", self.host_link(host))
        return ",UP" in done.stdout or "<UP" in done.stdout

    def remove(self) -> None:
        remove_leftovers(self.stack_id)


@contextlib.contextmanager
def entering(namespace: str | None, then: Callable[[], None]) -> Iterator[Callable[[], None]]:
    """A `preexec_fn` that moves the child into `namespace` (its net namespace only: it keeps the file system and
    PID namespace, so the harness reads its ledger lines and samples it by PID), then calls `then`."""
    if namespace is None:
        yield then
        return
    fd = os.open(NETNS_DIR / namespace, os.O_RDONLY | os.O_CLOEXEC)  # closed by exec in the child

    def enter() -> None:
        assert _setns is not None
        if _setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns into {namespace}")
        then()

    try:
        yield enter
    finally:
        os.close(fd)
