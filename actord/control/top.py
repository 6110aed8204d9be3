"""The ``top`` control command: one sample of everything ``actord top`` shows (SPEC 12).

One round trip a refresh: the node's counters (router), each worker slot (OS pid, state,
processes, restarts), each worker's CPU time and resident memory (/proc, read by the daemon,
which runs them), its message counters and mailbox total, and the node's ``limit`` busiest
processes, for which each worker sent only its own ``limit`` busiest (router/stats.py
``top``, worker/top.py). Counters are totals since the worker (or the daemon) started: the
client turns two samples into rates over the daemon's monotonic ``ts``; a process's ``rate``
is computed by its worker, which must rank by it.

Sort keys: ``mailbox`` and ``rate`` order the processes by mailbox depth or message rate;
``memory`` orders them by mailbox depth (a process has no memory figure of its own: it
shares its worker's heap) and is the client's cue to order the workers by RSS.

Invariant: a sample holds one row per worker slot plus at most ``limit`` process rows,
however many processes run, and waits at most :data:`WORKER_WAIT` for the workers (a
stalled or late worker's counters are None).
"""

from __future__ import annotations

import heapq
import os
import time
from typing import TYPE_CHECKING, Any

from actord import ids, proctable
from actord.errors import InvalidError, NotFoundError

if TYPE_CHECKING:
    from actord.nodeview import ControlledNode
    from actord.router import WorkerLink

#: the ``sort`` values, SPEC 12
SORTS = ("mailbox", "rate", "memory")
#: the most process rows one sample may hold
MAX_LIMIT = 500
#: seconds a sample waits for the workers' answers
WORKER_WAIT = 1.0
#: a worker's counters, None when it did not answer (stalled, late, down)
_COUNTERS = ("sent", "received", "mailbox", "dead_letters")


async def sample(node: ControlledNode, args: dict[str, Any]) -> dict[str, Any]:
    """``{"ts", "sort", "node", "hosts", "processes"}`` (README "Watch it live")."""
    router = node.router
    me = None if router.cluster is None else router.cluster.node
    host, sort, limit = _checked(args, router.hosts, me)
    answers = dict(await router.top(host, limit, "rate" if sort == "rate" else "mailbox",
                                    WORKER_WAIT))
    names: dict[str, list[str]] = {}
    for name, pid in router.registry.snapshot().items():
        names.setdefault(pid, []).append(name)
    hosts, rows = [], []
    for name, slots in router.hosts.items():
        if host is not None and name != host:
            continue
        workers = []
        for w in slots:
            stats = answers.get(w)
            workers.append(_worker(w, stats, router.stalls.row(w)["state"]))
            rows += [{**p, "host": w.host, "worker": w.index, "names": names.get(p["pid"], [])}
                     for p in (stats or {}).get("processes", ()) if p["pid"] in router.procs]
        hosts.append({"name": name, "workers": workers})
    key = "rate" if sort == "rate" else "mailbox"
    used = proctable.usage(os.getpid())
    return {
        "ts": round(time.monotonic(), 6),
        "sort": sort,
        "node": {
            "node": node.node, "uptime": round(time.time() - node.started_at, 3),
            "os_pid": os.getpid(), "cpu_seconds": used and used[0], "rss": used and used[1],
            "processes": len(router.procs), "routed": router.routed,
            "dead_letters": router.dead_letters,
        },
        "hosts": hosts,
        "processes": heapq.nlargest(limit, rows, key=lambda r: r[key] or 0),
    }


def _worker(w: WorkerLink, stats: dict[str, Any] | None, state: str) -> dict[str, Any]:
    """One worker slot's row: its OS process's usage and, if it answered, its counters."""
    use = proctable.usage(w.os_pid) if w.up else None
    if stats is not None and "sent" not in stats:  # the empty answer of one gone down
        stats = None
    if stats is None and state == "running":
        state = "unresponsive"
    return {
        "index": w.index, "os_pid": w.os_pid, "state": state, "processes": len(w.pids),
        "restarts": w.restarts, "cpu_seconds": use and use[0], "rss": use and use[1],
        **{k: None if stats is None else stats.get(k) for k in _COUNTERS},
    }


def _checked(args: dict[str, Any], hosts: dict[str, Any],
             me: str | None) -> tuple[str | None, str, int]:
    """``(host, sort, limit)`` of a request (INVALID, NOT_FOUND for an unknown host); ``me``
    is this node's cluster name (another node's ``node@host`` is asked of that node by the
    control command: here it is unknown)."""
    host = args.get("host")
    sort, limit = sort_and_limit(args)
    if host is not None:
        if not isinstance(host, str):
            raise InvalidError("host: a string")
        node, host = ids.split_host(host)
        if node is not None and node != me:
            raise NotFoundError(f"unknown node {node!r}")
        if host not in hosts:
            raise NotFoundError(f"unknown host {host!r}")
    return host, sort, limit


def sort_and_limit(args: dict[str, Any]) -> tuple[str, int]:
    """A request's ``sort`` and ``limit``, checked (INVALID)."""
    sort, limit = args.get("sort", "mailbox"), args.get("limit", 20)
    if sort not in SORTS:
        raise InvalidError(f"bad sort {sort!r}: one of {', '.join(SORTS)}")
    if type(limit) is not int or not 0 <= limit <= MAX_LIMIT:
        raise InvalidError(f"bad limit {limit!r}: 0..{MAX_LIMIT}")
    return sort, limit
