"""What a run records about how it was measured, so that its reports render from the record alone: the taskbench
version and git revision, and each implementation as it ran (its settings and how each workload runs there),
not as a later version of the registry would describe it."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

from taskbench import __version__, implementations
from taskbench.results import Described, RunSettings
from taskbench_wire.urls import redacted

SOURCE = Path(__file__).resolve().parents[1]


def git_revision() -> str | None:
    """The commit taskbench runs from (with `+dirty` for uncommitted changes), when it runs from a checkout."""
    try:
        found = subprocess.run(
            ["git", "-C", str(SOURCE), "describe", "--always", "--dirty=+dirty", "--abbrev=12"],
            capture_output=True, text=True, timeout=5, check=True,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return found.stdout.strip() or None


def describe(label: str, settings: RunSettings, concurrency: int | None = None) -> Described:
    """`label` as it runs under `settings` (at `concurrency` when a sweep or search sets it)."""
    impl = implementations.get(label)
    options = settings.options_of(label)
    workloads = {w: w for w in settings.workloads} | {j.path: j.behaves_like for j in settings.user_jobs}
    return Described(
        title=implementations.title(label),
        job_process=implementations.job_process(label),
        settings=impl.settings_on(
            concurrency or settings.concurrency, settings.broker, options, settings.api, settings.external_servers
        ),
        how_it_runs={name: impl.how_it_runs(like, options) for name, like in workloads.items()},
    )


def version() -> str:
    return __version__


def command_line(argv: list[str] | None = None) -> str:
    """The command as typed, every URL in it redacted (a password in --redis-url must not reach a report)."""
    words = ["taskbench", *(sys.argv[1:] if argv is None else argv)]
    return shlex.join(redacted(w) if "://" in w else w for w in words)
