"""What a run leaves on disk: plain data, versioned, so reports can be rebuilt from it alone.

Schema (version 1), one JSON file per scenario plus one comparison file per run:
- `ScenarioResult`: the scenario's spec, the run's settings, every submission, job record, ledger event,
  probe, resource sample and injected event, and a summary computed from those.
- `RunResult`: settings, environment, the scenario file names, the summaries and the verdict.
Readers check `schema_version` and refuse versions they do not know with a clear message.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

SCHEMA_VERSION = 1
SUPPORTED_SCHEMA_VERSIONS = frozenset({1})


class Thresholds(BaseModel):
    """Failure rules; every report states them."""

    probe_timeout_s: float = 2.0
    responsive_p99_s: float = 0.5
    submit_timeout_s: float = 10.0
    memory_limit_mb: float = 1024.0
    system_memory_limit_percent: float = 90.0
    makespan_ratio_limit: float = 1.5


class RunSettings(BaseModel):
    implementations: list[str]
    workloads: list[str]
    jobs: list[int]
    duration_s: float
    memory_mb: int
    concurrency: int
    faults: list[str] = Field(default_factory=list)
    url: str | None = None  # an already-running service (the spec's manual flow)
    redis: str = "embedded"  # "embedded" or the redacted URL used
    probe_interval_s: float = 0.1
    sample_interval_s: float = 0.25
    thresholds: Thresholds = Field(default_factory=Thresholds)
    quick: bool = False


class ScenarioSpec(BaseModel):
    implementation: str
    workload: str
    jobs: int
    duration_s: float
    memory_mb: int = 0
    fault: str | None = None  # api-crash, worker-crash, redis-restart
    variant: str | None = None  # delivery settings for worker-crash, persistence for redis-restart

    @property
    def label(self) -> str:
        parts = [self.implementation, self.workload, f"{self.jobs} jobs"]
        if self.fault:
            parts.append(self.fault + (f" ({self.variant})" if self.variant else ""))
        return " · ".join(parts)

    @property
    def file_stem(self) -> str:
        """The spec's names (`fastapi_10_jobs`) for its own workload; others say which workload or fault."""
        stem = self.implementation
        if self.workload != "sleep":
            stem += f"_{self.workload}"
        if self.fault:
            stem += f"_{self.fault}" + (f"_{self.variant}" if self.variant else "")
        return f"{stem}_{self.jobs}_jobs".replace("+", "_")


class Submission(BaseModel):
    index: int
    sent_at: float
    latency_s: float | None
    status_code: int | None = None
    job_id: str | None = None
    error: str | None = None  # "timeout" or the exception


class Probe(BaseModel):
    endpoint: Literal["async", "sync"]
    sent_at: float
    latency_s: float | None  # None: no answer (timeout or connection error)
    status_code: int | None = None
    error: str | None = None


class Sample(BaseModel):
    """One reading of every process: role → {cpu_percent, rss_mb}; `system` → cpu, memory."""

    t: float
    processes: dict[str, dict[str, float]]
    system: dict[str, float]


class Event(BaseModel):
    t: float
    name: str  # burst_start, burst_end, fault, recovered, deadline, ...
    detail: str = ""


class Capacity(BaseModel):
    """How many jobs the implementation can really run at once for this workload, and why."""

    concurrency: int
    reason: str


class ScenarioResult(BaseModel):
    schema_version: int = SCHEMA_VERSION
    spec: ScenarioSpec
    settings: RunSettings
    environment: dict[str, Any] = Field(default_factory=dict)
    capacity: Capacity
    started_at: float
    ended_at: float
    deadline_s: float
    timed_out: bool
    interrupted: bool = False
    submissions: list[Submission]
    jobs: list[dict[str, Any]]  # job records as the API returned them
    executions: list[dict[str, Any]] = Field(default_factory=list)  # the ledger's lines
    probes: list[Probe]
    samples: list[Sample]
    events: list[Event] = Field(default_factory=list)
    harness: dict[str, float] = Field(default_factory=dict)  # the harness's own CPU and memory
    delivery: dict[str, Any] = Field(default_factory=dict)  # Celery's delivery settings, when taskbench set them
    summary: dict[str, Any] = Field(default_factory=dict)


class RunResult(BaseModel):
    schema_version: int = SCHEMA_VERSION
    timestamp: str
    settings: RunSettings
    environment: dict[str, Any]
    scenario_files: list[str]
    summaries: list[dict[str, Any]] = Field(default_factory=list)
    verdict: dict[str, Any] = Field(default_factory=dict)
    interrupted: bool = False


class SchemaError(Exception):
    pass


def _check_version(data: dict[str, Any], path: Path) -> None:
    version = data.get("schema_version")
    if version not in SUPPORTED_SCHEMA_VERSIONS:
        known = ", ".join(map(str, sorted(SUPPORTED_SCHEMA_VERSIONS)))
        raise SchemaError(f"{path}: schema_version {version!r} is not one this taskbench reads ({known})")


def load_scenario(path: Path) -> ScenarioResult:
    data = json.loads(path.read_text())
    _check_version(data, path)
    return ScenarioResult.model_validate(data)


def load_run(path: Path) -> RunResult:
    data = json.loads(path.read_text())
    _check_version(data, path)
    return RunResult.model_validate(data)


def json_schema() -> dict[str, Any]:
    """The JSON Schema of both files, committed as docs/result-schema.json for tools in other languages."""
    return {
        "schema_version": SCHEMA_VERSION,
        "scenario": ScenarioResult.model_json_schema(),
        "comparison": RunResult.model_json_schema(),
    }


if __name__ == "__main__":
    print(json.dumps(json_schema(), indent=1))
