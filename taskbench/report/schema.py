"""The JSON Schema of both files a run writes, committed as docs/result-schema.json for tools in other
languages: `python -m taskbench.report.schema > docs/result-schema.json`."""

from __future__ import annotations

import json
from typing import Any

from taskbench.analysis.models import AnalysedRun
from taskbench.record.results import SCHEMA_VERSION, ScenarioResult


def json_schema() -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "scenario": ScenarioResult.model_json_schema(),
        "comparison": AnalysedRun.model_json_schema(),
    }


if __name__ == "__main__":
    print(json.dumps(json_schema(), indent=1))
