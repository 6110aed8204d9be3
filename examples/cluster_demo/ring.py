"""A ring of processes across nodes: a token goes round, the origin times each round.

``main`` is a ring member. It learns its next hop from a ``"next"`` message (payload: a PID,
on any node) and passes every ``"token"`` ``[origin, round, path]`` on, its node added to
``path``. ``coordinator`` is the ring's origin: it spawns a member on each host it is given
(``"n2@demo:ring"``: another node's), monitored, wires the ring through them and back to
itself, and sends a token round every ``interval`` seconds, logging each round with its
time. When a member ends (its node went down: the EXIT's error is ``"node down: n3"``), the
ring is re-formed without it and the coordinator tries to spawn on that host again every
second (NOT_FOUND while the node is down) until the node is back. A round not back within
``lost_after`` seconds is logged as lost and the next starts: the ring never waits forever.
Both end normally on CANCEL.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from actord import channel, ids, process
from actord.errors import NotFoundError

log = logging.getLogger("cluster_demo")

#: seconds between tries to spawn a member on a host that has none
RETRY = 1.0


def node_of(pid: str) -> str:
    """The node a PID names (``"{n2@demo:ring|0x..}"`` -> ``"n2"``; ``"-"`` for none)."""
    parsed = ids.parse_pid(pid)
    node = None if parsed is None else ids.split_host(parsed[0])[0]
    return node or "-"


class Member:
    """A ring member: passes tokens to ``next``."""

    def __init__(self) -> None:
        self.me = process.pid()
        self.here = node_of(self.me)
        self.loop = asyncio.get_running_loop()
        self.next: str | None = None

    async def run(self) -> str:
        inbox, events = process.inbox(), process.events()
        while True:
            await self.timers()
            due = self.due()
            timeout = None if due is None else max(0.0, due - self.loop.time())
            try:
                ch, value = await channel.select(inbox, events, timeout=timeout)
            except TimeoutError:
                continue
            if ch is events:
                if value.kind == process.event.CANCEL:
                    return "stopped"
                self.event(value)
            elif value.topic == "next":
                self.next = value.payload
            elif value.topic == "token":
                self.token(value.payload)

    def due(self) -> float | None:
        """When :meth:`timers` has something to do next (loop time), None: never."""
        return None

    async def timers(self) -> None:
        """What is due now."""

    def event(self, event: Any) -> None:
        """An EXIT or LINK_DOWN."""

    def token(self, token: Any) -> None:
        origin, n, path = token
        if self.next is not None:
            process.send(self.next, "token", origin, n, [*path, self.here])


class Coordinator(Member):
    """The origin: spawns and watches the members, times the rounds."""

    def __init__(self, hosts: list[str], interval: float, lost_after: float) -> None:
        super().__init__()
        self.hosts = hosts
        self.members: dict[str, str] = {}  # host -> its member's PID
        self.interval, self.lost_after = interval, lost_after
        self.round = 0
        self.out = False  # the current round is on its way
        self.sent_at = 0.0  # time.perf_counter() when it left (the loop's clock has ms steps)
        self.next_round_at = self.loop.time() + interval
        self.retry_at = self.loop.time()

    def due(self) -> float | None:
        return min(self.next_round_at, self.retry_at if self.missing() else float("inf"))

    def missing(self) -> list[str]:
        return [h for h in self.hosts if h not in self.members]

    async def timers(self) -> None:
        now = self.loop.time()
        if self.missing() and now >= self.retry_at:
            await self.spawn_missing()
            self.retry_at = self.loop.time() + RETRY
        if now >= self.next_round_at:
            self.start_round()

    async def spawn_missing(self) -> None:
        """A monitored member on each host that has none; NOT_FOUND (node down): later."""
        spawned = []
        for host in self.missing():
            try:
                pid = await process.spawn_monitored("demo:member", host)
            except NotFoundError:
                continue
            self.members[host] = pid
            spawned.append(node_of(pid))
        if spawned:
            log.info("member spawned on %s", ", ".join(spawned))
            self.rewire()

    def rewire(self) -> None:
        """The ring through every member in ``hosts`` order, back to us."""
        pids = [self.members[h] for h in self.hosts if h in self.members]
        hops = [self.me, *pids]
        for pid, nxt in zip(pids, [*pids[1:], self.me], strict=True):
            process.send(pid, "next", nxt)
        self.next = hops[1] if len(hops) > 1 else self.me
        log.info("ring %s", " -> ".join(node_of(p) for p in [*hops, self.me]))

    def event(self, event: Any) -> None:
        if event.kind != process.event.EXIT:
            return
        host = next((h for h, p in self.members.items() if p == event.from_), None)
        if host is None:
            return
        del self.members[host]
        why = event.result.get("error", "ended")
        log.warning("member on %s gone: %s", node_of(event.from_), why)
        self.rewire()
        self.retry_at = self.loop.time() + RETRY

    def start_round(self) -> None:
        if self.out:
            log.warning("round %d lost: not back within %.0fs", self.round, self.lost_after)
        self.round += 1
        self.out, self.sent_at = True, time.perf_counter()
        self.next_round_at = self.loop.time() + self.lost_after
        process.send(self.next or self.me, "token", self.me, self.round, [self.here])

    def token(self, token: Any) -> None:
        origin, n, path = token
        if origin != self.me:
            super().token(token)
        elif self.out and n == self.round:  # else: a late token of a lost round
            ms = (time.perf_counter() - self.sent_at) * 1000
            log.info("round %d: %s in %.1f ms", n, " -> ".join([*path, self.here]), ms)
            self.out, self.next_round_at = False, self.loop.time() + self.interval


async def main() -> str:
    """Be a ring member until cancelled."""
    return await Member().run()


async def coordinator(hosts: list[str], interval: float = 1.0, lost_after: float = 3.0) -> str:
    """Spawn a member on each of ``hosts`` and run the ring until cancelled."""
    return await Coordinator(hosts, interval, lost_after).run()
