"""A queue is one plugin: nothing outside an implementation's own two modules names it.

Its own modules are `taskbench/implementations/<name>.py` (harness) and `taskbench_service/implementations/
<name>.py` (service); the registries list it once each. Anywhere else, a name in code or a string literal
that starts with it (`"celery"`, `"celery-worker"`) means a new queue would have to touch that module too.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from pathlib import Path

import pytest

from taskbench import implementations
from taskbench.stack.stack import StackState

pytestmark = pytest.mark.pure  # the fast tier: `pytest -m pure`

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("taskbench", "taskbench_service", "taskbench_wire")
REGISTRIES = {Path("taskbench/implementations/__init__.py"), Path("taskbench_service/implementations/__init__.py")}
# Reading the result files of schemas 1 and 2, which named Celery's worker and options.
LEGACY = {Path("taskbench/record/results.py")}
# BackgroundTasks' registry name is also its framework's: the service imports `fastapi` everywhere, so only
# string literals are checked for it.
FRAMEWORK = "fastapi"


def _mentions(path: Path, name: str) -> list[str]:
    source = path.read_text()
    literal = re.compile(rf"^{re.escape(name)}([-@:.]|$)")
    found = []
    tokens = tokenize.generate_tokens(io.StringIO(source).readline)
    for token in tokens:
        if token.type == tokenize.NAME and token.string == name and name != FRAMEWORK:
            found.append(f"{path}:{token.start[0]}: {token.line.strip()}")
        elif token.type == tokenize.STRING and not token.string.startswith(('"""', "'''", 'f"""', "r'''")):
            try:
                value = ast.literal_eval(token.string)
            except (ValueError, SyntaxError):  # an f-string: check its text
                value = token.string.lstrip("rbf").strip("\"'")
            if isinstance(value, str) and literal.match(value):
                found.append(f"{path}:{token.start[0]}: {token.line.strip()}")
    return found


@pytest.mark.parametrize("name", list(implementations.REGISTRY))
def test_no_module_outside_an_implementation_names_it(name: str) -> None:
    own = {Path(f"{package}/implementations/{name}.py") for package in PACKAGES}
    mentions = [
        mention
        for package in PACKAGES
        for path in sorted((REPO / package).rglob("*.py"))
        if (relative := path.relative_to(REPO)) not in own | REGISTRIES | LEGACY
        for mention in _mentions(relative, name)
    ]
    assert not mentions, "\n".join(mentions)


@pytest.mark.parametrize("name", [name for name, impl in implementations.REGISTRY.items() if impl.has_worker])
def test_a_worker_is_restarted_for_a_new_redelivery_timeout_only_where_its_settings_read_it(name: str) -> None:
    """`reads_redelivery_timeout` is what its service module does: a worker whose settings read neither the
    timeout nor the restore interval is not restarted when a fault scenario changes them (StackState.of_worker)."""
    source = (REPO / "taskbench_service" / "implementations" / f"{name}.py").read_text()
    reads = "settings.redelivery_timeout_s" in source or "settings.restore_interval_s" in source
    assert implementations.REGISTRY[name].reads_redelivery_timeout == reads
    short, default = StackState(redelivery_timeout_s=5.0), StackState()
    assert (short.of_worker(name) != default.of_worker(name)) == reads
