"""Argument types of the command line: each parses one flag's text, and a mistake is one line, exit 2."""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable
from typing import NoReturn, TypeAlias
from urllib.parse import urlsplit

from packaging.version import InvalidVersion, Version

from taskbench import implementations
from taskbench.record.results import LoadOptions
from taskbench_wire.urls import redacted as _redact

MAX_JOBS = 100_000


MAX_DURATION_S = 3600.0


MAX_CONCURRENCY = 256


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"taskbench: {message} (see `{self.prog} --help`)\n")


# What each command module's `add_parser` is given: the subcommands of the `taskbench` parser.
Commands: TypeAlias = "argparse._SubParsersAction[Parser]"


def choices_list(
    allowed: tuple[str, ...], all_word: str | None = "all", allow_none: bool = False
) -> Callable[[str], list[str]]:
    def parse(text: str) -> list[str]:
        items = [t.strip() for t in text.split(",") if t.strip()]
        if all_word and items == [all_word]:
            return list(allowed)
        if allow_none and items == ["none"]:
            return []
        unknown = [i for i in items if i not in allowed]
        if unknown or not items:
            raise argparse.ArgumentTypeError(
                f"{text!r}: choose from {', '.join(allowed)}" + (f" or {all_word}" if all_word else "")
            )
        return list(dict.fromkeys(items))

    parse.words = (*allowed, *([all_word] if all_word else []), *(["none"] if allow_none else []))  # type: ignore[attr-defined]  # for shell completion
    return parse


def _whole_numbers(what: str, high: int, example: str, once: bool = False) -> Callable[[str], list[int]]:
    """A comma-separated list of whole numbers, each in [1, high] (and each once, if `once`)."""

    def parse(text: str) -> list[int]:
        try:
            values = [int(t) for t in text.split(",") if t.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r}: give whole numbers separated by commas, e.g. {example}"
            ) from None
        if not values or any(not 1 <= v <= high for v in values) or (once and len(set(values)) != len(values)):
            raise argparse.ArgumentTypeError(
                f"{text!r}: each {what} must be between 1 and {high}" + (", each once" if once else "")
            )
        return values

    return parse


job_counts = _whole_numbers("job count", MAX_JOBS, "10,50,100")


MAX_RATE = 10_000.0  # jobs per second: far past what one machine's harness offers (benchmarks/ says how far)


LOAD_FOR_S = LoadOptions().for_s


MIN_FOR_S = 2.0  # a step shorter than this has no steady part after its warm-up


MAX_FOR_S = 24 * 3600.0


def rates(text: str) -> list[float]:
    """`auto`, or positive rates (jobs per second) separated by commas; an empty list stands for auto."""
    if text.strip() == "auto":
        return []
    try:
        values = [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: give jobs per second separated by commas (4,16), or auto"
        ) from None
    if not values or any(not 0 < v <= MAX_RATE or v != v for v in values):
        raise argparse.ArgumentTypeError(f"{text!r}: each rate must be above 0 and at most {MAX_RATE:g} jobs/s")
    return list(dict.fromkeys(values))


def seconds(text: str) -> float:
    """Seconds, or with a unit: 90s, 30m, 1h."""
    units = {"s": 1.0, "m": 60.0, "h": 3600.0}
    number, unit = (text[:-1], units[text[-1]]) if text and text[-1] in units else (text, 1.0)
    try:
        value = float(number) * unit
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give seconds (20), or with a unit: 90s, 30m, 1h") from None
    if not 0 < value <= MAX_FOR_S:
        raise argparse.ArgumentTypeError(f"{text!r}: must be above 0 and at most {MAX_FOR_S / 3600:g} h")
    return value


concurrencies = _whole_numbers("concurrency", MAX_CONCURRENCY, "4,16,40", once=True)


class EveryImplementation(list[str]):
    """`--implementations all`: every one this machine can run (see `postgres_from`)."""


def implementation_labels(text: str) -> list[str]:
    """`all`, or registry names, each optionally at a release of its queue: `celery@5.5.3,celery`."""
    items = [t.strip() for t in text.split(",") if t.strip()]
    if items == ["all"]:
        return EveryImplementation(implementations.REGISTRY)
    choices = (
        f"choose from {', '.join(implementations.REGISTRY)} or all, each optionally NAME@VERSION "
        f"(or {', '.join(map(implementations.app_label, implementations.APPS))} with --app)"
    )
    if not items:
        raise argparse.ArgumentTypeError(f"{text!r}: {choices}")
    for item in items:
        if implementations.runs_app(item) and implementations.known(item):
            continue  # the user's app: its --app is checked with the other flags
        name, sep, version = item.partition(implementations.RELEASE_SEPARATOR)
        if name not in implementations.REGISTRY:
            raise argparse.ArgumentTypeError(f"{item!r}: {choices}")
        if sep:
            try:
                Version(version)
            except InvalidVersion:
                raise argparse.ArgumentTypeError(f"{item!r}: {version!r} is not a release, e.g. celery@5.5.3") from None
    return list(dict.fromkeys(items))


def json_source(text: str) -> tuple[str | None, str | None]:
    return (text, None)


def factory_source(text: str) -> tuple[str | None, str | None]:
    return (None, text)


def milliseconds(text: str) -> float:
    """Milliseconds, with or without the unit: 2ms, 0.5."""
    try:
        value = float(text.strip().removesuffix("ms"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give milliseconds, e.g. 2ms") from None
    if not 0 < value <= 10_000:
        raise argparse.ArgumentTypeError(f"{text!r}: above 0 and at most 10000 ms")
    return value


def percent(text: str) -> float:
    """10% or 10: a share of the first run's figure."""
    try:
        value = float(text.strip().rstrip("%"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give a percentage, e.g. 10%") from None
    if not 0 <= value <= 10_000:
        raise argparse.ArgumentTypeError(f"{text!r}: between 0% and 10000%")
    return value / 100


def redis_url(text: str) -> str:
    """--redis-url: a URL redis-py can use, checked before anything starts."""
    if urlsplit(text).scheme not in ("redis", "rediss", "unix") or "://" not in text:
        raise argparse.ArgumentTypeError(f"{_redact(text)!r} is not a Redis URL: give redis://[:PASSWORD@]HOST:PORT/DB")
    return text


FAULT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def target_url(text: str) -> str:
    try:
        parts = urlsplit(text)
        ok = parts.scheme in ("http", "https") and bool(parts.hostname) and (parts.port or 1) > 0
    except ValueError:
        ok = False
    if not ok:
        raise argparse.ArgumentTypeError(f"{_redact(text)!r}: give your deployment's URL, http(s)://HOST[:PORT]")
    return text


def probe_path(text: str) -> str:
    if not text.startswith("/"):
        raise argparse.ArgumentTypeError(f"{text!r}: give a path on the target, e.g. /health")
    return text


def fault_command(text: str) -> tuple[str, str]:
    """`worker-crash='kubectl delete pod -l app=worker'` → (name, command)."""
    name, equals, command = text.partition("=")
    if not equals or not FAULT_NAME.fullmatch(name) or not command.strip():
        raise argparse.ArgumentTypeError(
            f"{text!r}: give NAME=COMMAND, e.g. worker-crash='kubectl delete pod -l app=worker'"
        )
    return name, command
