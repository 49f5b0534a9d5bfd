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


def size(value: float | None) -> str:
    """Bytes as a reader takes them in: `812 B`, `48.2 KB`, `3.1 MB` (powers of 1024)."""
    if value is None:
        return "–"
    for unit, scale in (("MB", 1024**2), ("KB", 1024)):
        if abs(value) >= scale:
            return f"{value / scale:.1f} {unit}"
    return f"{value:.0f} B"


def one_decimal(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f}"
