"""Flags more than one command shares, and what they mean for the stack: implementations, environments,
brokers, servers, hosts, container limits and each queue's own flags."""

from __future__ import annotations

import argparse
import os
import stat
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol, runtime_checkable
from urllib.parse import urlsplit

import redis
from rich.console import Console

from taskbench import faults, implementations
from taskbench.argtypes import bounded
from taskbench.cli.types import EveryImplementation, milliseconds, redis_url
from taskbench.envs import environment, project_pins
from taskbench.errors import UsageError
from taskbench.hosts import cgroups, netns
from taskbench.implementations.base import BROKERS
from taskbench.record.results import ApiOptions, ContainerLimits, PluginOptions
from taskbench.stack import postgres_server, rabbitmq_server, redis_server
from taskbench_wire.env import POSTGRES_URL
from taskbench_wire.urls import is_amqp
from taskbench_wire.urls import redacted as _redact

DEFAULT_IMPLEMENTATIONS = list(implementations.DEFAULT)


IMPL_HELP = (
    f"{','.join(implementations.DEFAULT)} (default), all, or a list of: {', '.join(implementations.REGISTRY)}; "
    "NAME@VERSION runs that release of its queue beside the others (celery@5.5.3,celery)"
)


REQUIREMENTS_HELP = (
    "your project's pins (requirements.txt, uv.lock or pylock.toml), installed in every implementation's "
    "environment: your job runs on your dependencies; --with and NAME@VERSION win over them"
)


WITH_HELP = (
    "PKG==VERSION: measure that release (repeatable); it applies to every implementation's environment that "
    "installs PKG (celery==5.5.3: Celery's only; redis==5.3.1: every one)"
)


def add_environment_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--with", dest="with_packages", action="append", default=[], metavar="PKG==VERSION", help=WITH_HELP
    )
    parser.add_argument(
        "--rebuild-envs", action="store_true", help="build every implementation's environment again (newest releases)"
    )
    add_requirements_flag(parser)


def add_requirements_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--requirements", type=Path, metavar="FILE", help=REQUIREMENTS_HELP)


def project_pins_from(args: argparse.Namespace) -> tuple[str, ...]:
    return project_pins.read(args.requirements) if args.requirements else ()


AMQP_QUEUES = ", ".join(name for name, impl in implementations.REGISTRY.items() if "amqp" in impl.brokers)


BROKER_HELP = (
    f"where the jobs of {AMQP_QUEUES} wait: redis (default) or amqp (RabbitMQ: a private rabbitmq-server, or "
    "--broker-url); the other queues, job records, the ledger and worker heartbeats stay on Redis"
)


def add_server_flags(parser: argparse.ArgumentParser) -> None:
    """The servers a stack uses instead of its private ones: Redis, PostgreSQL, and the broker."""
    parser.add_argument(
        "--redis-url", type=redis_url, default=env_redis_url(), help="use this Redis instead of a private one"
    )
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get(POSTGRES_URL),
        help="the PostgreSQL queues' database instead of a private PostgreSQL (postgresql://USER:PASSWORD@HOST:PORT/DB)",
    )
    add_broker_flags(parser)


def add_broker_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--broker", choices=BROKERS, help=BROKER_HELP)
    parser.add_argument(
        "--broker-url",
        metavar="amqp://USER:PASSWORD@HOST:PORT/VHOST",
        help="with --broker amqp: use this RabbitMQ instead of a private one",
    )


@runtime_checkable
class ReadsApps(Protocol):
    """An implementation that measures the user's own queue app (`--app NAME=package.module:attribute`): it reads the
    app's settings in a child of its environment, before anything starts, into its options (UsageError when the app
    cannot run there)."""

    def read_app(
        self, options: PluginOptions, python: str, environ: Mapping[str, str], external: bool
    ) -> PluginOptions: ...


APP_QUEUES = tuple(name for name, impl in implementations.REGISTRY.items() if isinstance(impl, ReadsApps))


APP_HELP = (
    "QUEUE=PACKAGE.MODULE:ATTRIBUTE: run the jobs through your own configured app too (for each queue, what that "
    "is: docs/your-job.md), imported from the working directory, every setting yours (acknowledgement, prefetch, "
    "timeouts, tries, serializer, queues) but taskbench's servers and --concurrency, as the implementation "
    f"QUEUE+app, beside taskbench's QUEUE when --implementations names it: {', '.join(APP_QUEUES)}"
)


def _app(text: str) -> tuple[str, str]:
    """`--app celery=shop.celery:app` → (queue, path)."""
    queue, equals, path = text.partition("=")
    module, colon, attribute = path.partition(":")
    if not equals or not colon or not module.strip() or not attribute.strip():
        raise argparse.ArgumentTypeError(f"{text!r}: give QUEUE=PACKAGE.MODULE:ATTRIBUTE, e.g. celery=shop.celery:app")
    if queue not in APP_QUEUES:
        raise argparse.ArgumentTypeError(
            f"{text!r}: --app runs your own app on {', '.join(APP_QUEUES)} only, for now (not {queue or 'nothing'})"
        )
    return queue, f"{module.strip()}:{attribute.strip()}"


def add_app_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--app", action="append", dest="apps", type=_app, default=[], metavar="QUEUE=PATH", help=APP_HELP
    )


def add_app_labels(args: argparse.Namespace) -> None:
    """--app QUEUE=PATH runs `QUEUE+app` beside what --implementations names (taskbench's set-up of QUEUE, if named
    there, side by side with it); `QUEUE+app` named without its --app is a mistake."""
    apps = dict(args.apps)
    for label in args.implementations:
        if implementations.runs_app(label) and implementations.plugin_name(label) not in apps:
            queue = implementations.plugin_name(label)
            raise UsageError(f"{label} runs your own {queue} app: add --app {queue}=PACKAGE.MODULE:ATTRIBUTE")
    for queue in apps:
        if implementations.app_label(queue) not in args.implementations:
            args.implementations.append(implementations.app_label(queue))


def read_apps(args: argparse.Namespace, options: dict[str, PluginOptions], console: Console) -> None:
    """--app, before anything starts: each app is imported in a child of its queue's environment (built if missing),
    from the working directory (as the API and worker will, `StackConfig.job_dir`), and its settings go into the
    options of `QUEUE+app`; one that cannot run there is one line and exit 2."""
    if not args.apps:
        return
    if getattr(args, "url", None):
        raise UsageError("--app runs your app in a stack that taskbench starts: drop --url")
    if args.broker_url:
        raise UsageError(
            "--app keeps your app's queue names, which on a RabbitMQ taskbench does not own could be someone's: drop "
            "--broker-url (a private RabbitMQ)"
        )
    check_job_folder(Path.cwd(), "--app")
    path = os.pathsep.join(filter(None, [str(Path.cwd()), os.environ.get("PYTHONPATH", "")]))
    environ = {**os.environ, "PYTHONSAFEPATH": "1", "PYTHONPATH": path}
    concurrency = args.concurrency[0] if isinstance(args.concurrency, list) else args.concurrency
    for queue, app in dict(args.apps).items():
        label = implementations.app_label(queue)
        impl = implementations.get(label)
        assert isinstance(impl, ReadsApps), queue
        with console.status(f"reading your app {app} in {implementations.title(queue)}'s environment…"):
            env = environment.prepare(
                [label], args.with_packages, options, rebuild=args.rebuild_envs, say=console.print
            )[label]
            options[label] = impl.read_app({"app": app}, env.python, environ, external=bool(args.redis_url))
        console.print(f"[bold]--app {queue}={app}[/]: {implementations.title(label)}, as it is configured:")
        for key, value in impl.settings(concurrency, options[label], api_options(args)).items():
            console.print(f"  {key}: {value}", markup=False, soft_wrap=True)


def add_hosts_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--hosts",
        type=bounded(int, 1, netns.MAX_HOSTS),
        help="N hosts on this machine: each queue's worker in a network namespace of its own (in turn over the N), "
        "linked by veth pairs to a bridge in 198.18.0.0/15 with no uplink, so traffic goes over IP; Linux, as root "
        "(CAP_NET_ADMIN and CAP_SYS_ADMIN)",
    )
    parser.add_argument(
        "--link-delay",
        type=milliseconds,
        metavar="MS",
        help="with --hosts: netem delay on every host's link, each way (2ms); exit 2 where the kernel has no netem",
    )


def hosts_from(args: argparse.Namespace) -> tuple[int, float | None]:
    """--hosts and --link-delay, checked before anything starts: the privilege, and what the namespaces reach
    (the private servers on the bridge address)."""
    hosts: int = args.hosts or 0
    delay: float | None = args.link_delay
    if delay is not None and not hosts:
        raise UsageError("--link-delay delays the links of --hosts: add --hosts N")
    if not hosts:
        return 0, None
    if getattr(args, "url", None):
        raise UsageError("--hosts places the workers of a stack that taskbench starts: drop --url or --hosts")
    netns.check_privilege()
    for flag in ("--redis-url", "--broker-url", "--postgres-url"):  # the namespaces reach only their bridge
        if getattr(args, flag[2:].replace("-", "_")):
            raise UsageError(f"--hosts needs the private servers, which listen on the bridge too: drop {flag}")
    if delay is not None:
        problem = netns.netem_problem(uuid.uuid4().hex)
        if problem:
            raise UsageError(problem)
    return hosts, delay


def worker_flags(parser: argparse.ArgumentParser, command: str) -> None:
    """The API's processes (every implementation's), then each implementation's own flags (Celery's pool)."""
    parser.add_argument(
        "--api-workers",
        type=bounded(int, 1, 64),
        default=1,
        help="uvicorn --workers N: N API processes, each with its own thread pool and BackgroundTasks records",
    )
    parser.add_argument(
        "--graceful-timeout",
        type=bounded(int, 0, 3600),
        help="uvicorn --timeout-graceful-shutdown: seconds a SIGTERMed API waits for background tasks (default: "
        "uvicorn's, no limit)",
    )
    parser.add_argument(
        "--max-tasks-per-child",
        type=bounded(int, 1, 1_000_000),
        help="replace a worker process after this many jobs, where the queue can: Celery's prefork children, "
        "taskiq's worker processes (default: never; RQ forks a process per job already)",
    )
    cgroups.add_arguments(parser)  # --worker-cpus, --worker-memory, --api-cpus, --api-memory
    for impl in implementations.REGISTRY.values():
        impl.add_arguments(parser, command)


def container_limits(
    args: argparse.Namespace, faults_run: list[str], everything: bool = False, console: Console | None = None
) -> tuple[ContainerLimits, ContainerLimits]:
    """The workers' and the APIs' container limits; cgroups checked here, before anything starts (exit 2 without
    the privilege), when a limit or a fault needs them (worker-oom). `--faults all` (`everything`) on a machine
    without them leaves those faults out of `faults_run`, saying so."""
    worker, api = cgroups.limits_from(args)
    if (worker.is_set or api.is_set) and getattr(args, "url", None):
        raise UsageError("--worker-cpus, --worker-memory, --api-cpus and --api-memory set up the stack: drop --url")
    if worker.is_set or api.is_set:
        cgroups.check()
    elif contained := [f for f in faults_run if faults.get(f).needs_cgroups]:
        try:
            cgroups.check()
        except UsageError as exc:
            if not everything:
                raise UsageError(f"--faults {','.join(contained)}: {exc}") from exc
            faults_run[:] = [f for f in faults_run if f not in contained]
            if console is not None:
                console.print(f"[yellow]{' and '.join(contained)} left out[/]: {exc}")
    return worker, api


def api_options(args: argparse.Namespace) -> ApiOptions:
    return ApiOptions(api_workers=args.api_workers, graceful_timeout_s=args.graceful_timeout)


def plugin_options(args: argparse.Namespace) -> dict[str, PluginOptions]:
    """Each implementation's own options that differ from its defaults; one given for an implementation the
    run leaves out is a mistake (it would change nothing)."""
    labels = args.implementations
    names = {implementations.plugin_name(label) for label in labels if not implementations.runs_app(label)}
    queues = [queue for queue, _ in getattr(args, "apps", None) or []]
    if len(set(queues)) != len(queues):
        raise UsageError(f"--app: one app per queue ({', '.join(sorted(set(queues)))} given twice)")
    given = {name: impl.options_from(args) for name, impl in implementations.REGISTRY.items()}
    given = {name: options for name, options in given.items() if options}
    taken = {key for name, options in given.items() if name in names for key in options}  # a flag several share
    for name, options in given.items():
        if name not in names and (unused := [key for key in options if key not in taken]):
            flags = ", ".join(f"--{key.replace('_', '-')}" for key in unused)
            yours = " (--app runs your app on its own settings)" if name in queues else ""
            raise UsageError(
                f"{flags} set {implementations.title(name)}'s worker: add {name} to --implementations{yours}"
            )
    return given


def postgres_setting(labels: list[str], url: str | None) -> str | None:
    """What the run records of PostgreSQL: None where no queue needed it, else `embedded` or the redacted URL."""
    if not any(implementations.get(label).needs_postgres for label in labels):
        return None
    return _redact(url) if url else "embedded"


def env_redis_url() -> str | None:
    """A Redis named by taskbench's own variable, never another tool's (Celery's broker variable, REDIS_URL): a
    project's shell names its team's Redis there, which a benchmark must not adopt without being told."""
    return os.environ.get("TASKBENCH_REDIS_URL") or None


def broker_from(args: argparse.Namespace) -> tuple[str, str | None]:
    """--broker and --broker-url, checked before anything starts: a RabbitMQ that cannot be had is exit 2."""
    url: str | None = args.broker_url
    broker: str = args.broker or ("amqp" if url else "redis")
    if url and broker != "amqp":
        raise UsageError("--broker-url names a RabbitMQ and goes with --broker amqp (a Redis is --redis-url)")
    if url and not is_amqp(url):
        raise UsageError(f"--broker-url {_redact(url)}: give an amqp:// URL (a Redis is --redis-url)")
    if broker == "amqp" and getattr(args, "url", None):
        raise UsageError("--broker needs a stack that taskbench started itself: drop --url or --broker")
    if broker == "amqp" and not any("amqp" in implementations.get(name).brokers for name in args.implementations):
        raise UsageError(
            f"--broker amqp: none of {', '.join(args.implementations)} runs on RabbitMQ; add {AMQP_QUEUES}"
        )
    labels = [implementations.plugin_name(label) for label in args.implementations]
    twice = sorted(
        {name for name in labels if labels.count(name) > 1 and "amqp" in implementations.REGISTRY[name].brokers}
    )
    if broker == "amqp" and twice:
        raise UsageError(
            f"--broker amqp runs one release of {', '.join(twice)} at a time (both would share one RabbitMQ queue): "
            "compare releases on Redis, or in two runs"
        )
    if broker == "amqp" and url:
        problem = rabbitmq_server.amqp_problem(url, timeout_s=3.0)
        if problem:
            raise UsageError(
                f"RabbitMQ does not answer at --broker-url {_redact(url)} ({problem}): start it or fix the URL"
            )
    elif broker == "amqp":
        rabbitmq_server.find_rabbitmq_server()  # or one line saying what to install
        rabbitmq_server.find_epmd()
    return broker, url


def postgres_from(args: argparse.Namespace, console: Console) -> str | None:
    """--postgres-url, checked before anything starts; None: a private PostgreSQL where one is needed. With no
    server to start, asking for a PostgreSQL queue is exit 2, and `all` runs the others (saying so)."""
    url: str | None = args.postgres_url
    wanted = [label for label in args.implementations if implementations.get(label).needs_postgres]
    if url and urlsplit(url).scheme not in ("postgresql", "postgres"):
        raise UsageError(f"--postgres-url {_redact(url)}: give a postgresql://USER:PASSWORD@HOST:PORT/DB URL")
    if url and not wanted:
        queues = ", ".join(n for n, i in implementations.REGISTRY.items() if i.needs_postgres)
        raise UsageError(f"--postgres-url: none of {', '.join(args.implementations)} keeps jobs there; add {queues}")
    if not wanted or getattr(args, "url", None):
        return url
    if url:
        problem = postgres_server.problem(url, timeout_s=3.0)
        if problem:
            raise UsageError(f"PostgreSQL does not answer at --postgres-url {_redact(url)} ({problem}): fix the URL")
        return url
    problem = postgres_server.unavailable()
    if problem:
        if not isinstance(args.implementations, EveryImplementation):
            raise UsageError(problem)
        args.implementations = [label for label in args.implementations if label not in wanted]
        console.print(f"[yellow]{', '.join(wanted)} left out[/]: {problem}")
    return None


def no_pickle_on_theirs(args: argparse.Namespace, console: Console) -> None:
    """A queue that can only unpickle its jobs runs on taskbench's private Redis alone: on --redis-url, whoever can
    write there could run code in its worker (docs/security.md). Named, one line; under `all`, left out."""
    if not args.redis_url or getattr(args, "url", None):
        return
    picklers = [label for label in args.implementations if implementations.get(label).pickles_only]
    if not picklers:
        return
    why = implementations.get(picklers[0]).pickles_only
    if not isinstance(args.implementations, EveryImplementation):
        raise UsageError(f"{', '.join(picklers)} on --redis-url: {why}; drop --redis-url, or leave it out")
    args.implementations = EveryImplementation(label for label in args.implementations if label not in picklers)
    console.print(f"[yellow]{', '.join(picklers)} left out[/] on --redis-url: {why}")


def redis_fits(args: argparse.Namespace) -> None:
    """Before anything starts: a Redis every selected queue runs on (streaQ needs 7), the one --redis-url names or
    a private one this machine can start (taskbench.stack.redis_server), else one line."""
    if getattr(args, "url", None):
        return
    minimum, needed_by = implementations.redis_minimum(args.implementations)
    if not args.redis_url:
        redis_server.server_for(minimum, needed_by)
        return
    try:
        info = redis.Redis.from_url(args.redis_url, socket_timeout=3, socket_connect_timeout=3).info("server")
    except redis.RedisError as exc:
        raise UsageError(
            f"Redis does not answer at --redis-url {_redact(args.redis_url)} ({exc}): fix the URL"
        ) from None
    version = tuple(int(part) for part in str(info.get("redis_version", "0")).split(".")[:3] if part.isdigit())
    if version < minimum:
        raise UsageError(
            f"{needed_by} needs Redis ≥ {'.'.join(map(str, minimum))}, and the one at --redis-url is "
            f"{info.get('redis_version')}: name a newer one, or leave {needed_by} out"
        )


GATE_FAILED = 3  # --fail-on, compare --fail-above: the run worked, and its answer is the one CI should stop on


def check_job_folder(folder: Path, flag: str = "--job") -> None:
    """As root, --job (and --app) imports code from the working directory only when no other user can write it:
    whoever could would run code as root in the API and every worker."""
    if os.geteuid() != 0:
        return
    for part in (folder, *folder.parents):
        mode = part.stat()
        others = mode.st_mode & stat.S_IWOTH and not mode.st_mode & stat.S_ISVTX
        if mode.st_uid != 0 or others or (mode.st_mode & stat.S_IWGRP and mode.st_gid != 0):
            raise UsageError(
                f"{flag}: {part} can be written by a user other than root, and as root taskbench imports your "
                f"{'app' if flag == '--app' else 'job'} from the working directory only when no one else can change "
                "it: run from a folder only root writes"
            )
