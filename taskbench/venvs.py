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

import hashlib
import json
import os
import platform
import shutil
import site
import subprocess
import sys
import sysconfig
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from filelock import FileLock
from packaging.utils import canonicalize_name

from taskbench.errors import EnvironmentBuildError

# What the service itself needs in every environment; the queue's packages come from its plugin.
SERVICE_PACKAGES = ("fastapi>=0.110", "uvicorn[standard]>=0.29", "redis>=5.0", "pydantic>=2.6", "psutil>=5.9")
MAX_AGE_DAYS = 7.0
MARKER = "taskbench-env.json"  # written last: an environment without it is incomplete and built again
LAYER_PTH = "zz_taskbench_layer.pth"  # processed after the environment's own .pth files
BUILD_TIMEOUT_S = 600.0
FORMAT = 1  # bump when the layout changes: every cached environment is built again


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
    path.parent.mkdir(parents=True, exist_ok=True)
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
    envs = [env for path in sorted(root.glob("*")) if path.is_dir() and (env := load(path)) is not None]
    return sorted(envs, key=lambda env: env.built_at, reverse=True)


def _build(request: EnvRequest, path: Path) -> Env:
    """Built beside the cached one and moved into its place once complete, so a failed build (offline, a
    conflict) leaves the old one as it was."""
    started = time.monotonic()
    building = path.with_name(path.name + ".building")
    shutil.rmtree(building, ignore_errors=True)
    uv, what = uv_binary(), f"the {request.label} environment could not be built"
    try:
        _uv(what, [uv, "venv", "--quiet", "--python", sys.executable, str(building)])
        building.joinpath("requirements.txt").write_text("\n".join(request.requirements) + "\n")
        install = [uv, "pip", "install", "--quiet", "--python", str(_python_of(building))]
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
    shutil.rmtree(path, ignore_errors=True)
    building.rename(path)  # the environment runs its modules with `python -m`: no script needs its old path
    env = Env(
        label=request.label,
        path=str(path),
        python=str(_python_of(path)),
        requirements=request.requirements,
        constraints=request.constraints,
        packages=packages,
        built_at=time.time(),
        build_s=time.monotonic() - started,
    )
    path.joinpath(MARKER).write_text(json.dumps(asdict(env), indent=1))
    return env


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
