"""CPU and memory of every process of the stack, by PID, on a thread of its own.

A role's CPU is the change of its cumulative CPU seconds between two samples over the wall time between
them (100 % is one full core). A worker's count includes its children, alive (their own times) or already
reaped (the parent's `children_*` times), so the work of short-lived children is counted even when they
live and die between two scans: RQ forks one per job. (`psutil.cpu_percent` on each child would miss
those, and reads a child first seen an instant ago over that instant: RQ once showed 1556 %.)

Memory is RSS, and for the roles in `pss_roles` (the process that runs the scenario's jobs) PSS too: RSS
counts a page shared by a forked pool's processes once in each, so a Celery prefork worker's summed RSS
was twice its PSS here, and an RQ pool's more than three times. PSS splits each shared page among its
sharers, so a tree's PSS adds up to the memory it really holds. Reading it costs ~1.5 ms a process
(`/proc/<pid>/smaps_rollup`), too much four times a second for every process, so each process's shared
part (RSS − PSS) is measured at most once a second and taken from its RSS at every sample: what a job
allocates is private and shows at once, what is shared moves slowly.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from functools import cache
from typing import Literal

import psutil

from taskbench.measure import connections
from taskbench.record.results import Reading, Sample, SystemReading

_MB = 1024 * 1024
# Roles read with their descendants: RabbitMQ's service is a script (the Erlang VM is its child); PostgreSQL
# serves each connection in a process of its own.
TREES = ("rabbitmq", "postgres")
CHILDREN_RESCAN_S = 1.0  # psutil's children() reads every process's /proc stat: ~1.7 ms on a quiet box
SHARED_REMEASURE_S = 1.0  # how old a process's measured RSS − PSS may be
# How old a role's count of connections to PostgreSQL may be (taskbench.measure.connections: one read of the TCP table
# for every role).
CONNECTIONS_RECOUNT_S = 1.0


MemoryMeasure = Literal["pss", "uss", "rss"]


@cache
def memory_measure() -> MemoryMeasure:
    """What this platform reads of a process's own memory: PSS on Linux (`/proc/<pid>/smaps_rollup`), USS where
    psutil has no PSS but USS (macOS, Windows: a forked pool's shared pages count in none of its processes), else
    RSS. Recorded with every run (`environment.machine.job_memory`), and every report names it."""
    fields = getattr(psutil.Process().memory_full_info(), "_fields", ())
    return "pss" if "pss" in fields else "uss" if "uss" in fields else "rss"


class Sampler:
    """`split` roles (the API under --api-workers) are read as a tree, like a worker, and each child process is
    also reported on its own, as `{role}#1`, `{role}#2`, … by pid order."""

    def __init__(
        self,
        pids: Callable[[], dict[str, int]],
        interval_s: float,
        split: frozenset[str] = frozenset(),
        pss_roles: frozenset[str] = frozenset(),
        connection_ports: frozenset[int] = frozenset(),
        remote: Callable[[], dict[str, Reading]] | None = None,
    ) -> None:
        self.pids = pids
        self.interval_s = interval_s
        self.split = split
        self.pss_roles = pss_roles
        self.connection_ports = connection_ports  # PostgreSQL's: the API's and workers' connections to it are counted
        # Readings of processes on other hosts (taskbench.measure.telemetry.RemoteSamples): merged into every sample
        self.remote = remote
        self._connections: dict[str, tuple[float, int]] = {}  # role → (counted at, connections)
        self._counted_at = -CONNECTIONS_RECOUNT_S
        self._remote: set[int] | None = None
        self._shared: dict[int, tuple[float, float]] = {}  # pid → (measured at, RSS − PSS in MB)
        self.samples: list[Sample] = []
        self._known: dict[int, psutil.Process] = {}
        self._spawned: dict[int, bool] = {}
        self._previous: dict[str, tuple[int, float, float]] = {}  # role → (pid, at, cumulative CPU s)
        self._machine_percent = 100.0 * (psutil.cpu_count() or 1)  # every core busy
        self._children: dict[int, tuple[float, list[int]]] = {}  # pid → (scanned at, child pids)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="taskbench-sampler", daemon=True)
        psutil.cpu_percent(None)

    def start(self) -> None:
        self._read()  # prime cpu_percent
        self._thread.start()

    def stop(self) -> list[Sample]:
        self._stop.set()
        self._thread.join(self.interval_s + 5)
        return self.samples

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.samples.append(self._read())

    def read(self) -> Sample:
        """One sample now (what a joined worker's sampler publishes: taskbench.stack.remote_worker)."""
        return self._read()

    def _process(self, pid: int) -> psutil.Process:
        process = self._known.get(pid)
        if process is None:
            process = self._known[pid] = psutil.Process(pid)
        return process

    def _tree(self, pid: int) -> list[psutil.Process]:
        """The process and its descendants; the list is rescanned once a second, not at every sample
        (that scan was 80 % of a sample's cost), and at once when a known child has gone."""
        root = self._process(pid)
        scanned_at, children = self._children.get(pid, (0.0, []))
        now = time.monotonic()
        if now - scanned_at > CHILDREN_RESCAN_S or not all(map(psutil.pid_exists, children)):
            children = [child.pid for child in root.children(recursive=True)]
            self._children[pid] = (now, children)
        return [root, *(self._process(child) for child in children)]

    def _cpu_percent(self, role: str, pid: int, cpu_s: float) -> float:
        """Percent of one core since the previous sample of this role (0 for its first, or a new PID)."""
        now = time.monotonic()
        previous = self._previous.get(role)
        self._previous[role] = (pid, now, cpu_s)
        if previous is None or previous[0] != pid or now <= previous[1]:
            return 0.0
        # A child reaped by someone else takes its seconds away: never below 0, never above the machine.
        percent = 100 * (cpu_s - previous[2]) / (now - previous[1])
        return min(max(percent, 0.0), self._machine_percent)

    def _is_spawned(self, pid: int) -> bool:
        """A uvicorn worker process (multiprocessing's spawn_main), not multiprocessing's resource tracker."""
        if pid not in self._spawned:
            try:
                self._spawned[pid] = "spawn_main" in " ".join(self._process(pid).cmdline())
            except psutil.Error:
                return False  # gone between the scan and now: not counted on its own this time
        return self._spawned[pid]

    @staticmethod
    def _usage(process: psutil.Process, with_reaped_children: bool) -> tuple[float, float]:
        """Cumulative CPU seconds (with those of reaped children, for a tree) and RSS in MB."""
        with process.oneshot():
            times = process.cpu_times()
            cpu_s = times.user + times.system
            if with_reaped_children:
                cpu_s += times.children_user + times.children_system
            return cpu_s, process.memory_info().rss / _MB

    def _pss_mb(self, process: psutil.Process, rss_mb: float) -> float:
        """PSS now: this RSS less the pages it shares with other processes beyond its share of them."""
        now = time.monotonic()
        measured = self._shared.get(process.pid)
        if measured is None or now - measured[0] > SHARED_REMEASURE_S:
            measure = memory_measure()
            full = process.memory_full_info() if measure != "rss" else process.memory_info()
            measured = self._shared[process.pid] = (now, max(full.rss - getattr(full, measure), 0) / _MB)
        return max(rss_mb - measured[1], 0.0)

    def _tree_pss_mb(self, members: list[psutil.Process], usage: list[tuple[float, float]]) -> float | None:
        try:
            return sum(self._pss_mb(process, rss_mb) for process, (_, rss_mb) in zip(members, usage, strict=True))
        except psutil.Error:
            return None  # a member gone meanwhile, or not ours to read (a service started by another user)

    def _connections_to(self, role: str, members: list[psutil.Process], remote: set[int] | None) -> int | None:
        """TCP connections the process tree holds to the servers on `connection_ports`, counted every
        CONNECTIONS_RECOUNT_S (`remote`: the sockets to them, read once for every role), the last count between."""
        if not self.connection_ports or not (role == "api" or role.endswith("-worker")):
            return None
        counted = self._connections.get(role)
        if counted is None or counted[0] != self._counted_at:
            try:
                counted = self._connections[role] = (
                    self._counted_at,
                    connections.held(members, self.connection_ports, remote),
                )
            except psutil.Error:
                return counted[1] if counted else None
        return counted[1]

    def _remote_sockets(self) -> set[int] | None:
        """The sockets to the servers on `connection_ports`, read again every CONNECTIONS_RECOUNT_S."""
        now = time.monotonic()
        if self.connection_ports and now - self._counted_at > CONNECTIONS_RECOUNT_S:
            self._counted_at, self._remote = now, connections.sockets_to(self.connection_ports)
        return self._remote

    def _read(self) -> Sample:
        processes: dict[str, Reading] = {}
        roles = {**self.pids(), "harness": os.getpid()}
        remote = self._remote_sockets()
        for role, pid in roles.items():
            tree = role.endswith("-worker") or role in TREES or role in self.split
            try:
                members = self._tree(pid) if tree else [self._process(pid)]
                usage = [self._usage(process, tree) for process in members]
            except psutil.Error:
                continue  # gone (a fault, or the end of the run): no reading rather than a wrong one
            cpu_s = sum(u[0] for u in usage)
            pss_mb = self._tree_pss_mb(members, usage) if role in self.pss_roles else None
            processes[role] = Reading(
                cpu_percent=self._cpu_percent(role, pid, cpu_s),
                rss_mb=sum(u[1] for u in usage),
                pss_mb=pss_mb,
                connections=self._connections_to(role, members, remote),
            )
            if role in self.split:  # members[0] is the supervisor; the children it spawned serve and run the jobs
                children = sorted(
                    (m.pid, u) for m, u in zip(members[1:], usage[1:], strict=True) if self._is_spawned(m.pid)
                )
                for i, (child, (child_cpu_s, child_rss)) in enumerate(children, 1):
                    name = f"{role}#{i}"
                    processes[name] = Reading(cpu_percent=self._cpu_percent(name, child, child_cpu_s), rss_mb=child_rss)
        if self.remote is not None:
            processes |= self.remote()
        memory = psutil.virtual_memory()
        system = SystemReading(
            cpu_percent=psutil.cpu_percent(None),
            memory_percent=memory.percent,
            memory_used_mb=(memory.total - memory.available) / _MB,
        )
        return Sample(t=time.time(), processes=processes, system=system)
