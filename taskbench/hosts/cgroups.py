"""Container limits: each worker and API of a stack in a cgroup of its own with a CPU quota and a memory limit, as a
container runtime sets Kubernetes' `resources.limits`, on cgroup v1 and v2.

Where the cgroups go:
- v1 (separate `cpu` and `memory` hierarchies): under the harness's own cgroup in each, so that whatever limit the
  harness itself runs under still applies to its stack (v1 lets a cgroup hold processes and children at once).
- v2 (unified): under the nearest cgroup from the harness's own up to the root whose `cgroup.subtree_control`
  enables `cpu` and `memory` and which this user may write (systemd's delegation: `systemd-run --user --scope
  -p Delegate=yes`); else, as root, under the root, enabling both controllers there (v2 forbids controllers below
  a cgroup that holds processes, so the harness's own is no use unless it is the root).

Each cgroup is named `taskbench-{stack id}-{role}`: the stack removes its own when it stops, and its watchdog
(`taskbench.stack.watchdog`) removes what a killed harness left, after it has killed their processes (a cgroup that
holds processes cannot be removed). A process joins its cgroup between fork and exec
(`ManagedProcess.cgroup_procs`), so every child it starts is in it from the start.

Swap: a limit caps memory and swap together (v1 `memory.memsw.limit_in_bytes` when the kernel has it, v2
`memory.swap.max = 0`), so a process over its limit is OOM-killed rather than swapped out, as under Kubernetes.
`memory.oom.group` is left off: the kernel kills the biggest process of the cgroup (a prefork pool's child holding
the job's memory), as on v1 and in Kubernetes before 1.28.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import math
import os
import re
import signal
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from taskbench.errors import UsageError
from taskbench.record.results import ContainerLimits, RunSettings

ROOT = Path("/sys/fs/cgroup")
PREFIX = "taskbench-"
CFS_PERIOD_US = 100_000
REMOVE_WAIT_S = 5.0
MIN_MEMORY_MB = 32  # below this a Python interpreter cannot start
CONTROLLERS = ("cpu", "memory")
OOM_POLL_S = 0.02  # how often a marked cgroup's OOM kill count is read: the kill's time within this


@dataclass(frozen=True)
class Layout:
    """Where this harness's stacks put their cgroups."""

    version: Literal[1, 2]
    parents: dict[str, Path]  # controller → the directory the stack's cgroups are made in (v2: one for both)
    where: str  # for messages and the reports: "cgroup v1, under the harness's own cgroups"


def _own_paths(proc_cgroup: Path) -> dict[str, str]:
    """Controller → this process's cgroup path, from /proc/self/cgroup ("" for v2's unified line)."""
    paths: dict[str, str] = {}
    for line in proc_cgroup.read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for controller in controllers.split(",") if controllers else [""]:
            paths[controller] = path
    return paths


def _words(path: Path) -> set[str]:
    try:
        return set(path.read_text().split())
    except OSError:
        return set()


def layout(root: Path = ROOT, proc_cgroup: Path = Path("/proc/self/cgroup")) -> Layout:
    """This machine's cgroup layout for a stack's limits; UsageError naming what is missing."""
    if not root.is_dir() or not proc_cgroup.exists():
        raise UsageError("container limits need Linux cgroups (/sys/fs/cgroup): this system has none")
    own = _own_paths(proc_cgroup)
    if (root / "memory" / "memory.limit_in_bytes").exists() and (root / "cpu" / "cpu.cfs_quota_us").exists():
        parents = {c: root / c / own.get(c, "/").lstrip("/") for c in CONTROLLERS}
        for controller, parent in parents.items():
            if not os.access(parent, os.W_OK):
                raise UsageError(
                    f"container limits need to create cgroups in {parent} (cgroup v1 {controller}): run as root"
                )
        return Layout(1, parents, "cgroup v1, under the harness's own cgroups")
    unified = root if (root / "cgroup.controllers").exists() else root / "unified"
    if not set(CONTROLLERS) <= _words(unified / "cgroup.controllers"):
        raise UsageError(f"container limits need the cgroup cpu and memory controllers: {root} has neither v1 nor v2's")
    path = unified / own.get("", "/").lstrip("/")
    while True:  # the nearest cgroup that enables both controllers for its children and that we may write
        if set(CONTROLLERS) <= _words(path / "cgroup.subtree_control") and os.access(path, os.W_OK):
            where = "the root cgroup" if path == unified else f"{path} (delegated)"
            return Layout(2, dict.fromkeys(CONTROLLERS, path), f"cgroup v2, under {where}")
        if path == unified:
            break
        path = path.parent
    if os.geteuid() != 0:
        raise UsageError(
            "container limits need root, or cgroup v2 cpu and memory delegated to you (systemd-run --user --scope "
            "-p Delegate=yes …): no cgroup you may write enables them"
        )
    try:
        (unified / "cgroup.subtree_control").write_text("+cpu +memory")
    except OSError as exc:  # EBUSY: a container's own root holds processes, and v2 allows no controller below them
        busy = " (inside a container, move its processes to a child cgroup first)" if exc.errno == errno.EBUSY else ""
        raise UsageError(f"container limits: cannot enable cpu and memory in {unified} ({exc.strerror}){busy}") from exc
    return Layout(2, dict.fromkeys(CONTROLLERS, unified), "cgroup v2, under the root cgroup")


def check() -> Layout:
    """The layout, or UsageError: called by the CLI before anything starts."""
    return layout()


@dataclass
class Cgroup:
    """One part's cgroup: a directory per controller on v1, one on v2."""

    name: str
    version: Literal[1, 2]
    dirs: dict[str, Path]
    oom_mark: int = 0  # the OOM kill count when the current scenario started (see `mark`)
    oom_at: float | None = None  # when the first OOM kill since the mark was seen (epoch seconds)
    memory_limit_mb: int | None = None  # the memory limit set last
    idle_mb: float | None = None  # what it used when the limit was set relative to it (`usage_mb`)
    _stop: threading.Event | None = field(default=None, repr=False)

    @property
    def procs_files(self) -> tuple[Path, ...]:
        return tuple(d / "cgroup.procs" for d in dict.fromkeys(self.dirs.values()))

    def _write(self, controller: str, name: str, value: str) -> None:
        (self.dirs[controller] / name).write_text(value)

    def set_cpu(self, cpus: float | None) -> None:
        if self.version == 1:
            self._write("cpu", "cpu.cfs_period_us", str(CFS_PERIOD_US))
            self._write("cpu", "cpu.cfs_quota_us", "-1" if cpus is None else str(round(cpus * CFS_PERIOD_US)))
        else:
            self._write("cpu", "cpu.max", f"{'max' if cpus is None else round(cpus * CFS_PERIOD_US)} {CFS_PERIOD_US}")

    def usage_mb(self) -> int:
        """What it holds now (MiB, rounded up): RSS and page cache, as the limit counts them."""
        name = "memory.usage_in_bytes" if self.version == 1 else "memory.current"
        used = int(self.read("memory", name)) / 2**20
        self.idle_mb = used
        return math.ceil(used)

    def set_memory(self, memory_mb: int | None) -> None:
        """The memory limit, swap included (None: none)."""
        self.memory_limit_mb = memory_mb
        value = "-1" if memory_mb is None else str(memory_mb * 2**20)
        if self.version == 1:
            memsw = (self.dirs["memory"] / "memory.memsw.limit_in_bytes").exists()
            if memsw:  # memsw may never be below the limit: lift it, set the limit, then bring it down to it
                self._write("memory", "memory.memsw.limit_in_bytes", "-1")
            self._write("memory", "memory.limit_in_bytes", value)
            if memsw:
                self._write("memory", "memory.memsw.limit_in_bytes", value)
        else:
            self._write("memory", "memory.max", "max" if memory_mb is None else value)
            if (self.dirs["memory"] / "memory.swap.max").exists():
                self._write("memory", "memory.swap.max", "max" if memory_mb is None else "0")

    def apply(self, limits: ContainerLimits) -> None:
        self.set_cpu(limits.cpus)
        self.set_memory(limits.memory_mb)

    def read(self, controller: str, name: str) -> str:
        return (self.dirs[controller] / name).read_text().strip()

    def oom_kills(self) -> int:
        """Processes the kernel's OOM killer killed in this cgroup so far (v1 memory.oom_control, v2 memory.events)."""
        name = "memory.oom_control" if self.version == 1 else "memory.events"
        for line in self.read("memory", name).splitlines():
            key, _, count = line.partition(" ")
            if key == "oom_kill":
                return int(count)
        return 0

    def mark(self) -> None:
        """Count OOM kills from now on, and watch for the first (its time within OOM_POLL_S)."""
        self.stop_watching()
        self.oom_mark, self.oom_at = self.oom_kills(), None
        stop = self._stop = threading.Event()

        def watch() -> None:
            while not stop.wait(OOM_POLL_S):
                try:
                    if self.oom_kills() > self.oom_mark:
                        self.oom_at = time.time()
                        return
                except OSError:  # removed
                    return

        threading.Thread(target=watch, name=f"oom-watch-{self.name}", daemon=True).start()

    def stop_watching(self) -> None:
        if self._stop is not None:
            self._stop.set()

    def oom_kills_since_mark(self) -> int:
        return self.oom_kills() - self.oom_mark

    def pids(self) -> set[int]:
        found: set[int] = set()
        for procs in self.procs_files:
            with contextlib.suppress(OSError):
                found |= {int(p) for p in procs.read_text().split()}
        return found

    def remove(self) -> None:
        """Kill what is still in it, then remove it (waits for the kernel to empty it)."""
        self.stop_watching()
        remove_dirs(self.dirs.values())


def remove_dirs(dirs: Iterable[Path]) -> None:
    """SIGKILL what is left in each cgroup, then remove it, waiting for the kernel to empty it."""
    pending = list(dict.fromkeys(dirs))
    deadline = time.monotonic() + REMOVE_WAIT_S
    while pending and time.monotonic() < deadline:
        for path in list(pending):
            with contextlib.suppress(OSError, ValueError):
                for pid in (path / "cgroup.procs").read_text().split():
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(int(pid), signal.SIGKILL)
            try:
                path.rmdir()
            except FileNotFoundError:
                pending.remove(path)
            except OSError as exc:
                if exc.errno != errno.EBUSY:
                    raise
            else:
                pending.remove(path)
        if pending:
            time.sleep(0.05)


@dataclass
class StackCgroups:
    """The cgroups of one stack, by role (`celery-worker`, `celery-api`)."""

    stack_id: str
    layout: Layout
    groups: dict[str, Cgroup] = field(default_factory=dict)

    @classmethod
    def create(cls, stack_id: str) -> StackCgroups:
        return cls(stack_id, layout())

    def group(self, role: str, limits: ContainerLimits) -> Cgroup:
        """The role's cgroup with these limits (made on first use)."""
        cgroup = self.groups.get(role)
        if cgroup is None:
            name = f"{PREFIX}{self.stack_id}-{re.sub(r'[^A-Za-z0-9_.@-]', '_', role)}"
            dirs = {c: parent / name for c, parent in self.layout.parents.items()}
            for path in dict.fromkeys(dirs.values()):
                path.mkdir(exist_ok=True)
            cgroup = self.groups[role] = Cgroup(name, self.layout.version, dirs)
        cgroup.apply(limits)
        return cgroup

    def remove(self) -> None:
        for cgroup in self.groups.values():
            cgroup.remove()
        self.groups.clear()


def leftovers(stack_id: str, root: Path = ROOT, proc_cgroup: Path = Path("/proc/self/cgroup")) -> list[Path]:
    """The stack's cgroups still in the tree: in every hierarchy, under this process's cgroup or any ancestor (the
    watchdog was started by the harness, so it is where the harness was)."""
    found: list[Path] = []
    with contextlib.suppress(OSError, ValueError):
        own = _own_paths(proc_cgroup)
        bases = [root / c / own.get(c, "/").lstrip("/") for c in CONTROLLERS]
        unified = root if (root / "cgroup.controllers").exists() else root / "unified"
        bases.append(unified / own.get("", "/").lstrip("/"))
        for base in bases:
            for path in (base, *base.parents):
                if path.is_relative_to(root):
                    found += path.glob(f"{PREFIX}{stack_id}-*")
    return list(dict.fromkeys(found))


def remove_stack(stack_id: str) -> None:
    """Remove whatever cgroups of this stack are left (the watchdog, after a killed harness)."""
    with contextlib.suppress(OSError):
        remove_dirs(leftovers(stack_id))


# --- the command line ------------------------------------------------------------------------------------------

_MEMORY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([MG])?(?:I?B?)\s*$", re.IGNORECASE)


def memory_mb(text: str) -> int:
    """256M, 256Mi, 1G, 1.5Gi (binary units, as Docker's --memory; a bare number is MiB) → MiB."""
    found = _MEMORY.match(text)
    if not found:
        raise argparse.ArgumentTypeError(f"{text!r} is not a memory size: 256M, 1G")
    value = float(found.group(1)) * (1024 if (found.group(2) or "M").upper() == "G" else 1)
    if value < MIN_MEMORY_MB:
        raise argparse.ArgumentTypeError(f"{text}: at least {MIN_MEMORY_MB}M (a Python process needs that to start)")
    return math.ceil(value)


def cpus(text: str) -> float:
    """0.5, 2: CPUs of quota per 100 ms period (Kubernetes' `cpu: 500m` is 0.5)."""
    try:
        value = float(text[:-1]) / 1000 if text.endswith("m") else float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a CPU count: 0.5, 2, 500m") from None
    if not 0.01 <= value <= 1024:
        raise argparse.ArgumentTypeError(f"{text}: between 0.01 and 1024 CPUs")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "container limits", "each part in a cgroup of its own (Linux, root or cgroup v2 delegation; docs/deploy.md)"
    )
    group.add_argument("--worker-cpus", type=cpus, metavar="CPUS", help="each worker's CPU limit: 0.5, 2, 500m")
    group.add_argument(
        "--worker-memory", type=memory_mb, metavar="SIZE", help="each worker's memory limit, swap included: 256M, 1G"
    )
    group.add_argument("--api-cpus", type=cpus, metavar="CPUS", help="each API server's CPU limit")
    group.add_argument("--api-memory", type=memory_mb, metavar="SIZE", help="each API server's memory limit")


def limits_from(args: argparse.Namespace) -> tuple[ContainerLimits, ContainerLimits]:
    """(the workers', the APIs') limits the flags gave."""
    worker = ContainerLimits(cpus=args.worker_cpus, memory_mb=args.worker_memory)
    api = ContainerLimits(cpus=args.api_cpus, memory_mb=args.api_memory)
    return worker, api


def cores_for(settings: RunSettings | None, implementation: str, cores: int, has_worker: bool) -> int:
    """The cores the capacity models see for the job process of `implementation` (its worker, or the API for
    BackgroundTasks): the machine's, or fewer under a CPU limit, rounded up (0.5 CPU runs one process at a time,
    at half speed: the model says one at once, and the makespan rule shows the rest)."""
    if settings is None:
        return cores
    limits = settings.worker_limits if has_worker else settings.api_limits
    if limits.cpus is None:
        return cores
    return max(1, min(cores, math.ceil(limits.cpus)))
