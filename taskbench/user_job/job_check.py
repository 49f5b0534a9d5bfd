"""`--job`: the user's own function, checked once before anything starts.

Build the arguments of jobs 0-2 (from `--job-args` or `--job-args-from`); check that every argument list is
JSON (the brokers carry JSON); in a process of its own (taskbench.user_job.job_trial), with a time limit, import it
(timed) from the working directory, as the user's app would, and call it with the first arguments (timed, wall
clock and CPU; up to three calls) to learn whether it is sync or async, what it returns and how long it takes.
Any of these failing is one line naming the cause and the fix (exit 2).
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from taskbench.errors import UsageError
from taskbench.record.results import JobProfile
from taskbench_wire.health import DEFAULT_THREADPOOL_TOKENS

CPU_BOUND_SHARE = 0.5  # a call that keeps a core busy this share of its wall time is judged as `cpu`
JOB_ARGS_CHECKED = 100  # factory arguments checked for JSON before the run (the rest are checked as sent)
JobArgs = Callable[[int], dict[str, Any]]


@dataclass(frozen=True)
class UserJob:
    profile: JobProfile
    args: JobArgs  # the keyword arguments of job number i


def _check_path(path: str, what: str) -> None:
    module_name, sep, attribute = path.partition(":")
    if not sep or not module_name or not attribute.isidentifier():
        raise UsageError(f"{what} {path!r}: write it as package.module:function")


def _import(path: str, what: str) -> tuple[Callable[..., Any], float]:
    _check_path(path, what)
    module_name, _, attribute = path.partition(":")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # the user's working directory, as `python -m` and uvicorn see it
    started = time.perf_counter()
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise UsageError(
            f"{what} {path!r}: cannot import {module_name!r} ({type(exc).__name__}: {exc}); run taskbench from the "
            "directory your app imports from, or set PYTHONPATH"
        ) from exc
    target = getattr(module, attribute, None)
    if not callable(target):
        raise UsageError(f"{what} {path!r}: {module_name} has no callable {attribute!r}")
    return target, time.perf_counter() - started


def _json_object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise UsageError(f"{where}: arguments must be a JSON object of keyword arguments, got {type(value).__name__}")
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"{where}: arguments are not JSON-serialisable ({exc}); brokers carry JSON only") from exc
    return value


def job_args(args_json: str | None, args_from: str | None) -> tuple[JobArgs, str]:
    """The arguments of job number i, and where they come from (for the report)."""
    if args_json is not None and args_from is not None:
        raise UsageError("give --job-args or --job-args-from, not both")
    if args_from is not None:
        factory, _ = _import(args_from, "--job-args-from")
        for i in range(JOB_ARGS_CHECKED):
            try:
                value = factory(i)
            except Exception as exc:
                raise UsageError(f"--job-args-from {args_from}: calling it with {i} raised {exc!r}") from exc
            _json_object(value, f"--job-args-from {args_from}({i})")
        return (lambda i: _json_object(factory(i), f"--job-args-from {args_from}({i})")), f"from {args_from}(i)"
    if args_json is None:
        return (lambda i: {}), "none"
    try:
        parsed = json.loads(args_json)
    except ValueError as exc:
        raise UsageError(f"--job-args: not JSON ({exc}); give an object or a list of objects") from exc
    cycle = parsed if isinstance(parsed, list) else [parsed]
    if not cycle:
        raise UsageError("--job-args: an empty list; give an object or a list of objects")
    checked = [_json_object(value, f"--job-args item {n}") for n, value in enumerate(cycle)]
    return (lambda i: checked[i % len(checked)]), f"--job-args ({len(checked)} cycled)"


TRIAL_CALLS = 3  # job 0, 1, 2: arguments differ (a factory may make every third image larger) …
TRIAL_BUDGET_S = 2.0  # … but no more calls once this much time has gone into them
TRIAL_TIMEOUT_S = 120.0  # without --job-timeout: how long the trial calls may take in all before it is a hang


def _trial(path: str, kwargs: list[dict[str, Any]], timeout_s: float) -> dict[str, Any]:
    """The trial calls in a process of their own (taskbench.user_job.job_trial), within `timeout_s`."""
    request = json.dumps({"path": path, "kwargs": kwargs, "budget_s": TRIAL_BUDGET_S})
    argv = [sys.executable, "-m", "taskbench.user_job.job_trial"]
    # the import path the harness has, the working directory first, as `python -m` and uvicorn see it
    path_entries = [os.getcwd(), *(entry for entry in sys.path if entry)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(dict.fromkeys(path_entries))}
    try:
        done = subprocess.run(argv, input=request, capture_output=True, text=True, timeout=timeout_s, env=env)
    except subprocess.TimeoutExpired:
        raise UsageError(
            f"--job {path}: the trial call did not return within {timeout_s:g} s (--job-timeout); is it stuck?"
        ) from None
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        how = f"signal {-done.returncode}" if done.returncode < 0 else f"exit code {done.returncode}"
        raise UsageError(f"--job {path}: the trial call ended its process ({how}); a job must return, not exit")
    answer: dict[str, Any] = json.loads(lines[-1])
    if "error" in answer:
        raise UsageError(
            f"--job {path}: {answer['error']}; fix the job or its arguments (--job-args / --job-args-from)"
        )
    return answer


def check(path: str, index: int, args: JobArgs, args_source: str, timeout_s: float | None = None) -> UserJob:
    """The job's profile from up to TRIAL_CALLS calls with the first arguments: the mean of their wall clock
    and CPU time is the duration the capacity model's ideal makespan uses. The harness never imports it."""
    _check_path(path, "--job")
    answer = _trial(path, [args(i) for i in range(TRIAL_CALLS)], timeout_s or TRIAL_TIMEOUT_S)
    duration_s, cpu_s, is_async = float(answer["duration_s"]), float(answer["cpu_s"]), bool(answer["is_async"])
    # It keeps a core busy, or it never waited for anything (a busy machine stretches a computation's wall time,
    # never its voluntary context switches)
    never_blocked = int(answer.get("blocked", 1)) == 0 and cpu_s >= 0.001
    cpu_bound = duration_s > 0 and (cpu_s / duration_s >= CPU_BOUND_SHARE or never_blocked)
    behaves_like = "cpu" if cpu_bound and not is_async else ("async_sleep" if is_async else "sleep")
    profile = JobProfile(
        path=path, index=index, is_async=is_async, import_s=float(answer["import_s"]), duration_s=duration_s,
        cpu_s=cpu_s, return_type=str(answer["return_type"]), behaves_like=behaves_like, args=args_source,
        trial_calls=int(answer["calls"]),
    )  # fmt: skip
    return UserJob(profile=profile, args=args)


CONTENDED_THREADS = DEFAULT_THREADPOOL_TOKENS  # Starlette's pool: a CPU-bound job shares one GIL with 39 others


def default_timeout_s(jobs: list[UserJob]) -> float:
    """Long enough for contention, short for a hang: ten times what the slowest function took once, and for
    CPU it burns, three times its turn on a GIL shared by a full threadpool (a 74 ms thumbnail took 5.6 s
    under `BackgroundTasks` at 100 jobs, and a 5 s bound failed it)."""
    return max(
        5.0,
        10 * max((j.profile.duration_s for j in jobs), default=0.0),
        3 * CONTENDED_THREADS * max((j.profile.cpu_s for j in jobs), default=0.0),
    )
