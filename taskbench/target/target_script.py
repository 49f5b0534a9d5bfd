"""The user's scenario file for `taskbench run --target URL --scenario FILE`: how to submit a job to their deployment
and how to read its status, in their own Python, as a locustfile or a k6 script says how to load a site.

    async def submit(client) -> str              # the job's id
    async def status(client, job_id) -> str      # queued | running | done | failed

`client` is an `httpx.AsyncClient` whose base URL is the target. Loading the file runs it in the harness's process,
with the user's rights: that is the point (the file is theirs, named on their command line), as with a locustfile.
Whatever stops it from loading, or a function missing, not async or not callable with those arguments, is one line
naming the function and the fix (UsageError, exit 2).
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from taskbench.errors import UsageError

STATUSES = ("queued", "running", "done", "failed")
TERMINAL = ("done", "failed")
MODULE_NAME = "taskbench_user_scenario"  # the name the file is imported under (sys.modules)
SIGNATURES = {"submit": ("client",), "status": ("client", "job_id")}


@dataclass(frozen=True)
class Scenario:
    path: Path
    sha256: str
    submit: Callable[[Any], Awaitable[Any]]
    status: Callable[[Any, str], Awaitable[Any]]


def one_line(exc: BaseException, limit: int = 300) -> str:
    """An exception as `Type: message` on one line, cut at `limit` characters."""
    text = " ".join(str(exc).split())
    text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"


def load(path: Path) -> Scenario:
    """Import the scenario file (its folder first on sys.path, so it can import its neighbours, as locust does)."""
    flag = f"--scenario {path}"
    if not path.is_file():
        raise UsageError(f"{flag}: no such file; give the path of a Python file defining submit and status")
    data = path.read_bytes()
    spec = importlib.util.spec_from_file_location(MODULE_NAME, path)
    if spec is None or spec.loader is None:
        raise UsageError(f"{flag}: not a Python file Python can import (name it *.py)")
    module = importlib.util.module_from_spec(spec)
    folder = str(path.resolve().parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    sys.modules[MODULE_NAME] = module
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        raise UsageError(f"{flag}: line {exc.lineno}: {one_line(exc)}") from None
    except BaseException as exc:  # anything the user's module does at import, SystemExit included
        sys.modules.pop(MODULE_NAME, None)
        raise UsageError(f"{flag}: importing it raised {one_line(exc)}") from None
    functions = {name: _function(module, name, flag) for name in SIGNATURES}
    return Scenario(path, hashlib.sha256(data).hexdigest(), functions["submit"], functions["status"])


def _function(module: object, name: str, flag: str) -> Callable[..., Awaitable[Any]]:
    params = ", ".join(SIGNATURES[name])
    wanted = f"`async def {name}({params})`"
    found = getattr(module, name, None)
    if found is None:
        raise UsageError(f"{flag}: {name} is missing: define {wanted}")
    if not callable(found):
        raise UsageError(f"{flag}: {name} is a {type(found).__name__}, not a function: define {wanted}")
    if not inspect.iscoroutinefunction(found):
        raise UsageError(f"{flag}: {name} is not async: define {wanted}")
    try:
        inspect.signature(found).bind(*SIGNATURES[name])
    except TypeError as exc:
        raise UsageError(f"{flag}: {name} cannot be called as {name}({params}) ({exc}): define {wanted}") from None
    except ValueError:  # no signature to read (a builtin): let the trial call decide
        pass
    return cast("Callable[..., Awaitable[Any]]", found)  # an async function, checked above


def job_id(value: object) -> str:
    """What submit returned, as the job's id: a non-empty str (an int is taken as its digits); else ValueError."""
    if isinstance(value, bool) or not isinstance(value, (str, int)) or (isinstance(value, str) and not value):
        raise ValueError(f"submit returned {value!r}, not the job's id (a non-empty str)")
    return str(value)


def status_of(value: object) -> str:
    """What status returned, checked: one of STATUSES; else ValueError."""
    if value not in STATUSES:
        raise ValueError(f"status returned {value!r}, not one of {', '.join(STATUSES)}")
    return str(value)
