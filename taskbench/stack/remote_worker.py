"""`taskbench worker --implementation NAME --join URL`: one more worker of a running stack, on this host.

URL is the stack's telemetry Redis (`taskbench serve` prints it), not its API: the stack publishes there what a
worker needs (`telemetry.JoinInfo`: the service's variables, with the Redis and broker passwords, the queue's
release, concurrency and options), and an address that holds passwords belongs behind a password, which the
telemetry Redis has and the API has not. The same connection then carries what this host measures: its
worker's ledger events (the service writes them there) and its CPU and memory, sampled here and published as
`telemetry.Batch`es under `{label}-worker@{host}`; the harness merges them into its scenarios' samples.

The worker runs in this host's environment of the implementation (built or taken from the cache as for `run`),
and only when that environment's queue release is the stack's: a worker of another release would measure
another queue. It follows the stack: new settings of a scenario (delivery, concurrency) restart it with them,
it is started again when it dies, and it stops when the stack it joined is gone.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import psutil
import redis
from rich.console import Console

from taskbench import implementations
from taskbench.envs import environment
from taskbench.errors import StackError, UsageError
from taskbench.implementations.base import PYTHON
from taskbench.measure import telemetry
from taskbench.measure.sampler import Sampler
from taskbench.stack import watchdog
from taskbench.stack.services import Service
from taskbench_wire.env import (
    CELERY_ENV_VARS,
    CONCURRENCY,
    DEFAULT_NAMESPACE,
    ENV_VARS,
    HOST_LABEL,
    JOB_TIMEOUT,
    NAMESPACE,
    REDELIVERY_TIMEOUT,
    REDIS_TIMEOUT,
    RESTORE_INTERVAL,
    TELEMETRY_URL,
)
from taskbench_wire.health import Health
from taskbench_wire.urls import redacted

LOOPBACK = ("127.0.0.1", "localhost", "::1")
GONE_AFTER_S = 10.0  # the stack's telemetry Redis silent this long (or another stack there): the stack is gone
REFUSED_FOR_S = 2.0  # … or refusing connections this long: its server has stopped (a cut link times out instead)
CHECK_JOIN_S = 0.5  # how often the stack's settings are read again
RESTARTS = 5  # a worker that dies is started again this many times, as `serve` does


def read_join_url(source: str) -> str:
    """The telemetry URL from the file `source` names, or from standard input for `-`: never from the command line,
    where `ps` shows it (and the password in it) to every local user."""
    if "://" in source:
        raise UsageError(
            "--join takes the file that holds the stack's telemetry URL (or - for standard input), never the URL "
            "itself: on the command line every local user sees its password in `ps`"
        )
    try:
        text = sys.stdin.read(4096) if source == "-" else Path(source).read_text()[:4096]
    except OSError as exc:
        raise UsageError(f"--join {source}: cannot read it ({exc.strerror})") from None
    url = text.strip()
    if not url:
        raise UsageError(f"--join {source}: empty; it should hold the telemetry URL `taskbench serve` wrote")
    return url


# What a joined worker takes from the stack's document: the environment contract's variables and Celery's own,
# nothing else (not PYTHONPATH, LD_PRELOAD or any other variable a crafted document could carry), each checked.
JOINABLE = frozenset((*ENV_VARS, *CELERY_ENV_VARS))
URL_SCHEMES = ("redis", "rediss", "amqp", "amqps", "postgresql", "postgres")
NUMBERS = {CONCURRENCY: (1, 256), REDIS_TIMEOUT: (0.01, 600), REDELIVERY_TIMEOUT: (0.01, 86_400),
           RESTORE_INTERVAL: (0.01, 3600), JOB_TIMEOUT: (0.01, 86_400)}  # fmt: skip


NAMESPACE_PATTERN = re.compile(rf"^{DEFAULT_NAMESPACE}(-[0-9a-f]{{8}})?$")


def checked_variables(env: dict[str, str]) -> dict[str, str]:
    """The document's variables a worker may have: known names only; a server URL must name the stack's machine
    (127.0.0.1, which the worker rewrites to the --join address) with a known scheme; numbers within bounds."""
    kept: dict[str, str] = {}
    for name, value in env.items():
        if name not in JOINABLE:
            continue
        if "://" in value:
            parts = urlsplit(value)
            if parts.scheme not in URL_SCHEMES or parts.hostname not in LOOPBACK:
                raise StackError(f"the stack's document names {name} at {redacted(value)}: refused (not its server)")
        if name in NUMBERS and value:
            low, high = NUMBERS[name]
            try:
                number = float(value)
            except ValueError:
                raise StackError(f"the stack's document gives {name}={value!r}: not a number") from None
            if not low <= number <= high:
                raise StackError(f"the stack's document gives {name}={value}: outside {low}..{high}")
        if name == NAMESPACE and not NAMESPACE_PATTERN.match(value):  # `public` would aim a worker at a user's tables
            raise StackError(f"the stack's document gives {name}={value!r}: not a taskbench namespace")
        kept[name] = value
    return kept


def join_info(url: str, label: str) -> tuple[redis.Redis, telemetry.JoinInfo, telemetry.JoinedLabel]:
    """What the stack at `url` publishes for `label`; a URL that does not answer, or names no stack or no such
    worker, is a usage error (one line)."""
    if urlsplit(url).scheme not in ("redis", "rediss") or "://" not in url:
        raise UsageError(
            f"--join {redacted(url)!r}: give the stack's telemetry URL (redis://:PASSWORD@HOST:PORT/0), which "
            "`taskbench serve` prints"
        )
    connection = telemetry.client(url, timeout_s=3.0)
    try:
        info = telemetry.read_join(connection)
    except redis.RedisError as exc:
        raise UsageError(f"--join {redacted(url)}: does not answer ({exc})") from None
    except ValueError as exc:  # pydantic's ValidationError: a document out of bounds
        raise UsageError(
            f"--join {redacted(url)}: the stack's document is refused ({str(exc).splitlines()[0]})"
        ) from None
    if info is None:
        raise UsageError(f"--join {redacted(url)}: no taskbench stack publishes there (is it its telemetry URL?)")
    if label not in info.labels:
        raise UsageError(f"--implementation {label}: not a worker of that stack (it runs {', '.join(info.labels)})")
    if implementations.runs_app(label):
        raise UsageError(f"--implementation {label}: a joined worker runs taskbench's app, not the stack's user's app")
    return connection, info, info.labels[label]


def check_release(label: str, joined: telemetry.JoinedLabel, version: str | None) -> None:
    if version != joined.queue_version:
        package = joined.queue_package
        raise UsageError(
            f"this host's {label} environment has {package} {version or '(none)'}, the stack runs "
            f"{joined.queue_version}: add --with {package}=={joined.queue_version}"
        )


def worker_env(joined: telemetry.JoinedLabel, url: str, host: str, tag: str) -> dict[str, str]:
    """The stack's variables for this worker. 127.0.0.1 in them is the stack's machine, which this host reaches at
    the --join URL's address; the telemetry Redis is the --join URL itself."""
    address = urlsplit(url).hostname or "127.0.0.1"
    variables = checked_variables(joined.env)
    if address not in LOOPBACK:
        variables = {k: v.replace("@127.0.0.1:", f"@{address}:") if "://" in v else v for k, v in variables.items()}
    return {
        **os.environ,
        **variables,
        TELEMETRY_URL: url,
        HOST_LABEL: host,
        "PYTHONUNBUFFERED": "1",
        watchdog.TAG: tag,  # this command's watchdog stops the worker's children if this command is killed
    }


def _seen(api_url: str, label: str, service: Service) -> bool:
    """Ready once the stack's API shows a heartbeat from the worker's process or one of its children."""
    try:
        health = Health.of(httpx.get(f"{api_url}/health", timeout=1.0).json())
        root = psutil.Process(service.pid)
        family = {root.pid, *(child.pid for child in root.children(recursive=True))}
    except (httpx.HTTPError, ValueError, psutil.Error):
        return False
    return any(w.pid in family for w in implementations.get(label).workers_seen(health))


class JoinedWorker:
    """The worker process and its sampler, publishing one batch each sample interval."""

    def __init__(self, url: str, label: str, host: str, workdir: Path, python: str, say: Callable[[str], None]):
        self.url, self.label, self.host, self.workdir, self.python, self.say = url, label, host, workdir, python, say
        self.connection, self.info, self.joined = join_info(url, label)
        self.tag = uuid.uuid4().hex
        self.role = implementations.worker_role(label)
        self.service: Service | None = None
        self.sampler = Sampler(self._pids, self.info.sample_interval_s, pss_roles=frozenset({self.role}))
        self.restarts = 0
        self.last_heard = time.monotonic()

    def _pids(self) -> dict[str, int]:
        service = self.service
        return {self.role: service.pid} if service is not None and service.pid and service.alive() else {}

    def start(self) -> None:
        joined = self.joined
        argv = implementations.get(self.label).worker_argv(joined.concurrency, joined.options)
        assert argv is not None  # the stack publishes workers only
        argv = [self.python if arg == PYTHON else arg for arg in argv]
        name = f"{self.role}@{self.host}"
        env = worker_env(joined, self.url, self.host, self.tag)
        api = joined.api_url
        address = urlsplit(self.url).hostname or "127.0.0.1"
        if address not in LOOPBACK:
            api = api.replace("//127.0.0.1:", f"//{address}:")
        # Ready once the stack sees it, or at once when the stack is gone meanwhile (`run` then says so and leaves)
        ready = lambda s: _seen(api, self.label, s) or self._stack_gone()  # noqa: E731
        what = f"the {implementations.title(self.label)} worker on {self.host}"
        self.service = Service(name, argv, env, self.workdir / f"{name}.log", ready, what)
        self.service.start()

    def _stack_gone(self) -> bool:
        try:
            return not self._same_stack(telemetry.read_join(self.connection))
        except redis.RedisError as exc:
            return "refused" in str(exc)  # the server is gone, not the link

    def _same_stack(self, info: telemetry.JoinInfo | None) -> bool:
        """The join document still names the stack this worker joined (withdrawn, or another stack's: gone)."""
        return info is not None and info.stack == self.info.stack

    def stop(self) -> None:
        if self.service is not None:
            self.service.stop()

    def publish(self) -> None:
        """One sample of the worker, on this host's clock; the harness times its arrival on its own."""
        sample = self.sampler.read()
        processes = {f"{role}@{self.host}": r for role, r in sample.processes.items() if role == self.role}
        batch = telemetry.Batch(host=self.host, sent_at=time.time(), processes=processes)
        self.connection.xadd(
            telemetry.SAMPLES_KEY, {"b": batch.model_dump_json()}, maxlen=telemetry.SAMPLES_MAXLEN, approximate=True
        )

    def follow(self) -> str | None:
        """Read the stack's settings again: restart the worker when this label's changed; a reason to leave when
        the stack is gone (another stack there, or nothing)."""
        info = telemetry.read_join(self.connection)
        if info is None or not self._same_stack(info):
            return "the stack it joined has stopped"
        joined = info.labels.get(self.label)
        if joined is None:
            return f"the stack no longer runs {self.label}"
        if joined != self.joined:
            self.say(f"the stack's settings for {self.label} changed: starting the worker again with them")
            self.joined = joined
            self.stop()
            self.start()
        return None

    def run(self, stop: Callable[[], bool]) -> str:
        """Sample and publish until `stop()` or the stack goes; returns why it ended."""
        self.sampler.read()  # primes the CPU counters
        next_check = 0.0
        while not stop():
            time.sleep(self.info.sample_interval_s)
            try:
                self.publish()
                if time.monotonic() >= next_check:
                    next_check = time.monotonic() + CHECK_JOIN_S
                    reason = self.follow()
                    if reason:
                        return reason
                self.last_heard = time.monotonic()
            except redis.RedisError as exc:
                silent = time.monotonic() - self.last_heard
                if "refused" in str(exc) and silent > REFUSED_FOR_S:  # the server is gone, not the link
                    return "the stack it joined has stopped (its telemetry Redis is gone)"
                if silent > GONE_AFTER_S:
                    return f"its telemetry Redis has not answered for {GONE_AFTER_S:.0f} s"
            service = self.service
            if service is not None and not service.alive():
                self.restarts += 1
                how = service.process.ended_how()
                if self.restarts > RESTARTS:
                    raise StackError(f"{service.what} exited ({how}) {self.restarts} times; see {service.log_path}")
                self.say(f"{service.what} exited ({how}): starting it again ({self.restarts} of {RESTARTS})")
                with contextlib.suppress(StackError):
                    service.process.kill()
                    service.start()
        return "stopped"


def run_worker(
    url: str,
    label: str,
    host: str | None,
    workdir: Path,
    with_packages: list[str],
    rebuild: bool,
    console: Console,
    project: Sequence[str] = (),
) -> int:
    """`taskbench worker`: join, check the release, run until Ctrl-C, SIGTERM or the stack's end."""
    _, info, joined = join_info(url, label)
    host = host or socket.gethostname()
    options = {implementations.options_key(label): joined.options} if joined.options else {}
    with console.status(f"preparing {label}'s environment…"):
        env = environment.prepare([label], with_packages, options, rebuild, console.print, project)[label]
    check_release(label, joined, env.version(joined.queue_package))
    workdir.mkdir(parents=True, exist_ok=True)
    worker = JoinedWorker(url, label, host, workdir, env.python, console.print)
    guard = watchdog.start(worker.tag)  # whatever ends this command, the worker's children end with it
    stopping = False

    def on_term(*_: object) -> None:
        nonlocal stopping
        stopping = True

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        worker.start()
        console.print(
            f"Worker     {label} on {host}: {joined.queue_package} {joined.queue_version}, concurrency "
            f"{joined.concurrency}, joined stack {info.stack[:8]} at {redacted(url)}"
        )
        console.print(f"log        {worker.service.log_path if worker.service else ''}")
        why = worker.run(lambda: stopping)
        console.print(f"worker stopped: {why}")
        return 0
    except KeyboardInterrupt:
        console.print("stopping…")
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)
        worker.stop()
        guard.communicate(timeout=30)  # nothing of the worker is left: it checks, and exits
