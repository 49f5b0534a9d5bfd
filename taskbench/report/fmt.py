"""Number formatting shared by every report."""

from __future__ import annotations


def seconds(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}s"


def ms(value: float | None) -> str:
    return "–" if value is None else f"{value * 1000:.1f} ms"


def percent(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f}%"


def mb(value: float | None) -> str:
    return "–" if value is None else f"{value:.0f} MB"


def ratio(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}×"


def yes_no(value: bool | None) -> str:
    return "–" if value is None else "✓" if value else "✗"
