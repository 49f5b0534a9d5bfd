"""The execution ledger: one event per execution start and end, written by the code that runs the job.

Statuses cannot tell a lost job from a duplicated one (Celery even calls an unknown id PENDING), and
they vanish with the API process or with Redis. So the ledger lives outside both, in two forms:

- a file (TASKBENCH_LEDGER), appended with O_APPEND so the API, the worker's children and a restarted
  process all add to it safely: the spec's manual flow, and a local copy on the host that ran the job;
- a Redis stream on the stack's telemetry Redis (TASKBENCH_TELEMETRY_URL, stream TASKBENCH_TELEMETRY_LEDGER),
  a server of the stack's own that no fault touches: how a worker on another host reports its executions.

Each is off unless its variable is set; the stack sets both, `taskbench worker --join` the stream only.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time

import redis

from taskbench_service import settings as config

log = logging.getLogger(__name__)

# One descriptor per process, opened on first use (a forked worker child opens its own): a line costs
# one short write() then, which is what runs on the event loop for async jobs.
_fd: int | None = None
_fd_pid = 0

# Per label, trimmed approximately: five times the two events of each of MAX_JOBS (100 000) jobs, so no scenario's
# events (redeliveries included) are trimmed before the harness reads them, which it does once the scenario ends.
STREAM_MAXLEN = 1_000_000
_host = ""


class _Stream:
    """XADD on a connection that asked for no replies (CLIENT REPLY OFF): an event costs one send() and never a
    round trip on the hot path of every job; once sent it is in the kernel's hands, so it reaches Redis even
    when the process dies right after (a crash workload, RQ's work horse). With no reply ever waiting to be
    read, closing the socket never turns into a reset that could drop what was sent. One per process
    (fork-safe by pid), its lock shared by the process's threads."""

    def __init__(self, url: str, key: str) -> None:
        self.key = key
        # RESP2: the plain handshake (AUTH) on every redis-py the environments hold (5.x to 8.x, whose default is RESP3)
        self.connection = redis.ConnectionPool.from_url(url, socket_timeout=2.0, protocol=2).make_connection()
        self.pid = os.getpid()
        self.lock = threading.Lock()
        self.connected = False
        # XADD key MAXLEN ~ N * e <line>, in RESP, all but the line packed once: redis-py's packer took half an
        # event's cost
        words = [b"XADD", key.encode(), b"MAXLEN", b"~", str(STREAM_MAXLEN).encode(), b"*", b"e"]
        self.prefix = b"*8\r\n" + b"".join(b"$%d\r\n%s\r\n" % (len(w), w) for w in words)

    def add(self, line: str) -> None:
        with self.lock:
            try:
                self._send(line)
            except (redis.ConnectionError, OSError):  # reconnect once: a dropped connection costs this event nothing
                self._drop()
                try:
                    self._send(line)
                except (redis.RedisError, OSError):
                    self._drop()
                    raise
            except redis.RedisError:  # a timeout (the link gone): the next event starts on a new connection
                self._drop()
                raise

    def _drop(self) -> None:
        """Forget the connection: the next one asks for no replies again (redis-py would reconnect on its own)."""
        self.connection.disconnect()
        self.connected = False

    def _send(self, line: str) -> None:
        if not self.connected:
            self.connection.connect()  # AUTH (and whatever the client's handshake is) waits for its answers
            self.connection.send_command("CLIENT", "REPLY", "OFF")
            self.connected = True
        data = line.encode()
        packed = [self.prefix + b"$%d\r\n" % len(data) + data + b"\r\n"]
        self.connection.send_packed_command(packed, check_health=False)


_stream: _Stream | None = None


def host() -> str:
    """The host this process's events are attributed to: TASKBENCH_HOST_LABEL, else the host's name."""
    global _host
    if not _host:
        _host = config.settings.host_label or socket.gethostname()
    return _host


def record(job_id: str, implementation: str, event: str, error: str | None = None) -> None:
    """Best effort: a ledger that cannot be written is logged, never a reason for a job to fail."""
    global _fd, _fd_pid, _stream
    path, url = config.settings.ledger_path, config.settings.telemetry_url
    if not path and not url:
        return
    line = json.dumps(
        {
            "job_id": job_id,
            "implementation": implementation,
            "event": event,  # "start" or "end"
            "ok": error is None,
            "error": error,
            "pid": os.getpid(),
            "t": time.time(),
            "host": host(),
        }
    )
    if path:
        try:
            if _fd is None or _fd_pid != os.getpid():
                _fd, _fd_pid = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644), os.getpid()
            os.write(_fd, (line + "\n").encode())
        except OSError as exc:
            log.warning("execution ledger %s not written: %s", path, exc)
    if url:
        try:
            if _stream is None or _stream.pid != os.getpid():  # a forked child: a connection and a lock of its own
                key = config.settings.telemetry_ledger or f"{config.settings.namespace}:ledger:{implementation}"
                _stream = _Stream(url, key)
            _stream.add(line)
        except Exception as exc:  # whatever it is, the job goes on
            log.warning("execution ledger stream not written: %s", exc)
