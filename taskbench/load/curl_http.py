"""HTTP/1.1 requests through libcurl (pycurl), driven by the running asyncio event loop.

Why libcurl: the harness must stay out of the way of the service it measures (issue 13). During a 1000-job
burst aiohttp cost the harness 210–400 µs of CPU per submission (an idle machine to a loaded one), most of
it Python in aiohttp and asyncio's streams; libcurl parses and writes HTTP in C, and this module only relays
libcurl's socket and timer requests to the loop (the multi "socket interface", as Tornado's curl client
does): 0.55–0.65× aiohttp's CPU in the same run. Figures: benchmarks/README.md, "Load generator (issue 13)".

A pool runs at most `connections` transfers at once and queues the rest itself, first come first served,
so libcurl's timeout starts once a request has a connection: the wait for a free one is not a timeout,
as it was not with aiohttp, whatever the size of the burst.

Unlike aiohttp, libcurl sends a request again, on a new connection, when a kept-alive one turns out to be
closed before any byte of the answer came (pycurl offers no CURLOPT_FORBID_RETRY_ON_REUSE). Connections
idle for longer than `keepalive_s`, below uvicorn's 5 s, are not reused, so the server closing one is rare;
and where the API server was killed holding the request, the new connection is refused until it is back.
"""

from __future__ import annotations

import asyncio
import collections
import io
from collections.abc import Sequence
from dataclasses import dataclass

import pycurl


class CurlError(Exception):
    """A request that got no complete answer: no connection, a timeout, a connection lost halfway."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code

    @property
    def timed_out(self) -> bool:
        return self.code == pycurl.E_OPERATION_TIMEDOUT


@dataclass
class _Transfer:
    url: str
    body: bytes | None
    answer: asyncio.Future[tuple[int, bytes]]
    buffer: io.BytesIO


class CurlHttp:
    """GETs and POSTs (a JSON body) to one service, over at most `connections` kept-alive connections.

    `timeout_s` bounds each request once it has a connection; a connection idle for `keepalive_s` is not
    reused. Made inside the event loop that uses it; `close()` ends every transfer and closes the connections.
    """

    def __init__(self, connections: int, timeout_s: float, keepalive_s: float, headers: Sequence[str] = ()) -> None:
        """`headers`: "Name: value" lines sent with every request (the API's bearer token)."""
        self._loop = asyncio.get_running_loop()
        self._headers = ["Content-Type: application/json", "Expect:", *headers]
        self._connections = connections
        self._timeout_ms = max(1, round(timeout_s * 1000))
        self._keepalive_s = max(1, int(keepalive_s))
        self._multi = pycurl.CurlMulti()
        self._multi.setopt(pycurl.M_SOCKETFUNCTION, self._on_socket)
        self._multi.setopt(pycurl.M_TIMERFUNCTION, self._on_timer)
        self._multi.setopt(pycurl.M_MAX_TOTAL_CONNECTIONS, connections)
        self._running: dict[pycurl.Curl, _Transfer] = {}
        self._waiting: collections.deque[_Transfer] = collections.deque()
        self._idle: list[pycurl.Curl] = []
        self._watched: dict[int, int] = {}  # fd → the pycurl.POLL_* mask the loop watches it for
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0

    async def get(self, url: str) -> tuple[int, bytes]:
        """Status and body; CurlError when no complete answer came."""
        return await self._request(url, None)

    async def post(self, url: str, body: bytes) -> tuple[int, bytes]:
        """POST `body` as application/json: status and body; CurlError when no complete answer came."""
        return await self._request(url, body)

    async def _request(self, url: str, body: bytes | None) -> tuple[int, bytes]:
        transfer = _Transfer(url, body, self._loop.create_future(), io.BytesIO())
        if len(self._running) < self._connections:
            self._start(transfer)
        else:
            self._waiting.append(transfer)
        try:
            return await transfer.answer
        except asyncio.CancelledError:
            self._abandon(transfer)
            raise

    def close(self) -> None:
        for handle, transfer in list(self._running.items()):
            self._multi.remove_handle(handle)
            transfer.answer.cancel()
            handle.close()
        for transfer in self._waiting:
            transfer.answer.cancel()
        for handle in self._idle:
            handle.close()
        self._running.clear()
        self._waiting.clear()
        self._idle.clear()
        if self._timer is not None:
            self._timer.cancel()
        self._multi.close()  # closes the cached connections, telling _on_socket to stop watching each
        for fd in list(self._watched):
            self._on_socket(pycurl.POLL_REMOVE, fd, None, None)

    def _handle(self) -> pycurl.Curl:
        if self._idle:
            return self._idle.pop()
        handle = pycurl.Curl()
        handle.setopt(pycurl.NOSIGNAL, 1)
        handle.setopt(pycurl.PROXY, "")  # never an http_proxy from the environment: the service is reached directly
        handle.setopt(pycurl.TIMEOUT_MS, self._timeout_ms)
        handle.setopt(pycurl.MAXAGE_CONN, self._keepalive_s)
        # no "Expect: 100-continue" for a body over 1 KiB: that is a round trip more, and no client of ours waits for it
        handle.setopt(pycurl.HTTPHEADER, self._headers)
        return handle

    def _start(self, transfer: _Transfer) -> None:
        handle = self._handle()
        handle.setopt(pycurl.URL, transfer.url)
        if transfer.body is None:
            handle.setopt(pycurl.HTTPGET, 1)
        else:
            handle.setopt(pycurl.POSTFIELDS, transfer.body)
        handle.setopt(pycurl.WRITEDATA, transfer.buffer)
        self._running[handle] = transfer
        self._multi.add_handle(handle)

    def _abandon(self, transfer: _Transfer) -> None:
        """A caller stopped waiting (a cancelled task): its transfer ends and its connection is closed."""
        if transfer in self._waiting:
            self._waiting.remove(transfer)
            return
        for handle, running in self._running.items():
            if running is transfer:
                del self._running[handle]
                self._multi.remove_handle(handle)  # mid-transfer: libcurl closes that connection
                handle.close()
                self._start_waiting()
                return

    def _on_socket(self, what: int, fd: int, _multi: object, _socket: object) -> None:
        """libcurl says which events of `fd` it now waits for."""
        old = self._watched.pop(fd, 0)
        new = 0 if what == pycurl.POLL_REMOVE else what
        if old & pycurl.POLL_IN and not new & pycurl.POLL_IN:
            self._loop.remove_reader(fd)
        if old & pycurl.POLL_OUT and not new & pycurl.POLL_OUT:
            self._loop.remove_writer(fd)
        if new & pycurl.POLL_IN and not old & pycurl.POLL_IN:
            self._loop.add_reader(fd, self._act, fd, pycurl.CSELECT_IN)
        if new & pycurl.POLL_OUT and not old & pycurl.POLL_OUT:
            self._loop.add_writer(fd, self._act, fd, pycurl.CSELECT_OUT)
        if new:
            self._watched[fd] = new

    def _on_timer(self, timeout_ms: int) -> None:
        """libcurl wants a call at most `timeout_ms` from now (-1: none). A call that comes early costs one idle
        `socket_action`, after which libcurl sets its timer again, so the earliest pending timer is kept rather
        than cancelled and replaced on each of the several times a transfer moves it."""
        if timeout_ms < 0:
            return
        when = self._loop.time() + timeout_ms / 1000
        if self._timer is not None:
            if self._timer_at <= when:
                return
            self._timer.cancel()
        self._timer, self._timer_at = self._loop.call_at(when, self._on_timeout), when

    def _on_timeout(self) -> None:
        self._timer = None
        self._act(pycurl.SOCKET_TIMEOUT, 0)

    def _act(self, fd: int, events: int) -> None:
        """Let libcurl move every transfer `fd` (or its timer) concerns, then answer the finished ones."""
        while self._multi.socket_action(fd, events)[0] == pycurl.E_CALL_MULTI_PERFORM:
            pass
        while True:
            queued, succeeded, failed = self._multi.info_read()
            for handle in succeeded:
                self._finish(handle, None)
            for handle, code, message in failed:
                self._finish(handle, CurlError(code, message or f"libcurl error {code}"))
            if not queued:
                break
        self._start_waiting()

    def _finish(self, handle: pycurl.Curl, error: CurlError | None) -> None:
        self._multi.remove_handle(handle)
        transfer = self._running.pop(handle, None)
        self._idle.append(handle)
        if transfer is None or transfer.answer.done():
            return
        if error is not None:
            transfer.answer.set_exception(error)
        else:
            transfer.answer.set_result((handle.getinfo(pycurl.RESPONSE_CODE), transfer.buffer.getvalue()))

    def _start_waiting(self) -> None:
        while self._waiting and len(self._running) < self._connections:
            self._start(self._waiting.popleft())
