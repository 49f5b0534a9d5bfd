"""`--app QUEUE=package.module:attribute`, the part every queue shares: the options that hold the user's app and
the settings read from it, and the child process that reads them (in the queue's environment, from the user's
working directory, before anything starts). Each queue brings its own probe: what its app is, and which of its
settings decide timing and delivery."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, field_serializer, field_validator

from taskbench.errors import UsageError

READ_TIMEOUT_S = 120.0  # importing a large project (Django's settings, say) takes a while

# The start of every probe: run with argv[1] the app's path, it writes one JSON line, {"settings": {...}} or
# {"error": "..."}, whatever the app prints as it imports; `found` is the attribute, `text` a setting as text.
PROBE_HEAD = r"""
import importlib, json, sys
out, sys.stdout = sys.stdout, sys.stderr  # what the app prints as it imports is not the answer
path = sys.argv[1]
module_name, _, attribute = path.partition(":")

def answer(**fields):
    out.write(json.dumps(fields) + "\n")
    out.flush()
    raise SystemExit(0)

def text(value):
    if value is None or isinstance(value, (bool, int, float, str)):
        return str(value)
    if hasattr(value, "total_seconds"):
        return str(value.total_seconds())
    if isinstance(value, (list, tuple, set, frozenset)) and all(isinstance(v, str) for v in value):
        return ", ".join(value)
    return json.dumps(value, default=repr, sort_keys=True)[:300]

try:
    module = importlib.import_module(module_name)
except BaseException as exc:
    answer(error=f"cannot import {module_name!r} ({type(exc).__name__}: {exc}); run taskbench from the directory "
           "your app imports from")
if not hasattr(module, attribute):
    answer(error=f"{module_name} has no attribute {attribute!r}")
found = getattr(module, attribute)
"""


class AppOptions(BaseModel):
    """The user's app (`--app`) and its effective settings as the probe read them, every value as text (kept in
    the run's options as one JSON text, options being scalars)."""

    app: str | None = None
    app_settings: dict[str, str] | None = None

    @field_validator("app_settings", mode="before")
    @classmethod
    def _from_json(cls, value: Any) -> Any:
        return json.loads(value) if isinstance(value, str) else value

    @field_serializer("app_settings")
    def _as_json(self, value: dict[str, str] | None) -> str | None:
        return None if value is None else json.dumps(value, sort_keys=True)


def read(python: str, probe: str, path: str, environ: Mapping[str, str], flag: str) -> dict[str, str]:
    """The settings the probe (`PROBE_HEAD` and the queue's own part) reads from the app at `path`, run with the
    queue's environment's `python`; what is wrong with it is one line (UsageError)."""
    try:
        out = subprocess.run(
            [python, "-c", PROBE_HEAD + probe, path], capture_output=True, text=True, env=dict(environ),
            timeout=READ_TIMEOUT_S,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        raise UsageError(f"{flag}: importing it took more than {READ_TIMEOUT_S:g} s") from None
    lines = out.stdout.strip().splitlines()
    try:
        answer = json.loads(lines[-1]) if lines else {}
    except ValueError:
        answer = {}
    answer = answer if isinstance(answer, dict) else {}
    if not isinstance(answer.get("settings"), dict):
        last = (out.stderr.strip().splitlines() or [f"exit code {out.returncode}"])[-1]
        problem = str(answer.get("error") or last).strip().splitlines() or [last]
        raise UsageError(f"{flag}: {problem[0]}")
    return {str(k): str(v) for k, v in answer["settings"].items()}
