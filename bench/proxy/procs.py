"""What /proc says about the processes under test: CPU time, memory, UDP drops."""

from __future__ import annotations

import collections
import os
import re
import time
from pathlib import Path


def proc_status(pid: int, key: str) -> int:
    """A kB figure (VmRSS, VmHWM, ...) from /proc/PID/status."""
    m = re.search(rf"^{key}:\s+(\d+)", Path(f"/proc/{pid}/status").read_text(), re.MULTILINE)
    return int(m.group(1)) if m else 0


def udp_rcvbuf_errors() -> int:
    """The kernel's count of UDP datagrams dropped for a full receive buffer (all sockets)."""
    lines = [ln.split() for ln in Path("/proc/net/snmp").read_text().splitlines() if ln.startswith("Udp:")]
    return int(lines[1][lines[0].index("RcvbufErrors")])


def process_tree(pid: int) -> list[int]:
    """The process and its descendants (`op25b serve --workers N` forks N - 1 children)."""
    parents: dict[int, list[int]] = collections.defaultdict(list)
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(fields[1])].append(int(stat.parent.name))
    tree, todo = [], [pid]
    while todo:
        p = todo.pop()
        tree.append(p)
        todo.extend(parents.get(p, ()))
    return tree


def socket_drops(pid: int) -> int:
    """Datagrams dropped on the UDP sockets of a process tree (the `drops` column of /proc/net/udp*)."""
    inodes = set()
    for member in process_tree(pid):
        try:
            fds = list(Path(f"/proc/{member}/fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    total = 0
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            cols = row.split()
            if len(cols) > 12 and cols[9] in inodes:
                total += int(cols[-1])
    return total


def cpu_seconds(pid: int) -> float:
    """utime + stime of the process and its descendants, all threads."""
    total = 0
    for member in process_tree(pid):
        try:
            fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def wait_idle(pid: int, limit: float = 30.0) -> float:
    """Wait (at most `limit` s) until the process tree uses under 5 % of a CPU over 0.2 s."""
    start = time.monotonic()
    while time.monotonic() - start < limit:
        c0 = cpu_seconds(pid)
        time.sleep(0.2)
        if cpu_seconds(pid) - c0 < 0.01:
            break
    return time.monotonic() - start
