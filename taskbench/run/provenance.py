"""What a run records about how it was measured, so that its reports render from the record alone: the taskbench
version and git revision, each implementation as it ran (its settings and how each workload runs there, not as a
later version of the registry would describe it), and the versions and machine it ran on, so a figure can be
traced to where it was measured."""

from __future__ import annotations

import os
import platform
import shlex
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import psutil
import redis
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from taskbench import __version__, implementations
from taskbench.envs import venvs
from taskbench.envs.environment import HARNESS_PACKAGES, SERVICE_PACKAGES
from taskbench.measure.sampler import memory_measure
from taskbench.record.results import Described, EnvironmentFreeze, Machine, RunEnvironment, RunSettings
from taskbench.stack import postgres_server
from taskbench.stack.rabbitmq_server import server_version
from taskbench_wire.urls import redacted

SOURCE = Path(__file__).resolve().parents[2]


def git_revision() -> str | None:
    """The commit taskbench runs from (with `+dirty` for uncommitted changes), when it runs from a checkout."""
    try:
        found = subprocess.run(
            ["git", "-C", str(SOURCE), "describe", "--always", "--dirty=+dirty", "--abbrev=12"],
            capture_output=True, text=True, timeout=5, check=True,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return found.stdout.strip() or None


def describe(label: str, settings: RunSettings, concurrency: int | None = None) -> Described:
    """`label` as it runs under `settings` (at `concurrency` when a sweep or search sets it)."""
    impl = implementations.get(label)
    options = settings.options_of(label)
    workloads = {w: w for w in settings.workloads} | {j.path: j.behaves_like for j in settings.user_jobs}
    return Described(
        title=implementations.title(label),
        job_process=implementations.job_process(label),
        settings=impl.settings_on(
            concurrency or settings.concurrency, settings.broker, options, settings.api, settings.external_servers
        ),
        how_it_runs={name: impl.how_it_runs(like, options) for name, like in workloads.items()},
        broker=impl.broker_for(settings.broker) if impl.has_worker else "",
    )


def version() -> str:
    return __version__


def command_line(argv: list[str] | None = None) -> str:
    """The command as typed, every URL in it redacted (a password in --redis-url must not reach a report)."""
    words = ["taskbench", *(sys.argv[1:] if argv is None else argv)]
    return shlex.join(redacted(w) if "://" in w else w for w in words)


def environment(
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
        job_memory=memory_measure(),  # what the job process's memory is: pss, uss or rss (taskbench.measure.sampler)
    )


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"
