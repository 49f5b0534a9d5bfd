"""`taskbench serve | run | report | compare`. A mistake on the command line is one line and exit code 2."""

from __future__ import annotations

import argparse
import os
import re
import signal
import stat
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import NoReturn, Protocol, runtime_checkable
from urllib.parse import urlsplit

import redis
from packaging.version import InvalidVersion, Version
from rich.console import Console

from taskbench import __version__, faults, implementations
from taskbench.analysis.models import AnalysedRun
from taskbench.argtypes import bounded
from taskbench.envs import environment, project_pins, venvs
from taskbench.errors import StackError, UsageError
from taskbench.hosts import cgroups, netns
from taskbench.implementations.base import BROKERS
from taskbench.record.results import ApiOptions, ContainerLimits, LoadOptions, PluginOptions, RunSettings, Thresholds
from taskbench.report import content, digest, files, terminal
from taskbench.report.compare import DEFAULT_GATED, GATED_FIGURES, compare
from taskbench.run import plan
from taskbench.run.run import RunOptions, claim_folder, run
from taskbench.stack import postgres_server, rabbitmq_server, redis_server, remote_worker
from taskbench.stack.stack import Stack, StackConfig, StackState
from taskbench.target.target import (
    DEFAULT_DEADLINE_S,
    DEFAULT_POLL_CONCURRENCY,
    DEFAULT_POLL_INTERVAL_S,
    FaultCommand,
    TargetOptions,
)
from taskbench.target.target_report import run as run_target
from taskbench.target.target_script import load as load_scenario
from taskbench.user_job import job_check
from taskbench_wire.enums import MIDDLEWARES
from taskbench_wire.env import HOST_LABEL, POSTGRES_URL
from taskbench_wire.urls import is_amqp
from taskbench_wire.urls import redacted as _redact

MAX_JOBS = 100_000
MAX_DURATION_S = 3600.0
MAX_CONCURRENCY = 256


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"taskbench: {message} (see `{self.prog} --help`)\n")


def _csv(
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


_job_counts = _whole_numbers("job count", MAX_JOBS, "10,50,100")
MAX_RATE = 10_000.0  # jobs per second: far past what one machine's harness offers (benchmarks/ says how far)
LOAD_FOR_S = LoadOptions().for_s
MIN_FOR_S = 2.0  # a step shorter than this has no steady part after its warm-up
MAX_FOR_S = 24 * 3600.0


def _rates(text: str) -> list[float]:
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


def _seconds(text: str) -> float:
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


_concurrencies = _whole_numbers("concurrency", MAX_CONCURRENCY, "4,16,40", once=True)


class EveryImplementation(list[str]):
    """`--implementations all`: every one this machine can run (see `_postgres`)."""


def _implementations(text: str) -> list[str]:
    """`all`, or registry names, each optionally at a release of its queue: `celery@5.5.3,celery`."""
    items = [t.strip() for t in text.split(",") if t.strip()]
    if items == ["all"]:
        return EveryImplementation(implementations.REGISTRY)
    choices = f"choose from {', '.join(implementations.REGISTRY)} or all, each optionally NAME@VERSION"
    if not items:
        raise argparse.ArgumentTypeError(f"{text!r}: {choices}")
    for item in items:
        name, sep, version = item.partition(implementations.RELEASE_SEPARATOR)
        if name not in implementations.REGISTRY:
            raise argparse.ArgumentTypeError(f"{item!r}: {choices}")
        if sep:
            try:
                Version(version)
            except InvalidVersion:
                raise argparse.ArgumentTypeError(f"{item!r}: {version!r} is not a release, e.g. celery@5.5.3") from None
    return list(dict.fromkeys(items))


def _as_json_source(text: str) -> tuple[str | None, str | None]:
    return (text, None)


def _as_factory_source(text: str) -> tuple[str | None, str | None]:
    return (None, text)


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


def _add_environment_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--with", dest="with_packages", action="append", default=[], metavar="PKG==VERSION", help=WITH_HELP
    )
    parser.add_argument(
        "--rebuild-envs", action="store_true", help="build every implementation's environment again (newest releases)"
    )
    _add_requirements_flag(parser)


def _add_requirements_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--requirements", type=Path, metavar="FILE", help=REQUIREMENTS_HELP)


def _project_pins(args: argparse.Namespace) -> tuple[str, ...]:
    return project_pins.read(args.requirements) if args.requirements else ()


AMQP_QUEUES = ", ".join(name for name, impl in implementations.REGISTRY.items() if "amqp" in impl.brokers)
BROKER_HELP = (
    f"where the jobs of {AMQP_QUEUES} wait: redis (default) or amqp (RabbitMQ: a private rabbitmq-server, or "
    "--broker-url); the other queues, job records, the ledger and worker heartbeats stay on Redis"
)


def _add_broker(parser: argparse.ArgumentParser) -> None:
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
    "QUEUE=PACKAGE.MODULE:ATTRIBUTE: run the jobs through your own configured app, imported from the working "
    f"directory (its acks, prefetch, visibility timeout, pool, time limits, serializer, queues and routing; "
    f"taskbench's servers and --concurrency): {', '.join(APP_QUEUES)} for now"
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


def _add_app(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--app", action="append", dest="apps", type=_app, default=[], metavar="QUEUE=PATH", help=APP_HELP
    )


def _read_apps(args: argparse.Namespace, options: dict[str, PluginOptions], console: Console) -> None:
    """--app, before anything starts: each app is imported in a child of its queue's environment (built if missing),
    from the working directory (as the API and worker will, `StackConfig.job_dir`), and its settings go into that
    queue's options; one that cannot run there is one line and exit 2."""
    if not args.apps:
        return
    if getattr(args, "url", None):
        raise UsageError("--app runs your app in a stack that taskbench starts: drop --url")
    if args.broker_url:
        raise UsageError(
            "--app keeps your app's queue names, which on a RabbitMQ taskbench does not own could be someone's: drop "
            "--broker-url (a private RabbitMQ)"
        )
    _check_job_folder(Path.cwd(), "--app")
    path = os.pathsep.join(filter(None, [str(Path.cwd()), os.environ.get("PYTHONPATH", "")]))
    environ = {**os.environ, "PYTHONSAFEPATH": "1", "PYTHONPATH": path}
    for name, app in dict(args.apps).items():
        impl = implementations.REGISTRY[name]
        assert isinstance(impl, ReadsApps), name
        label = next(label for label in args.implementations if implementations.plugin_name(label) == name)
        with console.status(f"reading your app {app} in {implementations.title(label)}'s environment…"):
            env = environment.prepare(
                [label], args.with_packages, options, rebuild=args.rebuild_envs, say=console.print
            )[label]
            external = bool(args.redis_url)
            options[name] = impl.read_app(options.get(name, {}), env.python, environ, external)
        concurrency = args.concurrency[0] if isinstance(args.concurrency, list) else args.concurrency
        console.print(
            f"[bold]--app {name}={app}[/]: {implementations.title(label)} runs your app, as it is configured:"
        )
        for key, value in implementations.get(label).settings(concurrency, options[name], api_options(args)).items():
            console.print(f"  {key}: {value}", markup=False, soft_wrap=True)


def _milliseconds(text: str) -> float:
    """Milliseconds, with or without the unit: 2ms, 0.5."""
    try:
        value = float(text.strip().removesuffix("ms"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give milliseconds, e.g. 2ms") from None
    if not 0 < value <= 10_000:
        raise argparse.ArgumentTypeError(f"{text!r}: above 0 and at most 10000 ms")
    return value


def _add_hosts(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--hosts",
        type=bounded(int, 1, netns.MAX_HOSTS),
        help="N hosts on this machine: each queue's worker in a network namespace of its own (in turn over the N), "
        "linked by veth pairs to a bridge in 198.18.0.0/15 with no uplink, so traffic goes over IP; Linux, as root "
        "(CAP_NET_ADMIN and CAP_SYS_ADMIN)",
    )
    parser.add_argument(
        "--link-delay",
        type=_milliseconds,
        metavar="MS",
        help="with --hosts: netem delay on every host's link, each way (2ms); exit 2 where the kernel has no netem",
    )


def _hosts(args: argparse.Namespace) -> tuple[int, float | None]:
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


def _worker_flags(parser: argparse.ArgumentParser, command: str) -> None:
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
    names = {implementations.plugin_name(label) for label in args.implementations}
    queues = [queue for queue, _ in getattr(args, "apps", None) or []]
    if len(set(queues)) != len(queues):
        raise UsageError(f"--app: one app per queue ({', '.join(sorted(set(queues)))} given twice)")
    given = {name: impl.options_from(args) for name, impl in implementations.REGISTRY.items()}
    given = {name: options for name, options in given.items() if options}
    for name, options in given.items():
        if name not in names:
            flags = ", ".join(f"--{key.replace('_', '-')}" for key in options)
            raise UsageError(f"{flags} set {implementations.title(name)}'s worker: add {name} to --implementations")
    return given


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="taskbench", description="When do FastAPI's BackgroundTasks stop being enough?")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    parser.add_argument("--version", action="version", version=f"taskbench {__version__}")
    serve = sub.add_parser("serve", help="start Redis and each implementation's API and worker; Ctrl-C stops all")
    serve.add_argument(
        "--host", default="127.0.0.1", help="the first API's address (0.0.0.0: see Troubleshooting before you do)"
    )
    serve.add_argument("--port", type=bounded(int, 1, 65535), default=8000, help="the first API's port")
    serve.add_argument(
        "--concurrency", type=bounded(int, 1, MAX_CONCURRENCY), default=4, help="each queue's worker concurrency"
    )
    serve.add_argument(
        "--implementations", type=_implementations, default=list(implementations.DEFAULT), help=IMPL_HELP
    )
    serve.add_argument(
        "--redis-url", type=_redis_url, default=_env_redis_url(), help="use this Redis instead of a private one"
    )
    serve.add_argument(
        "--postgres-url",
        default=os.environ.get(POSTGRES_URL),
        help="the PostgreSQL queues' database instead of a private PostgreSQL (postgresql://USER:PASSWORD@HOST:PORT/DB)",
    )
    serve.add_argument("--workdir", type=Path, default=Path(".taskbench"), help="logs and the private Redis' files")
    _add_broker(serve)
    _add_hosts(serve)
    serve.add_argument(
        "--middleware", choices=MIDDLEWARES, default="none", help="base-http: the API behind a BaseHTTPMiddleware"
    )
    _add_app(serve)
    _worker_flags(serve, "serve")
    _add_environment_flags(serve)

    run = sub.add_parser("run", help="run the benchmark and write reports into benchmark_results/")
    run.add_argument("--quick", action="store_true", help=f"{plan.QUICK_DURATION_S} s jobs: an answer in minutes")
    run.add_argument("--jobs", type=_job_counts, default=list(plan.SPEC_JOBS), help="job counts, e.g. 10,50,100")
    run.add_argument(
        "--noop-jobs", type=_job_counts, help="job counts of the noop workload (default 1000,10000; --quick: 1000)"
    )
    run.add_argument("--duration", type=bounded(float, 0, MAX_DURATION_S), help="seconds per job (default 30)")
    run.add_argument(
        "--concurrency",
        type=_concurrencies,
        default=[4],
        help="each queue's worker concurrency (docs/queues.md); a list (4,16,40) sweeps it: every worker-based "
        "scenario at each value, and the verdict names the smallest that drains as fast as BackgroundTasks",
    )
    run.add_argument("--implementations", type=_implementations, default=DEFAULT_IMPLEMENTATIONS, help=IMPL_HELP)
    run.add_argument(
        "--workloads",
        type=_csv(plan.WORKLOADS, allow_none=True),
        default=None,
        help=f"sleep (default; none with --job), all, or a list of: {', '.join(plan.WORKLOADS)}",
    )
    run.add_argument(
        "--faults",
        type=_csv(faults.FAULTS, allow_none=True),
        default=[],
        help=f"none (default), all, or a list of: {', '.join(faults.FAULTS)}",
    )
    run.add_argument(
        "--job",
        action="append",
        default=[],
        metavar="PACKAGE.MODULE:FUNCTION",
        help="your own job function, run as a workload by every implementation (repeatable)",
    )
    run.add_argument(
        "--job-args",
        action="append",
        dest="job_sources",
        type=_as_json_source,
        default=[],
        metavar="JSON",
        help="keyword arguments of --job: one object, or a list of objects to cycle through (one per --job in "
        "command-line order, or one for all)",
    )
    run.add_argument(
        "--job-args-from",
        action="append",
        dest="job_sources",
        type=_as_factory_source,
        default=[],
        metavar="PACKAGE.MODULE:FACTORY",
        help="a callable returning the keyword arguments of job number i (one per --job, or one for all)",
    )
    run.add_argument(
        "--job-timeout",
        type=bounded(float, 0.01, 86_400),
        help="seconds after which a --job run counts as failed (default: 10 × its trial call, 120 × its CPU time "
        "for a GIL shared by 40 threads, at least 5 s)",
    )
    _add_app(run)
    run.add_argument("--fault-jobs", type=bounded(int, 1, 10_000), default=20, help="jobs in each fault scenario")
    run.add_argument(
        "--middleware",
        type=_csv(MIDDLEWARES, all_word=None),
        default=["none"],
        help="none (default), base-http (a do-nothing BaseHTTPMiddleware), or none,base-http: each scenario under both",
    )
    _worker_flags(run, "run")
    run.add_argument("--memory-mb", type=bounded(int, 1, 2048), default=50, help="held by each `memory` job")
    run.add_argument("--timeout", type=bounded(float, 1, 86_400), help="deadline per scenario, seconds")
    run.add_argument("--output", type=Path, default=Path("benchmark_results"))
    run.add_argument("--url", help="measure an already-running service (the spec's manual flow)")
    run.add_argument(
        "--redis-url", type=_redis_url, default=_env_redis_url(), help="use this Redis instead of a private one"
    )
    run.add_argument(
        "--postgres-url",
        default=os.environ.get(POSTGRES_URL),
        help="the PostgreSQL queues' database instead of a private PostgreSQL (postgresql://USER:PASSWORD@HOST:PORT/DB)",
    )
    _add_broker(run)
    _add_hosts(run)
    run.add_argument("--memory-limit-mb", type=bounded(float, 1, 1e7), default=Thresholds().memory_limit_mb)
    run.add_argument(
        "--responsive-p99",
        type=bounded(float, 0.001, 60),
        help="probe p99 limit in seconds (default: half a job, within 0.25-0.5 s; --quick: 0.25)",
    )
    run.add_argument(
        "--repeat",
        type=bounded(int, 1, 20),
        help=f"runs of every scenario, interleaved; figures are medians with their spread "
        f"(default {plan.SPEC_REPEAT}; --quick: {plan.QUICK_REPEAT})",
    )

    load = run.add_argument_group(
        "sustained load", "open-loop steps at a fixed offered rate instead of bursts (docs/running.md: Sustained load)"
    )
    load.add_argument(
        "--rate",
        type=_rates,
        help="jobs per second, one step each (4,16), or auto: search each implementation's highest sustained rate",
    )
    load.add_argument(
        "--for", dest="for_s", type=_seconds, help=f"each step's length: 20, 90s, 30m (default {LOAD_FOR_S:g} s)"
    )
    load.add_argument("--arrivals", choices=("uniform", "poisson"), default="uniform", help="the schedule's shape")
    load.add_argument(
        "--target-rate",
        type=bounded(float, 0.01, MAX_RATE),
        help="the smallest worker concurrency that sustains this rate, per implementation (a capacity plan)",
    )
    load.add_argument(
        "--target-p95",
        dest="queue_p95",
        type=_seconds,
        default=LoadOptions().queue_p95_s,
        help="a sustained step's queue time p95, from each job's due time (default %(default)s s)",
    )

    gate = run.add_argument_group("in CI", "exit codes: 0 done, 2 a usage mistake, 3 the gate failed, 1 the stack")
    gate.add_argument(
        "--fail-on",
        choices=("failed", "borderline"),
        help=f"exit {GATE_FAILED} when a scenario failed (or, with borderline, came near a limit or failed)",
    )
    gate.add_argument(
        "--json",
        dest="json_out",
        metavar="PATH",
        help="the run's digest as JSON to PATH (- : stdout, the rest to stderr)",
    )

    _add_target(run)
    _add_environment_flags(run)
    _defaults_from_environment(run)

    env = sub.add_parser("env", help="list each implementation's environment (built if missing) and the cache")
    env.add_argument("--implementations", type=_implementations, default=list(implementations.REGISTRY), help=IMPL_HELP)
    env.add_argument(
        "--with", dest="with_packages", action="append", default=[], metavar="PKG==VERSION", help=WITH_HELP
    )
    env.add_argument("--rebuild", action="store_true", help="build them again: the newest releases the index serves")
    _add_requirements_flag(env)
    for impl in implementations.REGISTRY.values():
        impl.add_arguments(env, "env")

    worker = sub.add_parser(
        "worker", help="run one more worker of a running stack on this host, measured with the stack's own"
    )
    worker.add_argument(
        "--implementation", required=True, metavar="NAME", help="the stack's implementation label to run (celery)"
    )
    worker.add_argument(
        "--join",
        required=True,
        metavar="FILE",
        help="the file holding the stack's telemetry URL (`serve` writes it, 0600, and prints where; copy it here), "
        "or - to read it from standard input; never the URL itself, which `ps` would show every local user",
    )
    worker.add_argument(
        "--host-label",
        default=os.environ.get(HOST_LABEL) or None,
        metavar="NAME",
        help=f"what its executions and samples are attributed to (default: ${HOST_LABEL}, else this host's name)",
    )
    worker.add_argument("--workdir", type=Path, default=Path(".taskbench"), help="where its log goes")
    _add_environment_flags(worker)

    report = sub.add_parser("report", help="rebuild a run's Markdown, charts and HTML from its JSON")
    report.add_argument("path", type=Path, help="a run folder or its comparison_*.json")
    report.add_argument(
        "--page", type=Path, help="instead, write a docs page (PAGE.md, and PAGE.json it renders from) of this run"
    )

    compare = sub.add_parser("compare", help="put two runs side by side")
    compare.add_argument("run_a", type=Path)
    compare.add_argument("run_b", type=Path)
    compare.add_argument("--output", type=Path, help="where to write the comparison (default: beside RUN_B)")
    compare.add_argument(
        "--fail-above",
        type=_percent,
        metavar="PCT",
        help=f"exit {GATE_FAILED} when a figure of a scenario in both runs got worse by more than this (10%%)",
    )
    compare.add_argument(
        "--figures",
        type=_csv(tuple(GATED_FIGURES), all_word="all"),
        default=list(DEFAULT_GATED),
        help=f"the figures --fail-above watches: {', '.join(GATED_FIGURES)} or all (default %(default)s)",
    )
    compare.add_argument(
        "--allow-different",
        action="store_true",
        help="compare runs whose figures were measured differently (job duration, memory measure, broker)",
    )
    return parser


ENVIRONMENT_PREFIX = "TASKBENCH_RUN_"  # TASKBENCH_RUN_FAIL_ON=failed is --fail-on failed (flags win)


def _defaults_from_environment(command: argparse.ArgumentParser) -> None:
    """Every `run` option also from `TASKBENCH_RUN_<OPTION>` (a flag given wins), as CI systems pass settings;
    a prefix of its own, so the service's TASKBENCH_* variables never reach the harness's flags."""
    for action in command._actions:
        name = ENVIRONMENT_PREFIX + action.dest.upper()
        value = os.environ.get(name)
        if value is None or not action.option_strings or isinstance(action, argparse._HelpAction):
            continue
        if isinstance(action, argparse._StoreTrueAction):
            action.default = value.strip().lower() in ("1", "true", "yes", "on")
            continue
        try:
            parsed = action.type(value) if callable(action.type) else value
        except (argparse.ArgumentTypeError, ValueError) as exc:
            raise UsageError(f"{name}={value!r}: {exc}") from None
        if action.choices is not None and parsed not in action.choices:
            raise UsageError(f"{name}={value!r}: choose from {', '.join(map(str, action.choices))}")
        action.default = [parsed] if isinstance(action, argparse._AppendAction) else parsed


def _percent(text: str) -> float:
    """10% or 10: a share of the first run's figure."""
    try:
        value = float(text.strip().rstrip("%"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give a percentage, e.g. 10%") from None
    if not 0 <= value <= 10_000:
        raise argparse.ArgumentTypeError(f"{text!r}: between 0% and 10000%")
    return value / 100


def _redis_url(text: str) -> str:
    """--redis-url: a URL redis-py can use, checked before anything starts."""
    if urlsplit(text).scheme not in ("redis", "rediss", "unix") or "://" not in text:
        raise argparse.ArgumentTypeError(f"{_redact(text)!r} is not a Redis URL: give redis://[:PASSWORD@]HOST:PORT/DB")
    return text


def _postgres_setting(labels: list[str], url: str | None) -> str | None:
    """What the run records of PostgreSQL: None where no queue needed it, else `embedded` or the redacted URL."""
    if not any(implementations.get(label).needs_postgres for label in labels):
        return None
    return _redact(url) if url else "embedded"


def _env_redis_url() -> str | None:
    """A Redis named by taskbench's own variable, never another tool's (Celery's broker variable, REDIS_URL): a
    project's shell names its team's Redis there, which a benchmark must not adopt without being told."""
    return os.environ.get("TASKBENCH_REDIS_URL") or None


def _broker(args: argparse.Namespace) -> tuple[str, str | None]:
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


def _postgres(args: argparse.Namespace, console: Console) -> str | None:
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


def _redis_fits(args: argparse.Namespace) -> None:
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


def _raise_interrupt(*_: object) -> NoReturn:
    raise KeyboardInterrupt


def cmd_serve(args: argparse.Namespace, console: Console) -> int:
    worker_limits, api_limits = container_limits(args, [])
    broker, broker_url = _broker(args)
    postgres_url = _postgres(args, console)
    _redis_fits(args)
    options = plugin_options(args)
    hosts, link_delay_ms = _hosts(args)
    _read_apps(args, options, console)
    with console.status("preparing each implementation's environment…"):
        envs = environment.prepare(
            args.implementations, args.with_packages, options, args.rebuild_envs, console.print, _project_pins(args)
        )
    workdir = claim_folder(args.workdir, f"serve-{time.strftime('%Y%m%d_%H%M%S')}", "--workdir")
    config = StackConfig(
        workdir=workdir,
        host=args.host,
        port=args.port,
        concurrency=args.concurrency,
        redis_url=args.redis_url,
        broker=broker,
        broker_url=broker_url,
        postgres_url=postgres_url,
        implementations=tuple(args.implementations),
        state=StackState(middleware=args.middleware),
        job_dir=Path.cwd() if args.apps else None,  # --app: the API and the worker import it from there
        api=api_options(args),
        options=options,
        worker_limits=worker_limits,
        api_limits=api_limits,
        environments=envs,
        hosts=hosts,
        link_delay_ms=link_delay_ms,
    )
    signal.signal(signal.SIGTERM, _raise_interrupt)  # stop the stack on SIGTERM as on Ctrl-C
    stack = Stack(config)
    try:
        with console.status("starting Redis, the API servers and the workers…"):
            stack.start()
        processes = f"  ({args.api_workers} uvicorn processes)" if args.api_workers > 1 else ""
        for label, url in stack.urls().items():
            name = implementations.plugin_name(label)
            console.print(f"API        {label}: {url}/{name}/job  (docs: {url}/docs){processes}")
        console.print(
            f"Token      {stack.token_file}: every endpoint but /health asks for `Authorization: Bearer <its "
            "content>` (Flower: user taskbench, the same password)",
            soft_wrap=True,  # the path whole on one line, for scripts that read it
        )
        console.print(f"Redis      {_redact(stack.redis_url)}" + ("  (private)" if stack.embedded_redis else ""))
        if stack.cgroups is not None:  # container limits
            where = stack.cgroups.layout.where
            console.print(f"Limits     workers: {worker_limits.text()}; APIs: {api_limits.text()} ({where})")
        console.print(
            f"Telemetry  {_redact(stack.telemetry_url)}: a worker on another host joins with "
            f"`taskbench worker --implementation NAME --join {stack.join_file}` (a copy of that file)"
        )
        if stack.amqp_url:
            private = " (private)" if stack.embedded_rabbitmq else ""
            console.print(
                f"RabbitMQ   {_redact(stack.amqp_url)}{private}: the broker of {AMQP_QUEUES}; the rest on Redis"
            )
        for name, worker in stack.workers.items():
            console.print(f"Worker     {name}: {' '.join(worker.process.argv[2:])}")
        for part, where in stack.topology().items():
            console.print(f"Host       {part}: {where}", markup=False)
        for label, env in envs.items():
            console.print(f"Env        {label}: {env.path}")
        for name, companion in stack.companions.items():
            console.print(f"{name:<10} {stack.companion_urls[name]}  ({companion.what})")
        for name, log in stack.logs().items():
            console.print(f"log        {name}: {log}")
        console.print("Ctrl-C stops everything.")
        supervise(stack, console)
    except KeyboardInterrupt:
        console.print("stopping…")
        return 0
    finally:
        stack.stop()


SERVE_RESTARTS = 5  # how many times `serve` starts one service again before it gives up


def supervise(stack: Stack, console: Console) -> NoReturn:
    """Start again whatever exits, up to SERVE_RESTARTS times each: the others keep serving meanwhile (a queue's
    API answers 503 while its Redis is down; `/fastapi/*` keeps working)."""
    restarts: dict[str, int] = {}
    while True:
        time.sleep(0.5)
        for service in stack.services():
            service.process.cap_log()
            if service.alive():
                continue
            how = service.process.ended_how()
            count = restarts[service.name] = restarts.get(service.name, 0) + 1
            if count > SERVE_RESTARTS:
                raise StackError(
                    f"{service.what} exited ({how}) {count} times; see {service.log_path}:\n{service.log_tail()}"
                )
            console.print(f"[yellow]{service.what} exited ({how}): starting it again ({count} of {SERVE_RESTARTS})[/]")
            try:
                service.process.kill()  # what is left of its process group (a pool's children)
                service.start()
            except StackError as exc:  # not ready yet (its Redis still down): tried again on the next pass
                console.print(f"[yellow]{exc}[/]".split("\n")[0])


def _load(args: argparse.Namespace) -> LoadOptions | None:
    """--rate, --for, --arrivals, --target-rate and --target-p95 as the run's LoadOptions; None for bursts."""
    if args.rate is None and args.target_rate is None:
        if args.for_s is not None:
            raise UsageError("--for is the length of a --rate step: give --rate (or --target-rate) too")
        return None
    if args.rate is not None and args.target_rate is not None:
        raise UsageError("--rate and --target-rate: give one (--target-rate searches the concurrency at that rate)")
    if args.faults:
        raise UsageError("--faults run on bursts: drop --faults, or --rate/--target-rate")
    for_s = args.for_s if args.for_s is not None else LOAD_FOR_S
    if for_s < MIN_FOR_S:
        raise UsageError(f"--for {for_s:g}: a step needs at least {MIN_FOR_S:g} s (a warm-up, then its steady part)")
    if args.target_rate is not None and len(args.concurrency) > 1:
        raise UsageError("--target-rate searches the concurrency itself: give one --concurrency (its first guess)")
    if args.url and (args.target_rate is not None):
        raise UsageError("--target-rate restarts the workers at each concurrency: drop --url")
    return LoadOptions(
        rates=args.rate or [],
        auto=args.rate == [],
        for_s=for_s,
        arrivals=args.arrivals,
        queue_p95_s=args.queue_p95,
        target_rate=args.target_rate,
    )


# ── --target: the user's own running deployment (taskbench.target.target, docs/your-deployment.md) ─────────────────

TARGET_ONLY = ("target", "scenario", "probe", "fault_cmds", "poll_interval", "poll_concurrency")
WITH_TARGET = {*TARGET_ONLY, "jobs", "rate", "for_s", "arrivals", "output", "timeout"}
FAULT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def _target_url(text: str) -> str:
    try:
        parts = urlsplit(text)
        ok = parts.scheme in ("http", "https") and bool(parts.hostname) and (parts.port or 1) > 0
    except ValueError:
        ok = False
    if not ok:
        raise argparse.ArgumentTypeError(f"{_redact(text)!r}: give your deployment's URL, http(s)://HOST[:PORT]")
    return text


def _probe_path(text: str) -> str:
    if not text.startswith("/"):
        raise argparse.ArgumentTypeError(f"{text!r}: give a path on the target, e.g. /health")
    return text


def _fault_cmd(text: str) -> tuple[str, str]:
    """`worker-crash='kubectl delete pod -l app=worker'` → (name, command)."""
    name, equals, command = text.partition("=")
    if not equals or not FAULT_NAME.fullmatch(name) or not command.strip():
        raise argparse.ArgumentTypeError(
            f"{text!r}: give NAME=COMMAND, e.g. worker-crash='kubectl delete pod -l app=worker'"
        )
    return name, command


def _add_target(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "your deployment",
        "measure a deployment you run, through your own scenario file, instead of taskbench's stack "
        "(docs/your-deployment.md); with --jobs N (one burst) or --rate R --for S, --output and --timeout",
    )
    group.add_argument(
        "--target",
        type=_target_url,
        metavar="URL",
        help="your running deployment's base URL: jobs are submitted and followed through --scenario's functions; "
        "nothing there is started, purged, restarted or sampled (--timeout: how long after the last submission "
        f"its jobs may take, default {DEFAULT_DEADLINE_S:g} s)",
    )
    group.add_argument(
        "--scenario",
        type=Path,
        metavar="FILE",
        help="with --target: a Python file defining `async def submit(client) -> str` (the job's id) and `async def "
        "status(client, job_id) -> str` (queued, running, done or failed), client an httpx.AsyncClient on the "
        "target; it runs in taskbench's process, as a locustfile does",
    )
    group.add_argument(
        "--probe", type=_probe_path, metavar="PATH", help="with --target: GET this path 10 times a second (/health)"
    )
    group.add_argument(
        "--fault-cmd",
        dest="fault_cmds",
        action="append",
        type=_fault_cmd,
        default=[],
        metavar="NAME=COMMAND",
        help="with --target: a shell command run once when half the accepted jobs are running or finished, its "
        "times, exit code and output recorded (repeatable): worker-crash='kubectl delete pod -l app=worker'",
    )
    group.add_argument(
        "--poll-interval",
        type=bounded(float, 0.01, 60),
        default=DEFAULT_POLL_INTERVAL_S,
        metavar="SECONDS",
        help="with --target: seconds between two status calls of one job, the precision of every job time",
    )
    group.add_argument(
        "--poll-concurrency",
        type=bounded(int, 1, 1000),
        default=DEFAULT_POLL_CONCURRENCY,
        metavar="N",
        help="with --target: status calls in flight at most",
    )


def _given(args: argparse.Namespace) -> dict[str, str]:
    """The `run` options whose value is not their default (a TASKBENCH_RUN_* value is a default): dest → flag."""
    (commands,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    actions = commands.choices["run"]._actions
    return {
        a.dest: a.option_strings[0]
        for a in actions
        if a.option_strings
        and not isinstance(a, argparse._HelpAction)
        and getattr(args, a.dest, a.default) != a.default
    }


def _cmd_target(args: argparse.Namespace, given: dict[str, str], console: Console) -> int:
    """--target: its flags checked (one line and exit 2 for any mistake), the scenario file loaded, then the run."""
    if args.target is None:
        flags = [flag for dest, flag in given.items() if dest in TARGET_ONLY]
        raise UsageError(f"{', '.join(flags)} measure your own deployment: add --target URL")
    if args.scenario is None:
        raise UsageError(
            "--target needs --scenario FILE: a Python file defining async submit(client) and status(client, job_id)"
        )
    stack_only = [flag for dest, flag in given.items() if dest not in WITH_TARGET]
    if stack_only:
        one = len(stack_only) == 1
        named = stack_only[0] if one else f"{', '.join(stack_only[:-1])} and {stack_only[-1]}"
        raise UsageError(
            f"--target measures your deployment as it runs: {named} {'is' if one else 'are'} for taskbench's own "
            f"stack; drop {'it' if one else 'them'}"
        )
    names = [name for name, _ in args.fault_cmds]
    if len(set(names)) != len(names):
        raise UsageError(f"--fault-cmd: each NAME once ({', '.join(sorted({n for n in names if names.count(n) > 1}))})")
    for_s = None
    if args.rate is not None:
        if "jobs" in given:
            raise UsageError("--jobs and --rate: give one (a burst, or a sustained step)")
        if len(args.rate) != 1:
            raise UsageError("--target runs one sustained step: give one rate (--rate R), not a list or auto")
        for_s = args.for_s if args.for_s is not None else LOAD_FOR_S
        if for_s < MIN_FOR_S:
            raise UsageError(
                f"--for {for_s:g}: a step needs at least {MIN_FOR_S:g} s (a warm-up, then its steady part)"
            )
    else:
        if args.for_s is not None or "arrivals" in given:
            raise UsageError("--for and --arrivals shape a --rate step: give --rate R too")
        if "jobs" not in given or len(args.jobs) != 1:
            raise UsageError("--target runs one burst (--jobs N, one count) or one sustained step (--rate R --for S)")
    options = TargetOptions(
        target=args.target,
        scenario=load_scenario(args.scenario),
        jobs=None if args.rate is not None else args.jobs[0],
        rate=args.rate[0] if args.rate is not None else None,
        for_s=for_s,
        arrivals=args.arrivals,
        probe=args.probe,
        fault_commands=[FaultCommand(name=name, command=command) for name, command in args.fault_cmds],
        deadline_s=args.timeout if args.timeout is not None else DEFAULT_DEADLINE_S,
        poll_interval_s=args.poll_interval,
        poll_concurrency=args.poll_concurrency,
    )
    _, record = run_target(options, args.output, console)
    return 128 + record.stopped_by if record.stopped_by is not None else 0


def cmd_run(args: argparse.Namespace, console: Console) -> int:
    given = _given(args)
    if any(dest in given for dest in TARGET_ONLY):  # your own deployment (taskbench.target), not our stack
        return _cmd_target(args, given, console)
    if args.url and len(args.concurrency) > 1:
        raise UsageError("a --concurrency sweep restarts the workers: drop --url, or give one --concurrency")
    if args.url and args.faults:
        raise UsageError("--faults needs a stack that taskbench started itself: drop --url or --faults")
    for fault in args.faults:
        flag = faults.get(fault).restarts_server
        if flag and getattr(args, flag[2:].replace("-", "_")):
            raise UsageError(f"--faults {fault} restarts the private server taskbench starts: drop {flag} or the fault")
    if args.url and args.middleware != ["none"]:
        raise UsageError("--middleware needs a stack that taskbench started itself: drop --url or --middleware")
    api, options = api_options(args), plugin_options(args)
    everything = set(args.faults) == set(faults.FAULTS)  # --faults all: what this machine cannot run is left out
    if args.url and args.apps:
        raise UsageError("--app runs your app in a stack that taskbench starts: drop --url")
    if args.url and (not api.is_default or options):
        raise UsageError("--api-workers, --graceful-timeout and each queue's worker flags set up the stack: drop --url")
    duration = (
        args.duration if args.duration is not None else (plan.QUICK_DURATION_S if args.quick else plan.SPEC_DURATION_S)
    )
    thresholds = Thresholds(
        memory_limit_mb=args.memory_limit_mb,
        responsive_p99_s=args.responsive_p99 or plan.responsive_limit_s(duration),
    )
    hosts, link_delay_ms = _hosts(args)
    partitions = [f for f in args.faults if faults.get(f).needs_hosts]
    if partitions and not hosts:
        if set(args.faults) != set(faults.FAULTS):
            raise UsageError(f"--faults {','.join(partitions)} cuts a host off: add --hosts N (as root)")
        args.faults = [f for f in args.faults if f not in partitions]  # `all`: the faults this stack has
        console.print(f"[yellow]{' and '.join(partitions)} left out[/]: they need --hosts N")
    worker_limits, api_limits = container_limits(args, args.faults, everything, console)
    user_jobs = _check_jobs(args)  # before anything starts: a job that cannot run is exit 2, here
    broker, broker_url = _broker(args)
    postgres_url = _postgres(args, console)
    _redis_fits(args)
    if args.url and user_jobs:
        raise UsageError("--job needs a stack that taskbench started itself (it fixes the function): drop --url")
    _read_apps(args, options, console)  # before anything starts: an app that cannot run is exit 2, here
    workloads = args.workloads if args.workloads is not None else ([] if user_jobs else ["sleep"])
    load = _load(args)
    settings = RunSettings(
        implementations=args.implementations,
        workloads=workloads,
        jobs=args.jobs,
        noop_jobs=args.noop_jobs or list(plan.QUICK_NOOP_JOBS if args.quick else plan.NOOP_JOBS),
        duration_s=duration,
        memory_mb=args.memory_mb,
        concurrency=args.concurrency[0],
        concurrency_sweep=args.concurrency if len(args.concurrency) > 1 else [],
        faults=args.faults,
        url=args.url,
        redis="embedded" if not args.redis_url else _redact(args.redis_url),
        broker=broker,
        amqp=None if broker != "amqp" else _redact(broker_url) if broker_url else "embedded",
        postgres=_postgres_setting(args.implementations, postgres_url),
        thresholds=thresholds,
        quick=args.quick,
        repeat=args.repeat or (plan.QUICK_REPEAT if args.quick else plan.SPEC_REPEAT),
        user_jobs=[job.profile for job in user_jobs],
        job_timeout_s=(args.job_timeout or job_check.default_timeout_s(user_jobs)) if user_jobs else None,
        middleware=args.middleware,
        api=api,
        options=options,
        worker_limits=worker_limits,
        api_limits=api_limits,
        with_packages=args.with_packages,
        requirements_file=str(args.requirements) if args.requirements else None,
        project_pins=list(_project_pins(args)),
        load=load,
        hosts=hosts,
        link_delay_ms=link_delay_ms,
    )
    run_options = RunOptions(
        settings=settings,
        output=args.output,
        fault_jobs=args.fault_jobs,
        timeout_s=args.timeout,
        redis_url=args.redis_url,
        broker_url=broker_url,
        postgres_url=postgres_url,
        job_args={job.profile.path: job.args for job in user_jobs},
        rebuild_envs=args.rebuild_envs,
    )
    folder, result = run(run_options, console)
    _print_answer(folder, result, console)
    code = _exit_code(result, args.fail_on, console)
    if args.json_out:
        text = digest.of(result, folder, code).model_dump_json(indent=2)
        if args.json_out == "-":
            sys.stdout.write(text + "\n")
        else:
            Path(args.json_out).write_text(text + "\n")
    return code


def _exit_code(result: AnalysedRun, fail_on: str | None, console: Console) -> int:
    if result.stopped_by is not None:  # cut short by a signal: the shell's convention, 128 + its number
        console.print("[yellow]interrupted[/]: partial results only")
        return 128 + result.stopped_by
    if result.interrupted:
        return 130
    gated = {"failed": ("failed",), "borderline": ("failed", "borderline")}.get(fail_on or "", ())
    caught = [s for s in result.summaries if s.status in gated]
    for s in caught:
        console.print(f"[red]--fail-on {fail_on}[/]: {s.label} {s.status}", markup=True)
    for u in result.unavailable if gated else []:  # an implementation that could not run did not hold either
        console.print(f"[red]--fail-on {fail_on}[/]: {u.implementation} could not run ({u.part}: {u.reason})")
    return GATE_FAILED if caught or (gated and result.unavailable) else 0


def _check_jobs(args: argparse.Namespace) -> list[job_check.UserJob]:
    paths: list[str] = list(dict.fromkeys(args.job))
    if not paths:
        if args.job_sources or args.job_timeout:
            raise UsageError("--job-args, --job-args-from and --job-timeout go with --job package.module:function")
        return []
    sources: list[tuple[str | None, str | None]] = args.job_sources  # in command-line order
    if len(sources) > 1 and len(sources) != len(paths):
        raise UsageError(f"{len(sources)} --job-args/--job-args-from for {len(paths)} --job: give one each, or one")
    pairs = sources * len(paths) if len(sources) == 1 else sources or [(None, None)] * len(paths)
    _check_job_folder(Path.cwd())
    checked = []
    for index, (path, (args_json, args_from)) in enumerate(zip(paths, pairs, strict=True)):
        arguments, source = job_check.job_args(args_json, args_from)
        checked.append(job_check.check(path, index, arguments, source, args.job_timeout))
    return checked


def _check_job_folder(folder: Path, flag: str = "--job") -> None:
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


def _print_answer(folder: Path, result: AnalysedRun, console: Console) -> None:
    console.print()
    terminal.show(console, content.spec_table(result.summaries), "Results (the spec's table)")
    if any(s.rate for s in result.summaries):
        terminal.show(console, content.rate_table(result.summaries), "Sustained load")
    if result.verdict.decisions:
        terminal.show(console, content.decision_table(result), "Decision")
    console.print("\n[bold]Verdict[/]")
    for line in result.verdict.lines:
        console.print(f"  • {line}", markup=False)
    heavy = [s.label for s in result.summaries if s.cpu_shares is not None and s.cpu_shares.harness_over_limit]
    if heavy:
        console.print(
            f"\n[yellow]warning[/]: the harness used more than a tenth of the machine in {', '.join(heavy)}: "
            "it competed with the service it measured (Resources, in the report)"
        )
    console.print(f"\nreports: {folder}")
    html = folder / "report.html"
    if html.exists():
        console.print(f"open {html} in a browser")


def cmd_env(args: argparse.Namespace, console: Console) -> int:
    """Each implementation's environment (built now if missing), with its queue's release, then the whole cache."""
    started = time.monotonic()
    envs = environment.prepare(
        args.implementations, args.with_packages, plugin_options(args), args.rebuild, console.print, _project_pins(args)
    )
    console.print(f"environments in {venvs.cache_dir()} (ready in {time.monotonic() - started:.1f} s):")
    for label, env in envs.items():
        impl = implementations.get(label)
        queue = env.version(impl.queue_package) or "?"
        built = time.strftime("%Y-%m-%d %H:%M", time.localtime(env.built_at))
        console.print(
            f"  {label:<16} {impl.queue_package} {queue:<10} fastapi {env.version('fastapi')}, redis "
            f"{env.version('redis')}; {len(env.packages)} packages, built {built} in {env.build_s:.1f} s",
            markup=False,
            soft_wrap=True,
        )
    in_use = {env.path for env in envs.values()}
    others = [env for env in venvs.cached() if env.path not in in_use]
    if others:
        console.print(f"also cached ({len(others)}; delete the folders to free the space):")
        for env in others:
            console.print(f"  {env.label:<16} {env.path}", markup=False)
    console.print(f"{venvs.disk_mb(list(envs.values())):.0f} MB on disk for these {len(envs)}, each file once")
    return 0


def cmd_report(args: argparse.Namespace, console: Console) -> int:
    if args.page is not None:
        console.print(f"wrote {files.write_page(args.path, args.page)}")
        return 0
    path = files.rerender(args.path)
    console.print(f"rebuilt {path.parent}")
    return 0


def cmd_compare(args: argparse.Namespace, console: Console) -> int:
    path, worse = compare(args.run_a, args.run_b, args.output, args.figures, args.fail_above, args.allow_different)
    console.print(f"wrote {path}")
    for line in worse:
        console.print(f"worse: {line}", markup=False)
    return GATE_FAILED if worse and args.fail_above is not None else 0


GATE_FAILED = 3  # --fail-on, compare --fail-above: the run worked, and its answer is the one CI should stop on


def cmd_worker(args: argparse.Namespace, console: Console) -> int:
    """One more worker of a running stack, on this host (taskbench.stack.remote_worker)."""
    workdir = claim_folder(args.workdir, f"worker-{time.strftime('%Y%m%d_%H%M%S')}", "--workdir")
    return remote_worker.run_worker(
        remote_worker.read_join_url(args.join),
        args.implementation,
        args.host_label,
        workdir,
        args.with_packages,
        args.rebuild_envs,
        console,
        _project_pins(args),
    )


COMMANDS = {
    "serve": cmd_serve, "run": cmd_run, "env": cmd_env, "report": cmd_report, "compare": cmd_compare,
    "worker": cmd_worker,
}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except UsageError as exc:  # a TASKBENCH_RUN_* variable that does not parse
        print(f"taskbench: {exc}", file=sys.stderr)
        return 2
    console = Console(stderr=getattr(args, "json_out", None) == "-")  # stdout holds the JSON alone
    try:
        return COMMANDS[args.command](args, console)
    except UsageError as exc:  # and what derives from it: SchemaError, EnvironmentBuildError
        print(f"taskbench: {exc}", file=sys.stderr)
        return 2
    except StackError as exc:
        print(f"taskbench: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("taskbench: interrupted; every process it started has been stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
