"""`/health` read as types: what each queue's heartbeat really sends parses, and a missing figure is 0."""

from __future__ import annotations

import pytest

from taskbench.implementations.celery import CeleryBeat
from taskbench.implementations.rq import RqBeat
from taskbench_wire.health import DEFAULT_THREADPOOL_TOKENS, Health, as_beats

pytestmark = pytest.mark.pure  # the fast tier: `pytest -m pure`


def test_heartbeats_of_every_shape_parse() -> None:
    health = Health.of(
        {
            "status": "ok",
            "api": {"pid": 7, "threadpool_tokens": 40, "fastapi_jobs_in_flight": 2, "version": "x"},
            "rq": {"queued": 3, "workers": [{"pid": 11, "pool": 10, "concurrency": 2, "active": 1, "t": 1.0}]},
            "celery": {"workers": [{"pid": 12, "pool": "threads", "concurrency": None, "reserved": 4}]},
            "fastapi": {"processes": [{"pid": 8, "in_flight": 5, "server": 1}]},
        }
    )
    (rq,) = as_beats(RqBeat, health.section("rq").workers)
    assert (rq.pool, rq.concurrency, rq.active, health.section("rq").queued) == ("10", 2, 1, 3)  # RQ: a pool's pid
    (celery,) = as_beats(CeleryBeat, health.section("celery").workers)
    assert (celery.pool, celery.concurrency, celery.reserved) == ("threads", 0, 4)
    (api,) = health.section("fastapi").processes
    assert (api.in_flight, api.threadpool_tokens) == (5, DEFAULT_THREADPOOL_TOKENS)
    assert (health.api.pid, health.api.fastapi_jobs_in_flight) == (7, 2)
    assert health.section("saq").workers == []  # an implementation the service did not report
