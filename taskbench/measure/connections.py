"""How many TCP connections a process tree holds to a server (the PostgreSQL queues' connections), cheaply.

psutil's `Process.net_connections` parses the machine's whole TCP table into objects on every call: after a
burst of HTTP requests that table holds thousands of TIME_WAIT entries, and counting two processes' connections
once a second cost the harness a third of a core, more than the service it measured. On Linux the table is
read here once per count, matched on the server's port as text, and only the matching lines are parsed; a
process's sockets are the inodes its descriptors point at. Elsewhere, psutil.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable

import psutil

TABLES = ("/proc/net/tcp", "/proc/net/tcp6")


def sockets_to(ports: Iterable[int]) -> set[int] | None:
    """The inodes of this network namespace's TCP sockets whose remote port is one of `ports`; None where the
    kernel has no such table (not Linux)."""
    wanted = {f":{port:04X}" for port in ports}
    found: set[int] = set()
    read_any = False
    for table in TABLES:
        try:
            with open(table) as lines:
                read_any = True
                next(lines, None)  # the header
                for line in lines:
                    if not any(port in line for port in wanted):
                        continue
                    fields = line.split()  # sl, local, remote, state, queues, timer, retransmits, uid, timeout, inode
                    if fields[2][-5:] in wanted:
                        found.add(int(fields[9]))
        except OSError:
            continue
    return found if read_any else None


def _socket_inodes(pid: int) -> set[int]:
    inodes: set[int] = set()
    fds = f"/proc/{pid}/fd"
    with contextlib.suppress(OSError):
        for fd in os.listdir(fds):
            with contextlib.suppress(OSError):
                target = os.readlink(f"{fds}/{fd}")
                if target.startswith("socket:["):
                    inodes.add(int(target[8:-1]))
    return inodes


def held(processes: Iterable[psutil.Process], ports: frozenset[int], remote: set[int] | None) -> int:
    """Connections `processes` hold to `ports`; `remote` from `sockets_to` (None: ask psutil)."""
    if remote is not None:
        return sum(len(_socket_inodes(process.pid) & remote) for process in processes)
    return sum(
        1 for process in processes for c in process.net_connections(kind="tcp") if c.raddr and c.raddr.port in ports
    )
