"""The harness's event loops: uvloop where it is installed (uvicorn[standard] brings it), else asyncio's.

Why: the harness's CPU competes with the service it measures on the same cores (issue 13), and uvloop's loop
spends less of it per I/O event: ~10 % less CPU per submission here (benchmarks/README.md, "Load generator").
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T]) -> T:
    try:
        import uvloop
    except ImportError:  # Windows, or an environment without uvicorn[standard]
        return asyncio.run(main)
    return uvloop.run(main)
