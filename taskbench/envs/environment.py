"""Where each implementation runs: its environment, built before any service starts (what it ran on is recorded
by `taskbench.run.provenance`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from taskbench import implementations
from taskbench.envs import project_pins, venvs
from taskbench.errors import UsageError
from taskbench.record.results import PluginOptions

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
    `project`: the project's own pins (`--requirements`, taskbench.envs.project_pins), installed in every one."""
    options = options or {}
    pins = [parse_with(spec) for spec in with_specs]
    for pin in pins:
        venvs.check_requirement(str(pin))
    constraints = tuple(str(pin) for pin in pins)
    envs = {}
    for label in labels:
        wanted = requirements_for(label, implementations.options_of(options, label))
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
