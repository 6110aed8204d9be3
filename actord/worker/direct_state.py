"""The tables of a clustered node's worker's direct link, which its jobs share (as
``worker.state`` is for the runtime's): what it uses of the runtime, its pairs and streams
both ways, and the few things both jobs do (ask the router for a break, count, dead letters).

The jobs are classes built on :class:`DirectState` (``worker.direct_out``: sending,
``worker.direct_in``: receiving), composed with the connection into ``DirectLink``
(``worker.direct``). Invariant: only the worker's event loop touches these tables.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import os
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

import msgspec

from actord import natsconn
from actord.core import wire
from actord.core.config import ClusterConfig
from actord.core.direct import INSTANCE_MASK, DirectBatch, Inbound, subject
from actord.messages import Message
from actord.transport import FrameProtocol
from actord.worker.proc import Proc

log = logging.getLogger("actord.cluster")


class Runtime(Protocol):
    """What a direct link uses of its worker's runtime (``worker.runtime.Runtime``)."""

    procs: dict[str, Proc]
    conn: FrameProtocol
    loop: asyncio.AbstractEventLoop
    max_frame: int
    _handlers: dict[int, Callable[[list[Any]], None]]  # swapped while a fence holds frames

    def on_frame(self, frame: list[Any]) -> None: ...


class DirectState:
    """One worker's direct link: its tables, counters and shared steps."""

    def __init__(self, rt: Runtime, init: dict[str, Any]) -> None:
        self.rt = rt
        self.config = msgspec.convert(init["config"], ClusterConfig)
        self._tls = natsconn.tls_context(self.config, str(init.get("source", "config")))
        self.node = self.config.node
        self.incarnation: int = init["incarnation"]
        self.instance: int = init["instance"] & INSTANCE_MASK
        self.subject = subject(self.config.name, self.node, self.instance)
        self.timeout = self.config.node_timeout
        self.inbound = Inbound(self.node, self.incarnation)
        self.peers: dict[str, tuple[int, int]] = {}
        self.nc: Any = None
        self.connected = False
        self.closing = False
        self._alone = False  # DIRECT_READY was sent without a connection (see start)
        self._errors = 0  # NATS errors since the last (re)connection: the first is logged
        self._expired = 0  # held batches dropped since the last PEERS: the first is logged
        # sending: dest PID -> its worker's subject, or None for our node's PIDs (a bounded
        # cache); subject -> (node, instance); what is queued per subject
        self._routes: dict[str, str | None] = {}
        self._targets: dict[str, tuple[str, int]] = {}
        self._serials: dict[str, int] = {}  # another node's dest PID -> its serial
        self._out: dict[str, list[list[Any]]] = {}
        self._flushing = False
        # numbered and encoded, not yet published: (subject, node, pair, batch, messages)
        self._ready: list[tuple[str, str, tuple[int, int], bytes, int]] = []
        self._seq: dict[tuple[str, int, int], list[int]] = {}  # (node, inc, inst) -> [session, n]
        self._dirty: set[str] = set()  # subjects published to since the last FENCE
        self._asked: set[tuple[str, int]] = set()  # (node, session) PAIR_BREAKs sent
        self._tasks: set[asyncio.Task[Any]] = set()
        # receiving
        self._held: deque[tuple[float, DirectBatch]] = deque()  # judged "hold"
        # router frames wait (``_holding``) for a fence to be met or a dead worker's batches
        # to be in (``_gone_wait``); ``_handlers`` are the runtime's, swapped back after
        self._holding = False
        self._fence: tuple[str, int, int, int, float] | None = None  # what router frames wait for
        self._verifying = False  # a fence past its deadline, checked after a round trip
        self._gone_wait: set[tuple[str, int]] = set()  # (node, instance) GONE, not yet settled
        self._markers: dict[bytes, asyncio.Future[None]] = {}  # sent to ourselves, awaited
        self._marker_seq = 0
        self._marker_id = os.urandom(8)  # in every marker: a stranger's bytes settle nothing
        self._waiting: list[list[Any]] = []  # router frames held
        self._handlers: dict[int, Callable[[list[Any]], None]] = {}
        self._early: dict[str, tuple[float, list[Message]]] = {}  # pid -> (until, messages)
        self._early_count = 0
        self._last_started = 0  # the highest serial started here
        self._timer: asyncio.TimerHandle | None = None
        # counters (actord status / nodes via STATS)
        # per other node: [messages published, messages delivered, gaps, batches dropped
        # (from before a cut, of a dead worker, never matched), messages lost (unpublished)]
        self.counts: dict[str, list[int]] = {}
        self.malformed = 0
        self.too_large = 0  # messages over NATS's max_payload: dead letters
        self._dead_letters = 0  # not yet told to the router (_dead)

    def _spawn(self, coro: Any) -> None:
        """A task of the worker's, not of the process whose send started it (the loop's task
        factory would make it that process's, cancelled at its end): built directly, in a
        context of its own."""
        task = asyncio.Task(coro, loop=self.rt.loop, context=contextvars.Context())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _break(self, node: str, why: str) -> None:
        """Ask the router to break the pair with ``node`` ("": every pair), once per pair
        and session."""
        if node:
            peer = self.peers.get(node)
            if peer is None or (node, peer[1]) in self._asked:
                return
            self._asked.add((node, peer[1]))
            self.rt.conn.send([wire.PAIR_BREAK, node, peer[1], why])
        else:
            self.rt.conn.send([wire.PAIR_BREAK, "", 0, why])

    def _dead(self, n: int) -> None:
        """``n`` dead letters: counted by the router (``actord status``), as those of the
        routers' path are, in one DEAD_LETTERS frame per loop tick."""
        if not self._dead_letters:
            self.rt.loop.call_soon(self._tell_dead)
        self._dead_letters += n

    def _tell_dead(self) -> None:
        if self._dead_letters:  # (none left when a fence told them first)
            self.rt.conn.send([wire.DEAD_LETTERS, self._dead_letters])
            self._dead_letters = 0

    def _count(self, node: str, i: int, n: int) -> None:
        counts = self.counts.get(node)
        if counts is None:
            counts = self.counts[node] = [0, 0, 0, 0, 0]
        counts[i] += n

    def stats(self) -> dict[str, Any]:
        """For STATS (``actord nodes`` adds them to the routers' counts): per other node
        ``[sent, received, gaps, dropped, lost]``; malformed batches, messages too large."""
        return {"nodes": self.counts, "malformed": self.malformed, "too_large": self.too_large}
