"""Colours: one per implementation, from a palette in the run's order, the same in every chart and page."""

from __future__ import annotations

from collections.abc import Sequence

# Colour-blind-friendly and distinct in print; the first two are the colours the two-implementation
# reports always had.
PALETTE = ("#009688", "#e4572e", "#2b5ea7", "#b8860b", "#7b4fc4", "#2e7d32", "#d81b60", "#6d4c41", "#546e7a")
FALLBACK = "#555555"


def colours(implementations: Sequence[str]) -> dict[str, str]:
    """`implementations` in the run's order → a colour each (the palette repeats past its length)."""
    names = list(dict.fromkeys(implementations))
    return {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(names)}
