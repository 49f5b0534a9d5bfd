"""CPU and memory of every process of the stack, by PID, on a thread of its own.

`cpu_percent(None)` compares with the previous reading of the same `psutil.Process`, so the objects are
kept between samples (and a restarted process gets a fresh one). 100 % is one full core.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable

import psutil

from taskbench.results import Reading, Sample, SystemReading

_MB = 1024 * 1024
CHILDREN_RESCAN_S = 1.0  # psutil's children() reads every process's /proc stat: ~1.7 ms on a quiet box


class Sampler:
    """`split` roles (the API under --api-workers) are read as a tree, like a worker, and each child process is
    also reported on its own, as `{role}#1`, `{role}#2`, … by pid order."""

    def __init__(
        self, pids: Callable[[], dict[str, int]], interval_s: float, split: frozenset[str] = frozenset()
    ) -> None:
        self.pids = pids
        self.interval_s = interval_s
        self.split = split
        self.samples: list[Sample] = []
        self._known: dict[int, psutil.Process] = {}
        self._children: dict[int, tuple[float, list[int]]] = {}  # pid → (scanned at, child pids)
        self._spawned: dict[int, bool] = {}
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

    def _process(self, pid: int) -> psutil.Process:
        process = self._known.get(pid)
        if process is None:
            process = self._known[pid] = psutil.Process(pid)
            process.cpu_percent(None)
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

    def _is_spawned(self, pid: int) -> bool:
        """A uvicorn worker process (multiprocessing's spawn_main), not multiprocessing's resource tracker."""
        if pid not in self._spawned:
            self._spawned[pid] = "spawn_main" in " ".join(self._process(pid).cmdline())
        return self._spawned[pid]

    @staticmethod
    def _reading(process: psutil.Process) -> Reading:
        with process.oneshot():
            return Reading(cpu_percent=process.cpu_percent(None), rss_mb=process.memory_info().rss / _MB)

    def _read(self) -> Sample:
        processes: dict[str, Reading] = {}
        roles = {**self.pids(), "harness": os.getpid()}
        for role, pid in roles.items():
            tree = role.endswith("-worker") or role in self.split
            try:
                readings = [self._reading(p) for p in (self._tree(pid) if tree else [self._process(pid)])]
            except psutil.Error:
                continue  # gone (a fault, or the end of the run): no reading rather than a wrong one
            processes[role] = Reading(
                cpu_percent=sum(r.cpu_percent for r in readings), rss_mb=sum(r.rss_mb for r in readings)
            )
            if role in self.split:  # readings[0] is the supervisor; the children it spawned serve and run the jobs
                children = sorted(
                    (child, reading)
                    for child, reading in zip(self._children[pid][1], readings[1:], strict=True)
                    if self._is_spawned(child)
                )
                processes |= {f"{role}#{i}": reading for i, (_, reading) in enumerate(children, 1)}
        memory = psutil.virtual_memory()
        system = SystemReading(
            cpu_percent=psutil.cpu_percent(None),
            memory_percent=memory.percent,
            memory_used_mb=(memory.total - memory.available) / _MB,
        )
        return Sample(t=time.time(), processes=processes, system=system)
