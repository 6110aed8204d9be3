"""A clustered node's worker: its own NATS connection, for messages to and from other nodes'
processes (the formats, sessions, sequences and fences: :mod:`actord.core.direct`).

Only a worker whose INIT has ``cluster`` makes one (``WorkerState.direct``); ``nats`` is
imported when it connects, so a single node's workers never load it. What it does::

    send(dest, SEND)   dest on another node: queued for dest's worker; once per loop tick
                       every queue leaves as one batch on that worker's subject (stamped with
                       the pair's session from PEERS), else False (the router's path)
    fence()            before a process's end or a call reaches the router: FENCE, the
                       batches published per worker in this session
    on our subject     checked at the boundary, judged (Inbound), SENDs delivered to local
                       processes; a gap or a malformed batch: PAIR_BREAK to the router
    FENCE from router  the router's later frames wait until the fence is met (or moot, or
                       node_timeout passes: a lost batch, PAIR_BREAK)
    PEERS              the pairs' sessions: applied at once, even behind a fence (they can
                       settle it)
    GONE from router   a dead worker of another node: the router's later frames wait until
                       NATS has closed its connection and what it routed to us is in; its
                       later batches are dropped

Before the first connection, messages wait in their queues (a worker starts before NATS
answers it); after a connection is lost, each message that cannot be published is lost
and breaks its pair (one PAIR_BREAK per pair and session), and a reconnect breaks every pair
(frames to us may have been lost meanwhile). A message for a process of ours that has not
started yet (its START still on the router's way) waits for it: PIDs of this worker grow, so
a PID above the last one started is one of those.

Invariant: a message leaves on this worker's one connection, after every earlier one to the
same worker; the router's frames after a FENCE are handled after the batches it names.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

from actord import natsconn
from actord.core import wire
from actord.worker.direct_in import DirectReceive
from actord.worker.direct_out import DirectSend, count_messages
from actord.worker.direct_state import Runtime, log

#: seconds a worker waits for its first NATS connection before it takes processes anyway
CONNECT_WAIT = 2.0


class DirectLink(DirectSend, DirectReceive):
    """One worker's NATS connection and its direct pairs with other nodes' workers: the
    connection and the pairs here, the jobs in ``direct_out`` and ``direct_in``."""

    def __init__(self, rt: Runtime, init: dict[str, Any]) -> None:
        super().__init__(rt, init)
        self.set_peers(init.get("peers", {}))

    # -- the connection -------------------------------------------------------------------------
    async def start(self) -> None:
        """Connect, listen on our subject, tell the router (DIRECT_READY: it may give us
        processes now), then send what waited for the connection. Without a connection
        within CONNECT_WAIT we are ready anyway (this node's own work goes on), and the
        first connection then breaks every pair, as a reconnect does."""
        late = self.rt.loop.call_later(CONNECT_WAIT, self._ready_alone)
        try:
            nc = await natsconn.connect(
                self.config, f"actord {self.config.name}/{self.node} worker {self.instance}",
                self._tls, self._on_error, self._on_disconnected, self._on_reconnected)
            # bounded as nats-py bounds it (512k batches, 128 MiB): past that, batches to
            # this worker are dropped and it says so (a slow consumer): every pair breaks
            await nc.subscribe(self.subject, cb=self._on_batch)
        except Exception as e:  # nats-py raises many kinds
            log.error("cluster: worker %d cannot connect to NATS: %s", self.instance,
                      e or type(e).__name__)
            return
        self.nc, self.connected = nc, True
        late.cancel()
        if self._alone:
            self._break("", "NATS connection made late")
        else:
            self.rt.conn.send([wire.DIRECT_READY])
        if (self._out or self._ready) and not self._flushing:
            self._flushing = True
            self._spawn(self._flush())

    def _ready_alone(self) -> None:
        self._alone = True
        log.warning("cluster: worker %d has no NATS connection after %.0fs; taking processes "
                    "anyway, messages to other nodes wait", self.instance, CONNECT_WAIT)
        self.rt.conn.send([wire.DIRECT_READY])

    async def close(self) -> None:
        """Publish what is queued (the last messages before our processes' ends), then
        close the connection, bounded."""
        self.closing = True
        nc = self.nc
        if nc is None:
            return
        try:
            async with asyncio.timeout(2.0):
                if self._out or self._ready:
                    await self._flush()
                await nc.drain()
        except Exception:  # a broken connection may raise anything while closing
            pass

    async def _on_error(self, e: Exception) -> None:
        if type(e).__name__ == "SlowConsumerError":  # messages to us were dropped
            self._break("", "slow consumer: messages to this worker dropped")
        else:
            self._errors += 1
            (log.warning if self._errors == 1 else log.debug)(
                "cluster: worker %d: NATS: %s", self.instance, e or type(e).__name__)

    async def _on_disconnected(self) -> None:
        if self.connected and not self.closing:
            log.warning("cluster: worker %d lost its NATS connection", self.instance)
        self.connected = False

    async def _on_reconnected(self) -> None:
        self.connected, self._errors = True, 0
        self._break("", "NATS reconnect")  # frames to us may have been lost meanwhile

    # -- the pairs ------------------------------------------------------------------------------
    def set_peers(self, peers: dict[str, list[int]]) -> None:
        """PEERS: the nodes up and the pairs' sessions. Queued messages for a pair that
        moved on are from before its cut: dropped. Held batches are judged again."""
        new = {node: (int(v[0]), int(v[1])) for node, v in peers.items()}
        self._expired = 0
        old, self.peers = self.peers, new
        for to in [to for to in self._out if old.get(self._targets[to][0]) != new.get(
                self._targets[to][0])]:
            self._count(self._targets[to][0], 4, count_messages(self._out.pop(to)))
        if self._ready:  # numbered in a session that is over: not sent either
            keep = []
            for item in self._ready:
                if new.get(item[1]) == item[2]:
                    keep.append(item)
                else:
                    self._count(item[1], 4, item[4])
            self._ready = keep
        # the sequences and asked breaks of runs and sessions that are over are forgotten
        self._seq = {k: v for k, v in self._seq.items() if new.get(k[0], (-1,))[0] == k[1]}
        self._asked = {k for k in self._asked if new.get(k[0], (-1, -1))[1] == k[1]}
        self.inbound.set_peers(new)
        if self._held:
            held, self._held = self._held, deque()
            for _, b in held:
                self._judge(b)
        if self._holding:
            self._check_hold()


__all__ = ["CONNECT_WAIT", "DirectLink"]
