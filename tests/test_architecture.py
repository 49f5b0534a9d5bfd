"""The house as the code draws it: wings in layers, each importing only the wings below it, no import circle."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from taskbench_wire import enums

pytestmark = pytest.mark.pure

PACKAGE = Path(__file__).resolve().parents[1] / "taskbench"
# Lowest first. A wing may import its own modules and any wing before it in this list, never one after it.
LAYERS: list[set[str]] = [
    {"(top)"},  # errors, argtypes, capacity: names and the one model everyone shares
    {"record"},  # what a run asked and measured, on disk
    {"implementations"},  # the queues, as plugins
    {"analysis", "envs", "hosts", "load", "measure", "user_job"},
    {"report", "stack"},  # render the analysis; run the processes in their environments, hosts and cgroups
    {"faults"},  # strike the stack
    {"run"},  # plan and run the scenarios
    {"target"},  # the user's own deployment, measured as a run is
    {"cli"},  # every command
]
MAX_TOP_MODULES = 12


def _wing(path: Path) -> str:
    relative = path.relative_to(PACKAGE)
    return "(top)" if len(relative.parts) == 1 else relative.parts[0]


def _imported_wings(path: Path) -> Iterator[tuple[str, int]]:
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{a.name}" for a in node.names] if node.module == "taskbench" else [node.module]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "taskbench" and len(parts) > 1 and not name.endswith("__version__"):
                yield ("(top)" if (PACKAGE / f"{parts[1]}.py").exists() else parts[1]), node.lineno


def _layer(wing: str) -> int:
    return next(i for i, layer in enumerate(LAYERS) if wing in layer)


def test_every_wing_has_a_layer() -> None:
    wings = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    assert wings == set().union(*LAYERS) - {"(top)"}


def test_wings_import_only_the_layers_below() -> None:
    upward = [
        f"{path.relative_to(PACKAGE.parent)}:{line} ({_wing(path)}) imports {wing}"
        for path in PACKAGE.rglob("*.py")
        if path.name != "__main__.py"
        for wing, line in _imported_wings(path)
        if _layer(wing) > _layer(_wing(path))
    ]
    assert not upward, "\n".join(upward)


def test_the_top_of_the_package_stays_small() -> None:
    modules = [p.name for p in PACKAGE.glob("*.py") if p.name not in {"__init__.py", "__main__.py"}]
    assert len(modules) <= MAX_TOP_MODULES, modules


# Where a fault's name may appear outside its wing: a queue saying which faults apply to it, and the renderers
# and analysis that read a recorded scenario's fault by name (they sit below the faults wing).
NAMES_A_FAULT = {
    "taskbench/implementations": "a queue lists the faults that ask it (`Implementation.faults`)",
    "taskbench/analysis/stats.py": "api-partition's submissions through the cut, read from the record",
    "taskbench/analysis/verdict.py": "api-partition's sentence: the API, not its workers, was cut off",
    "taskbench/report/content.py": "the partition columns of the faults table",
    "taskbench/report/questions.py": "the page of answers: which recorded faults answer which tracker question",
}


def _names_of_faults(path: Path) -> Iterator[tuple[str, int]]:
    names = {f.value for f in enums.Fault}
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Constant) and node.value in names:
            yield node.value, node.lineno
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "Fault":
            yield node.attr, node.lineno


def test_no_module_outside_the_faults_wing_names_a_fault() -> None:
    """A tenth fault is one module of its family and a line in `taskbench.faults.REGISTRY`."""
    named = [
        f"{where}:{line} names {name}"
        for path in PACKAGE.rglob("*.py")
        if (where := str(path.relative_to(PACKAGE.parent))).split("/")[1] != "faults"
        and not any(where.startswith(allowed) for allowed in NAMES_A_FAULT)
        for name, line in _names_of_faults(path)
    ]
    assert not named, "\n".join(named)


def test_every_fault_of_the_wire_is_registered() -> None:
    from taskbench import faults

    assert set(faults.REGISTRY) == {f.value for f in enums.Fault}
    assert all(name == plugin.name.value for name, plugin in faults.REGISTRY.items())


MAX_FUNCTION_LINES = 60
# Named exceptions: functions whose length is the width of the record they build, one figure a line (each figure
# that takes more than an expression is a function of its own).
LONG_BY_DESIGN = {
    "taskbench/analysis/stats.py:figures_of": "builds the 50-field ScenarioSummary",
    "taskbench/analysis/rates.py:summarise": "builds the 30-field RateStep",
}


def test_every_function_fits_on_a_screen() -> None:
    long = []
    for root in (PACKAGE, PACKAGE.parent / "taskbench_service"):
        for path in root.rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    where = f"{path.relative_to(PACKAGE.parent)}:{node.name}"
                    lines = (node.end_lineno or node.lineno) - node.lineno + 1
                    if lines > MAX_FUNCTION_LINES and where not in LONG_BY_DESIGN:
                        long.append(f"{where} has {lines} lines")
    assert not long, "\n".join(long)
