"""The stack: Redis (unless a URL is given), RabbitMQ with `--broker amqp` (unless a URL is given), and for each
implementation its API server and its worker, in the implementation's own environment (`taskbench.envs.venvs`), as
services.

Each implementation has an API process of its own because each has an environment of its own: the newest
releases of the queues cannot share one. A scenario `select`s the implementation it measures; its API is then
"the API" (`url`, `api`, the sampled role `api`, the API faults). Two releases of one queue (`celery@5.5.3`
beside `celery`) get Redis databases of their own, so neither worker takes the other's jobs.

Every process started here has this object as its owner; leaving the `with` block (also on Ctrl-C)
stops all of them, in the reverse order of their start. What a scenario needs of the stack (delivery
settings, Redis persistence) is explicit `StackState`, applied with `apply()` before it runs.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import psutil
import psycopg
import redis

from taskbench import implementations
from taskbench.envs import environment, venvs
from taskbench.errors import StackError
from taskbench.hosts import cgroups, netns
from taskbench.implementations.base import PYTHON
from taskbench.measure import retention, telemetry
from taskbench.measure.ledger import LedgerTail
from taskbench.record.results import ApiOptions, ContainerLimits, DeliveryRecord, PluginOptions, Unavailable
from taskbench.stack import postgres_server, rabbitmq_server, watchdog
from taskbench.stack.redis_server import (
    RedisBinary,
    find_redis_server,
    free_port,
    reachable_copy,
    redis_command,
    server_for,
    unprivileged,
    write_password_config,
)
from taskbench.stack.services import Service
from taskbench_wire.env import API_TOKEN, CELERY_ENV_VARS, DEFAULT_NAMESPACE, ENV_VARS, HOST_LABEL, LEDGER, ServiceEnv
from taskbench_wire.health import Health
from taskbench_wire.urls import redacted

log = logging.getLogger(__name__)

TELEMETRY_DISABLED = ("CONFIG", "DEBUG", "MODULE")  # renamed away on the telemetry Redis, which joined hosts reach
AOF_REWRITE_WAIT_S = 30.0
BIND_ATTEMPTS = 3  # an API that lost its port to another process, started on a new one (Stack._await_ready)
WORKER_RECONNECT_S = 2.0  # after a Redis restart, before the workers are checked (Stack.restart_redis)
DEFAULT_REDELIVERY_TIMEOUT_S = 3600.0  # Celery's visibility timeout unless set: an hour
DEFAULT_RESTORE_INTERVAL_S = 1.0  # kombu's unacked restore sweep and the like, where the queue lets us set it
DEPLOY_GRACE_S = 30.0  # Kubernetes' default terminationGracePeriodSeconds: SIGTERM, then SIGKILL after this


@dataclass(frozen=True)
class StackState:
    """What a scenario needs of the stack: each worker's delivery variant, how long a queue waits before it
    treats an unacknowledged job as abandoned, whether Redis persists (AOF), and the API's middleware."""

    deliveries: Mapping[str, str] = field(default_factory=dict)  # implementation → delivery name
    redelivery_timeout_s: float = DEFAULT_REDELIVERY_TIMEOUT_S
    restore_interval_s: float = DEFAULT_RESTORE_INTERVAL_S  # how often a queue that lets us say looks for them
    redis_persistent: bool = False
    concurrency: int | None = None  # the workers' --concurrency (None: the config's); --concurrency 4,16,40
    middleware: str = "none"  # "base-http": the API behind a do-nothing BaseHTTPMiddleware
    worker_memory_mb: int | None = None  # worker-oom: the scenario's worker under this memory limit (MiB)
    worker_memory_headroom_mb: int | None = None  # worker-oom, no limit given: its idle usage plus this

    def delivery(self, implementation: str) -> str:
        return self.deliveries.get(implementation, "default")

    def of_worker(self, implementation: str) -> tuple[str, float | None, float | None, int | None]:
        """What the implementation's worker is started with and reads: a change restarts it (a redelivery timeout
        only where the worker's settings derive from it)."""
        reads = implementations.get(implementation).reads_redelivery_timeout
        timeouts = (self.redelivery_timeout_s, self.restore_interval_s) if reads else (None, None)
        return self.delivery(implementation), *timeouts, self.concurrency


@dataclass(frozen=True)
class StackConfig:
    workdir: Path
    host: str = "127.0.0.1"
    port: int = 0  # 0: a free port
    concurrency: int = 4
    redis_url: str | None = None  # None: a private redis-server
    broker: str = "redis"  # where Celery's and Dramatiq's jobs wait: redis, or amqp (RabbitMQ)
    broker_url: str | None = None  # with amqp; None: a private rabbitmq-server
    postgres_url: str | None = None  # for the PostgreSQL queues; None: a private PostgreSQL when one is needed
    implementations: tuple[str, ...] = implementations.DEFAULT
    state: StackState = StackState()
    jobs: tuple[str, ...] = ()  # the user's job functions (--job): fixed here, for the API and every worker
    job_timeout_s: float = 60.0
    job_dir: Path | None = None  # where the API and workers import them from (the user's working directory)
    api: ApiOptions = field(default_factory=ApiOptions)  # --api-workers, --graceful-timeout
    options: Mapping[str, PluginOptions] = field(default_factory=dict)  # each implementation's own, by registry name
    # Each implementation's environment, by label (taskbench.envs.environment.prepare); missing ones are built at start.
    environments: Mapping[str, venvs.Env] = field(default_factory=dict)
    workers: bool = True  # False: the APIs alone, for tests of the API that need no job to run
    hosts: int = 0  # --hosts N: the workers in N network namespaces on a bridge (taskbench.hosts.netns); 0: loopback
    link_delay_ms: float | None = None  # --link-delay: netem on every host's link (where the kernel has netem)
    # Container limits (taskbench.hosts.cgroups): every worker and API in a cgroup of its own; `contained` makes the
    # cgroups without limits too (worker-oom sets the scenario's worker's limit)
    worker_limits: ContainerLimits = field(default_factory=ContainerLimits)
    api_limits: ContainerLimits = field(default_factory=ContainerLimits)
    contained: bool = False


class Stack:
    def __init__(self, config: StackConfig) -> None:
        self.config = config
        self.state = config.state
        labels = config.implementations
        self.focus = labels[0]  # the implementation the current scenario measures: see select()
        self.ports: dict[str, int] = {}
        for i, label in enumerate(labels):  # each its own: two picks of a free port can be the same one (seen:
            port = config.port if config.port and i == 0 else free_port(config.host)  # huey's API answered for
            while port in self.ports.values():  # pgqueuer's, whose uvicorn could not bind)
                port = free_port(config.host)
            self.ports[label] = port
        self.redis: Service | None = None
        self.epmd: Service | None = None
        self.rabbitmq: Service | None = None
        self.amqp_url = (config.broker_url or "") if config.broker == "amqp" else ""  # set once a private one runs
        self.postgres: Service | None = None
        self.postgres_url = config.postgres_url or ""  # set once a private one runs
        self._postgres_cluster: postgres_server.PostgresCluster | None = None
        self.environments: dict[str, venvs.Env] = dict(config.environments)
        self.apis: dict[str, Service] = {}
        self._middleware: dict[str, str] = {}  # label → the middleware its API runs behind now
        self.workers: dict[str, Service] = {}
        self.companions: dict[str, Service] = {}  # by name: an implementation's processes beside its worker
        self.companion_urls: dict[str, str] = {}
        self.redis_url = config.redis_url or ""
        self._exit = contextlib.ExitStack()
        self.id = uuid.uuid4().hex  # every process of the stack carries it (see taskbench.stack.watchdog)
        self._redis_password = secrets.token_urlsafe(24)  # a private Redis answers no one without it
        # Every API endpoint but the probes' asks for it (taskbench_service.guard); the harness holds it, `serve`
        # writes it to a file only its user reads (`token_file`).
        self.api_token = secrets.token_urlsafe(24)
        # The telemetry Redis (taskbench.measure.telemetry): the ledger's streams and joined workers' samples, untouched
        # by every fault; a password of its own, so a joined worker holds no key to the service's Redis by it.
        self.telemetry: Service | None = None
        self.telemetry_url = ""
        self._telemetry_password = secrets.token_urlsafe(24)
        self._joiner_password = secrets.token_urlsafe(24)  # joined hosts' user on the telemetry Redis (join_url)
        self._redis_homes: dict[str, Path] = {}  # as root: each private Redis's own directory (see server_home)
        self._watchdog: subprocess.Popen[bytes] | None = None
        self.network: netns.Network | None = None  # --hosts: the bridge and the namespaces
        self.unavailable: dict[str, Unavailable] = {}  # implementations that could not start, by label
        self.cgroups: cgroups.StackCgroups | None = None  # container limits: each part's cgroup
        self._paused: list[str] = []  # labels whose API and worker are paused (pause_neighbours)
        self._resumed_at: dict[str, float] = {}  # when each was last resumed (monotonic)

    def tag(self, env: Mapping[str, str]) -> dict[str, str]:
        """`env` with this stack's id, which every process it starts (and their children) inherits."""
        return {**env, watchdog.TAG: self.id}

    @property
    def url(self) -> str:
        """The API of the implementation under test."""
        return self.url_for(self.focus)

    def url_for(self, label: str) -> str:
        return f"http://{self.api_address}:{self.ports[label]}"

    @property
    def api_address(self) -> str:
        """Where the APIs listen: `--host`, or under --hosts the address of their host's namespace."""
        return self.network.address(netns.API_HOST) if self.network is not None else self.config.host

    def urls(self) -> dict[str, str]:
        return {label: self.url_for(label) for label in self.labels}

    @property
    def port(self) -> int:
        return self.ports[self.focus]

    @property
    def api(self) -> Service | None:
        return self.apis.get(self.focus)

    def select(self, label: str) -> None:
        """Make `label` the implementation under test: its API is `url`, `api` and the sampled role `api`."""
        if label not in self.ports:
            raise StackError(f"{label} is not in this stack ({', '.join(self.ports)})")
        self.focus = label

    @property
    def ledger_path(self) -> Path:
        return self.ledger_path_for(self.focus)

    def ledger_path_for(self, label: str) -> Path:
        """A ledger per implementation: two releases of one queue write the same implementation name."""
        return self.config.workdir / "ledger" / f"{label}.jsonl"

    def ledger_tail(self, label: str) -> LedgerTail:
        """The ledger of `label` from now on: its stream on the telemetry Redis (every host's events, each with its
        arrival on this machine's clock), else its file."""
        if self.telemetry_url:
            return LedgerTail.stream(self.telemetry_url, telemetry.ledger_key(label))
        return LedgerTail(self.ledger_path_for(label))

    async def pid_source(self) -> Callable[[], dict[str, int]]:
        """What the sampler reads every interval: the PIDs of the stack's processes as they are then."""
        return self.pids

    @property
    def api_processes(self) -> int:
        return self.config.api.api_workers

    def delivery_record(self, label: str) -> DeliveryRecord:
        """The delivery setting `label`'s worker runs with now, and what it promises."""
        impl = implementations.get(label)
        broker = impl.broker_for(self.config.broker)
        delivery = impl.delivery(self.state.delivery(label), broker)
        timeout = None if broker == "amqp" else self.state.redelivery_timeout_s  # RabbitMQ: on disconnect
        return DeliveryRecord(name=delivery.name, promise=delivery.promise, redelivery_timeout_s=timeout, broker=broker)

    def broker_sizes(self, label: str) -> dict[str, int] | None:
        """What `label`'s queue holds in its broker now, by key or table (`taskbench.measure.retention`); None on
        RabbitMQ, or when the broker does not answer (the scenario's own faults restart it)."""
        impl = implementations.get(label)
        try:
            if impl.needs_postgres:
                return retention.postgres_sizes(self.postgres_url, self.namespace)
            if impl.broker_for(self.config.broker) != "redis":
                return None
            patterns = (f"{self.namespace}:*", *impl.redis_patterns(self.namespace))
            with redis.Redis.from_url(self.redis_url_for(label), socket_timeout=5) as client:
                return retention.redis_sizes(client, self.namespace, patterns)
        except (redis.RedisError, psycopg.Error) as exc:
            log.warning("what %s keeps in its broker could not be read: %s", label, self.redact(str(exc)))
            return None

    def redis_commands(self, label: str) -> int | None:
        """Every command the private Redis has served so far, when `label`'s jobs wait there; None on a server
        taskbench does not own (its other clients' commands count too), on RabbitMQ or PostgreSQL."""
        impl = implementations.get(label)
        if not self.embedded_redis or impl.needs_postgres or impl.broker_for(self.config.broker) != "redis":
            return None
        try:
            with redis.Redis.from_url(self.redis_url, socket_timeout=5) as client:
                stats: dict[str, dict[str, int]] = client.info("commandstats")
        except redis.RedisError as exc:
            log.warning("the Redis command count could not be read: %s", self.redact(str(exc)))
            return None
        return sum(int(command.get("calls", 0)) for command in stats.values())

    def postgres_statements(self, label: str) -> tuple[int, int] | None:
        """The statements and rows the private PostgreSQL has served so far, when `label`'s jobs wait there; None
        on a server taskbench does not own, or one without pg_stat_statements."""
        if self._postgres_cluster is None or not implementations.get(label).needs_postgres:
            return None
        return postgres_server.statements_so_far(self.postgres_url)

    def release_stranded_locks(self, label: str) -> dict[str, float]:
        """The locks `label`'s queue left held (`Implementation.stranded_locks`), each with the seconds it had left,
        released: a fault's leftover must not decide the next scenario."""
        keys = implementations.get(label).stranded_locks(self.namespace, self.config.broker)
        held: dict[str, float] = {}
        if not keys:
            return held
        try:
            with redis.Redis.from_url(self.redis_url_for(label), socket_timeout=5) as client:
                for key in keys:
                    left_ms = int(client.pttl(key))
                    if left_ms > 0:
                        held[key] = left_ms / 1000
                        client.delete(key)
        except redis.RedisError as exc:
            log.warning("the locks %s leaves could not be read: %s", label, self.redact(str(exc)))
        return held

    def local_hosts(self) -> set[str]:
        """The host labels of this machine's processes, which share the harness's clock: its host name (what the
        service says when no label is set), and the label of each namespace under --hosts."""
        hosts = {socket.gethostname()}
        for label in self.workers:
            hosts.add(self.worker_env(label).get(HOST_LABEL) or socket.gethostname())
        for label in self.apis:
            hosts.add(self.api_env(label).get(HOST_LABEL) or socket.gethostname())
        return hosts

    def redis_url_for(self, label: str) -> str:
        """The run's Redis, in a database of its own for a second release of a queue already in the stack."""
        name = implementations.plugin_name(label)
        labels = list(self.config.implementations)
        offset = [implementations.plugin_name(other) for other in labels[: labels.index(label)]].count(name)
        if offset == 0 or not self.redis_url:
            return self.redis_url
        parts = urlsplit(self.redis_url)
        base = int(parts.path.strip("/") or 0)
        return urlunsplit(parts._replace(path=f"/{base + offset}"))

    @property
    def external_servers(self) -> bool:
        """Whether any server was named by a flag (--redis-url, --broker-url, --postgres-url): someone else's."""
        config = self.config
        return config.redis_url is not None or bool(config.broker_url) or bool(config.postgres_url)

    @property
    def namespace(self) -> str:
        """What the service names everything it writes after (taskbench_wire.env.NAMESPACE): on a server of
        someone else's, this run's alone, so it never reads, purges or deletes what it did not create."""
        return f"{DEFAULT_NAMESPACE}-{self.id[:8]}" if self.external_servers else DEFAULT_NAMESPACE

    @property
    def embedded_redis(self) -> bool:
        return self.config.redis_url is None

    @property
    def embedded_rabbitmq(self) -> bool:
        return self.config.broker == "amqp" and self.config.broker_url is None

    @property
    def needs_postgres(self) -> bool:
        return any(implementations.get(label).needs_postgres for label in self.config.implementations)

    @property
    def embedded_postgres(self) -> bool:
        return self.needs_postgres and self.config.postgres_url is None

    def services(self) -> list[Service]:
        servers = (self.redis, self.telemetry, self.epmd, self.rabbitmq, self.postgres)
        started = (*servers, *self.apis.values(), *self.workers.values())
        return [s for s in (*started, *self.companions.values()) if s is not None]

    def logs(self) -> dict[str, str]:
        return {s.name: str(s.log_path) for s in self.services()}

    def pids(self) -> dict[str, int]:
        """Sampled roles: `api` (the API of the implementation under test, with its worker processes under
        --api-workers), `redis` and `{implementation}-worker` (with its children). The other implementations'
        APIs are idle and not sampled; their workers are, as every worker polls its queue all run long."""
        other_apis = {service.name for label, service in self.apis.items() if label != self.focus}
        pids = {s.name: s.pid for s in self.services() if s.pid and s.alive() and s.name not in other_apis}
        api = self.api
        if api is not None and api.name in pids:
            pids["api"] = pids.pop(api.name)
        return pids

    # --- lifecycle -------------------------------------------------------------------------------------

    def __enter__(self) -> Stack:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *_: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.stop()

    def start(self) -> None:
        """Its folder and isolation first, then the servers, then every implementation's services."""
        self._watchdog = watchdog.start(self.id)  # first: whatever happens next, nothing outlives the harness
        self._prepare_folder()
        self._isolate()
        missing = [label for label in self.config.implementations if label not in self.environments]
        if missing:
            self.environments |= environment.prepare(missing, options=self.config.options)
        self._start_servers()
        for label in self.config.implementations:
            try:
                self.set_up(label)
            except StackError as exc:
                self.give_up(label, f"setting up {implementations.title(label)}", exc)
        self._start_services()
        for label in self.labels:
            self.start_companions(label)
        self.publish_join()

    def _prepare_folder(self) -> None:
        self.config.workdir.mkdir(parents=True, exist_ok=True)
        self.config.workdir.chmod(0o700)  # logs, ledgers and, while it runs, the stack's keys: its user's alone
        (self.config.workdir / "ledger").mkdir(exist_ok=True)
        self._exit.callback(self._forget_secrets)  # the first callback in, the last out: once every process is gone
        self.token_file.touch(mode=0o600)
        self.token_file.write_text(self.api_token + "\n")

    def _isolate(self) -> None:
        """The hosts (network namespaces) and the container limits (cgroups) its processes start in."""
        if self.config.hosts:
            self._exit.callback(self._remove_network)  # the first callback in, the last out: after every process
            self.network = netns.Network.create(self.id, self.config.hosts, self.config.link_delay_ms)
        if self.config.contained or self.config.worker_limits.is_set or self.config.api_limits.is_set:
            self.cgroups = cgroups.StackCgroups.create(self.id)
            self._exit.callback(self.cgroups.remove)  # before the services: it runs after they have stopped

    def _start_servers(self) -> None:
        """Redis (and the telemetry Redis), RabbitMQ and PostgreSQL where asked: private ones started, given ones
        checked."""
        if self.embedded_redis:
            self.start_redis()
        self.check_redis()
        self.start_telemetry()
        if self.embedded_rabbitmq:
            self.start_rabbitmq()
        if self.config.broker == "amqp":
            self.check_amqp()
        if self.embedded_postgres:
            self.start_postgres()
        if self.needs_postgres:
            self.check_postgres()
        if self.external_servers:  # registered before the services: it runs once they have all stopped
            self._exit.callback(self._remove_namespace)

    def _start_services(self) -> None:
        """Every API and worker: every process first, then each one's readiness, so that their start-ups (imports,
        CPU calibration) overlap; one that cannot start is a finding, and the run goes on with the others."""
        services = [(label, self._api_service(label)) for label in self.labels]
        services += [(label, self._worker_service(label)) for label in self.labels if self._has_worker(label)]
        for _, service in services:
            service.process.start()
            self._exit.callback(service.stop)
        for label, service in services:
            if label not in self.unavailable:
                try:
                    self._await_ready(label, service)
                except StackError as exc:
                    self.give_up(label, service.what, exc)
        if not self.labels:
            reasons = "; ".join(f"{u.part}: {u.reason}" for u in self.unavailable.values())
            raise StackError(f"no implementation could start ({reasons}); logs in {self.config.workdir / 'logs'}")

    def _await_ready(self, label: str, service: Service) -> None:
        """`service` ready; an API whose port another process took first (its pick of a free port is made before
        it binds, and other stacks pick too) starts again on a port picked anew, up to `BIND_ATTEMPTS` times."""
        for _ in range(BIND_ATTEMPTS - 1):
            try:
                service.wait_ready()
                return
            except StackError:
                asked = bool(self.config.port) and label == self.config.implementations[0]  # --port: its own
                lost = "address already in use" in service.process.log_tail()
                if service is not self.apis.get(label) or asked or not lost:
                    raise
            taken = set(self.ports.values())
            while self.ports[label] in taken:
                self.ports[label] = free_port(self.config.host)
            service = self._api_service(label)
            service.process.start()
            self._exit.callback(service.stop)
        service.wait_ready()

    def stop(self) -> None:
        """Ask the APIs, the workers and Flower to shut down all at once (each takes seconds to finish
        gracefully: overlapped, not one after the other), then stop every service in reverse order."""
        telemetry.withdraw_join(self.telemetry_url)  # workers joined from other hosts leave within a second
        for service in (*self.companions.values(), *self.apis.values(), *self.workers.values()):
            service.process.terminate()
        try:
            self._exit.close()
        finally:
            if self._watchdog is not None:  # nothing of the stack is left: it checks, and exits
                self._watchdog.communicate(timeout=30)
                self._watchdog = None

    # --- neighbours ------------------------------------------------------------------------------------

    def pause_neighbours(self) -> list[str]:
        """Every other implementation's API and worker paused (SIGSTOP) while `focus` is measured: idle, each still
        polls its queue or its database and would take CPU from the one measured. Not those on RabbitMQ, whose
        server closes a connection that misses its heartbeats; not workers of other machines (`worker --join`).
        First, `focus` gets the time its queue needs to run again before it takes jobs as promptly as ever
        (`Implementation.settle_after_pause_s`), when it was paused itself a moment ago."""
        settle = implementations.get(self.focus).settle_after_pause_s
        running_s = time.monotonic() - self._resumed_at.get(self.focus, -math.inf)
        if running_s < settle:
            time.sleep(settle - running_s)
        return self.pause_all(but=self.focus)

    def pause_all(self, but: str | None = None) -> list[str]:
        """Every implementation's API and worker paused (but `but`'s), as `pause_neighbours` does; `--calibrate`
        measures this host's ceilings so."""
        for label in self.labels:
            on_amqp = implementations.get(label).broker_for(self.config.broker) == "amqp"
            if label == but or on_amqp:
                continue
            for service in (self.workers.get(label), self.apis.get(label)):
                if service is not None and service.alive():
                    service.pause()
            self._paused.append(label)
        return list(self._paused)

    def resume_neighbours(self) -> None:
        """Every paused API and worker running again, each worker seen by its service again (its next beat, within
        a second) before the next scenario may measure it."""
        paused, self._paused = self._paused, []
        for label in paused:
            for service in (self.apis.get(label), self.workers.get(label)):
                if service is not None:
                    service.resume()
            self._resumed_at[label] = time.monotonic()
        deadline = time.monotonic() + WORKER_RECONNECT_S
        for label in paused:
            worker = self.workers.get(label)
            while worker is not None and not self._worker_seen(label, worker) and time.monotonic() < deadline:
                time.sleep(0.05)

    # --- implementations that cannot run ----------------------------------------------------------------

    @property
    def labels(self) -> list[str]:
        """The implementations the stack runs: those asked for, less those that could not start."""
        return [label for label in self.config.implementations if label not in self.unavailable]

    def give_up(self, label: str, part: str, error: Exception, when: str = "at start") -> None:
        """`label` cannot run: its API and worker stop, and the failure is recorded (which part, why, its log's last
        lines) as a finding the reports state, while the run goes on with the others."""
        tail = ""
        for service in (self.apis.pop(label, None), self.workers.pop(label, None)):
            if service is not None:
                tail = service.process.log_tail(20) if service.what == part else tail
                service.stop()
        lines = str(error).strip().splitlines() or [type(error).__name__]
        self.unavailable[label] = Unavailable(
            implementation=label, part=part, reason=self.redact(lines[0]), log_tail=self.redact(tail), when=when
        )

    def revive(self, label: str, when: str) -> bool:
        """Start `label`'s API and worker again (a worker its service no longer sees); False, and `label` given up,
        when one of them still does not come up."""
        for service in (self.apis.get(label), self.workers.get(label)):
            if service is None:
                continue
            try:
                if label in self.workers and service is self.workers[label]:
                    self.restart_worker(label)
                else:
                    service.restart()
            except StackError as exc:
                self.give_up(label, service.what, exc, when)
                return False
        return True

    def part_of(self, label: str) -> str:
        """What runs `label`'s jobs, in words: its worker, or BackgroundTasks' API."""
        service = self.workers.get(label) or self.apis.get(label)
        return service.what if service is not None else implementations.title(label)

    @property
    def api_headers(self) -> dict[str, str]:
        """What a client of the stack's APIs sends (taskbench_service.guard)."""
        return {"Authorization": f"Bearer {self.api_token}"}

    @property
    def token_file(self) -> Path:
        """The APIs' bearer token, in a file only its owner reads (`serve` prints its path, never the token)."""
        return self.config.workdir / "api.token"

    def redact(self, text: str) -> str:
        """`text` without any password of this stack's servers (generated or given in a URL)."""
        urls = (self.redis_url, self.telemetry_url, self.amqp_url, self.postgres_url)
        generated = {self._redis_password, self._telemetry_password, self._joiner_password, self.api_token}
        secrets_ = generated | {urlsplit(u).password for u in urls if u}
        for secret in sorted(filter(None, secrets_), key=len, reverse=True):
            text = text.replace(secret, "***")
        return text

    def _own(self, service: Service) -> Service:
        """Start `service` and make the stack responsible for stopping it."""
        self._exit.enter_context(service)
        return service

    def env(self, label: str) -> dict[str, str]:
        """What the API and the worker of `label` read (taskbench_wire.env): the same for both, so the API's
        view of the queue (delivery, timeouts) is the worker's."""
        redis_url = self.redis_url_for(label)
        return ServiceEnv(
            redis_url=redis_url,
            broker_url=self.amqp_url or redis_url,
            postgres_url=self.postgres_url if implementations.get(label).needs_postgres else "",
            ledger_path=str(self.ledger_path_for(label)),
            concurrency=self.worker_concurrency,
            delivery=self.state.delivery(label),
            redelivery_timeout_s=self.state.redelivery_timeout_s,
            restore_interval_s=self.state.restore_interval_s,
            jobs=list(self.config.jobs),
            job_timeout_s=self.config.job_timeout_s,
            job_dir=str(self.config.job_dir or ""),
            middleware=self.state.middleware,
            implementations=[implementations.plugin_name(label)],
            telemetry_url=self.telemetry_url,
            telemetry_ledger=telemetry.ledger_key(label),
            namespace=self.namespace,
            app=str(self.options_of(label).get("app") or ""),  # --app: the user's own app (from job_dir)
        ).environ() | {watchdog.TAG: self.id, API_TOKEN: self.api_token}

    def _forget_secrets(self) -> None:
        """The files that held this stack's passwords go with it: its run folder keeps reports and logs, no key."""
        workdir = self.config.workdir
        rabbitmq = workdir / "rabbitmq"  # its config (the password) and its Erlang cookie (HOME)
        held = (workdir / "redis.conf", workdir / "telemetry" / "redis.conf", self.join_file, self.token_file)
        for path in (*held, rabbitmq / "rabbitmq.conf", rabbitmq / ".erlang.cookie"):
            path.unlink(missing_ok=True)

    def _remove_namespace(self) -> None:
        """On servers of someone else's, what this stack wrote goes with it, and nothing else: every Redis key of its
        namespace (each queue's `forget`: the keys whose prefix the queue fixes too), the PostgreSQL queues' schema
        (only when taskbench's set-up marked it). A failure is a line in the harness's log, not an error: the run's
        results are kept either way."""
        if self.config.redis_url is not None:
            for label in self.config.implementations:
                try:
                    client = redis.Redis.from_url(self.redis_url_for(label), socket_timeout=5)
                    implementations.get(label).forget(client, self.namespace)
                except redis.RedisError as exc:
                    log.warning("the keys of %s could not be removed from %s: %s", label, redacted(self.redis_url), exc)
        if self.needs_postgres and self.config.postgres_url:
            try:
                postgres_server.drop_namespace(self.config.postgres_url, self.namespace)
            except StackError as exc:
                log.warning("%s", exc)

    # --- hosts (--hosts N: taskbench.hosts.netns) ----------------------------------------------------------------

    def _remove_network(self) -> None:
        if self.network is not None:
            self.network.remove()

    def host_of(self, label: str) -> int | None:
        """The host (1..N) whose namespace `label`'s worker runs in: the workers in turn, one host each until
        every host has one; None without --hosts or without a worker."""
        if self.network is None or not self._has_worker(label):
            return None
        with_workers = [other for other in self.config.implementations if self._has_worker(other)]
        return with_workers.index(label) % self.network.hosts + 1

    def worker_env(self, label: str) -> dict[str, str]:
        """`env(label)`, with the servers' URLs on the bridge when the worker runs in a namespace (where 127.0.0.1
        is its own loopback)."""
        host = self.host_of(label)
        return self.env(label) if host is None else self._on_bridge(self.env(label), host)

    def api_env(self, label: str) -> dict[str, str]:
        """`env(label)`, on the bridge under --hosts (the APIs' namespace)."""
        return self.env(label) if self.network is None else self._on_bridge(self.env(label), netns.API_HOST)

    def _on_bridge(self, env: dict[str, str], host: int) -> dict[str, str]:
        """Every server URL (Redis, Celery's own variables, ...) on the servers' bridge address, the telemetry
        Redis's on the harness's (no fault cuts it), and the host's label on its ledger events."""
        assert self.network is not None
        telemetry_key = next((k for k, v in env.items() if v == self.telemetry_url and v), None)
        servers, gateway = f"@{self.network.servers}:", f"@{self.network.gateway}:"
        env = {
            k: v.replace("@127.0.0.1:", gateway if k == telemetry_key else servers) if "://" in v else v
            for k, v in env.items()
        }
        if not env.get(HOST_LABEL, "x"):  # what its ledger events are attributed to
            env[HOST_LABEL] = f"host {host} ({self.network.address(host)})"
        return env

    def topology(self) -> dict[str, str]:
        """Which part runs on which address (--hosts), for the run's settings and every report."""
        if self.network is None:
            return {}
        network = self.network
        bridge = f"{network.bridge} {network.gateway}/24 and {network.servers}/24"
        parts = {"bridge": f"{bridge} (no uplink: nothing outside this machine reaches it)"}
        for name, server in (("redis", self.redis), ("rabbitmq", self.rabbitmq), ("postgres", self.postgres)):
            if server is not None:
                parts[name] = f"127.0.0.1 and {network.servers} (root namespace)"
        parts["telemetry"] = f"127.0.0.1 and {network.gateway} (root namespace, with the harness)"
        api = netns.API_HOST
        api_host = f"{network.address(api)} (host {api}, namespace {network.namespace(api)})"
        for label in self.config.implementations:
            parts[f"{label}-api"] = api_host
            host = self.host_of(label)
            if host is not None:
                role = implementations.worker_role(label)
                parts[role] = f"{self.network.address(host)} (host {host}, namespace {self.network.namespace(host)})"
        return parts

    def partition(self, label: str, seconds: float) -> tuple[float, float]:
        """Cut the host of `label`'s worker off (its link down, inside its namespace) for `seconds`, then restore
        it. Returns when the link went down and when it came up (epoch seconds)."""
        assert self.network is not None, "network-partition needs --hosts"
        host = self.host_of(label)
        assert host is not None, f"{label} has no worker in a namespace"
        down_at = time.time()
        self.network.set_link(host, up=False)
        try:
            time.sleep(seconds)
        finally:
            self.network.set_link(host, up=True)
        return down_at, time.time()

    def cut_api(self, cut: bool) -> None:
        """Cut the APIs' host off from the servers (Redis, RabbitMQ, PostgreSQL) alone, or restore it: clients still
        reach the APIs, the APIs still reach the telemetry Redis."""
        assert self.network is not None, "api-partition needs --hosts"
        self.network.set_servers_reachable(netns.API_HOST, reachable=not cut)

    def python(self, label: str) -> str:
        return self.environments[label].python

    def command(self, label: str, argv: list[str]) -> list[str]:
        """A command line with the interpreter of `label`'s environment for `PYTHON`."""
        python = self.python(label)
        return [python if arg == PYTHON else arg for arg in argv]

    def _has_worker(self, label: str) -> bool:
        return self.config.workers and implementations.get(label).has_worker

    def _log(self, name: str) -> Path:
        return self.config.workdir / "logs" / f"{name}.log"

    # --- Redis -----------------------------------------------------------------------------------------

    def server_home(self, name: str, default: Path) -> tuple[Path, tuple[int, int] | None]:
        """Where a private server (Redis, RabbitMQ) keeps its config and data, and whom it runs as: `default` as this
        user; as root, `nobody` in a private directory of the stack's that it owns (removed with the stack, or by
        the watchdog)."""
        user = unprivileged()
        if user is None:
            return default, None
        if name not in self._redis_homes:
            home = watchdog.private_dir(self.id)
            os.chown(home, *user)
            self._exit.callback(shutil.rmtree, home, True)  # once the server has stopped
            self._redis_homes[name] = home
        return self._redis_homes[name], user

    @property
    def redis_binary(self) -> RedisBinary:
        """The redis-server a private Redis runs: one that every selected queue can use (redis_server.server_for)."""
        return server_for(*implementations.redis_minimum(self.config.implementations))

    def start_redis(self, port: int | None = None) -> None:
        """A private Redis: loopback, a password of this stack's (in the URL every service gets, never printed),
        never as root."""
        port = port or free_port()
        self.redis_url = f"redis://:{self._redis_password}@127.0.0.1:{port}/0"
        home, user = self.server_home("redis", self.config.workdir)
        config = write_password_config(home, self._redis_password, user)
        also = self.network.servers if self.network else None  # --hosts: the other hosts reach it there
        binary = reachable_copy(self.redis_binary.path, home, user)
        argv = redis_command(binary, port, home, self.state.redis_persistent, config, also)
        ready = lambda _: self._redis_answers()  # noqa: E731
        service = Service("redis", argv, self.tag({}), self._log("redis"), ready, "redis-server", user=user)
        self.redis = self._own(service)

    def start_telemetry(self) -> None:
        """The telemetry Redis, started as the private one is (loopback, and the bridge under --hosts; a password
        of its own in a 0600 file; no persistence), in a directory of its own. No fault touches it."""
        port = free_port()
        self.telemetry_url = f"redis://:{self._telemetry_password}@127.0.0.1:{port}/0"
        directory, user = self.server_home("telemetry", self.config.workdir / "telemetry")
        # joined hosts hold its password: no CONFIG (nor DEBUG, MODULE) for them
        acl = (telemetry.joiner_acl(self._joiner_password),)  # joined hosts' own user (join_url)
        config = write_password_config(directory, self._telemetry_password, user, TELEMETRY_DISABLED, acl)
        # Under --hosts, the bridge; with `serve --host ADDR`, that address, where workers of other hosts reach it
        host = self.config.host if self.config.host not in ("127.0.0.1", "localhost", "0.0.0.0", "::") else None
        also = self.network.gateway if self.network else host
        argv = redis_command(reachable_copy(find_redis_server(), directory, user), port, directory, False, config, also)
        ready = lambda _: self._answers(self.telemetry_url)  # noqa: E731
        what = "the telemetry redis-server"
        service = Service("telemetry", argv, self.tag({}), self._log("telemetry"), ready, what, user=user)
        self.telemetry = self._own(service)
        self.join_file.parent.mkdir(parents=True, exist_ok=True)
        self.join_file.touch(mode=0o600)  # what `taskbench worker --join` needs, where only this user reads it
        self.join_file.write_text(self.join_url + "\n")

    @property
    def join_url(self) -> str:
        """The telemetry Redis as joined hosts reach it: as its `joiner` user, who can read the stack's document and
        append to the streams, nothing else (telemetry.joiner_acl)."""
        port = urlsplit(self.telemetry_url).port
        return f"redis://{telemetry.JOINER}:{self._joiner_password}@127.0.0.1:{port}/0"

    @property
    def join_file(self) -> Path:
        """The telemetry URL, password included: a file only its owner reads (`serve` prints its path)."""
        return self.config.workdir / "telemetry" / "join.url"

    def publish_join(self) -> None:
        """What `taskbench worker --join` reads to run a worker of this stack elsewhere: each label's variables
        (no ledger file: the stream is the ledger there), the queue's release, concurrency and options."""
        if not self.telemetry_url:
            return
        labels = {}
        for label in self.labels:
            impl = implementations.get(label)
            if not impl.has_worker:
                continue
            env = self.env(label)
            variables = {name: env[name] for name in (*ENV_VARS, *CELERY_ENV_VARS) if name in env}
            labels[label] = telemetry.JoinedLabel(
                env=variables | {LEDGER: "", HOST_LABEL: ""},
                queue_package=impl.queue_package,
                queue_version=self.environments[label].version(impl.queue_package),
                concurrency=self.worker_concurrency,
                options=self.options_of(label),
                api_url=self.url_for(label),
            )
        telemetry.publish_join(self.telemetry_url, telemetry.JoinInfo(stack=self.id, labels=labels))

    def drop_redis_connections(self) -> int:
        """The private Redis drops every client's connection (not the one asking): how many went."""
        assert self.redis is not None, "only a private Redis drops its clients for a fault"
        with redis.Redis.from_url(self.redis_url, socket_timeout=5) as client:
            return int(client.client_kill_filter(_type="normal", skipme=True))

    def drop_postgres_connections(self) -> int:
        """The private PostgreSQL ends every other client's backend: how many went."""
        assert self.postgres is not None, "only a private PostgreSQL ends its clients' sessions for a fault"
        ending = (
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE pid <> pg_backend_pid() AND backend_type = 'client backend'"
        )
        with psycopg.connect(self.postgres_url, connect_timeout=5, autocommit=True) as connection:
            row = connection.execute(ending).fetchone()
        return int(row[0]) if row else 0

    def restart_redis(self, persistent: bool) -> None:
        """Stop the private Redis (SHUTDOWN, which writes the AOF when on) and start it again on its port."""
        assert self.redis is not None, "only a private Redis can be restarted"
        self.redis.stop()
        self.state = replace(self.state, redis_persistent=persistent)
        port = int(urlsplit(self.redis_url).port or 6379)
        self.start_redis(port)
        # A worker that cannot live with the new Redis (one whose Lua functions and consumer group are gone without
        # persistence) exits within a retry or two.
        self._await_reconnected_workers(list(self.workers))

    def _await_reconnected_workers(self, labels: list[str]) -> None:
        """After a server's restart: wait until each of these workers has reconnected on its own. One that died of
        it is a finding its scenario reports (dead_parts), and `apply` starts it again before the next one, rather
        than a stack error now or in the next scenario."""
        time.sleep(WORKER_RECONNECT_S)
        for label in labels:
            worker = self.workers[label]
            try:
                if worker.alive():
                    worker.wait_ready()
            except StackError:
                if worker.alive():
                    raise

    def _redis_answers(self) -> bool:
        return self._answers(self.redis_url)

    @staticmethod
    def _answers(url: str) -> bool:
        try:
            return bool(redis.Redis.from_url(url, socket_connect_timeout=0.5).ping())
        except redis.RedisError:
            return False

    def check_redis(self) -> None:
        if not self._redis_answers():
            where = redacted(self.redis_url)
            raise StackError(f"Redis does not answer at {where}: start it or pass another --redis-url")

    def _set_persistence(self, persistent: bool) -> None:
        client = redis.Redis.from_url(self.redis_url)
        client.config_set("appendonly", "yes" if persistent else "no")
        deadline = time.monotonic() + AOF_REWRITE_WAIT_S
        while persistent and time.monotonic() < deadline:
            info: dict[str, Any] = client.info("persistence")
            if not info.get("aof_rewrite_in_progress") and not info.get("aof_rewrite_scheduled"):
                break
            time.sleep(0.1)

    # --- RabbitMQ (--broker amqp) ----------------------------------------------------------------------

    def start_rabbitmq(self) -> None:
        """A private node with its own epmd, both services of the stack (see taskbench.stack.rabbitmq_server)."""
        server, epmd = rabbitmq_server.find_rabbitmq_server(), rabbitmq_server.find_epmd()
        also = self.network.servers if self.network else None  # --hosts: the other hosts reach it there
        # as root: `nobody`, in a private directory of the stack's (what a password holder of a root server could
        # write would be root's)
        home, user = self.server_home("rabbitmq", self.config.workdir / "rabbitmq")
        node = rabbitmq_server.RabbitNode.create(home, also, user)
        self.amqp_url = node.url
        env = self.tag({**os.environ, **node.environ()})  # its scripts need PATH to find erl
        argv, log = node.epmd_argv(epmd), self._log("epmd")
        self.epmd = self._own(Service("epmd", argv, env, log, lambda _: node.epmd_listens(), "epmd", user=user))
        what = "rabbitmq-server"
        service = Service("rabbitmq", [server], env, self._log("rabbitmq"), self._amqp_answers, what, user=user)
        self.rabbitmq = self._own(service)

    def _amqp_answers(self, _: Service) -> bool:
        return rabbitmq_server.amqp_problem(self.amqp_url) is None

    def check_amqp(self) -> None:
        problem = rabbitmq_server.amqp_problem(self.amqp_url, timeout_s=3.0)
        if problem:
            raise StackError(f"RabbitMQ does not answer at {redacted(self.amqp_url)} ({problem})")

    # --- PostgreSQL (the PostgreSQL queues) ------------------------------------------------------------

    def start_postgres(self, port: int | None = None) -> None:
        """A private cluster (see taskbench.stack.postgres_server): loopback, a password of this stack's, removed when
        the stack stops; on a restart, the same cluster on the same port."""
        if self._postgres_cluster is None:
            also = self.network.servers if self.network else None  # --hosts: the other hosts reach it there
            self._postgres_cluster = postgres_server.PostgresCluster.create(port or free_port(), self.id, also)
            self._exit.callback(self._postgres_cluster.remove)  # after the server has stopped
        cluster = self._postgres_cluster
        self.postgres_url = cluster.url
        # SIGINT: PostgreSQL's fast shutdown (SIGTERM's smart shutdown would wait for every client to leave).
        argv, log, ready = cluster.argv(), self._log("postgres"), self._postgres_answers
        service = Service("postgres", argv, self.tag({}), log, ready, "PostgreSQL", signal.SIGINT, cluster.user)
        self.postgres = self._own(service)
        cluster.create_database()

    def _postgres_answers(self, _: Service) -> bool:
        assert self._postgres_cluster is not None
        return postgres_server.problem(self._postgres_cluster.admin_url) is None

    def check_postgres(self) -> None:
        problem = postgres_server.problem(self.postgres_url, timeout_s=3.0)
        if problem:
            raise StackError(f"PostgreSQL does not answer at {redacted(self.postgres_url)} ({problem})")

    @property
    def postgres_bin_dir(self) -> Path | None:
        """The private PostgreSQL's programs (pgbench beside its server); None: no private one runs."""
        return self._postgres_cluster.bin_dir if self._postgres_cluster is not None else None

    def restart_postgres(self) -> None:
        """Stop the private PostgreSQL (a fast shutdown: clients are cut off, as `pg_ctl restart` does) and start
        it again on its port."""
        assert self.postgres is not None, "only a private PostgreSQL can be restarted"
        self.postgres.stop()
        self.start_postgres()
        # A worker that does not outlive its connection (pgqueuer's exits on the first closed one).
        self._await_reconnected_workers([label for label in self.workers if implementations.get(label).needs_postgres])

    def set_up(self, label: str) -> None:
        """Run the implementation's one-time set-up (a PostgreSQL queue's schema) in its environment."""
        argv = implementations.get(label).setup_argv()
        if argv is None:
            return
        done = subprocess.run(
            self.command(label, argv), env=self.env(label), capture_output=True, text=True, timeout=120
        )
        if done.returncode != 0:
            raise StackError(f"setting up {implementations.title(label)} failed: {done.stderr.strip()[-2000:]}")

    # --- API and workers -------------------------------------------------------------------------------

    def _api_service(self, label: str) -> Service:
        argv = [
            self.python(label), "-m", "uvicorn", "taskbench_service.main:app",
            "--host", self.api_address, "--port", str(self.ports[label]),
            "--log-level", "warning", "--no-access-log",
        ]  # fmt: skip
        if self.config.api.graceful_timeout_s is not None:
            argv += ["--timeout-graceful-shutdown", str(self.config.api.graceful_timeout_s)]
        if self.config.api.api_workers > 1:
            argv += ["--workers", str(self.config.api.api_workers)]
        what = f"the API server of {implementations.title(label)}"
        name = f"{label}-api"
        service = Service(name, argv, self.api_env(label), self._log(name), lambda s: self._api_answers(label, s), what)
        if self.network is not None:
            service.process.netns = self.network.namespace(netns.API_HOST)
        self._contain(service, self.config.api_limits)
        self.apis[label] = service
        self._middleware[label] = self.state.middleware
        return service

    def _worker_service(self, label: str) -> Service:
        argv = implementations.get(label).worker_argv(self.worker_concurrency, self.options_of(label))
        assert argv is not None, f"{label} has no worker"
        role = implementations.worker_role(label)
        what = f"the {implementations.title(label)} worker"
        check = lambda s: self._worker_seen(label, s)  # noqa: E731
        service = Service(role, self.command(label, argv), self.worker_env(label), self._log(role), check, what)
        host = self.host_of(label)
        if self.network is not None and host is not None:
            service.process.netns = self.network.namespace(host)
        self._contain(service, self.config.worker_limits)
        self.workers[label] = service
        return service

    def _contain(self, service: Service, limits: ContainerLimits) -> None:
        """Start `service` (and, on every restart, again) in a cgroup of its own with these limits."""
        if self.cgroups is not None:
            service.process.cgroup_procs = self.cgroups.group(service.name, limits).procs_files

    def job_service(self, label: str) -> Service:
        """The process that runs `label`'s jobs: its worker, or BackgroundTasks' API."""
        return self.workers.get(label) or self.apis[label]

    def job_cgroup(self, label: str) -> cgroups.Cgroup:
        assert self.cgroups is not None, "the stack runs without cgroups"
        return self.cgroups.groups[self.job_service(label).name]

    def limit_memory(self) -> None:
        """worker-oom: the scenario's job process under its limit. The scenario calls it once its clean start
        is over, so that a limit above idle usage reads a process that is idle (not running an earlier scenario's
        leftovers) and ready."""
        self._limit_job_memory(self.state)

    def _limit_job_memory(self, state: StackState) -> None:
        """The scenario's job process (its worker; BackgroundTasks' API) under the limit of `state`, every other
        at the run's; OOM kills counted from now."""
        if self.cgroups is None:
            return
        for label in self.labels:
            has_worker = label in self.workers
            cgroup = self.job_cgroup(label)
            run_limit = (self.config.worker_limits if has_worker else self.config.api_limits).memory_mb
            cgroup.idle_mb, limit = None, run_limit
            if label == self.focus and state.worker_memory_mb is not None:
                limit = state.worker_memory_mb
            elif label == self.focus and state.worker_memory_headroom_mb is not None:
                limit = cgroup.usage_mb() + state.worker_memory_headroom_mb
            try:
                cgroup.set_memory(limit)
            except OSError as exc:  # v1: EBUSY when it already holds more than the new limit and cannot reclaim it
                raise StackError(f"the {label} job process's memory limit cannot be set to {limit} MiB: {exc}") from exc
            cgroup.mark()

    def dead_parts(self, label: str) -> list[str]:
        """The processes of `label` (its API, its worker) that are not running, and how each ended: a scenario
        states them as a finding, and `apply` starts them again before the next one."""
        parts = [self.apis.get(label), self.workers.get(label)]
        return [f"{part.what} exited ({part.process.ended_how()})" for part in parts if part and not part.alive()]

    def options_of(self, label: str) -> PluginOptions:
        return implementations.options_of(self.config.options, label)

    def start_companions(self, label: str) -> None:
        """What the implementation runs beside its worker (Celery's Flower with `serve --flower`), in its
        environment, on loopback whatever --host says (Flower's API has no login)."""
        for companion in implementations.get(label).companions(self.options_of(label)):
            name = companion.name if companion.name not in self.companions else f"{companion.name}-{label}"
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            argv = companion.command(self.python(label), port)
            env = {**self.env(label), **companion.env, "FLOWER_BASIC_AUTH": f"taskbench:{self.api_token}"}
            check = lambda _, u=url + companion.ready_path: self._answers_200(u)  # noqa: E731
            self.companions[name] = self._own(Service(name, argv, env, self._log(name), check, companion.what))
            self.companion_urls[name] = url

    @staticmethod
    def _answers_200(url: str) -> bool:
        try:
            return httpx.get(url, timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

    def _api_answers(self, label: str, service: Service) -> bool:
        """Ready once it answers as the process started here (not another API that got the same port first: then
        this one cannot bind, exits, and says so), and under --api-workers N once all N processes beat (each
        calibrates first)."""
        url = self.url_for(label)
        try:
            if httpx.get(f"{url}/health/sync", timeout=1.0).status_code != 200:
                return False
            health = Health.of(httpx.get(f"{url}/health", timeout=1.0).json())
        except (httpx.HTTPError, ValueError):
            return False
        if health.api.pid not in _family(service):
            return False
        if self.config.api.api_workers == 1 or not implementations.get(label).records_in_api_process:
            return True
        processes = health.section(implementations.plugin_name(label)).processes
        return len(processes) >= self.config.api.api_workers

    def _worker_seen(self, name: str, service: Service) -> bool:
        """Ready once its API's /health shows a heartbeat from the worker's process or one of its children."""
        try:
            health = Health.of(httpx.get(f"{self.url_for(name)}/health", timeout=1.0).json())
        except (httpx.HTTPError, ValueError):
            return False
        family = _family(service)
        return any(w.pid in family for w in implementations.get(name).workers_seen(health))

    def apply(self, state: StackState) -> None:
        """Bring the stack to `state`: restart the API or the workers whose settings change, set Redis'
        persistence."""
        previous, self.state = self.state, state
        for service in self.services():
            service.process.cap_log()
        if previous.worker_memory_mb is not None or previous.worker_memory_headroom_mb is not None:
            # worker-oom's limit off before anything restarts: a process started under it could be killed again
            # (procrastinate's worker retries the stalled jobs of the scenario as it starts)
            self._limit_job_memory(replace(state, worker_memory_mb=None, worker_memory_headroom_mb=None))
        api = self.api
        if api is not None and (self._middleware.get(self.focus) != state.middleware or not api.alive()):
            api.stop()
            api.process.env = self.api_env(self.focus)
            api.start()
            self._middleware[self.focus] = state.middleware
        for name, worker in self.workers.items():
            if previous.of_worker(name) != state.of_worker(name) or not worker.alive():
                self.restart_worker(name)
        if self.embedded_redis and previous.redis_persistent != state.redis_persistent:
            self._set_persistence(state.redis_persistent)
        self.publish_join()  # joined workers follow the new settings (taskbench.stack.remote_worker)

    @property
    def worker_concurrency(self) -> int:
        return self.state.concurrency or self.config.concurrency

    def restart_worker(self, name: str) -> None:
        """Start the worker again with the stack's state and worker options; a pool that needs another package
        (gevent) gets the environment that has it."""
        worker = self.workers[name]
        worker.stop()
        current = self.environments[name]
        wanted = environment.requirements_for(name, self.options_of(name))
        if set(wanted) != set(current.requirements):
            request = venvs.EnvRequest(name, wanted, current.constraints)
            self.environments[name] = venvs.ensure(request)
        worker.process.env = self.worker_env(name)
        argv = implementations.get(name).worker_argv(self.worker_concurrency, self.options_of(name))
        worker.process.argv = self.command(name, argv) if argv else worker.process.argv
        worker.start()

    def restart_api(self) -> None:
        assert self.api is not None
        self.api.kill()
        self.api.start()

    def deploy_worker(self, label: str, grace_s: float) -> tuple[float, bool]:
        """A deploy of `label`'s worker: SIGTERM its main process (the queue's own shutdown), SIGKILL what is left
        after `grace_s`, as an orchestrator does, then a new worker. How long the old one took to go, and whether it
        was killed."""
        started = time.monotonic()
        killed = self.workers[label].process.stop(grace_s, leader_only=True)
        took = time.monotonic() - started
        self.workers[label].start()
        return took, killed

    def deploy_api(self) -> float:
        """A deploy: SIGTERM (uvicorn's graceful shutdown), SIGKILL if it is still there after the grace period
        an orchestrator gives (the graceful timeout + 5 s, else Kubernetes' default 30 s), then start again.
        Returns how long the old server took to go."""
        assert self.api is not None
        graceful = self.config.api.graceful_timeout_s
        started = time.monotonic()
        self.api.process.stop(grace_s=graceful + 5 if graceful is not None else DEPLOY_GRACE_S)
        stopped = time.monotonic() - started
        self.api.start()
        return stopped


def _family(service: Service) -> set[int]:
    """The pids of `service`'s process and its descendants (none before it starts or once it is gone)."""
    if service.pid is None:  # psutil.Process(None) would be this process
        return set()
    try:
        root = psutil.Process(service.pid)
        return {root.pid, *(child.pid for child in root.children(recursive=True))}
    except psutil.Error:
        return set()
