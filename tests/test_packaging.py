"""taskbench as a user installs a tool: the wheel and the sdist build from a checkout, and the wheel alone, in a
fresh environment, gives a working `taskbench` carrying its licence, its type marker and both halves (the harness
and the service the stack runs from it)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

from taskbench import __version__

REPO = Path(__file__).resolve().parent.parent


# What a build must not see or write into: a build writes its staging folders beside the sources, where the other
# tests' tools (ruff, mypy) walk the checkout at the same time, so it builds from a copy.
NOT_SOURCES = shutil.ignore_patterns(".git", ".venv", "*_cache", "__pycache__", "*.egg-info", "build", "dist",
                                     "benchmark_results")  # fmt: skip


def test_the_wheel_installs_alone_into_a_fresh_environment_and_runs(tmp_path: Path) -> None:
    uv = [sys.executable, "-m", "uv"]
    sources, dist = tmp_path / "taskbench", tmp_path / "dist"
    shutil.copytree(REPO, sources, ignore=NOT_SOURCES)
    subprocess.run([*uv, "build", "--quiet", "--out-dir", str(dist), str(sources)], check=True, timeout=300)
    (wheel,) = dist.glob("taskbench-*.whl")
    (sdist,) = dist.glob("taskbench-*.tar.gz")
    assert wheel.name.startswith(f"taskbench-{__version__}-")
    names = set(zipfile.ZipFile(wheel).namelist())
    for inside in ("taskbench/py.typed", "taskbench/cli/main.py", "taskbench_service/main.py",
                   "taskbench_wire/env.py", f"taskbench-{__version__}.dist-info/licenses/LICENSE"):  # fmt: skip
        assert inside in names, inside
    with tarfile.open(sdist) as archive:
        assert f"taskbench-{__version__}/LICENSE" in archive.getnames()

    venv = tmp_path / "venv"
    subprocess.run([*uv, "venv", "--quiet", "--python", sys.executable, str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    subprocess.run([*uv, "pip", "install", "--quiet", "--python", str(python), str(wheel)], check=True, timeout=600)
    script = venv / "bin" / "taskbench"
    version = subprocess.run([script, "--version"], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert version.returncode == 0 and version.stdout.strip() == f"taskbench {__version__}", version
    helped = subprocess.run([script, "run", "--help"], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert helped.returncode == 0 and "--reference NAME" in helped.stdout, helped.stderr
