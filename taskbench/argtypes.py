"""Argument types shared by the CLI and the implementations' own flags: a mistake is one line, exit 2."""

from __future__ import annotations

import argparse
from collections.abc import Callable


def bounded(kind: type[float] | type[int], low: float, high: float) -> Callable[[str], float]:
    """A number of `kind` within [low, high]."""

    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a {kind.__name__}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{text} is out of range [{low:g}, {high:g}]")
        return value

    return parse
