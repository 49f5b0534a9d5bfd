"""`taskbench completion bash|zsh|fish`: the shell's completion script, from argcomplete (which completes every
command, flag and choice from the parser itself, so it never drifts from it)."""

from __future__ import annotations

import argparse

import argcomplete
from argcomplete.completers import ChoicesCompleter
from rich.console import Console

from taskbench import implementations
from taskbench.cli.types import Commands

SHELLS = ("bash", "zsh", "fish")


def cmd_completion(args: argparse.Namespace, console: Console) -> int:
    print(argcomplete.shellcode(["taskbench"], shell=args.shell), end="")
    return 0


def attach_completers(parser: argparse.ArgumentParser) -> None:
    """Lists typed by a function (`--workloads sleep,cpu`) complete their words; `--implementations` its names."""
    for action in parser._actions:
        words = getattr(action.type, "words", None)
        if action.dest == "implementations":
            words = (*implementations.REGISTRY, "all")
        if words:
            action.completer = ChoicesCompleter(words)  # type: ignore[attr-defined]  # argcomplete reads it
        for sub in (action.choices or {}).values() if isinstance(action, argparse._SubParsersAction) else ():
            attach_completers(sub)


def add_parser(commands: Commands) -> None:
    completion = commands.add_parser(
        "completion",
        help='print the shell\'s completion script: eval "$(taskbench completion bash)" in ~/.bashrc '
        "(zsh: the same in ~/.zshrc; fish: taskbench completion fish | source)",
    )
    completion.add_argument("shell", choices=SHELLS)
