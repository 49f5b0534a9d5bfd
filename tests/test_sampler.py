"""The sampler counts the CPU of a worker's short-lived children (RQ forks one per job), and the memory of a
forked pool once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from taskbench.measure.sampler import Sampler
from tests.conftest import wait_for

# A parent that forks one child per "job"; each child burns ~50 ms of CPU and exits before the sampler's
# once-a-second rescan of the tree can see it. At the end the parent prints its reaped children's CPU.
FORKING_WORKER = """
import os, resource, time
def children_cpu_s():
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime
deadline = time.monotonic() + 10.0  # on a busy machine the children get less CPU per second: run until they had 0.6 s
while time.monotonic() < deadline and children_cpu_s() < 0.6:
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


# A parent that fills 120 MB and forks 3 children that keep it, shared and untouched; once all are up, it says so
# with the first child's pid, and that child fills 60 MB of its own when sent SIGUSR1 (blocked since before the
# fork, so it cannot come too early), and says so on stdout (then everyone sleeps).
FORKED_POOL = """
import os, signal, sys, time
shared = bytearray(120 * 1024 * 1024)
for i in range(0, len(shared), 4096):
    shared[i] = 1
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
children = []
for n in range(3):
    pid = os.fork()
    if pid == 0:
        if n == 0:
            signal.sigwait({signal.SIGUSR1})
            private = bytearray(60 * 1024 * 1024)
            for i in range(0, len(private), 4096):
                private[i] = 1
            print("allocated", flush=True)  # the child itself, once every page is touched: no timed guess
        time.sleep(60)
        os._exit(0)
    children.append(pid)
print("up", children[0], flush=True)
time.sleep(60)
"""


def test_pss_counts_a_forked_pools_shared_pages_once_and_a_new_private_allocation_at_once() -> None:
    pool = subprocess.Popen([sys.executable, "-c", FORKED_POOL], stdout=subprocess.PIPE, text=True)
    try:
        assert pool.stdout is not None
        up, first_child = pool.stdout.readline().split()
        assert up == "up"
        sampler = Sampler(lambda: {"pool-worker": pool.pid}, interval_s=0.1, pss_roles=frozenset({"pool-worker"}))
        sampler.start()
        wait_for(lambda: any("pool-worker" in s.processes for s in sampler.samples), timeout_s=30)
        before = [s.processes["pool-worker"] for s in sampler.samples if "pool-worker" in s.processes]
        os.kill(int(first_child), signal.SIGUSR1)  # now, not before the samples above: the child allocates
        assert pool.stdout.readline().strip() == "allocated"
        allocated_at = time.time()
        wait_for(lambda: any(s.t > allocated_at for s in sampler.samples), timeout_s=30)  # a loaded machine's pace
        samples = sampler.stop()
    finally:
        for child in psutil.Process(pool.pid).children():
            child.kill()
        pool.kill()
        pool.wait()
    shared = before[-1]
    assert shared.pss_mb is not None
    assert shared.rss_mb > 4 * 120  # every process counts the 120 MB in its RSS
    assert 120 < shared.pss_mb < 120 + 4 * 40  # PSS counts them once, plus each interpreter's own
    after = samples[-1].processes["pool-worker"]
    assert after.pss_mb is not None and after.pss_mb - shared.pss_mb > 50  # the child's 60 MB, private
    assert samples[-1].processes["harness"].pss_mb is None  # a role not asked for: RSS only, no smaps read


def test_where_the_platform_has_no_pss_the_sampler_reads_uss_and_the_run_says_so(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """macOS and Windows: psutil's memory_full_info has USS and no PSS (it used to raise AttributeError here)."""
    from collections import namedtuple

    from taskbench.measure import sampler
    from taskbench.run import provenance

    pfullmem = namedtuple("pfullmem", "rss vms pfaults pageins uss")  # psutil's fields on macOS
    real = psutil.Process.memory_full_info

    def without_pss(self: psutil.Process) -> object:
        full = real(self)
        return pfullmem(full.rss, full.vms, 0, 0, full.uss)

    monkeypatch.setattr(psutil.Process, "memory_full_info", without_pss)
    sampler.memory_measure.cache_clear()
    try:
        assert sampler.memory_measure() == "uss"
        assert provenance.this_machine().job_memory == "uss"
        watch = Sampler(lambda: {"me": os.getpid()}, interval_s=0.05, pss_roles=frozenset({"me"}))
        watch.start()
        time.sleep(0.3)
        readings = [s.processes["me"] for s in watch.stop() if "me" in s.processes]
        assert readings and all(r.pss_mb is not None and 0 < r.pss_mb <= r.rss_mb for r in readings)
    finally:
        sampler.memory_measure.cache_clear()
