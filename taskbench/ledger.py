"""Reading the execution ledger (written by `taskbench_service.ledger`): whole lines only, from a remembered offset.

The scenario reads what one scenario added; `benchmarks/perf` tails it for completion times as the job
code stamped them, so no polling interval leaks into a throughput figure.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

from taskbench.results import Execution


class LedgerTail:
    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.offset = path.stat().st_size if path is not None and path.exists() else 0
        self.ends: dict[str, float] = {}
        self._partial = b""

    def read(self) -> list[Execution]:
        """The lines appended since the last read (a half-written last line waits for the next read)."""
        if self.path is None or not self.path.exists():
            return []
        with self.path.open("rb") as ledger:
            ledger.seek(self.offset)
            chunk = self._partial + ledger.read()
        self.offset += len(chunk) - len(self._partial)
        lines = chunk.split(b"\n")
        self._partial = lines.pop()
        executions = [Execution.model_validate(json.loads(line)) for line in lines if line.strip()]
        self.ends |= {e.job_id: e.t for e in executions if e.event == "end"}
        return executions

    async def wait_for(self, job_ids: set[str], timeout_s: float) -> float | None:
        """The last end time among `job_ids`, once all have ended; None after `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.read()
            if job_ids <= self.ends.keys():
                return max(self.ends[j] for j in job_ids)
            await asyncio.sleep(0.05)
        return None
