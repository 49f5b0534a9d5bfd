"""`taskbench env`: each implementation's environment, built if missing, and the cache."""

from __future__ import annotations

import argparse
import time

from rich.console import Console

from taskbench import implementations
from taskbench.cli.options import IMPL_HELP, WITH_HELP, add_requirements_flag, plugin_options, project_pins_from
from taskbench.cli.types import Commands, implementation_labels
from taskbench.envs import environment, venvs


def cmd_env(args: argparse.Namespace, console: Console) -> int:
    """Each implementation's environment (built now if missing), with its queue's release, then the whole cache."""
    started = time.monotonic()
    envs = environment.prepare(
        args.implementations,
        args.with_packages,
        plugin_options(args),
        args.rebuild,
        console.print,
        project_pins_from(args),
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


def add_parser(commands: Commands) -> None:
    env = commands.add_parser("env", help="list each implementation's environment (built if missing) and the cache")
    env.add_argument(
        "--implementations", type=implementation_labels, default=list(implementations.REGISTRY), help=IMPL_HELP
    )
    env.add_argument(
        "--with", dest="with_packages", action="append", default=[], metavar="PKG==VERSION", help=WITH_HELP
    )
    env.add_argument("--rebuild", action="store_true", help="build them again: the newest releases the index serves")
    add_requirements_flag(env)
    for impl in implementations.REGISTRY.values():
        impl.add_arguments(env, "env")
