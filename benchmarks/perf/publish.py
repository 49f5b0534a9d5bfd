"""The plain-Celery baseline of sections 1–3: `python -m benchmarks.perf.publish COUNT PREFIX`, run in Celery's
environment with the stack's variables (`bench.publish_plain`), imports taskbench's Celery app and calls
`apply_async` COUNT times in a loop (ids PREFIX-i, 0 s sleeps): what one ordinary process reaches without HTTP,
records or an event loop in between. It prints when it began, how long it took, its rate and the p50 of one call.

It imports Celery's app and nothing of the harness (no report, no charts): the baseline's process is as plain as
it says, and it starts in a second rather than three.
"""

from __future__ import annotations

import json
import statistics
import sys
import time


def publish(count: int, prefix: str) -> dict[str, float]:
    # the app only now, with the environment pointing at the stack's Redis (the run's key prefix among it)
    from taskbench_service.implementations.celery import run_job

    run_job.apply_async(args=(f"{prefix}-warm", "sleep", 0.0, 0), task_id=f"{prefix}-warm", retry=False)
    latencies = []
    t0 = time.time()
    started = time.perf_counter()
    for i in range(count):
        job_id = f"{prefix}-{i}"
        call = time.perf_counter()
        run_job.apply_async(args=(job_id, "sleep", 0.0, 0), task_id=job_id, retry=False)
        latencies.append(time.perf_counter() - call)
    elapsed = time.perf_counter() - started
    # the median is the harness's percentile(…, 50) (linear interpolation between closest ranks)
    return {"t0": t0, "elapsed_s": elapsed, "rate": count / elapsed, "p50_s": statistics.median(latencies)}


if __name__ == "__main__":
    print(json.dumps(publish(int(sys.argv[1]), sys.argv[2])))
