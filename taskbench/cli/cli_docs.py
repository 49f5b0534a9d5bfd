"""docs/cli.md, generated from the parser itself (`python -m taskbench.cli.cli_docs > docs/cli.md`), so the reference
cannot drift from the flags; a test compares the committed page with this output."""

from __future__ import annotations

import argparse

from taskbench.cli.main import build_parser

HEADER = """# Command-line reference

Generated from the parser (`python -m taskbench.cli.cli_docs > docs/cli.md`); what each figure and rule means is in
[running the benchmark](running.md). Every `run` option can also be set as `TASKBENCH_RUN_<OPTION>`, named after
its flag (`--fail-on` is `TASKBENCH_RUN_FAIL_ON`, `--json` is `TASKBENCH_RUN_JSON`, `--quick` takes 1/true/yes/on or
0/false/no/off); a flag given wins, and a variable that names no option is one line and exit 2.
"""


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _default(action: argparse.Action) -> str:
    if action.default in (None, argparse.SUPPRESS, False, []) or isinstance(action, argparse._HelpAction):
        return "–"
    value = action.default
    if isinstance(value, list):
        value = ",".join(map(str, value))
    return f"`{value}`"


def _command(name: str, parser: argparse.ArgumentParser, summary: str) -> list[str]:
    formatter = parser._get_formatter()
    lines = [f"## taskbench {name}", "", _cell(summary), ""]
    positionals = [a for a in parser._actions if not a.option_strings]
    if positionals:
        lines += ["Arguments: " + ", ".join(f"`{a.dest.upper()}`" for a in positionals), ""]
    lines += ["| option | default | meaning |", "|---|---|---|"]
    for action in parser._actions:
        if not action.option_strings or isinstance(action, argparse._HelpAction):
            continue
        flags = ", ".join(f"`{f}`" for f in action.option_strings)
        if action.choices is not None and not isinstance(action.choices, dict):
            flags += " (" + " \\| ".join(map(str, action.choices)) + ")"
        meaning = formatter._expand_help(action) if action.help else ""
        lines.append(f"| {flags} | {_default(action)} | {_cell(meaning)} |")
    return [*lines, ""]


def render() -> str:
    parser = build_parser()
    (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    summaries = {c.dest: c.help or "" for c in commands._choices_actions}
    lines = [HEADER]
    for name, sub in commands.choices.items():
        lines += _command(name, sub, summaries.get(name, ""))
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":
    print(render(), end="")
