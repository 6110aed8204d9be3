"""The OS process tree, read from /proc: who is below whom (stdlib only, Linux), and what
one process uses (CPU time, resident memory).

Used by the daemon (reap what is left at shutdown; ``actord top``), the worker (kill its tree
when the daemon dies) and tests (no orphan survives). A snapshot: processes may come and go
while it is read.
"""

from __future__ import annotations

import os

_TICKS = os.sysconf("SC_CLK_TCK")  # the unit of /proc/PID/stat's times
_PAGE = os.sysconf("SC_PAGE_SIZE")  # the unit of its rss

def _stat_fields(pid: str) -> list[str] | None:
    """``state ppid ...`` of a process (the fields after its parenthesised name)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    return stat[stat.rfind(")") + 2 :].split()


def children_map(*, live_only: bool = False) -> dict[int, list[int]]:
    """ppid -> child pids, for every process (zombies too, unless ``live_only``)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = _stat_fields(entry)
        if fields is None or (live_only and fields[0] == "Z"):
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
    return children


def descendants(root: int, *, live_only: bool = False) -> list[int]:
    """Every process below ``root``, parents before their children."""
    children = children_map(live_only=live_only)
    out, stack = [], [root]
    while stack:
        for child in children.get(stack.pop(), ()):
            out.append(child)
            stack.append(child)
    return out


def is_alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    fields = _stat_fields(str(pid))
    return fields is not None and fields[0] != "Z"


def usage(pid: int) -> tuple[float, int] | None:
    """``(cpu_seconds, rss_bytes)`` of a live process: user + system time so far, and its
    resident set now (one read of /proc/PID/stat); None when it is gone."""
    fields = _stat_fields(str(pid))
    if fields is None or fields[0] == "Z":
        return None
    # fields[0] is stat's field 3 (state): utime, stime are 14, 15; rss (pages) is 24
    return (int(fields[11]) + int(fields[12])) / _TICKS, int(fields[21]) * _PAGE
