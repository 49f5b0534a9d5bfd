"""A project's own pins (`--requirements FILE`): the releases its lock or requirements file fixes, installed in
every implementation's environment, so that the job is measured on the dependencies the project runs, without
installing taskbench into the project.

The user's pins win over taskbench's choice of the newest release; only `--with` and a release label
(`celery@5.5.3`) win over them, for the packages they name. The service's own minimums stay: a pin below one is
the resolver's one-line error. Read here: a flat
requirements file (`pip freeze`, `uv export`, `pip-compile`: hashes and the project's own `-e .` are skipped),
`uv.lock` and `pylock.toml` (PEP 751).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from taskbench.errors import UsageError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

MAX_FILE_BYTES = 4 * 2**20
MAX_PINS = 2000
PROJECT_SOURCES = ("editable", "virtual", "directory")  # uv.lock: the project itself, whose code is the cwd's


def read(path: Path) -> tuple[str, ...]:
    """The file's requirements, one `name==version` (or other specifier) each; a UsageError names what to fix."""
    flag = f"--requirements {path}"
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise UsageError(f"{flag}: larger than {MAX_FILE_BYTES // 2**20} MiB; give a requirements or lock file")
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{flag}: cannot be read ({exc.strerror if isinstance(exc, OSError) else exc})") from exc
    if path.name == "uv.lock" or path.suffix == ".toml":
        pins = _from_lock(text, flag)
    else:
        pins = _from_requirements(text, flag)
    if not pins:
        raise UsageError(f"{flag}: names no package")
    if len(pins) > MAX_PINS:
        raise UsageError(f"{flag}: more than {MAX_PINS} packages")
    return tuple(pins)


def _from_requirements(text: str, flag: str) -> list[str]:
    pins = []
    for number, line in _logical_lines(text):
        line = " ".join(part for part in line.split() if not part.startswith("--hash"))
        if not line:
            continue
        if line.startswith(("-e ", "--editable")):
            continue  # the project itself (`uv export` writes `-e .`): its code is the working directory's
        if line.startswith("-"):
            raise UsageError(
                f"{flag}, line {number}: {line.split()[0]} is not followed; give one flat file "
                "(`uv export --no-hashes -o requirements.txt` or `pip freeze`)"
            )
        pins.append(_checked(line, f"{flag}, line {number}"))
    return pins


def _logical_lines(text: str) -> Iterable[tuple[int, str]]:
    """Lines without comments, a trailing backslash joining the next (pip-compile's hashes)."""
    pending, first = "", 0
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split(" #", 1)[0].strip() if not raw.lstrip().startswith("#") else ""
        if not pending:
            first = number
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        yield first, (pending + line).strip()
        pending = ""
    if pending:
        yield first, pending.strip()


def _from_lock(text: str, flag: str) -> list[str]:
    try:
        data: dict[str, Any] = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{flag}: not TOML ({exc})") from exc
    packages = data.get("package") or data.get("packages")  # uv.lock, pylock.toml
    if not isinstance(packages, list):
        raise UsageError(f"{flag}: neither a uv.lock ([[package]]) nor a pylock.toml ([[packages]])")
    pins = []
    for package in packages:
        if not isinstance(package, dict) or not isinstance(package.get("name"), str):
            raise UsageError(f"{flag}: a package without a name")
        source = package.get("source")
        if isinstance(source, dict) and any(key in source for key in PROJECT_SOURCES):
            continue  # the project itself, or a folder of it
        version = package.get("version")
        if isinstance(version, str):  # pylock.toml may leave out the version of a folder or a VCS checkout
            pins.append(_checked(f"{package['name']}=={version}", flag))
    return pins


def _checked(spec: str, where: str) -> str:
    try:
        requirement = Requirement(spec)
    except InvalidRequirement as exc:
        raise UsageError(f"{where}: {spec!r} is not a requirement ({str(exc).splitlines()[0]})") from exc
    return str(requirement)


def merged(base: Sequence[str], pins: Sequence[str], keep: Iterable[str] = ()) -> tuple[str, ...]:
    """`base` (taskbench's requirements of one environment) and the project's `pins` beside them, so that the
    resolver takes the pinned release wherever taskbench would take the newest, yet never one the service cannot
    run on (a conflict is its one-line error); a pin of a package in `keep` (what `--with` or a release label
    decides) is left out."""
    kept = {canonicalize_name(name) for name in keep}
    return (*base, *(pin for pin in pins if canonicalize_name(Requirement(pin).name) not in kept))
