"""The sampler counts the CPU of a worker's short-lived children (RQ forks one per job)."""

from __future__ import annotations

import subprocess
import sys
import time

import psutil

from taskbench.sampler import Sampler

# A parent that forks one child per "job"; each child burns ~50 ms of CPU and exits before the sampler's
# once-a-second rescan of the tree can see it. At the end the parent prints its reaped children's CPU.
FORKING_WORKER = """
import os, resource, time
deadline = time.monotonic() + 2.0
while time.monotonic() < deadline:
    pid = os.fork()
    if pid == 0:
        end = time.process_time() + 0.05
        while time.process_time() < end:
            pass
        os._exit(0)
    os.waitpid(pid, 0)
    time.sleep(0.02)
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
print(usage.ru_utime + usage.ru_stime, flush=True)
"""


def test_cpu_of_children_that_come_and_go_between_samples_is_counted() -> None:
    worker = subprocess.Popen([sys.executable, "-c", FORKING_WORKER], stdout=subprocess.PIPE, text=True)
    sampler = Sampler(lambda: {"demo-worker": worker.pid}, interval_s=0.2)
    sampler.start()
    out, _ = worker.communicate(timeout=30)
    time.sleep(0.3)  # a last sample after the final reap
    samples = sampler.stop()
    readings = [(s.t, s.processes["demo-worker"].cpu_percent) for s in samples if "demo-worker" in s.processes]
    children_cpu_s = float(out)
    counted_s = sum(percent / 100 * 0.2 for _, percent in readings)
    assert readings and children_cpu_s > 0.3
    assert max(p for _, p in readings) <= 100 * (psutil.cpu_count() or 1)
    assert counted_s >= 0.5 * children_cpu_s, (counted_s, children_cpu_s)
