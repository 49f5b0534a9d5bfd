"""The baseline of section 11: a bare FastAPI endpoint that only calls one queue's enqueue.

`uvicorn benchmarks.perf.bare_app:app` in implementation NAME's environment (`TASKBENCH_BARE=NAME`, with the
stack's Redis in its environment) serves `POST /NAME/job`: it makes the job's call and hands it to the
implementation's own `submit` — the queue's enqueue as the service makes it — with no record written, no
request model beyond FastAPI's own, nothing else. What the service's `POST /NAME/job` costs the API process
beyond this is what taskbench adds to every submission.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import BackgroundTasks, FastAPI

from taskbench_service import implementations
from taskbench_service.jobs import JobRequest, new_record

NAME = os.environ["TASKBENCH_BARE"]
IMPLEMENTATION = implementations.load(NAME)


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    await IMPLEMENTATION.startup()
    yield
    await IMPLEMENTATION.shutdown()


app = FastAPI(lifespan=lifespan)


@app.post(f"/{NAME}/job", status_code=202)
async def enqueue(background_tasks: BackgroundTasks, request: JobRequest) -> dict[str, str]:
    record = new_record(NAME, request)
    await IMPLEMENTATION.submit(record, background_tasks)
    return {"job_id": record.job_id}
