"""Introspection: the workers' STATS answers, for ``ps`` and for metrics.

One fan-out serves both: :meth:`Stats._ask_stats` sends ``[STATS_REQ, req]`` to every live
worker that is not stalled (a stalled one would not answer) and keeps a future per request,
which the worker's ``[STATS, req, stats]`` frame resolves. Metrics ask ``[STATS_REQ, req,
True]``: each worker's totals (``mailbox``, ``sent``, ``received``, ``dead_letters``) without
its process list, so a scrape of a node with many processes does not make the router decode
them all. A worker that goes down answers
``{"processes": []}``; a request not answered in time is forgotten (a late answer is dropped).
``actord top`` asks ``[TOP_REQ, req, n, sort]``: the totals and only the worker's ``n``
busiest processes (actord/worker/top.py), answered by the same STATS frame.

Invariant: a waiting caller is never stuck on a worker: every wait has a deadline, and a
worker marked stalled while we wait is given up at once.
"""

from __future__ import annotations

import asyncio
from typing import Any

from actord import ids
from actord.core import wire
from actord.core.registry import Registry
from actord.core.topology import Topology
from actord.errors import NotFoundError
from actord.router.slots import Slots, WorkerLink
from actord.router.stall import StallWatch

#: the fields of ``actord info`` its worker answers (worker/introspect.py ``info_of``)
_WORKER_INFO = ("state", "trap_links", "mailbox", "sent", "received", "started", "stack")


class Stats(Slots):
    """The STATS fan-out and the views built on it (a Router mixin)."""

    registry: Registry
    topology: Topology
    stalls: StallWatch
    _stats_waits: dict[int, tuple[WorkerLink, asyncio.Future[dict[str, Any]]]]
    _next_req: int

    def _ask_stats(
        self, host: str | None = None, totals: bool = False,
        top: tuple[int, str] | None = None,
    ) -> list[tuple[WorkerLink, asyncio.Future[dict[str, Any]] | None]]:
        """Ask every live worker (of ``host``, if given) for its STATS (only its totals, if
        ``totals``; its totals and its ``top = (n, sort)`` busiest processes, if ``top``):
        each with the future of its answer, or None for a worker known to be stalled (not
        asked)."""
        loop = asyncio.get_running_loop()
        asked: list[tuple[WorkerLink, asyncio.Future[dict[str, Any]] | None]] = []
        for slots in self.hosts.values():
            for link in slots:
                if link.up and (host is None or link.host == host):
                    if self.stalls.is_stalled(link):  # it would not answer
                        asked.append((link, None))
                        continue
                    self._next_req += 1
                    fut: asyncio.Future[dict[str, Any]] = loop.create_future()
                    self._stats_waits[self._next_req] = (link, fut)
                    req = self._next_req
                    link.conn.send([wire.TOP_REQ, req, *top] if top
                                   else [wire.STATS_REQ, req, True] if totals
                                   else [wire.STATS_REQ, req])
                    asked.append((link, fut))
        return asked

    def _stats_answered(self, frame: list[Any]) -> None:
        """A worker's ``[STATS, req, stats]`` frame: the answer to request ``req`` (dropped
        if it was forgotten)."""
        wait = self._stats_waits.pop(frame[1], None)
        if wait is not None and not wait[1].done():
            wait[1].set_result(frame[2])

    def _stats_dropped(self, link: WorkerLink) -> None:
        """``link`` went down: what it was asked is answered with no processes."""
        for req, (waiting_on, fut) in list(self._stats_waits.items()):
            if waiting_on is link:
                del self._stats_waits[req]
                if not fut.done():
                    fut.set_result({"processes": []})

    def _stats_forget(self, fut: asyncio.Future[dict[str, Any]]) -> None:
        """Stop waiting for the answer ``fut`` stands for."""
        for req, (_, waiting) in list(self._stats_waits.items()):
            if waiting is fut:
                del self._stats_waits[req]

    async def ps(self, host: str | None = None, timeout: float = 3.0) -> list[dict[str, Any]]:
        """Every live process with its mailbox depth, asked from the workers.

        A worker that is stalled, is marked stalled while we wait, or does not answer within
        ``timeout`` has its processes listed from the router's own table, with state
        ``"stalled"`` (or ``"unresponsive"``: silent, not yet past ``stall_timeout``) and
        mailbox None (unknown). A worker known to be stalled is not asked at all.
        """
        waits = self._ask_stats(host)
        loop = asyncio.get_running_loop()
        rows: list[dict[str, Any]] = []
        names: dict[str, list[str]] = {}
        for name, pid in self.registry.snapshot().items():
            names.setdefault(pid, []).append(name)
        deadline = loop.time() + timeout
        for link, fut in waits:
            stats = None if fut is None else await self._stats_answer(link, fut, deadline)
            if stats is None:
                state = "stalled" if self.stalls.is_stalled(link) else "unresponsive"
                rows.extend({
                    "pid": pid, "id": self.procs[pid].id, "host": link.host,
                    "worker": link.index, "state": state, "names": names.get(pid, []),
                    "mailbox": None,
                } for pid in link.pids if pid in self.procs)
                continue
            for p in stats.get("processes", []):
                if p["pid"] not in self.procs:
                    continue
                rows.append({
                    "pid": p["pid"],
                    "id": p["id"],
                    "host": link.host,
                    "worker": link.index,
                    "state": p.get("state", "running"),
                    "names": names.get(p["pid"], []),
                    "mailbox": p["mailbox"],
                })
        rows.sort(key=lambda r: ids.parse_pid(r["pid"]) or ("", 0))
        return rows

    async def _stats_answer(
        self, link: WorkerLink, fut: asyncio.Future[dict[str, Any]], deadline: float
    ) -> dict[str, Any] | None:
        """``link``'s STATS answer, or None if it is marked stalled or ``deadline`` (loop
        time) passes first (the request is then forgotten)."""
        stalled = self.stalls.when_stalled(link)
        left = max(0.0, deadline - asyncio.get_running_loop().time())
        try:
            await asyncio.wait((fut, stalled), timeout=left, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stalled.cancel()
        if fut.done():
            return fut.result()
        self._stats_forget(fut)
        return None

    async def top(
        self, host: str | None, n: int, sort: str, timeout: float = 1.0
    ) -> list[tuple[WorkerLink, dict[str, Any] | None]]:
        """Every live worker (of ``host``, if given) with its answer to a top request (its
        totals and its ``n`` busiest processes by ``sort``, worker/top.py), or None when it is
        stalled, becomes stalled, or does not answer within ``timeout``."""
        deadline = asyncio.get_running_loop().time() + timeout
        return [(link, None if fut is None else await self._stats_answer(link, fut, deadline))
                for link, fut in self._ask_stats(host, top=(n, sort))]

    async def worker_stats(
        self, timeout: float = 1.0
    ) -> tuple[list[tuple[WorkerLink, dict[str, Any]]], int]:
        """Every live worker's totals within one ``timeout`` (metrics), and how many workers
        did not answer in time (their requests are forgotten). A stalled worker is not
        asked."""
        asked = {fut: link for link, fut in self._ask_stats(totals=True) if fut is not None}
        if not asked:
            return [], 0
        done, pending = await asyncio.wait(asked, timeout=timeout)
        for fut in pending:
            self._stats_forget(fut)
        return [(asked[fut], fut.result()) for fut in done], len(pending)

    async def info(self, pid: str, timeout: float = 3.0) -> dict[str, Any]:
        """``actord info`` of a live local process (SPEC 12): the router's truth (names,
        parent, links, monitors both ways) and its worker's (state, mailbox per channel,
        counts, start time, stack), asked with ``[INFO_REQ, req, pid]``.

        The router's part is read when the request is sent, so the two agree: every event
        an edge's removal caused was sent before the request, and is in the mailbox shown.
        NOT_FOUND if ``pid`` is not alive (or ends before its worker answers). A worker that
        is stalled or silent past ``timeout`` leaves its fields None and the state
        ``"stalled"`` / ``"unresponsive"``, as in :meth:`ps`.
        """
        entry = self.procs.get(pid)
        if entry is None:
            raise NotFoundError(f"process {pid} is not alive")
        link = entry.worker
        topology = self.topology
        row: dict[str, Any] = {
            "pid": pid, "id": entry.id, "host": link.host, "worker": link.index,
            "state": None, "names": list(self.registry.names_of(pid)), "parent": entry.parent,
            "links": list(topology.links_of(pid)), "monitors": list(topology.monitoring(pid)),
            "monitored_by": list(topology.monitors_of(pid)),
            "trap_links": None, "mailbox": None, "sent": None, "received": None,
            "started": None, "stack": None,
        }
        answer = None
        if not self.stalls.is_stalled(link):
            loop = asyncio.get_running_loop()
            self._next_req += 1
            fut: asyncio.Future[dict[str, Any]] = loop.create_future()
            self._stats_waits[self._next_req] = (link, fut)
            link.conn.send([wire.INFO_REQ, self._next_req, pid])
            answer = await self._stats_answer(link, fut, loop.time() + timeout)
            if answer is not None and (type(answer) is not dict or "state" not in answer):
                # {} (it ended there first) or {"processes": []} (its worker went down)
                raise NotFoundError(f"process {pid} is not alive")
        if answer is None:
            row["state"] = "stalled" if self.stalls.is_stalled(link) else "unresponsive"
        else:  # only the worker's own fields: the router's are its truth
            row.update((key, answer.get(key)) for key in _WORKER_INFO)
        return row
