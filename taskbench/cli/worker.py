"""`taskbench worker --join FILE`: one more worker of a running stack, on this host."""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from rich.console import Console

from taskbench.cli.options import add_environment_flags, project_pins_from
from taskbench.cli.types import Commands
from taskbench.run.run import claim_folder
from taskbench.stack import remote_worker
from taskbench_wire.env import HOST_LABEL


def cmd_worker(args: argparse.Namespace, console: Console) -> int:
    """One more worker of a running stack, on this host (taskbench.stack.remote_worker)."""
    workdir = claim_folder(args.workdir, f"worker-{time.strftime('%Y%m%d_%H%M%S')}", "--workdir")
    return remote_worker.run_worker(
        remote_worker.read_join_url(args.join),
        args.implementation,
        args.host_label,
        workdir,
        args.with_packages,
        args.rebuild_envs,
        console,
        project_pins_from(args),
    )


def add_parser(commands: Commands) -> None:
    worker = commands.add_parser(
        "worker", help="run one more worker of a running stack on this host, measured with the stack's own"
    )
    worker.add_argument(
        "--implementation", required=True, metavar="NAME", help="the stack's implementation label to run (celery)"
    )
    worker.add_argument(
        "--join",
        required=True,
        metavar="FILE",
        help="the file holding the stack's telemetry URL (`serve` writes it, 0600, and prints where; copy it here), "
        "or - to read it from standard input; never the URL itself, which `ps` would show every local user",
    )
    worker.add_argument(
        "--host-label",
        default=os.environ.get(HOST_LABEL) or None,
        metavar="NAME",
        help=f"what its executions and samples are attributed to (default: ${HOST_LABEL}, else this host's name)",
    )
    worker.add_argument("--workdir", type=Path, default=Path(".taskbench"), help="where its log goes")
    add_environment_flags(worker)
