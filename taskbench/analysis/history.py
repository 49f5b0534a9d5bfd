"""A scenario as a Jepsen history (`{stem}.history.jsonl`) and Jepsen's queue checker over it.

**The history** (`history(result)`) is built from what the scenario recorded and nothing else, so a re-render
writes it again from the scenario's JSON. One JSON object a line, in Jepsen's operation shape: `type` (invoke,
ok, fail, info), `f`, `value` (a job id, or null where it is not known), `process`, `time` (integer ns from the
scenario's start), in time order, plus a few fields of taskbench's own that Jepsen ignores.

- Clients, `f: enqueue`, one process per submission (its position in `submissions`): `invoke` at its send, then
  `ok` (a 2xx with the job's id), `fail` (a definite refusal: a 4xx, or a 503 that says why) or `info` (the
  outcome is unknown: a timeout, a reset, no answer, another 5xx, a 2xx without an id), with `status` and `error`.
  The service assigns job ids, so only an `ok` names its job, on its invocation too (Jepsen's `attempts` are
  invocation values); a refused or unanswered submission's job id is not known (null).
- Runners, one process per execution (numbered after the clients, by start time): the ledger's start is a
  delivery, `invoke dequeue` (null) and `ok dequeue` (the id, with `attempt`: 1st, 2nd execution of that id,
  `pid`, `host`) at the same instant, then `invoke execute` (the id); its end is `ok execute` (finished) or
  `fail execute` (the job raised, with `error`); an execution that never ended (its process died mid-job) has
  no completion, as Jepsen leaves a crashed process's operation open. A ledger end without its start is an
  `ok`/`fail execute` alone. Without a ledger (runs recorded before it), each job record's last execution.
- The fault, `process: "nemesis"`, `type: info`, `f` the event (`fault`, `restart`, `recovered`, `restored`,
  `died`), `value` what was done.

Jepsen's own `total-queue` reads the client and dequeue operations of this file as they are (it ignores
`execute` and the nemesis), and counts the same lost and duplicated; it cannot tell recovered from unexpected
here, because an unanswered submission's id is null (below).

**The checker** (`check(operations)`) reads operations only, so a history from elsewhere in the same shape
(integer or string values; dequeues without `execute` operations count as instantaneous executions) is checked
the same way. Per job id, with "executions" the `ok dequeue`s (or an `execute` with no dequeue before it):

- *lost*: acknowledged (an `ok` enqueue) and never dequeued.
- *recovered*: dequeued, not acknowledged, but attempted: named by an enqueue whose outcome was not `ok`, or, as
  the service assigns ids, matched to an anonymous one (a null value) invoked before the id's first execution:
  indeterminate ones (`info`, no completion) first, definite refusals (`fail`) last; each anonymous attempt
  accounts for one id. Jepsen counts a refused-yet-dequeued id as recovered too; `refused_yet_ran` says how
  many, since a `fail` promises that nothing was enqueued.
- *unexpected*: dequeued, never attempted in this history (no enqueue names it and no anonymous one is left).
- *duplicated*: attempted (acknowledged or recovered), dequeued more times than attempted (once, for taskbench's
  unique ids); *concurrent* if two of its executions overlap in time, else *sequential* (a redelivery after the
  first ended or died). An execution that never ended is taken to have died at the first `fault` or `died`
  operation at or after its start (the end of the history if none came).
- *once*: acknowledged and neither lost nor duplicated, so every acknowledged id is exactly one of once,
  duplicated or lost; *exactly-once fraction*: the acknowledged ids executed exactly once, the execution
  finished (ended, `ok` or `fail`), ÷ the acknowledged ids.
- *unfinished*: acknowledged, dequeued, and none of its executions finished (taskbench's "cut off").
- *in flight at the fault*: ids with an execution started at or before the first `fault` and not ended by it.
- *finished without start*: executions known only by their end (a ledger line missing); they count as
  deliveries, of unknown start (left out of "in flight", a point at their end for overlaps).

Jobs delivered to a runner but not yet started at the fault (prefetched, reserved) are not counted: the ledger
is written by the code that runs the job, at its start and end, and nothing records a delivery before that;
the depth samples of sustained load count queued and running jobs, not per-runner deliveries.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, field_validator

from taskbench.analysis.models import HistoryCheck
from taskbench.record.results import EventName, ScenarioResult, Submission

OpType = Literal["invoke", "ok", "fail", "info"]
NEMESIS = "nemesis"
NEMESIS_EVENTS = (
    EventName.fault,
    EventName.restart,
    EventName.recovered,
    EventName.restored,
    EventName.died,
)  # of a scenario's events
DEATHS = (EventName.fault, EventName.died)  # nemesis operations that may end an execution which never ended
NS = 1_000_000_000


class Operation(BaseModel):
    """One line of a history: Jepsen's operation shape, with taskbench's fields beside it (Jepsen ignores them)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    type: OpType
    f: str
    value: str | None = None
    process: int | str
    time: int  # ns from the scenario's start
    attempt: int | None = None  # ok dequeue: the 1st, 2nd … execution of this id
    pid: int | None = None
    host: str | None = None
    status: int | None = None  # enqueue completions: the HTTP status, where one came
    error: str | None = None

    @field_validator("value", mode="before")
    @classmethod
    def _value_as_text(cls, value: object) -> object:
        return str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value


# --- the history from a scenario --------------------------------------------------------------------------------


def _ns(t: float, origin: float) -> int:
    return round((t - origin) * NS)


def enqueue_outcome(submission: Submission) -> OpType:
    """ok: a 2xx with an id; fail: a 4xx, or a 503 that says why; info: the outcome is not known."""
    code = submission.status_code
    if submission.job_id and code is not None and 200 <= code < 300:
        return "ok"
    if code is None:
        return "info"  # a timeout, a reset, no answer
    if 400 <= code < 500:
        return "fail"
    body = (submission.error or "").partition(":")[2].strip()
    return "fail" if code == 503 and body else "info"


def _client_ops(result: ScenarioResult, origin: float) -> list[Operation]:
    ops: list[Operation] = []
    timeout = result.settings.thresholds.submit_timeout_s
    for process, s in enumerate(result.submissions):
        outcome = enqueue_outcome(s)
        value = s.job_id if outcome == "ok" else None
        if s.latency_s is not None:
            done = s.sent_at + s.latency_s
        else:  # when a timeout gave up; another error's moment was not recorded (its send is the bound)
            done = s.sent_at + (timeout if s.error == "timeout" else 0.0)
        ops.append(Operation(type="invoke", f="enqueue", value=value, process=process, time=_ns(s.sent_at, origin)))
        ops.append(
            Operation(
                type=outcome,
                f="enqueue",
                value=value,
                process=process,
                time=_ns(done, origin),
                status=s.status_code,
                error=None if outcome == "ok" else s.error,
            )
        )
    return ops


@dataclass
class _Run:
    """One execution as the ledger (or a record) shows it: its start and end events, either possibly missing."""

    job_id: str
    start: float | None
    end: float | None = None
    ok: bool = True
    error: str | None = None
    pid: int | None = None
    host: str | None = None


def _ledger_runs(result: ScenarioResult) -> list[_Run]:
    """Each start paired with the first later end of the same job id in the same process (host, pid)."""
    runs: list[_Run] = []
    open_runs: dict[tuple[str, str | None, int | None], list[_Run]] = {}
    for e in sorted(result.executions, key=lambda e: (e.t, e.event != "start")):
        key = (e.job_id, e.host, e.pid)
        if e.event == "start":
            run = _Run(e.job_id, start=e.t, pid=e.pid, host=e.host)
            runs.append(run)
            open_runs.setdefault(key, []).append(run)
        elif open_runs.get(key):
            run = open_runs[key].pop(0)
            run.end, run.ok, run.error = e.t, e.ok, e.error
        else:  # an end without its start
            runs.append(_Run(e.job_id, start=None, end=e.t, ok=e.ok, error=e.error, pid=e.pid, host=e.host))
    return runs


def _record_runs(result: ScenarioResult) -> list[_Run]:
    """No ledger: each record's last execution (its start and end stamps)."""
    return [
        _Run(
            j.job_id,
            start=j.started_at,
            end=j.finished_at,
            ok=j.status == "completed",
            error=j.error,
            pid=j.pid,
            host=j.host,
        )
        for j in result.jobs
        if j.started_at is not None or j.finished_at is not None
    ]


def _worker_ops(result: ScenarioResult, origin: float, first_process: int) -> list[Operation]:
    runs = _ledger_runs(result) if result.executions else _record_runs(result)
    runs.sort(key=lambda r: r.start if r.start is not None else r.end or 0.0)
    attempts: Counter[str] = Counter()
    ops: list[Operation] = []
    for process, run in enumerate(runs, start=first_process):
        if run.start is not None:
            attempts[run.job_id] += 1
            at = _ns(run.start, origin)
            ops += [
                Operation(type="invoke", f="dequeue", process=process, time=at),
                Operation(
                    type="ok",
                    f="dequeue",
                    value=run.job_id,
                    process=process,
                    time=at,
                    attempt=attempts[run.job_id],
                    pid=run.pid,
                    host=run.host,
                ),
                Operation(type="invoke", f="execute", value=run.job_id, process=process, time=at),
            ]
        if run.end is not None:
            ops.append(
                Operation(
                    type="ok" if run.ok else "fail",
                    f="execute",
                    value=run.job_id,
                    process=process,
                    time=_ns(run.end, origin),
                    pid=run.pid,
                    host=run.host,
                    error=None if run.ok else run.error,
                )
            )
    return ops


def history(result: ScenarioResult) -> list[Operation]:
    """The scenario's operations in time order (ties: in the order each process made them)."""
    origin = result.started_at
    ops = _client_ops(result, origin)
    ops += _worker_ops(result, origin, first_process=len(result.submissions))
    ops += [
        Operation(type="info", f=e.name, value=e.detail or None, process=NEMESIS, time=_ns(e.t, origin))
        for e in result.events
        if e.name in NEMESIS_EVENTS
    ]
    return sorted(ops, key=lambda op: op.time)  # stable: an invocation stays before its completion


def dumps(operations: Iterable[Operation]) -> str:
    """JSON Lines, one operation a line: Jepsen's fields first (`value` always, null where unknown), then
    taskbench's where they are set."""
    lines = []
    for op in operations:
        extra = op.model_dump(exclude_none=True, exclude={"type", "f", "value", "process", "time"})
        data = {"type": op.type, "f": op.f, "value": op.value, "process": op.process, "time": op.time, **extra}
        lines.append(json.dumps(data, separators=(",", ":")))
    return "".join(line + "\n" for line in lines)


def loads(text: str) -> list[Operation]:
    """A history file's operations (blank lines skipped)."""
    return [Operation.model_validate_json(line) for line in text.splitlines() if line.strip()]


# --- the checker --------------------------------------------------------------------------------------------------


@dataclass
class _Attempt:
    outcome: Literal["ok", "fail", "info", "pending"]  # pending: invoked, never completed (indeterminate)
    value: str | None
    at: int  # when it was invoked


@dataclass
class _Execution:
    job_id: str
    start: int | None  # None: known only by its end
    end: int | None = None
    finished: bool = False  # ended, ok or fail
    executed: bool = False  # an `execute` operation was seen (else an instantaneous dequeue)

    @property
    def first_seen(self) -> int:
        return self.start if self.start is not None else self.end or 0


def _attempts(ops: Sequence[Operation]) -> list[_Attempt]:
    """Each enqueue invocation paired with its process's next completion (Jepsen: a process does one at a time)."""
    attempts: list[_Attempt] = []
    pending: dict[int | str, _Attempt] = {}
    for op in ops:
        if op.f != "enqueue":
            continue
        if op.type == "invoke":
            pending[op.process] = attempt = _Attempt("pending", op.value, op.time)
            attempts.append(attempt)
            continue
        attempt_or_none = pending.pop(op.process, None)
        if attempt_or_none is None:  # a completion with no invocation before it
            attempt_or_none = _Attempt("pending", None, op.time)
            attempts.append(attempt_or_none)
        attempt_or_none.outcome = "ok" if op.type == "ok" else "fail" if op.type == "fail" else "info"
        if op.value is not None:
            attempt_or_none.value = op.value
    return attempts


def _executions(ops: Sequence[Operation]) -> list[_Execution]:
    """Each delivery (`ok dequeue`), with its `execute` start and end on the same process where there are some."""
    executions: list[_Execution] = []
    current: dict[int | str, _Execution] = {}
    for op in ops:
        if op.f == "dequeue" and op.type == "ok" and op.value is not None:
            current[op.process] = run = _Execution(op.value, start=op.time)
            executions.append(run)
        elif op.f == "execute" and op.type == "invoke" and op.value is not None:
            run_or_none = current.get(op.process)
            if run_or_none is None or run_or_none.job_id != op.value or run_or_none.executed:
                run_or_none = _Execution(op.value, start=op.time)  # started with no delivery before it
                executions.append(run_or_none)
                current[op.process] = run_or_none
            run_or_none.executed = True
        elif op.f == "execute" and op.type != "invoke":
            run_or_none = current.pop(op.process, None)
            value = op.value if op.value is not None else run_or_none.job_id if run_or_none else None
            if run_or_none is None or run_or_none.job_id != value:
                if value is None:
                    continue
                run_or_none = _Execution(value, start=None)  # a finish without a start
                executions.append(run_or_none)
            run_or_none.executed = True
            if op.type in ("ok", "fail"):  # info: it may have ended, or not
                run_or_none.end, run_or_none.finished = op.time, True
    for run in executions:
        if not run.executed:  # a plain Jepsen dequeue: delivered, nothing runs after it
            run.end, run.finished = run.start, True
    return executions


def _span(run: _Execution, deaths: Sequence[int]) -> tuple[float, float]:
    """[start, end) of an execution; one that never ended died at the first fault after its start, if any."""
    start = run.start if run.start is not None else run.end
    assert start is not None
    if run.end is not None:
        return float(start), float(run.end)
    return float(start), float(next((t for t in deaths if t >= start), float("inf")))


def _overlap(spans: Sequence[tuple[float, float]]) -> bool:
    ordered = sorted(spans)
    reach = ordered[0][1]
    for start, end in ordered[1:]:
        if start < reach:
            return True
        reach = max(reach, end)
    return False


def _match(ids: list[str], attempts: list[_Attempt], first: dict[str, int]) -> tuple[list[str], list[str]]:
    """Ids (by first execution) matched to anonymous attempts invoked before it, each attempt once: the matched
    ones and the rest. Greedy in time order is a largest matching here: a later id can take every attempt an
    earlier one could."""
    free = sorted(a.at for a in attempts)
    matched, rest = [], []
    taken = 0
    for job_id in sorted(ids, key=lambda i: (first[i], i)):
        if taken < len(free) and free[taken] <= first[job_id]:
            matched.append(job_id)
            taken += 1
        else:
            rest.append(job_id)
    return matched, rest


def check(operations: Sequence[Operation]) -> HistoryCheck:
    """Jepsen's total-queue categories, split and extended as the module says, from a history's operations."""
    ops = list(operations)
    attempts = _attempts(ops)
    executions = _executions(ops)
    nemesis = [op for op in ops if op.process == NEMESIS]
    fault_at = next((op.time for op in nemesis if op.f == EventName.fault), None)
    deaths = sorted(op.time for op in nemesis if op.f in DEATHS)

    acknowledged = list(dict.fromkeys(a.value for a in attempts if a.outcome == "ok" and a.value is not None))
    acked = set(acknowledged)
    tried = Counter(a.value for a in attempts if a.value is not None)
    runs: dict[str, list[_Execution]] = {}
    for run in executions:
        runs.setdefault(run.job_id, []).append(run)
    first = {job_id: min(r.first_seen for r in rs) for job_id, rs in runs.items()}

    recovered, unexpected, refused_yet_ran = _unacknowledged(runs, acked, attempts, tried, first)

    lost = [job_id for job_id in acknowledged if job_id not in runs]
    duplicated = [job_id for job_id in runs if job_id not in unexpected and len(runs[job_id]) > max(tried[job_id], 1)]
    concurrent = [job_id for job_id in duplicated if _overlap([_span(r, deaths) for r in runs[job_id]])]
    dup = set(duplicated)
    once = [job_id for job_id in acknowledged if job_id in runs and job_id not in dup]
    exactly = [job_id for job_id in once if len(runs[job_id]) == 1 and runs[job_id][0].finished]
    unfinished = [job_id for job_id in acknowledged if job_id in runs and not any(r.finished for r in runs[job_id])]
    return HistoryCheck(
        attempted=len(attempts),
        acknowledged=len(acknowledged),
        refused=sum(a.outcome == "fail" for a in attempts),
        indeterminate=sum(a.outcome in ("info", "pending") for a in attempts),
        dequeued=len(runs),
        executions=len(executions),
        once=len(once),
        lost=len(lost),
        recovered=len(recovered),
        refused_yet_ran=refused_yet_ran,
        unexpected=len(unexpected),
        duplicated=len(duplicated),
        concurrent=len(concurrent),
        sequential=len(duplicated) - len(concurrent),
        unfinished=len(unfinished),
        finished_without_start=sum(r.start is None for r in executions),
        exactly_once=len(exactly) / len(acknowledged) if acknowledged else None,
        in_flight_at_fault=_in_flight_at(executions, fault_at),
        valid=not lost and not unexpected,
        lost_ids=lost,
        recovered_ids=recovered,
        unexpected_ids=sorted(unexpected, key=lambda i: (first[i], i)),
        duplicated_ids=duplicated,
        concurrent_ids=concurrent,
        unfinished_ids=unfinished,
    )


def check_scenario(result: ScenarioResult) -> HistoryCheck:
    """The checker over the scenario's own history (what `{stem}.history.jsonl` holds)."""
    return check(history(result))


__all__ = ["Operation", "check", "check_scenario", "dumps", "enqueue_outcome", "history", "loads"]


def _unacknowledged(
    runs: dict[str, list[_Execution]],
    acked: set[str],
    attempts: list[_Attempt],
    tried: Counter[str],
    first: dict[str, int],
) -> tuple[list[str], list[str], int]:
    """Dequeued but not acknowledged: attempted by name, else matched to an anonymous attempt (both recovered),
    else unexpected; and how many of them ran though their attempt was refused. Counts each match as an attempt
    in `tried`."""
    unacked = [job_id for job_id in runs if job_id not in acked]
    named = {job_id for job_id in unacked if tried[job_id]}
    refused_named = {
        job_id
        for job_id in named
        if all(a.outcome == "fail" for a in attempts if a.value == job_id)  # no indeterminate attempt names it
    }
    anonymous = [a for a in attempts if a.value is None and a.outcome != "ok"]
    unsure, rest = _match([i for i in unacked if i not in named], [a for a in anonymous if a.outcome != "fail"], first)
    refused, unexpected = _match(rest, [a for a in anonymous if a.outcome == "fail"], first)
    for job_id in (*unsure, *refused):
        tried[job_id] += 1
    recovered = [i for i in unacked if i in named or i in unsure or i in refused]
    return recovered, unexpected, len(refused_named) + len(refused)


def _in_flight_at(executions: Sequence[_Execution], fault_at: float | None) -> int | None:
    """Jobs running when the fault struck."""
    if fault_at is None:
        return None
    return len(
        {
            r.job_id
            for r in executions
            if r.start is not None and r.start <= fault_at and (r.end is None or r.end > fault_at)
        }
    )
