"""A ring of processes across nodes: a token goes round, the origin times each round.

``main`` is a ring member. It learns its next hop from a ``"next"`` message (payload: a PID,
on any node). The member that gets ``"start"`` (payload: seconds between rounds) becomes the
origin: it sends ``"token"`` ``[origin, round, path]`` to its next hop; each other member adds
its node to ``path`` and passes it on; back at the origin, the round is logged with its time
and the next one starts ``interval`` later. A round not back within ``lost_after`` seconds (a
node on the ring went down: messages to it are dead letters) is logged as lost and the next
round starts at once: the ring never waits forever. Ends normally on CANCEL.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from actord import channel, ids, process

log = logging.getLogger("cluster_demo")


def node_of(pid: str) -> str:
    """The node a PID names (``"{n2@demo:ring|0x..}"`` -> ``"n2"``; ``"-"`` for none)."""
    parsed = ids.parse_pid(pid)
    node = None if parsed is None else ids.split_host(parsed[0])[0]
    return node or "-"


class Member:
    """One member's state; the origin's timer is ``due`` (loop time), None for the others."""

    def __init__(self, lost_after: float) -> None:
        self.me = process.pid()
        self.here = node_of(self.me)
        self.lost_after = lost_after
        self.loop = asyncio.get_running_loop()
        self.next: str | None = None
        self.interval: float | None = None  # set when this member is the origin
        self.round = 0
        self.out = False  # the origin's current round is on its way
        self.sent_at = 0.0  # time.perf_counter() when the round left (the loop's clock: ms)
        self.due: float | None = None

    async def run(self) -> str:
        inbox, events = process.inbox(), process.events()
        while True:
            timeout = None if self.due is None else max(0.0, self.due - self.loop.time())
            try:
                ch, value = await channel.select(inbox, events, timeout=timeout)
            except TimeoutError:
                self.next_round()
                continue
            if ch is events:
                if value.kind == process.event.CANCEL:
                    return "stopped"
            elif value.topic == "next":
                self.next = value.payload
                log.info("%s: next hop is on %s", self.here, node_of(value.payload))
            elif value.topic == "start":
                self.interval = float(value.payload)
                self.due = self.loop.time()
            elif value.topic == "token":
                self.token(value.payload)

    def next_round(self) -> None:
        """The origin's timer: the round before was lost, or it is time for the next."""
        if self.out:
            log.warning("round %d lost: not back within %.0fs", self.round, self.lost_after)
        self.round += 1
        self.out, self.sent_at = True, time.perf_counter()
        self.due = self.loop.time() + self.lost_after
        if self.next is not None:
            process.send(self.next, "token", self.me, self.round, [self.here])

    def token(self, token: Any) -> None:
        """Pass a token on, or (its origin) log the round it finished."""
        origin, n, path = token
        if origin != self.me:
            if self.next is not None:
                process.send(self.next, "token", origin, n, [*path, self.here])
        elif self.out and n == self.round and self.interval is not None:  # else: a late one
            ms = (time.perf_counter() - self.sent_at) * 1000
            log.info("round %d: %s in %.1f ms", n, " -> ".join([*path, self.here]), ms)
            self.out, self.due = False, self.loop.time() + self.interval


async def main(lost_after: float = 3.0) -> str:
    """Be a ring member until cancelled."""
    return await Member(lost_after).run()
