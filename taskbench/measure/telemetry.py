"""Measurement that crosses hosts: the stack's telemetry Redis, and what travels through it.

The telemetry Redis is a second private redis-server of the stack's own (`Stack.start_telemetry`), which no fault
touches (a Redis restart, a network partition between a worker and its broker): what it carries is the
measurement, not the system under test.

- The execution ledger: `taskbench_service.ledger` appends every start/end event to the stream `ledger_key(label)`
  (one per implementation label, as the files are); `taskbench.measure.ledger.LedgerTail` reads it back as `Execution`s.
- Resource samples of the processes on other hosts: `taskbench worker --join` (taskbench.stack.remote_worker) publishes
  its worker's CPU and memory every sample interval to SAMPLES_KEY, as `Batch`es tagged with its host; a
  scenario's `RemoteSamples` merges the latest of each into its own samples, under `{label}-worker@{host}`.
- What a worker needs to join the stack: `JoinInfo` at JOIN_KEY, written by the stack when it starts and each
  time a scenario changes the workers' settings.

Clocks: every time the harness compares (makespans, latencies) is on its own clock. An entry's stream id is the
telemetry Redis' clock when it arrived, which is the harness's machine's (the server runs there); each event and
batch also carries the sender's own clock. received − sent = (harness clock − sender clock) + transit, so its
minimum over a host's entries is an upper bound on how far that host's clock is behind (negative: ahead), tight
to within the shortest transit: `HostClock`.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from typing import Any

import redis
from pydantic import BaseModel, Field

from taskbench.record.results import Execution, HostClock, PluginOptions, Reading

SAMPLES_KEY = "taskbench:samples"
JOIN_KEY = "taskbench:join"
SAMPLES_MAXLEN = 100_000  # a batch every 0.25 s from each joined worker: hours of them


JOINER = "joiner"  # the telemetry Redis's user for joined hosts: what a joined worker does there, nothing else


def joiner_acl(password: str) -> str:
    """Read the stack's document, append to the ledger streams and the samples stream: no other key, no other
    command (no KEYS, no reading the ledger back, no CLIENT KILL). redis-py's CLIENT SETINFO on connect is refused
    and ignored."""
    keys = f"~{JOIN_KEY} ~{SAMPLES_KEY} ~{ledger_key('*')}"
    return f"user {JOINER} on >{password} resetkeys {keys} resetchannels -@all +get +xadd +ping +client|reply"


def ledger_key(label: str) -> str:
    """The ledger stream of one implementation label (two releases of a queue write the same name)."""
    return f"taskbench:ledger:{label}"


def entry_time(entry_id: bytes | str) -> float:
    """When the entry reached the telemetry Redis, on its clock (a stream id is `{milliseconds}-{sequence}`)."""
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    return int(text.split("-", 1)[0]) / 1000


def client(url: str, timeout_s: float = 2.0) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)


def last_id(connection: redis.Redis, key: str) -> bytes:
    """The id of the stream's newest entry ("0-0" when empty): a reader starting now reads what comes after it."""
    newest: Any = connection.xrevrange(key, count=1)
    return bytes(newest[0][0]) if newest else b"0-0"


class StreamReader:
    """The entries appended to one stream after the reader was made, in order, with their arrival times."""

    def __init__(self, connection: redis.Redis, key: str) -> None:
        self.connection = connection
        self.key = key
        self.after = last_id(connection, key)

    def read(self, count: int = 10_000) -> list[tuple[float, dict[bytes, bytes]]]:
        entries: list[tuple[float, dict[bytes, bytes]]] = []
        while True:
            try:
                answer: Any = self.connection.xread({self.key: self.after}, count=count)
            except redis.RedisError:
                if entries:  # what was read is kept (`after` has moved past it); the rest comes next time
                    return entries
                raise
            if not answer:
                return entries
            batch = answer[0][1]
            entries += [(entry_time(entry_id), fields) for entry_id, fields in batch]
            self.after = batch[-1][0]
            if len(batch) < count:
                return entries


def executions_of(entries: Iterable[tuple[float, dict[bytes, bytes]]]) -> list[Execution]:
    """Ledger events as `Execution`s, each with the harness-side time it arrived."""
    return [Execution.model_validate({**json.loads(fields[b"e"]), "received_at": at}) for at, fields in entries]


class Batch(BaseModel):
    """What a joined worker's sampler publishes each interval: its processes' readings by role, on its clock."""

    host: str
    sent_at: float
    processes: dict[str, Reading]


@dataclass
class _Host:
    roles: set[str] = field(default_factory=set)
    batches: int = 0
    events: int = 0
    ends: int = 0
    bound_s: float | None = None

    def saw(self, received_at: float, sent_at: float) -> None:
        gap = received_at - sent_at
        self.bound_s = gap if self.bound_s is None else min(self.bound_s, gap)


class RemoteSamples:
    """A scenario's view of the samples joined workers publish: at each local sample, the newest reading of each
    remote role that arrived since the previous one (each remote reading lands in one sample only; none arrived:
    the role is absent from that sample, as a process gone is), and each host's clock bound."""

    def __init__(self, url: str) -> None:
        self.reader = StreamReader(client(url), SAMPLES_KEY)
        self.hosts: dict[str, _Host] = {}

    def readings(self) -> dict[str, Reading]:
        """What arrived since the last call, newest per role: called by the sampler's thread at each sample."""
        try:
            entries = self.reader.read()
        except redis.RedisError:
            entries = []
        new: dict[str, Reading] = {}
        for received_at, fields in entries:
            batch = Batch.model_validate_json(fields[b"b"])
            host = self.hosts.setdefault(batch.host, _Host())
            host.batches += 1
            host.roles |= batch.processes.keys()
            host.saw(received_at, batch.sent_at)
            new |= batch.processes
        return new

    def clocks(self, executions: Iterable[Execution], local_hosts: Collection[str]) -> list[HostClock]:
        """Every host that sent the scenario samples or ledger events (this machine's too, as a check of the
        method), with the bound on how far its clock is behind the harness's. `local_hosts`: the names of this
        machine's own (its host name, and the network namespaces of --hosts), which share the harness's clock."""
        hosts = {name: _Host(set(h.roles), h.batches, 0, 0, h.bound_s) for name, h in self.hosts.items()}
        for e in executions:
            if e.received_at is not None and e.host:
                host = hosts.setdefault(e.host, _Host())
                host.events += 1
                host.ends += e.event == "end"
                host.saw(e.received_at, e.t)
        return [
            HostClock(
                host=name,
                local=name in local_hosts,
                roles=sorted(h.roles),
                batches=h.batches,
                events=h.events,
                jobs_ended=h.ends,
                behind_at_most_s=h.bound_s,
            )
            for name, h in sorted(hosts.items())
        ]


class JoinedLabel(BaseModel):
    """One implementation of the stack as a worker joining it must run: the environment contract's variables
    (the stack's own ledger file left out), the queue's release, the worker's concurrency and options."""

    env: dict[str, str]
    queue_package: str
    queue_version: str | None
    concurrency: int = Field(ge=1, le=256)  # bounded: the document is read on other hosts
    options: PluginOptions
    api_url: str  # its API: a joined worker is ready once the API's /health shows its heartbeat


class JoinInfo(BaseModel):
    stack: str  # the stack's id
    sample_interval_s: float = Field(default=0.25, ge=0.05, le=10.0)
    labels: dict[str, JoinedLabel]


def publish_join(url: str, info: JoinInfo) -> None:
    client(url).set(JOIN_KEY, info.model_dump_json())


def withdraw_join(url: str) -> None:
    """The stack is stopping: its joined workers read that at their next check (best effort: it may be gone)."""
    if url:
        with contextlib.suppress(redis.RedisError):
            client(url, timeout_s=1.0).delete(JOIN_KEY)


def read_join(connection: redis.Redis) -> JoinInfo | None:
    raw: Any = connection.get(JOIN_KEY)
    return JoinInfo.model_validate_json(raw) if raw else None
