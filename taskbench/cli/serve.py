"""`taskbench serve`: the whole stack in the foreground (the spec's manual flow), restarted as a supervisor would."""

from __future__ import annotations

import argparse
import signal
import time
from pathlib import Path
from typing import NoReturn

from rich.console import Console

from taskbench import implementations
from taskbench.argtypes import bounded
from taskbench.cli.options import (
    AMQP_QUEUES,
    IMPL_HELP,
    add_app_flag,
    add_app_labels,
    add_environment_flags,
    add_hosts_flags,
    add_server_flags,
    api_options,
    broker_from,
    container_limits,
    hosts_from,
    plugin_options,
    postgres_from,
    project_pins_from,
    read_apps,
    redis_fits,
    worker_flags,
)
from taskbench.cli.types import MAX_CONCURRENCY, Commands, implementation_labels
from taskbench.envs import environment
from taskbench.errors import StackError
from taskbench.run.run import claim_folder
from taskbench.stack.front_door import FrontDoor
from taskbench.stack.stack import Stack, StackConfig, StackState
from taskbench_wire.enums import MIDDLEWARES
from taskbench_wire.urls import redacted as _redact


def _raise_interrupt(*_: object) -> NoReturn:
    raise KeyboardInterrupt


def cmd_serve(args: argparse.Namespace, console: Console) -> int:
    config = _config(args, console)
    door = FrontDoor(args.host, args.port)
    door.start()  # a port in use: one line, before anything else starts
    signal.signal(signal.SIGTERM, _raise_interrupt)  # stop the stack on SIGTERM as on Ctrl-C
    stack = Stack(config)
    try:
        with console.status("starting Redis, the API servers and the workers…"):
            stack.start()
        for label, url in stack.urls().items():  # a second release of one queue keeps its own port only
            door.apis.setdefault(implementations.plugin_name(label), url)
        _print_stack(stack, door, args, console)
        console.print("Ctrl-C stops everything.")
        supervise(stack, console)
    except KeyboardInterrupt:
        console.print("stopping…")
        return 0
    finally:
        stack.stop()
        door.stop()


def _config(args: argparse.Namespace, console: Console) -> StackConfig:
    """The stack `serve` starts, its flags checked and each implementation's environment ready."""
    add_app_labels(args)
    worker_limits, api_limits = container_limits(args, [])
    broker, broker_url = broker_from(args)
    postgres_url = postgres_from(args, console)
    redis_fits(args)
    options = plugin_options(args)
    hosts, link_delay_ms = hosts_from(args)
    read_apps(args, options, console)
    with console.status("preparing each implementation's environment…"):
        envs = environment.prepare(
            args.implementations, args.with_packages, options, args.rebuild_envs, console.print, project_pins_from(args)
        )
    workdir = claim_folder(args.workdir, f"serve-{time.strftime('%Y%m%d_%H%M%S')}", "--workdir")
    return StackConfig(
        workdir=workdir,
        host=args.host,
        port=0,  # each API on a free port; --port is the front door's
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


def _print_stack(stack: Stack, door: FrontDoor, args: argparse.Namespace, console: Console) -> None:
    """Where everything is: each API and its token, the servers, the limits, the workers, the hosts, the logs."""
    config = stack.config
    processes = f"  ({args.api_workers} uvicorn processes)" if args.api_workers > 1 else ""
    paths = ", ".join(f"/{name}/job" for name in door.apis)
    console.print(f"Front door {door.url}: {paths}, and /, /metrics, /health of every API", soft_wrap=True)
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
        console.print(f"Limits     workers: {config.worker_limits.text()}; APIs: {config.api_limits.text()} ({where})")
    console.print(
        f"Telemetry  {_redact(stack.telemetry_url)}: a worker on another host joins with "
        f"`taskbench worker --implementation NAME --join {stack.join_file}` (a copy of that file)"
    )
    if stack.amqp_url:
        private = " (private)" if stack.embedded_rabbitmq else ""
        console.print(f"RabbitMQ   {_redact(stack.amqp_url)}{private}: the broker of {AMQP_QUEUES}; the rest on Redis")
    for name, worker in stack.workers.items():
        console.print(f"Worker     {name}: {' '.join(worker.process.argv[2:])}")
    for part, where in stack.topology().items():
        console.print(f"Host       {part}: {where}", markup=False)
    for label, env in stack.environments.items():
        console.print(f"Env        {label}: {env.path}")
    for name, companion in stack.companions.items():
        console.print(f"{name:<10} {stack.companion_urls[name]}  ({companion.what})")
    for name, log in stack.logs().items():
        console.print(f"log        {name}: {log}")


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


def add_parser(commands: Commands) -> None:
    serve = commands.add_parser("serve", help="start Redis and each implementation's API and worker; Ctrl-C stops all")
    serve.add_argument(
        "--host", default="127.0.0.1", help="the first API's address (0.0.0.0: see Troubleshooting before you do)"
    )
    serve.add_argument(
        "--port",
        type=bounded(int, 1, 65535),
        default=8000,
        help="the one port of every implementation's endpoints, /, /metrics and /health (each API also has its own)",
    )
    serve.add_argument(
        "--concurrency", type=bounded(int, 1, MAX_CONCURRENCY), default=4, help="each queue's worker concurrency"
    )
    serve.add_argument(
        "--implementations", type=implementation_labels, default=list(implementations.DEFAULT), help=IMPL_HELP
    )
    add_server_flags(serve)
    serve.add_argument("--workdir", type=Path, default=Path(".taskbench"), help="logs and the private Redis' files")
    add_hosts_flags(serve)
    serve.add_argument(
        "--middleware", choices=MIDDLEWARES, default="none", help="base-http: the API behind a BaseHTTPMiddleware"
    )
    add_app_flag(serve)
    worker_flags(serve, "serve")
    add_environment_flags(serve)
