"""`taskbench serve | run | env | worker | report | compare`: one module per command, each adding its parser
and running it. A mistake on the command line is one line and exit code 2."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

import argcomplete
from rich.console import Console

from taskbench import __version__
from taskbench.cli import completion, env, report, run, serve, worker
from taskbench.cli.types import Commands, Parser
from taskbench.errors import StackError, UsageError

Command = Callable[[argparse.Namespace, Console], int]
COMMANDS: dict[str, tuple[Callable[[Commands], None], Command]] = {
    "serve": (serve.add_parser, serve.cmd_serve),
    "run": (run.add_parser, run.cmd_run),
    "env": (env.add_parser, env.cmd_env),
    "worker": (worker.add_parser, worker.cmd_worker),
    "report": (report.add_report_parser, report.cmd_report),
    "compare": (report.add_compare_parser, report.cmd_compare),
    "completion": (completion.add_parser, completion.cmd_completion),
}


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="taskbench", description="When do FastAPI's BackgroundTasks stop being enough?")
    parser.add_argument("--version", action="version", version=f"taskbench {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for add_parser, _ in COMMANDS.values():
        add_parser(commands)
    return parser


def console_for(args: argparse.Namespace) -> Console:
    """Where the command speaks: stderr when stdout holds the JSON alone (`--json -`); in a log (not a terminal)
    each line whole, as a CI log or a grep wants it, not wrapped at 80 columns."""
    stream = sys.stderr if getattr(args, "json_out", None) == "-" else sys.stdout
    return Console(stderr=stream is sys.stderr, soft_wrap=not stream.isatty())


def main(argv: list[str] | None = None) -> int:
    try:
        parser = build_parser()
        completion.attach_completers(parser)
        argcomplete.autocomplete(parser)  # a shell asking for completions (taskbench completion): answered, exits
        args = parser.parse_args(argv)
    except UsageError as exc:  # a TASKBENCH_RUN_* variable that does not parse
        print(f"taskbench: {exc}", file=sys.stderr)
        return 2
    console = console_for(args)
    try:
        return COMMANDS[args.command][1](args, console)
    except UsageError as exc:  # and what derives from it: SchemaError, EnvironmentBuildError
        print(f"taskbench: {exc}", file=sys.stderr)
        return 2
    except StackError as exc:
        print(f"taskbench: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("taskbench: interrupted; every process it started has been stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
