"""`python benchmarks/perf.py [options]` runs `python -m benchmarks.perf [options]` (the package beside this file)."""

import runpy
import sys
from pathlib import Path

if __name__ == "__main__":
    sys.path[0] = str(Path(__file__).resolve().parent.parent)  # the repository, not benchmarks/, so the package wins
    runpy.run_module("benchmarks.perf", run_name="__main__", alter_sys=True)
