"""The stack's watchdog: a process of its own that outlives the harness and, once the harness is gone however
it went (Ctrl-C, SIGTERM, a crash, SIGKILL), kills every process of the stack.

Parent-death signals reach direct children only, and a killed harness runs no `finally`: RabbitMQ's Erlang VM,
RQ's pool workers and Dramatiq's processes were left running (and polling a Redis port a later run could get).
Every process the stack starts carries `TASKBENCH_STACK=<id>` in its environment, which its children inherit,
whatever process group or session they move to; the watchdog reads the harness's end of a pipe, and at its
end of file (the kernel closes it when the harness exits) kills every process that carries the id, then removes
the stack's private directories outside its run folder (a private PostgreSQL's cluster) and, with `--hosts`, its
network namespaces and links (`taskbench.hosts.netns`), and under container limits its cgroups
(`taskbench.hosts.cgroups`: removable once their processes are dead). After a clean stop nothing carries the id
any more, and the watchdog exits.

    python -m taskbench.stack.watchdog STACK_ID    (stdin: the pipe; started by taskbench.stack.stack)
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from taskbench.hosts import cgroups, netns

TAG = "TASKBENCH_STACK"
# A stack's directories under the system's temporary directory are named `{prefix}{stack id}-…`: what the
# stack does not remove (it was killed), the watchdog does.
PRIVATE_DIR_PREFIX = "taskbench-postgres-"
CHILDREN_EXIT_S = 5.0  # PostgreSQL's own processes (which rewrite their environment) exit once their server has


def private_dir(stack_id: str) -> Path:
    """A new directory of the stack's under the temporary directory, which the watchdog removes if the stack
    cannot."""
    return Path(tempfile.mkdtemp(prefix=f"{PRIVATE_DIR_PREFIX}{stack_id}-"))


def remove_private_dirs(stack_id: str) -> None:
    for path in Path(tempfile.gettempdir()).glob(f"{PRIVATE_DIR_PREFIX}{stack_id}-*"):
        shutil.rmtree(path, ignore_errors=True)


def tagged(stack_id: str) -> list[psutil.Process]:
    """Every process whose environment carries this stack's id (the watchdog's own excepted)."""
    found = []
    for process in psutil.process_iter():
        if process.pid == os.getpid():
            continue
        with contextlib.suppress(psutil.Error, OSError):
            if process.environ().get(TAG) == stack_id:
                found.append(process)
    return found


def kill_stack(stack_id: str) -> int:
    """SIGKILL every process of the stack, until none is left (a dying pool may fork once more)."""
    killed = 0
    for _ in range(5):
        victims = tagged(stack_id)
        if not victims:
            break
        for victim in victims:
            with contextlib.suppress(psutil.Error):
                victim.kill()
                killed += 1
        psutil.wait_procs(victims, timeout=5)
    return killed


def start(stack_id: str) -> subprocess.Popen[bytes]:
    """The watchdog of a stack, in a session of its own (a Ctrl-C to the terminal does not reach it); the
    returned process's stdin is the pipe: close it, or exit, and the watchdog clears the stack."""
    return subprocess.Popen(
        [sys.executable, "-m", "taskbench.stack.watchdog", stack_id],
        cwd="/",  # not the caller's folder, whose files `-m` would put first on the path (PYTHONSAFEPATH, 3.11+)
        env={**os.environ, "PYTHONSAFEPATH": "1"},
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def main() -> None:
    stack_id = sys.argv[1]
    while sys.stdin.buffer.read(4096):  # nothing is written: this waits for the harness to go
        pass
    if kill_stack(stack_id):
        time.sleep(CHILDREN_EXIT_S if any(Path(tempfile.gettempdir()).glob(f"{PRIVATE_DIR_PREFIX}{stack_id}-*")) else 0)
    remove_private_dirs(stack_id)
    netns.remove_leftovers(stack_id)  # --hosts: its namespaces, veth pairs and bridge (its processes are gone)
    cgroups.remove_stack(stack_id)  # container limits: its cgroups (what is still in one is killed first)


if __name__ == "__main__":
    main()
