"""A scenario's history in Jepsen's operation shape and the queue checker over it (taskbench.analysis.history):
hand-built histories for each category and its edge cases, properties over generated ones, and the round trip
ScenarioResult → history.jsonl → checker on the recorded run in tests/fixtures/small_run."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Literal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from taskbench.analysis import history, stats
from taskbench.analysis.history import Operation, check
from taskbench.analysis.models import HistoryCheck
from taskbench.record.results import Event, Execution, ScenarioResult, Submission, load_scenario
from taskbench.report import files

pytestmark = pytest.mark.pure  # the fast tier: `pytest -m pure`

FIXTURE = Path(__file__).parent / "fixtures" / "small_run"
SCENARIOS = sorted(FIXTURE.glob("*_jobs_*.json"))


class History:
    """A history written by hand: each enqueue and each execution on a process of its own, in time order."""

    def __init__(self) -> None:
        self.ops: list[Operation] = []
        self.processes = 0

    def _process(self) -> int:
        self.processes += 1
        return self.processes - 1

    def enqueue(self, job_id: str | None, at: int, outcome: str = "ok") -> History:
        process = self._process()
        self.ops.append(Operation(type="invoke", f="enqueue", value=job_id, process=process, time=at))
        self.ops.append(Operation.model_validate(
            {"type": outcome, "f": "enqueue", "value": job_id, "process": process, "time": at + 1}))  # fmt: skip
        return self

    def run(self, job_id: str, start: int, end: int | None = None, outcome: str = "ok") -> History:
        """A delivery and its execution: never ended when `end` is None (its process died mid-job)."""
        process = self._process()
        self.ops += [
            Operation(type="invoke", f="dequeue", process=process, time=start),
            Operation(type="ok", f="dequeue", value=job_id, process=process, time=start),
            Operation(type="invoke", f="execute", value=job_id, process=process, time=start),
        ]
        if end is not None:
            self.ops.append(Operation.model_validate(
                {"type": outcome, "f": "execute", "value": job_id, "process": process, "time": end}))  # fmt: skip
        return self

    def finish_only(self, job_id: str, end: int) -> History:
        self.ops.append(Operation(type="ok", f="execute", value=job_id, process=self._process(), time=end))
        return self

    def fault(self, at: int, name: str = "fault") -> History:
        self.ops.append(Operation(type="info", f=name, value="SIGKILL the worker", process="nemesis", time=at))
        return self

    def sorted(self) -> list[Operation]:
        return sorted(self.ops, key=lambda op: op.time)

    def check(self) -> HistoryCheck:
        result = check(self.sorted())
        assert check(history.loads(history.dumps(self.sorted()))) == result  # the file says the same
        return result


# --- each category, by hand ---------------------------------------------------------------------------------


def test_every_job_run_once_to_its_end_is_exactly_once_and_valid() -> None:
    h = History().enqueue("a", 0).enqueue("b", 2).run("a", 10, 20).run("b", 11, 21).check()
    assert (h.attempted, h.acknowledged, h.dequeued, h.executions, h.once) == (2, 2, 2, 2, 2)
    assert (h.lost, h.recovered, h.unexpected, h.duplicated, h.unfinished) == (0, 0, 0, 0, 0)
    assert h.exactly_once == 1.0 and h.valid and h.in_flight_at_fault is None


def test_an_acknowledged_job_no_runner_started_is_lost() -> None:
    h = History().enqueue("a", 0).enqueue("b", 2).run("a", 10, 20).check()
    assert h.lost == 1 and h.lost_ids == ["b"] and not h.valid
    assert h.exactly_once == 0.5 and h.once == 1


def test_a_job_started_twice_at_once_is_a_concurrent_duplicate() -> None:
    h = History().enqueue("a", 0).run("a", 10, 30).run("a", 20, 40).check()
    assert (h.duplicated, h.concurrent, h.sequential) == (1, 1, 0)
    assert h.duplicated_ids == h.concurrent_ids == ["a"] and h.once == 0 and h.exactly_once == 0.0
    assert h.valid  # Jepsen's total-queue allows duplicates: at least once


def test_a_job_redelivered_after_its_worker_died_is_a_sequential_duplicate() -> None:
    h = History().enqueue("a", 0).enqueue("b", 2).run("a", 10).run("b", 11, 15).fault(50).run("a", 80, 90).check()
    assert (h.duplicated, h.concurrent, h.sequential) == (1, 0, 1)
    assert h.in_flight_at_fault == 1  # a: started, not ended at the fault; b had ended
    assert h.unfinished == 0  # its second execution finished
    assert h.exactly_once == 0.5  # b only: a ran twice


def test_without_a_fault_an_execution_that_never_ended_runs_on_beside_the_next() -> None:
    """Nothing says it died before the redelivery started: for all the history shows, both ran at once."""
    h = History().enqueue("a", 0).run("a", 10).run("a", 80, 90).check()
    assert (h.concurrent, h.sequential) == (1, 0)


def test_a_job_cut_off_mid_run_is_delivered_not_lost() -> None:
    h = History().enqueue("a", 0).enqueue("b", 1).run("a", 10).fault(20).check()
    assert h.lost_ids == ["b"] and h.unfinished_ids == ["a"] and h.once == 1
    assert h.in_flight_at_fault == 1 and h.exactly_once == 0.0


def test_a_timeout_whose_job_ran_is_recovered() -> None:
    h = History().enqueue("a", 0).enqueue(None, 1, "info").run("a", 10, 20).run("x", 12, 22).check()
    assert (h.recovered, h.unexpected, h.indeterminate) == (1, 0, 1) and h.recovered_ids == ["x"]
    assert h.valid and h.refused_yet_ran == 0


def test_a_job_that_started_before_any_unanswered_submission_was_sent_is_unexpected() -> None:
    h = History().enqueue(None, 30, "info").run("x", 12, 22).check()
    assert (h.recovered, h.unexpected) == (0, 1) and h.unexpected_ids == ["x"] and not h.valid


def test_each_unanswered_submission_accounts_for_one_job() -> None:
    ops = History().enqueue(None, 0, "info").enqueue(None, 1, "info")
    h = ops.run("x", 10, 20).run("y", 11, 21).run("z", 12, 22).check()
    assert (h.recovered, h.unexpected) == (2, 1) and h.unexpected_ids == ["z"]  # the last to start


def test_a_refused_submission_whose_job_ran_is_recovered_and_said() -> None:
    h = History().enqueue(None, 0, "fail").run("x", 10, 20).check()
    assert (h.refused, h.recovered, h.refused_yet_ran, h.unexpected) == (1, 1, 1, 0)


def test_an_indeterminate_submission_accounts_before_a_refused_one() -> None:
    h = History().enqueue(None, 0, "fail").enqueue(None, 1, "info").run("x", 10, 20).check()
    assert (h.recovered, h.refused_yet_ran) == (1, 0)


def test_a_job_never_submitted_is_unexpected_and_never_duplicated() -> None:
    h = History().enqueue("a", 0).run("a", 5, 9).run("ghost", 10, 20).run("ghost", 30, 40).check()
    assert h.unexpected_ids == ["ghost"] and h.duplicated == 0 and not h.valid
    assert h.dequeued == 2 and h.executions == 3


def test_a_finish_without_a_start_counts_as_a_delivery() -> None:
    h = History().enqueue("a", 0).finish_only("a", 20).fault(10).check()
    assert h.lost == 0 and h.finished_without_start == 1 and h.exactly_once == 1.0
    assert h.in_flight_at_fault == 0  # its start is not known


def test_a_job_that_raised_ran_to_its_end() -> None:
    h = History().enqueue("a", 0).run("a", 10, 20, outcome="fail").check()
    assert h.exactly_once == 1.0 and h.unfinished == 0


def test_a_plain_jepsen_queue_history_is_checked_as_jepsen_would() -> None:
    """Integer values, dequeues with no `execute`: each dequeue is a delivery that ends at once."""
    lines = [
        {"type": "invoke", "f": "enqueue", "value": 1, "process": 0, "time": 0},
        {"type": "ok", "f": "enqueue", "value": 1, "process": 0, "time": 1},
        {"type": "invoke", "f": "enqueue", "value": 2, "process": 0, "time": 2},
        {"type": "ok", "f": "enqueue", "value": 2, "process": 0, "time": 3},
        {"type": "invoke", "f": "enqueue", "value": 3, "process": 1, "time": 4},
        {"type": "info", "f": "enqueue", "value": 3, "process": 1, "time": 5},
        *(
            op
            for i, value in enumerate((1, 1, 3))
            for op in (
                {"type": "invoke", "f": "dequeue", "value": None, "process": 2, "time": 10 + 2 * i},
                {"type": "ok", "f": "dequeue", "value": value, "process": 2, "time": 11 + 2 * i},
            )
        ),
        {"type": "info", "f": "start", "value": None, "process": "nemesis", "time": 20},
    ]
    h = check(history.loads("\n".join(json.dumps(line) for line in lines)))
    assert (h.lost_ids, h.recovered_ids, h.duplicated_ids) == (["2"], ["3"], ["1"])
    assert (h.sequential, h.unexpected, h.valid) == (1, 0, False)


@pytest.mark.parametrize(
    ("status", "error", "outcome"),
    [
        (202, None, "ok"),
        (422, 'HTTP 422: {"detail": "duration"}', "fail"),
        (503, 'HTTP 503: {"detail": "Redis unavailable"}', "fail"),
        (503, "HTTP 503: ", "info"),
        (500, "HTTP 500: Internal Server Error", "info"),
        (None, "timeout", "info"),
        (None, "Connection reset by peer", "info"),
    ],
)
def test_each_answer_is_an_enqueue_outcome(status: int | None, error: str | None, outcome: str) -> None:
    job_id = "a" if status == 202 else None
    submission = Submission(index=0, sent_at=0.0, latency_s=None, status_code=status, job_id=job_id, error=error)
    assert history.enqueue_outcome(submission) == outcome


# --- properties -------------------------------------------------------------------------------------------------

FATES = ("once", "lost", "concurrent", "sequential", "unfinished", "raised")
FAULT_AT = 1_000_000


@st.composite
def fated(draw: st.DrawFn) -> tuple[list[Operation], list[str], int, int]:
    """A history whose every acknowledged job has a drawn fate, with `recovered` jobs of unanswered submissions and
    `unexpected` ones that started before any unanswered submission was sent."""
    fates = draw(st.lists(st.sampled_from(FATES), max_size=40))
    recovered = draw(st.integers(0, 5))
    unexpected = draw(st.integers(0, 5))
    never_ran = draw(st.integers(0, 3))  # unanswered or refused, sent after every start: they account for none
    h = History()
    for i in range(unexpected):
        h.run(f"u{i}", start=1 + i, end=500)
    for i in range(recovered):
        h.enqueue(None, 100 + i, draw(st.sampled_from(("info", "info", "fail"))))
    for i, fate in enumerate(fates):
        job, t = f"j{i}", 1000 + 10 * i
        h.enqueue(job, t)
        if fate == "once":
            h.run(job, t + 5, t + 400)
        elif fate == "raised":
            h.run(job, t + 5, t + 400, outcome="fail")
        elif fate == "concurrent":
            h.run(job, t + 5, t + 400).run(job, t + 100, t + 900)
        elif fate == "sequential":
            h.run(job, t + 5).run(job, FAULT_AT + 100 + i, FAULT_AT + 900 + i)
        elif fate == "unfinished":
            h.run(job, t + 5)
    for i in range(recovered):
        h.run(f"r{i}", start=5000 + i, end=6000)
    for i in range(never_ran):
        h.enqueue(None, FAULT_AT * 2 + i, draw(st.sampled_from(("info", "fail"))))
    h.fault(FAULT_AT)
    return h.sorted(), fates, recovered, unexpected


@settings(max_examples=150, deadline=None, database=None)
@given(fated())
def test_a_generated_history_is_counted_as_generated(drawn: tuple[list[Operation], list[str], int, int]) -> None:
    ops, fates, recovered, unexpected = drawn
    h = check(ops)
    n = Counter(fates)
    assert h.acknowledged == len(fates)
    assert h.lost == n["lost"]
    assert (h.duplicated, h.concurrent, h.sequential) == (
        n["concurrent"] + n["sequential"],
        n["concurrent"],
        n["sequential"],
    )
    assert h.once == n["once"] + n["raised"] + n["unfinished"]
    assert h.unfinished == n["unfinished"]
    assert (h.recovered, h.unexpected) == (recovered, unexpected)
    assert h.in_flight_at_fault == n["unfinished"] + n["sequential"]  # running at the fault, never ended there
    if fates:
        assert h.exactly_once == pytest.approx((n["once"] + n["raised"]) / len(fates))
    else:
        assert h.exactly_once is None
    assert h.valid == (not n["lost"] and not unexpected)


@st.composite
def any_history(draw: st.DrawFn) -> list[Operation]:
    """Submissions of every outcome and executions of ids drawn from a small pool, in any order of times."""
    h = History()
    pool = [f"j{i}" for i in range(8)]
    for job in draw(st.lists(st.sampled_from(pool), unique=True)):
        h.enqueue(job, draw(st.integers(0, 100)))
    for _ in range(draw(st.integers(0, 4))):
        h.enqueue(None, draw(st.integers(0, 100)), draw(st.sampled_from(("info", "fail"))))
    for _ in range(draw(st.integers(0, 16))):
        start = draw(st.integers(0, 200))
        end = draw(st.one_of(st.none(), st.integers(start, 300)))
        h.run(draw(st.sampled_from([*pool, "ghost"])), start, end, draw(st.sampled_from(("ok", "fail"))))
    if draw(st.booleans()):
        h.fault(draw(st.integers(0, 300)))
    return h.sorted()


@settings(max_examples=300, deadline=None, database=None)
@given(any_history())
def test_the_categories_always_add_up(ops: list[Operation]) -> None:
    h = check(ops)
    acknowledged = {op.value for op in ops if op.f == "enqueue" and op.type == "ok"}
    duplicated = set(h.duplicated_ids)
    # every acknowledged id is exactly one of: once, duplicated, lost
    assert h.once + len(duplicated & acknowledged) + h.lost == h.acknowledged == len(acknowledged)
    assert not set(h.lost_ids) & duplicated
    assert h.concurrent + h.sequential == h.duplicated and set(h.concurrent_ids) <= duplicated
    dequeued = {op.value for op in ops if op.f == "dequeue" and op.type == "ok"}
    assert h.dequeued == len(dequeued)
    assert h.recovered + h.unexpected == len(dequeued - acknowledged)
    assert h.refused_yet_ran <= h.recovered <= h.refused + h.indeterminate
    assert not set(h.unexpected_ids) & duplicated
    assert set(h.unfinished_ids) <= acknowledged - set(h.lost_ids)
    assert h.exactly_once is None or 0.0 <= h.exactly_once <= h.once / h.acknowledged
    assert h.valid == (h.lost == 0 and h.unexpected == 0)
    assert check(history.loads(history.dumps(ops))) == h


# --- the recorded run -----------------------------------------------------------------------------------------


def _fault_at(result: ScenarioResult) -> float | None:
    return next((e.t for e in result.events if e.name == "fault"), None)


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
def test_a_recorded_scenario_round_trips_through_its_history_file(path: Path, tmp_path: Path) -> None:
    result = load_scenario(path)
    name = files.write_scenario_data(tmp_path, "20990101_000000", result)
    written = tmp_path / name.replace(".json", ".history.jsonl")
    ops = history.loads(written.read_text())
    assert check(ops) == history.check_scenario(result)
    assert all(op.type in ("invoke", "ok", "fail", "info") for op in ops)
    assert [op.time for op in ops] == sorted(op.time for op in ops)
    # the history holds every submission and every ledger event, and nothing else but the fault's events
    assert sum(op.f == "enqueue" and op.type == "invoke" for op in ops) == len(result.submissions)
    assert sum(op.f == "dequeue" and op.type == "ok" for op in ops) == sum(
        e.event == "start" for e in result.executions
    )
    assert sum(op.f == "execute" and op.type != "invoke" for op in ops) == sum(
        e.event == "end" for e in result.executions
    )


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
def test_the_checker_agrees_with_the_ledger_and_with_stats(path: Path) -> None:
    """Straight from the ScenarioResult: an accepted id with no start is lost; one start, once; more, duplicated.
    Against `stats.execution_summary`: its `lost` counts every job that did not complete (never started, cut off,
    or raised), Jepsen's only those never started; its `cut_off` is the checker's `unfinished`."""
    result = load_scenario(path)
    h = history.check_scenario(result)
    accepted = [s.job_id for s in result.submissions if s.job_id]
    starts = Counter(e.job_id for e in result.executions if e.event == "start")
    assert h.acknowledged == len(accepted)
    assert set(h.lost_ids) == {j for j in accepted if not starts[j]}
    assert h.once == sum(starts[j] == 1 for j in accepted)
    assert set(h.duplicated_ids) == {j for j in starts if starts[j] > 1}
    e = stats.execution_summary(result, _fault_at(result))
    assert (e.accepted, e.never_started, e.cut_off) == (h.acknowledged, h.lost, h.unfinished)
    assert set(h.lost_ids) | set(h.unfinished_ids) <= set(e.lost_ids)
    assert e.duplicated <= h.duplicated and e.recovered <= h.sequential + h.concurrent
    assert e.completed_once == round((h.exactly_once or 0.0) * h.acknowledged)  # no job raised here


def test_the_recorded_api_crash_scenarios_under_the_checker() -> None:
    """BackgroundTasks' 8 jobs were all running when the API was killed: delivered, every one cut off (stats'
    "lost 8 (8 cut off)"); Jepsen loses none of them (nothing waited in a queue) but none ran exactly once.
    Celery's 4 in flight were in its worker, which the API's crash did not touch."""
    fastapi = history.check_scenario(load_scenario(FIXTURE / "fastapi_api-crash_8_jobs_20261125_061235.json"))
    assert (fastapi.lost, fastapi.unfinished, fastapi.in_flight_at_fault, fastapi.exactly_once) == (0, 8, 8, 0.0)
    celery = history.check_scenario(load_scenario(FIXTURE / "celery_api-crash_8_jobs_20261125_061235.json"))
    assert (celery.lost, celery.unfinished, celery.in_flight_at_fault, celery.exactly_once) == (0, 0, 4, 1.0)
    assert fastapi.valid and celery.valid


def test_a_recorded_scenario_with_every_category_added() -> None:
    """The Celery api-crash run with what other faults leave: a timeout whose job ran, a job never submitted
    (before the burst), a redelivery after a killed execution, two executions at once, and a finish without a
    start; read from its history file as from the result."""
    result = load_scenario(FIXTURE / "celery_api-crash_8_jobs_20261125_061235.json")
    first = result.submissions[0].sent_at
    fault = _fault_at(result)
    assert fault is not None
    acked = [s.job_id for s in result.submissions if s.job_id]

    def ledger(job_id: str, event: Literal["start", "end"], t: float, pid: int) -> Execution:
        return Execution(job_id=job_id, implementation="celery", event=event, t=t, pid=pid, host="vm")

    timeout = Submission(index=8, sent_at=first + 0.01, latency_s=None, error="timeout")
    killed = [e for e in result.executions if e.job_id == acked[0] and e.event == "end"]
    changed = result.model_copy(
        update={
            "submissions": [*result.submissions, timeout],
            "executions": [
                *(e for e in result.executions if e not in killed),  # acked[0]'s first run never ended …
                ledger(acked[0], "start", fault + 5.0, 999),  # … and ran again after the fault
                ledger(acked[0], "end", fault + 5.5, 999),
                ledger(acked[1], "start", fault - 0.2, 998),  # a second run while the first still ran
                ledger(acked[1], "end", fault + 0.3, 998),
                ledger("from-the-timeout", "start", first + 1.0, 997),
                ledger("from-the-timeout", "end", first + 1.5, 997),
                ledger("never-sent", "start", first - 1.0, 996),
                ledger("never-sent", "end", first - 0.5, 996),
                ledger(acked[2], "end", first + 3.0, 995),  # an end whose start the ledger lacks
            ],
            "events": [*result.events, Event(t=fault + 0.1, name="died", detail="celery worker")],
        }
    )
    h = check(history.loads(history.dumps(history.history(changed))))
    assert h == history.check_scenario(changed)
    assert (h.attempted, h.acknowledged, h.indeterminate) == (9, 8, 1)
    assert (h.recovered_ids, h.unexpected_ids) == (["from-the-timeout"], ["never-sent"])
    assert set(h.duplicated_ids) == {acked[0], acked[1], acked[2]} and h.concurrent_ids == [acked[1]]
    assert (h.sequential, h.finished_without_start, h.lost) == (2, 1, 0)  # acked[2]'s end alone: a sequential one
    assert h.exactly_once == 5 / 8 and h.in_flight_at_fault == 4  # the burst's first four, acked[1] once
    dequeues = [op for op in history.history(changed) if op.f == "dequeue" and op.value == acked[0]]
    assert [op.attempt for op in dequeues] == [1, 2] and dequeues[1].pid == 999


def test_rerender_writes_each_history_again_from_the_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "run"
    folder.mkdir()
    for source in FIXTURE.iterdir():
        (folder / source.name).write_bytes(source.read_bytes())
    monkeypatch.setattr(files, "write_run", lambda folder, analysed, scenarios: folder / "comparison.md")
    files.rerender(folder)
    written = sorted(folder.glob("*.history.jsonl"))
    assert [p.name.removesuffix(".history.jsonl") for p in written] == sorted(p.stem for p in SCENARIOS)
    for path in written:
        result = load_scenario(path.with_name(path.name.replace(".history.jsonl", ".json")))
        assert path.read_text() == history.dumps(history.history(result))
