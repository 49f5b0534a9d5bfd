"""A service of the stack: one process with its command line, environment, readiness check and log.

Used with `with` (or a `contextlib.ExitStack`): entering starts it and waits until it is ready, leaving
stops it, whatever happened in between.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType

from taskbench.errors import StackError
from taskbench.stack.processes import ManagedProcess

READY_TIMEOUT_S = 60.0  # a worker starting on a loaded 2-core machine (Celery beside other stacks) took over 30 s


class Service:
    def __init__(
        self,
        name: str,
        argv: list[str],
        env: Mapping[str, str],
        log_path: Path,
        ready: Callable[[Service], bool],
        what: str,
        stop_signal: signal.Signals = signal.SIGTERM,
        user: tuple[int, int] | None = None,
    ) -> None:
        self.name = name
        self.what = what  # for messages: "the API server", "the Celery worker"
        self.ready = ready
        self.process = ManagedProcess(name, argv, env, log_path, stop_signal, user)

    @property
    def pid(self) -> int | None:
        return self.process.pid

    @property
    def log_path(self) -> Path:
        return self.process.log_path

    def alive(self) -> bool:
        return self.process.alive()

    def start(self) -> Service:
        self.process.start()
        self.wait_ready()
        return self

    def wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if not self.process.alive():
                raise StackError(
                    f"{self.what} exited while starting; last lines of {self.log_path}:\n{self.process.log_tail()}"
                )
            if self.ready(self):
                return
            time.sleep(0.1)
        raise StackError(f"{self.what} was not ready within {READY_TIMEOUT_S:.0f} s; see {self.log_path}")

    def stop(self) -> None:
        self.process.stop()

    def pause(self) -> None:
        self.process.pause()

    def resume(self) -> None:
        self.process.resume()

    def kill(self) -> None:
        """SIGKILL the whole process group, as a crash would."""
        self.process.kill()

    def restart(self) -> None:
        self.process.stop()
        self.start()

    def log_tail(self) -> str:
        return self.process.log_tail()

    def __enter__(self) -> Service:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *_: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.stop()
