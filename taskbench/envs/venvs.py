"""The environment each implementation runs in: its queue at the release the package index serves today.

The newest releases of the queues cannot share one environment (arq needs redis-py < 6, kombu 5.7 ≥ 6.4,
taskiq-redis 1.2 ≥ 8), so each implementation gets a virtual environment of its own, built with uv on first use
and cached, as nox, tox and asv do. An environment holds the service's packages and its queue's; the harness's
own environment is layered *behind* it (a `.pth` that adds the harness's site-packages last), so the service
(`taskbench_service`) and the user's own modules for `--job` (and what they import) resolve from there, while
every package the environment installs wins over the harness's copy.

An environment is keyed by everything that decides its contents (Python, requirements, constraints); one
older than `MAX_AGE_DAYS` is built again so that "the newest release" stays true; `taskbench env --rebuild`
forces it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import shutil
import site
import stat
import subprocess
import sys
import sysconfig
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil
from filelock import FileLock
from packaging.utils import canonicalize_name

from taskbench.errors import EnvironmentBuildError, UsageError

# What the service itself needs in every environment; the queue's packages come from its plugin.
SERVICE_PACKAGES = ("fastapi>=0.110", "uvicorn[standard]>=0.29", "redis>=5.0", "pydantic>=2.6", "psutil>=5.9")
MAX_AGE_DAYS = 7.0
MARKER = "taskbench-env.json"  # written last: an environment without it is incomplete and built again
LAYER_PTH = "zz_taskbench_layer.pth"  # processed after the environment's own .pth files
BUILD_TIMEOUT_S = 600.0
FORMAT = 2  # bump when the layout changes (2: bytecode compiled at build): every cached environment is built again
BUILD_SEPARATOR = ".build-"  # `<key>` is a link to its newest `<key>.build-<time>`


@dataclass(frozen=True)
class EnvRequest:
    """What an implementation's environment must hold."""

    label: str  # the implementation as the run names it: "celery", "celery@5.5.3"
    requirements: tuple[str, ...]
    constraints: tuple[str, ...] = ()  # --with: pins applied where the resolver needs the package

    @property
    def key(self) -> str:
        identity = {
            "format": FORMAT,
            "python": sys.version,
            # the harness install it is layered behind (`_layer`): one from another checkout, since deleted, would
            # find no taskbench_service
            "harness": sys.prefix,
            "platform": platform.platform(),
            "requirements": sorted(self.requirements),
            "constraints": sorted(self.constraints),
        }
        digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:12]
        return f"{self.label.replace('@', '-')}-{digest}"


@dataclass(frozen=True)
class Env:
    """A built environment: where its interpreter is and exactly what it holds (`uv pip freeze`)."""

    label: str
    path: str
    python: str
    requirements: tuple[str, ...]
    constraints: tuple[str, ...]
    packages: dict[str, str]  # name → version, every package installed in it
    built_at: float
    build_s: float

    def version(self, package: str) -> str | None:
        return self.packages.get(canonicalize_name(package))


def disk_mb(envs: Sequence[Env]) -> float:
    """What the environments take on disk, each file once (uv hard-links files from its cache)."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for env in envs:
        for root, _, files in os.walk(env.path):
            for name in files:
                info = os.lstat(os.path.join(root, name))
                if (info.st_dev, info.st_ino) not in seen:
                    seen.add((info.st_dev, info.st_ino))
                    total += info.st_size
    return total / 2**20


def cache_dir() -> Path:
    """`TASKBENCH_ENV_DIR`, else the user's cache (`$XDG_CACHE_HOME/taskbench/envs`)."""
    if os.environ.get("TASKBENCH_ENV_DIR"):
        return Path(os.environ["TASKBENCH_ENV_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "taskbench" / "envs"


def uv_binary() -> str:
    try:
        from uv import find_uv_bin

        return str(find_uv_bin())
    except (ImportError, FileNotFoundError):
        found = shutil.which("uv")
    if found is None:
        raise EnvironmentBuildError("uv is not installed: `pip install uv` (taskbench builds its environments with it)")
    return found


def ensure(request: EnvRequest, rebuild: bool = False, say: Callable[[str], None] = print) -> Env:
    """The cached environment for `request`, built (under a lock: parallel runs share the cache) when missing,
    incomplete, older than MAX_AGE_DAYS or `rebuild`."""
    path = cache_dir() / request.key
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    check_owned(path.parent)
    with FileLock(str(path) + ".lock", timeout=BUILD_TIMEOUT_S):
        env = load(path)
        if env is not None and not rebuild and time.time() - env.built_at < MAX_AGE_DAYS * 86400:
            return env
        say(f"building the {request.label} environment in {path} …")
        try:
            return _build(request, path)
        except EnvironmentBuildError as exc:
            if env is None or rebuild:
                raise
            say(f"kept the {request.label} environment of {time.ctime(env.built_at)}: {exc}")
            return env  # offline, say: the cached one, stale, rather than none


def check_owned(directory: Path) -> None:
    """Code in the cache runs as the harness's user (root for --hosts): a folder another user owns or can write would
    let them put theirs there."""
    info = directory.stat()
    if info.st_uid != os.geteuid() or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise UsageError(
            f"the environment cache {directory} is {stat.filemode(info.st_mode)}, owned by uid {info.st_uid}: it "
            f"must be yours alone (chmod go-w, or set TASKBENCH_ENV_DIR to a folder of your own)"
        )


def load(path: Path) -> Env | None:
    try:
        data = json.loads((path / MARKER).read_text())
        data["requirements"], data["constraints"] = tuple(data["requirements"]), tuple(data["constraints"])
        return Env(**data)
    except (OSError, ValueError, TypeError, KeyError):
        return None


def cached() -> list[Env]:
    """Every complete environment in the cache, newest first."""
    root = cache_dir()
    entries = [path for path in sorted(root.glob("*")) if BUILD_SEPARATOR not in path.name and path.is_dir()]
    envs = [env for path in entries if (env := load(path)) is not None]
    return sorted(envs, key=lambda env: env.built_at, reverse=True)


def _build(request: EnvRequest, path: Path) -> Env:
    """Built in a folder of its own beside the cached one (`<key>.build-<time>`), then `path` (a symbolic link) is
    switched to it in one rename: a failed build (offline, a conflict) leaves the old one as it was, and a stack
    still running the old one keeps it (its folder goes once no process runs from it: `_remove_unused`)."""
    started = time.monotonic()
    built = path.with_name(f"{path.name}{BUILD_SEPARATOR}{time.time_ns()}")
    building = built.with_name(built.name + ".building")
    shutil.rmtree(building, ignore_errors=True)
    uv, what = uv_binary(), f"the {request.label} environment could not be built"
    try:
        _uv(what, [uv, "venv", "--quiet", "--python", sys.executable, str(building)])
        building.joinpath("requirements.txt").write_text("\n".join(request.requirements) + "\n")
        # Compiled once here: where PYTHONDONTWRITEBYTECODE is set (CI images, Docker), every worker and API start
        # would compile its imports again (Celery's: 2.4 s of CPU instead of 0.6 s on this 2-core machine).
        install = [uv, "pip", "install", "--quiet", "--compile-bytecode", "--python", str(_python_of(building))]
        install += ["-r", str(building / "requirements.txt")]
        if request.constraints:
            building.joinpath("constraints.txt").write_text("\n".join(request.constraints) + "\n")
            install += ["-c", str(building / "constraints.txt")]
        _uv(what, install)
        _layer(_python_of(building))
        packages = freeze(_python_of(building))
    except EnvironmentBuildError:
        shutil.rmtree(building, ignore_errors=True)
        raise
    building.rename(built)  # the environment runs its modules with `python -m`: no script needs its old path
    env = Env(
        label=request.label,
        path=str(built),
        python=str(_python_of(built)),
        requirements=request.requirements,
        constraints=request.constraints,
        packages=packages,
        built_at=time.time(),
        build_s=time.monotonic() - started,
    )
    built.joinpath(MARKER).write_text(json.dumps(asdict(env), indent=1))
    _switch(path, built)
    _remove_unused(path)
    return env


def _switch(path: Path, built: Path) -> None:
    """`path` → `built`, atomically (rename over the old link); an environment of the old layout (a folder at
    `path`) moves aside first, kept for whoever runs it."""
    if path.is_dir() and not path.is_symlink():
        path.rename(path.with_name(f"{path.name}{BUILD_SEPARATOR}0"))
    link = path.with_name(path.name + ".link")
    link.unlink(missing_ok=True)
    link.symlink_to(built.name)
    os.replace(link, path)


def _remove_unused(path: Path) -> None:
    """Earlier builds of `path` that no process runs from any more."""
    current = path.resolve()
    earlier = [p for p in path.parent.glob(f"{path.name}{BUILD_SEPARATOR}*") if p.is_dir() and p.resolve() != current]
    if not earlier:
        return
    running = set()
    for process in psutil.process_iter(["exe", "cmdline"]):
        with contextlib.suppress(psutil.Error, TypeError):
            running.add(process.info["exe"] or "")
            running.add((process.info["cmdline"] or [""])[0])
    for folder in earlier:
        if not any(str(folder) in exe for exe in running if exe):
            shutil.rmtree(folder, ignore_errors=True)


def _python_of(path: Path) -> Path:
    return path / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _layer(python: Path) -> None:
    """The harness's site-packages after the environment's own: the service and the user's modules from there."""
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout.strip()  # fmt: skip
    outer = dict.fromkeys([*site.getsitepackages(), sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    if site.ENABLE_USER_SITE:
        outer[site.getusersitepackages()] = None
    lines = [f"import site; site.addsitedir({directory!r})" for directory in outer if Path(directory).is_dir()]
    Path(purelib, LAYER_PTH).write_text("\n".join(lines) + "\n")


def freeze(python: Path | str) -> dict[str, str]:
    out = _uv("freeze", [uv_binary(), "pip", "freeze", "--python", str(python)])
    packages: dict[str, str] = {}
    for line in out.splitlines():
        name, sep, version = line.partition("==")
        if sep:
            packages[canonicalize_name(name)] = version.strip()
    return packages


def check_requirement(spec: str) -> None:
    """`--with PKG==VERSION`: the index must have it; the resolver's reason in one line otherwise."""
    _uv(f"--with {spec}", [uv_binary(), "pip", "compile", "--quiet", "--no-deps", "--no-header", "-"], stdin=spec)


def _uv(what: str, argv: Sequence[str], stdin: str | None = None) -> str:
    try:
        out = subprocess.run(
            list(argv), input=stdin, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S,
            env={**os.environ, "UV_NO_PROGRESS": "1"},
        )  # fmt: skip
    except subprocess.TimeoutExpired as exc:
        raise EnvironmentBuildError(f"{what}: uv took more than {BUILD_TIMEOUT_S:.0f} s") from exc
    if out.returncode != 0:
        raise EnvironmentBuildError(f"{what}: {reason(out.stderr)}")
    return out.stdout


def reason(stderr: str) -> str:
    """uv's explanation as one line: the resolver's `Because …` sentence, else its last error lines."""
    lines = [line.strip(" ╰─▶×│").strip() for line in stderr.splitlines() if line.strip()]
    because = [line for line in lines if "Because" in line or line.startswith("cause:")]
    chosen = because or lines[-2:] or ["uv failed without a message"]
    text = " ".join(chosen).removeprefix("cause: ")
    return text if len(text) <= 400 else text[:397] + "…"
