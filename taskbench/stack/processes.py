"""One child process with an owner: its own process group, its own log file, a stop that always ends it."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

import psutil

from taskbench.hosts import netns

_PR_SET_PDEATHSIG = 1


def _load_prctl() -> Callable[[int, int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL("libc.so.6", use_errno=True).prctl
    except (OSError, AttributeError):
        return None


# Loaded here, in the parent: between fork and exec the child may only call what is already loaded.
_prctl = _load_prctl()


def _die_with_parent() -> None:
    """On Linux, the kernel kills the child if the harness itself is killed: no orphans even on SIGKILL.

    The signal fires when the *thread* that started the child exits, so start children from a thread that
    lives as long as they should (the main thread), never from a short-lived worker thread.
    """
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _group_of(process: psutil.Process) -> int | None:
    try:
        return os.getpgid(process.pid)
    except ProcessLookupError:
        return None


LOG_CAP_BYTES = 64 * 2**20  # each service's log at most (cap_log)


class ManagedProcess:
    def __init__(
        self,
        name: str,
        argv: list[str],
        env: Mapping[str, str],
        log_path: Path,
        stop_signal: signal.Signals = signal.SIGTERM,
        user: tuple[int, int] | None = None,
    ) -> None:
        self.name = name
        self.argv = argv
        self.env = dict(env)
        self.log_path = log_path
        self.stop_signal = stop_signal  # what asks it to shut down gracefully (PostgreSQL: SIGINT, a fast shutdown)
        self.user = user  # (uid, gid) to run as, when the harness is root and the server refuses root (PostgreSQL)
        self.popen: subprocess.Popen[bytes] | None = None
        self._ended = False
        self._strays: list[psutil.Process] = []
        self.netns: str | None = None  # the network namespace it starts in (--hosts: taskbench.hosts.netns)
        self.cwd: Path | None = None  # where it starts; None: its log's folder (the run's own), or / under `user`
        # The cgroups it joins between fork and exec, so its children are born there (container limits:
        # taskbench.hosts.cgroups): each one's cgroup.procs.
        self.cgroup_procs: tuple[Path, ...] = ()

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen else None

    def start(self) -> None:
        self._ended = False
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log, netns.entering(self.netns, self._in_child) as preexec:
            self.popen = subprocess.Popen(
                self.argv,
                # Never the caller's folder: `python -m` puts the working directory first on the path, where any
                # file there (or another user's, in a shared folder) would be imported (PYTHONSAFEPATH on 3.11+)
                cwd=self.cwd or (self.log_path.parent if self.user is None else "/"),
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own group: Ctrl-C reaches the harness only, which stops us in order
                preexec_fn=preexec,  # _die_with_parent: runs after the switch to `user`, which would clear it
                user=self.user[0] if self.user else None,
                group=self.user[1] if self.user else None,
                extra_groups=[] if self.user else None,
            )

    def _in_child(self) -> None:
        """Between fork and exec: join its cgroups (by pid: the child's own), then ask for the parent-death signal."""
        for procs in self.cgroup_procs:
            fd = os.open(procs, os.O_WRONLY)
            try:
                os.write(fd, str(os.getpid()).encode())
            finally:
                os.close(fd)
        _die_with_parent()

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def ended_how(self) -> str:
        """ "signal 9", "exit code 1": how the process ended (or "running")."""
        code = self.popen.poll() if self.popen is not None else None
        if code is None:
            return "running"
        return f"signal {-code}" if code < 0 else f"exit code {code}"

    def _signal_group(self, sig: signal.Signals) -> None:
        if self.popen is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, sig)

    def _descendants(self) -> list[psutil.Process]:
        if self.popen is None or self.popen.poll() is not None:
            return []
        try:
            return psutil.Process(self.popen.pid).children(recursive=True)
        except psutil.Error:
            return []

    def kill(self) -> None:
        """SIGKILL the whole group and every descendant, as a crash would: a Celery worker's pool processes
        share its group, but RQ's per-job work-horse starts a group of its own and would outlive a killpg."""
        if self._ended:  # once the group is gone its id may be reused: never signal it again
            return
        strays = [p for p in self._descendants() if self.popen and _group_of(p) != self.popen.pid]
        self._signal_group(signal.SIGKILL)
        for stray in strays:
            with contextlib.suppress(psutil.Error, ProcessLookupError):
                stray.kill()
        if self.popen is not None:
            self.popen.wait()
            self._ended = True

    def pause(self) -> None:
        """SIGSTOP the group and every descendant: it holds its memory and connections and uses no CPU."""
        self._signal_all(signal.SIGSTOP)

    def resume(self) -> None:
        self._signal_all(signal.SIGCONT)

    def _signal_all(self, sig: signal.Signals) -> None:
        if self._ended:
            return
        strays = [p for p in self._descendants() if self.popen and _group_of(p) != self.popen.pid]
        self._signal_group(sig)
        for stray in strays:
            with contextlib.suppress(psutil.Error, ProcessLookupError):
                stray.send_signal(sig)

    def terminate(self) -> None:
        """SIGTERM the group without waiting: `stop` then waits for what is left (and kills the descendants in
        groups of their own, remembered here before the leader goes)."""
        if self.popen is not None and not self._ended and self.popen.poll() is None:
            self._strays = [p for p in self._descendants() if _group_of(p) != self.popen.pid]
            self._signal_group(self.stop_signal)
            self._signal_group(signal.SIGCONT)

    def stop(self, grace_s: float = 10.0, *, leader_only: bool = False) -> bool:
        """Its stop signal, then SIGKILL for whatever is left after `grace_s`. `leader_only`: the signal to the main
        process alone, as a container runtime signals a container's first process (Kubernetes, `docker stop`),
        which then stops its children itself. Whether the grace ran out with the main process still running."""
        if self.popen is None or self._ended:
            return False
        strays = [*self._strays, *(p for p in self._descendants() if _group_of(p) != self.popen.pid)]
        self._strays = []
        overran = False
        if self.popen.poll() is None:
            if leader_only:
                with contextlib.suppress(ProcessLookupError):
                    self.popen.send_signal(self.stop_signal)
            else:
                self._signal_group(self.stop_signal)
            self._signal_group(signal.SIGCONT)  # a paused group (Stack.pause_neighbours) handles it only running
            try:
                self.popen.wait(grace_s)
            except subprocess.TimeoutExpired:
                overran = True
        self.kill()  # stragglers of the group, even when the leader already exited
        for stray in strays:  # descendants in groups of their own, remembered before the leader went
            with contextlib.suppress(psutil.Error):
                stray.kill()
        return overran

    def cap_log(self, max_bytes: int = LOG_CAP_BYTES) -> None:
        """Past `max_bytes`, the log keeps its newer half behind a line saying what was cut: a process that logs
        without end (a crash loop, a chatty queue over a soak) cannot fill the disk. The process appends (O_APPEND),
        so it writes on at the new end; a line written during the cut may be lost."""
        try:
            size = self.log_path.stat().st_size
            if size <= max_bytes:
                return
            with self.log_path.open("r+b") as log:
                log.seek(size - max_bytes // 2)
                kept = log.read()
                log.seek(0)
                log.write(f"[taskbench: {size - len(kept)} earlier bytes of this log cut]\n".encode() + kept)
                log.truncate()
        except OSError:
            pass

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""
