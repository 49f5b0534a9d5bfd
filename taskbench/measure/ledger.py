"""Reading the execution ledger (written by `taskbench_service.ledger`): the stack's stream on its telemetry Redis,
or a file (the spec's manual flow), from where it was when the tail was made.

The scenario reads what one scenario added; `benchmarks/perf` tails it for completion times as the job
code stamped them, so no polling interval leaks into a throughput figure. The stream carries every host's
events (workers joined from other hosts included), each with the time it reached the harness's machine.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import redis

from taskbench.measure import telemetry
from taskbench.record.results import Execution


class LedgerTail:
    """`LedgerTail(path)` tails a ledger file; `LedgerTail.stream(url, key)` the stack's stream (one of the two)."""

    def __init__(self, path: Path | None, reader: telemetry.StreamReader | None = None) -> None:
        self.path = path
        self.reader = reader
        self.offset = path.stat().st_size if path is not None and path.exists() else 0
        self.ends: dict[str, float] = {}
        self._partial = b""

    @property
    def known(self) -> bool:
        """Whether there is a ledger to read (of a service someone else started: none)."""
        return self.path is not None or self.reader is not None

    @classmethod
    def stream(cls, url: str, key: str) -> LedgerTail:
        return cls(None, telemetry.StreamReader(telemetry.client(url), key))

    def read(self) -> list[Execution]:
        """The events appended since the last read (a half-written last line of a file waits for the next read)."""
        executions = self._from_stream() if self.reader is not None else self._from_file()
        self.ends |= {e.job_id: e.t for e in executions if e.event == "end"}
        return executions

    def _from_stream(self) -> list[Execution]:
        assert self.reader is not None
        try:
            return telemetry.executions_of(self.reader.read())
        except redis.RedisError:  # the telemetry Redis busy for a moment: what it holds is read next time
            return []

    def _from_file(self) -> list[Execution]:
        if self.path is None or not self.path.exists():
            return []
        with self.path.open("rb") as ledger:
            ledger.seek(self.offset)
            chunk = self._partial + ledger.read()
        self.offset += len(chunk) - len(self._partial)
        lines = chunk.split(b"\n")
        self._partial = lines.pop()
        return [Execution.model_validate(json.loads(line)) for line in lines if line.strip()]

    async def wait_for(self, job_ids: set[str], timeout_s: float) -> float | None:
        """The last end time among `job_ids`, once all have ended; None after `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.read()
            if job_ids <= self.ends.keys():
                return max(self.ends[j] for j in job_ids)
            await asyncio.sleep(0.05)
        return None
