"""The spec's entry point: `python tests/benchmark.py` measures a service started by hand.

Terminal 1: `uvicorn app.main:app`; terminal 2: `celery -A app.celery_app worker --loglevel=info
--concurrency=4`; terminal 3: this script. Every `taskbench run` flag works here too (e.g. `--quick`,
`--jobs 10,50`); `--url` defaults to http://localhost:8000.
"""

from __future__ import annotations

import os
import sys

from taskbench.cli.main import main

if __name__ == "__main__":
    args = sys.argv[1:]
    if not any(a == "--url" or a.startswith("--url=") for a in args):
        args = ["--url", os.environ.get("TASKBENCH_URL", "http://localhost:8000"), *args]
    sys.exit(main(["run", *args]))
