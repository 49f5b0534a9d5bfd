"""`--job`'s trial calls, in a process of their own: a job that hangs, exits (`SystemExit`, `os._exit`) or is
killed by a signal cannot take the harness with it; `taskbench.user_job.job_check` waits with a time limit and turns
what happened into one line.

    python -m taskbench.user_job.job_trial     (stdin: {"path", "kwargs": [...], "budget_s"}; stdout: one JSON line)
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import json
import resource
import sys
import time
import traceback
from typing import Any


def trial(path: str, kwargs: list[dict[str, Any]], budget_s: float) -> dict[str, Any]:
    """Import the function (timed) and call it with each of `kwargs` until the budget is spent (at least once)."""
    module_name, _, attribute = path.partition(":")
    started = time.perf_counter()
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        return {
            "error": f"cannot import {module_name!r} ({type(exc).__name__}: {exc}); run taskbench from the "
            "directory your app imports from, or set PYTHONPATH"
        }
    target = getattr(module, attribute, None)
    if not callable(target):
        return {"error": f"{module_name} has no callable {attribute!r}"}
    import_s = time.perf_counter() - started
    is_async = inspect.iscoroutinefunction(target)
    blocked_before = resource.getrusage(resource.RUSAGE_SELF).ru_nvcsw
    cpu_before, started = time.process_time(), time.perf_counter()
    result: Any = None
    calls = 0
    for arguments in kwargs:
        if calls and time.perf_counter() - started >= budget_s:
            break
        try:
            result = asyncio.run(target(**arguments)) if is_async else target(**arguments)
        except Exception as exc:
            return {"error": f"the trial call with {json.dumps(arguments)} raised {type(exc).__name__}: {exc}",
                    "traceback": traceback.format_exc()}  # fmt: skip
        calls += 1
    return {
        "is_async": is_async,
        "import_s": import_s,
        "duration_s": (time.perf_counter() - started) / calls,
        "cpu_s": (time.process_time() - cpu_before) / calls,
        # voluntary context switches: a job that waits (sleep, I/O) gives up the CPU; one that computes never
        # does, however long a busy machine makes it wait for a core
        "blocked": resource.getrusage(resource.RUSAGE_SELF).ru_nvcsw - blocked_before,
        "return_type": type(result).__name__,
        "calls": calls,
    }


def main() -> None:
    request = json.loads(sys.stdin.read())
    out = sys.stdout
    sys.stdout = sys.stderr  # what the job prints is not the answer
    answer = trial(request["path"], request["kwargs"], request["budget_s"])
    out.write(json.dumps(answer) + "\n")
    out.flush()


if __name__ == "__main__":
    main()
