"""Where each implementation runs and what it ran on: its environment, built before any service starts, and the
versions and machine recorded in every result so a figure can be traced to where it was measured."""

from __future__ import annotations

import os
import platform
from collections.abc import Callable, Mapping, Sequence
from importlib import metadata

import psutil
import redis
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from taskbench import implementations, postgres_server, project_pins, venvs
from taskbench.errors import UsageError
from taskbench.rabbitmq_server import server_version
from taskbench.results import EnvironmentFreeze, Machine, PluginOptions, RunEnvironment
from taskbench.sampler import memory_measure

# The harness's own packages, recorded beside each environment's.
HARNESS_PACKAGES = ("taskbench", "pycurl", "aiohttp", "httpx", "uv")
# What the reports name of an implementation's environment: the service's packages and its queue's.
SERVICE_PACKAGES = (
    *(Requirement(spec).name for spec in venvs.SERVICE_PACKAGES),
    *("starlette", "uvloop", "httptools", "anyio"),  # what FastAPI and uvicorn[standard] bring
)


def parse_with(spec: str) -> Requirement:
    """`--with PKG==VERSION` (any requirement specifier), checked for form here and against the index later."""
    try:
        requirement = Requirement(spec)
    except InvalidRequirement as exc:
        reason = str(exc).splitlines()[0]
        raise UsageError(
            f"--with {spec!r}: not a requirement ({reason}); give PKG==VERSION, e.g. celery==5.5.3"
        ) from exc
    if requirement.url or requirement.marker:
        raise UsageError(f"--with {spec!r}: give a package and a version, e.g. celery==5.5.3")
    return requirement


def requirements_for(label: str, options: PluginOptions) -> tuple[str, ...]:
    """The service's packages and the implementation's; `name@VERSION` pins its queue's package to VERSION."""
    impl = implementations.get(label)
    version = implementations.release(label)
    packages = [*venvs.SERVICE_PACKAGES, *impl.requirements(options)]
    if version is not None:
        queue = canonicalize_name(impl.queue_package)
        pinned = False
        for i, spec in enumerate(packages):
            requirement = Requirement(spec)
            if canonicalize_name(requirement.name) == queue:
                extras = f"[{','.join(sorted(requirement.extras))}]" if requirement.extras else ""
                packages[i], pinned = f"{requirement.name}{extras}=={version}", True
        if not pinned:
            packages.append(f"{impl.queue_package}=={version}")
    return tuple(packages)


def prepare(
    labels: Sequence[str],
    with_specs: Sequence[str] = (),
    options: Mapping[str, PluginOptions] | None = None,
    rebuild: bool = False,
    say: Callable[[str], None] = print,
    project: Sequence[str] = (),
) -> dict[str, venvs.Env]:
    """Every label's environment, built or taken from the cache, before any service starts. `--with` pins apply
    wherever the resolver needs the package; one the index lacks, or no environment uses, is a usage error.
    `options`: each implementation's own, by registry name (Celery's pool decides whether gevent is installed).
    `project`: the project's own pins (`--requirements`, taskbench.project_pins), installed in every one."""
    options = options or {}
    pins = [parse_with(spec) for spec in with_specs]
    for pin in pins:
        venvs.check_requirement(str(pin))
    constraints = tuple(str(pin) for pin in pins)
    envs = {}
    for label in labels:
        wanted = requirements_for(label, options.get(implementations.plugin_name(label), {}))
        release = [implementations.get(label).queue_package] if implementations.release(label) else []
        wanted = project_pins.merged(wanted, project, keep=[pin.name for pin in pins] + release)
        envs[label] = venvs.ensure(venvs.EnvRequest(label, wanted, constraints), rebuild=rebuild, say=say)
    for pin in pins:
        if not any(env.version(pin.name) for env in envs.values()):
            raise UsageError(
                f"--with {pin}: no environment of {', '.join(labels)} installs {pin.name}; "
                "name a package one of their queues uses"
            )
    return envs


def describe(
    redis_url: str | None,
    amqp_url: str | None = None,
    postgres_url: str | None = None,
    envs: dict[str, venvs.Env] | None = None,
    served: dict[str, dict[str, str]] | None = None,
) -> RunEnvironment:
    """`versions`: the harness's packages, then each implementation's service and queue packages from its own
    environment (`celery`, and `celery (celery@5.5.3)` where a second release or environment differs);
    `environments`: every package of every environment (its `uv pip freeze`), with what it was asked to install.
    `served`: for a service started by hand (--url), what its `/` says is installed, by implementation."""
    versions: dict[str, str] = {name: _version(name) for name in HARNESS_PACKAGES}
    environments: dict[str, EnvironmentFreeze] = {}
    packages = {label: env.packages for label, env in (envs or {}).items()} | (served or {})
    # the releases the index serves first, so that a pinned release (`celery@5.5.3`) is the one named apart
    for label, installed in sorted(packages.items(), key=lambda item: implementations.release(item[0]) is not None):
        impl = implementations.get(label)
        names = [*SERVICE_PACKAGES, *(Requirement(p).name for p in impl.requirements({}))]
        for name in dict.fromkeys(canonicalize_name(n) for n in names):
            version = installed.get(name)
            if version is not None:
                versions[name if versions.get(name, version) == version else f"{name} ({label})"] = version
        env = (envs or {}).get(label)
        environments[label] = EnvironmentFreeze(
            python=platform.python_version(),
            requirements=list(env.requirements) if env else [],
            constraints=list(env.constraints) if env else [],
            packages=installed,
            built_at=env.built_at if env else None,
            where=str(env.path) if env else "the service started by hand (--url)",
        )
    if redis_url:
        try:
            info = redis.Redis.from_url(redis_url, socket_timeout=2).info("server")
            valkey = f" (Valkey {info['valkey_version']})" if "valkey_version" in info else ""
            versions["redis-server"] = f"{info['redis_version']}{valkey}"
        except redis.RedisError:
            versions["redis-server"] = "unreachable"
    if amqp_url:  # --broker amqp
        versions["rabbitmq-server"] = server_version(amqp_url)
    if postgres_url:  # the PostgreSQL queues
        versions |= postgres_server.describe(postgres_url)
    return RunEnvironment(versions=versions, environments=environments, machine=this_machine())


def this_machine() -> Machine:
    return Machine(
        platform=platform.platform(),
        python=platform.python_version(),
        cpu_count=os.cpu_count(),
        memory_gb=psutil.virtual_memory().total / 2**30,
        hostname=platform.node(),
        job_memory=memory_measure(),  # what the job process's memory is: pss, uss or rss (taskbench.sampler)
    )


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"
