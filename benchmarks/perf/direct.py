"""The baseline of section 7: a queue fed straight by its own enqueue API from a process of its own.

`python -m benchmarks.perf.direct NAME COUNT PREFIX` (with the stack's environment) starts the service side
of implementation NAME without HTTP and without records, enqueues COUNT `noop` jobs with ids PREFIX-i through
the implementation's own `submit` (the queue's enqueue call, nothing more), and prints when it began. The
same worker runs them; their end times come from the ledger, as for jobs sent through the API.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

from fastapi import BackgroundTasks

from taskbench_service import implementations
from taskbench_service.jobs import JobRequest, new_record
from taskbench_service.workloads import Kind


async def feed(name: str, count: int, prefix: str) -> dict[str, float]:
    impl = implementations.load(name)
    await impl.startup()
    try:
        records = []
        for i in range(count):
            record = new_record(name, JobRequest(duration=0, kind=Kind.noop))
            records.append(record.model_copy(update={"job_id": f"{prefix}-{i}"}))
        t0 = time.time()
        started = time.perf_counter()
        for record in records:
            await impl.submit(record, BackgroundTasks())
        return {"t0": t0, "elapsed_s": time.perf_counter() - started}
    finally:
        await impl.shutdown()


if __name__ == "__main__":
    name, count, prefix = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    print(json.dumps(asyncio.run(feed(name, count, prefix))))
