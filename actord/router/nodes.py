"""The node link (SPEC 11): this node's NATS connection, its heartbeats, and who else is up.

Only a node with ``[cluster]`` has one (``Router.cluster``); ``nats`` is imported in
:meth:`NodeLink.start`, never at import time, so a single node never loads it. What it does::

    every interval (node_timeout / 4, at most 0.5 s):
        publish  <name>.hb  msgpack {node, incarnation, processes, ts, sessions}
    on each heartbeat on <name>.hb (ours included, ignored):
        checked at the boundary (malformed: dropped and counted) -> Membership.heard;
        its session with us higher than ours: the pair was broken there, we break too
    every interval / 2:
        Membership.tick -> nodes silent for node_timeout + interval go down

Every state change is logged as one line (``node n2 up (incarnation 0x...)``, ``node n2 down:
no heartbeat for 3.1s``). Decisions are made by the pure :mod:`actord.core.nodes`; this module
only moves bytes and time into it. Our own connection lost (NATS down, network cut) needs no
rule of its own: no heartbeat reaches us, so after the same silence every other node is down
(SPEC 11's symmetric down), and each comes back as a fresh member when heard again.

Start: :meth:`start` waits at most ``connect_wait`` for the first connection. A NATS server
that cannot be reached then does not stop the daemon: it starts alone (``nodes`` lists only
itself), logs it, and nats-py keeps trying (``max_reconnect_attempts=-1``) until one answers.

Frames to other nodes (:meth:`send_to`, :meth:`forward` for a SEND of the control socket:
processes' messages go worker to worker, :mod:`actord.core.direct`): queued for a node that
is up; once per loop tick, everything queued for a node goes out as one batch on
``<name>.node.<node>`` (format, sessions, sequence and gap rules: :mod:`actord.core.batches`).
A node down or unknown takes nothing (the caller counts a dead letter or answers NOT_FOUND).
Batches arriving on our own subject are checked at the boundary (malformed: dropped, counted
in ``malformed``, the first logged, the sender's pair broken), judged by
:class:`~actord.core.batches.Pairs` (stale: dropped; a gap: the pair broken) and handed to
``deliver`` (the Router's).

Breaks (:meth:`break_pair`): a node down, a gap, a malformed batch, a peer's higher session,
a publish that failed, a NATS reconnect, or one of these on a worker's direct path (its
PAIR_BREAK). Each is one log line and one ``broken(node, down)``
call to the router, which fans out "node down: <node>" to its processes; nothing queued
before a break is sent after it.

Invariant: every task is owned here and cancelled by :meth:`close`; the membership table is
only changed by the callbacks of this one connection, on the daemon's event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

import msgpack

from actord.core import wire
from actord.core.batches import Pairs, check_batch, encode_batch
from actord.core.config import ClusterConfig
from actord.core.nodes import Change, Membership, NodeState, new_incarnation
from actord.natsconn import connect, tls_context

log = logging.getLogger("actord.nodes")

#: the longest heartbeat period: detection needs node_timeout + interval (+ a tick)
MAX_INTERVAL = 0.5
#: seconds start() waits for the first NATS connection before the daemon goes on alone
CONNECT_WAIT = 2.0
_NODE_RE = re.compile(r"[a-z0-9_-]{1,32}")
#: bytes of a batch besides its frames' strings and payloads (header, msgpack framing), and
#: per frame: a bound, so a batch cut by these never exceeds NATS's max_payload
BATCH_OVERHEAD = 256
FRAME_OVERHEAD = 32


def check_heartbeat(data: bytes) -> tuple[str, int, int, dict[str, list[int]]] | None:
    """``(node, incarnation, processes, sessions)`` of a heartbeat's bytes, or None when
    malformed (``sessions``: ``{node: [its incarnation, session(, batches sent in it)]}``,
    the pairs as the sender has them; absent is empty)."""
    try:
        hb = msgpack.unpackb(data, raw=False)
    except Exception:  # any decoding failure of a peer's bytes is "malformed"
        return None
    if not isinstance(hb, dict):
        return None
    node, inc, procs = hb.get("node"), hb.get("incarnation"), hb.get("processes")
    sessions = hb.get("sessions", {})
    if (
        not isinstance(node, str) or _NODE_RE.fullmatch(node) is None
        or type(inc) is not int or inc < 0 or type(procs) is not int or procs < 0
        or type(sessions) is not dict
        or not all(type(k) is str and type(v) is list and 2 <= len(v) <= 3
                   and all(type(x) is int and 0 <= x < 2**64 for x in v)
                   for k, v in sessions.items())
    ):
        return None
    return node, inc, procs, sessions


#: the router's side of a node link: ``deliver(node, frames)`` gets the checked frames of
#: each accepted batch; ``broken(node, down)`` is told, once per break and before any frame
#: of the new session is delivered, that the pair with ``node`` broke (``down``: the node
#: itself is down, not only the pair)
Deliver = Callable[[str, list[list[Any]]], None]
Broken = Callable[[str, bool], None]


class NodeLink:
    """This node in its cluster: the NATS connection, heartbeats, the membership table and
    the pairs (sessions, sequences) with every other node."""

    def __init__(self, cluster: ClusterConfig, processes: Callable[[], int],
                 source: str = "config", deliver: Deliver | None = None,
                 max_frame: int = 2**20, broken: Broken | None = None) -> None:
        self.config = cluster
        self.node = cluster.node
        self.incarnation = new_incarnation(time.time())
        self.interval = min(cluster.node_timeout / 4, MAX_INTERVAL)
        # silent past node_timeout + 1.25 heartbeat periods: a node stopped for less than
        # node_timeout was silent at most that + one period + delivery jitter (no false
        # alarm); a dead one is declared within node_timeout + 1.25 * 0.5 + a tick (0.25)
        self.members = Membership(cluster.node, cluster.node_timeout + 1.25 * self.interval)
        self.subject = f"{cluster.name}.hb"
        self.dropped = 0  # malformed heartbeats
        self.connected = False
        self._processes = processes
        self._nc: Any = None  # nats.aio.client.Client once connected
        self._seen_wall: dict[str, float] = {}  # node -> epoch seconds of its last heartbeat
        self._tasks: set[asyncio.Task[Any]] = set()
        self._errors = 0
        self._tls = tls_context(cluster, source)  # loaded now: a bad file refuses the start
        self._impostors: set[int] = set()  # incarnations heard using our node name
        # frames between nodes (core/batches.py)
        self.inbox_subject = f"{cluster.name}.node.{cluster.node}"
        self._deliver: Deliver = deliver or (lambda node, frames: None)
        self._broken: Broken = broken or (lambda node, down: None)
        self._max_frame = max_frame
        self.pairs = Pairs(self.incarnation)
        self.malformed = 0  # batches dropped at the boundary
        self._outbox: dict[tuple[str, int], list[list[Any]]] = {}  # (node, its inc) -> frames
        self._flushing = False
        self.sent: dict[str, int] = {}  # frames published, per node
        self.received: dict[str, int] = {}  # frames delivered from, per node
        self.lost = 0  # frames whose publish failed (the pair is broken)
        self.too_large = 0  # frames over NATS's max_payload: dead letters (SEND) or a break
        # awaited with the connection once connected, and again after each reconnect
        # (global: names bind their bucket); a failure is one log line
        self.on_connect: list[Callable[[Any], Awaitable[None]]] = []
        self._last_tick = time.monotonic()  # _check_frozen: when this loop last ran
        # told after every change of peers(): a node up, a pair broken (before its fallout)
        self.on_peers: Callable[[], None] = lambda: None

    # -- API ------------------------------------------------------------------------------------
    async def start(self, connect_wait: float = CONNECT_WAIT) -> None:
        """Connect (waiting at most ``connect_wait``), then heartbeat and watch until close."""
        log.info("cluster %s: node %s (incarnation %#x), servers %s", self.config.name,
                 self.node, self.incarnation, ", ".join(self.config.servers))
        connecting = self._spawn(self._connect())
        self._spawn(self._beat())
        await asyncio.wait({connecting}, timeout=connect_wait)
        if not self.connected:
            log.warning("cluster: no NATS server reachable yet; running alone, still trying")

    async def close(self) -> None:
        """Stop heartbeats and close the connection (pending publishes flushed, bounded)."""
        if self._outbox and self._nc is not None:  # the last EXITEDs of a shutdown
            with contextlib.suppress(Exception):
                async with asyncio.timeout(1.0):
                    await self._flush()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=1.0)
        nc, self._nc = self._nc, None
        self.connected = False  # leaving: the close below is no lost connection
        if nc is not None:
            with contextlib.suppress(Exception):  # closing a broken connection may raise anything
                async with asyncio.timeout(2.0):
                    await nc.close()

    def is_up(self, node: str) -> bool:
        """True when ``node`` is another node that is up now."""
        m = self.members.members.get(node)
        return m is not None and m.state is NodeState.UP

    def forward(self, frame: list[Any]) -> bool:
        """Queue a SEND frame for the node its PID names; False (a dead letter for the
        caller) when that is no other node up now."""
        dest = frame[1]
        if type(dest) is not str or dest[:1] != "{":
            return False
        at = dest.find("@")
        if at < 1:
            return False
        return self.send_to(dest[1:at], frame)

    def send_to(self, node: str, frame: list[Any]) -> bool:
        """Queue ``frame`` for ``node``, after everything queued for it before (per-pair
        order); False when ``node`` is no other node up now (nothing queued)."""
        m = self.members.members.get(node)
        if m is None or m.state is not NodeState.UP:
            return False
        key = (node, m.incarnation)
        queued = self._outbox.get(key)
        if queued is None:
            self._outbox[key] = [frame]
            if not self._flushing:
                self._flushing = True
                self._spawn(self._flush())
        else:
            queued.append(frame)
        return True

    def break_pair(self, node: str, why: str, down: bool = False,
                   incarnation: int | None = None) -> None:
        """Break the pair with ``node`` (its run ``incarnation``, default: the one known) on
        our side (see core/batches.py): a new session, then :meth:`_broke`."""
        if incarnation is None:
            m = self.members.members.get(node)
            incarnation = None if m is None else m.incarnation
        # a pair never used by the routers may have carried workers' batches (direct.py):
        # a break always moves it to a new session (a restarted node's old run's pair: the
        # new run meets us fresh, at session 0)
        self.pairs.break_(node, incarnation=incarnation)
        self._broke(node, why, down)

    def _broke(self, node: str, why: str, down: bool = False, notify: bool = True) -> None:
        """The pair with ``node`` is at a new session: what was queued for it is dropped (it
        belongs to the old one), one log line, the router's fallout; the other node hears of
        it from our next batch (an empty one now, if ``notify`` and it is up) or heartbeat."""
        for key in [k for k in self._outbox if k[0] == node]:
            del self._outbox[key]
        if not down:
            log.warning("cluster: pair with %s broken (%s)", node, why)
        self.on_peers()  # the workers hear of the new session before any fallout
        self._broken(node, down)
        if notify and not down:
            self._notify(node)

    def _notify(self, node: str) -> None:
        """An empty batch to ``node``: it carries our session, so a break is heard at once
        (when connected: else our heartbeats tell it once we are back)."""
        m = self.members.members.get(node)
        nc = self._nc
        if m is None or m.state is not NodeState.UP or nc is None or not nc.is_connected:
            return
        self._outbox.setdefault((node, m.incarnation), [])
        if not self._flushing:
            self._flushing = True
            self._spawn(self._flush())

    async def _flush(self) -> None:
        """Publish what was queued this tick: one batch per destination, in order. A tick's
        frames for a node are encoded whole first: only a batch over max_payload is cut
        (:meth:`_chunks`, a Python step per frame that the common case skips)."""
        try:
            while self._outbox:
                out, self._outbox = self._outbox, {}
                nc = self._nc
                limit = nc.max_payload if nc is not None else 1 << 20
                for (node, inc), queued in out.items():
                    session, seq = self.pairs.next_out(node, inc)
                    data = encode_batch(self.node, self.incarnation, inc, session, seq, queued)
                    if len(data) <= limit:
                        await self._publish_batch(node, inc, queued, data)
                        continue
                    for frames in self._chunks(node, queued):
                        await self._publish_batch(node, inc, frames)
        finally:
            self._flushing = False

    def _chunks(self, node: str, frames: list[list[Any]]) -> list[list[list[Any]]]:
        """``frames`` cut into batches that fit NATS's max_payload (an empty list: one empty
        batch). A SEND that fits in none is a dead letter; any other frame that does not fit
        is lost, which breaks the pair (never silent); both counted in ``too_large``."""
        nc = self._nc
        limit = (nc.max_payload if nc is not None else 1 << 20) - BATCH_OVERHEAD
        chunks: list[list[list[Any]]] = [[]]
        size = 0
        for f in frames:
            if f[0] == wire.SEND:
                n = len(f[4]) + 4 * (len(f[1]) + len(f[2]) + len(f[3])) + FRAME_OVERHEAD
            else:
                n = len(wire.encode(f)) + FRAME_OVERHEAD
            if n > limit:
                self.too_large += 1
                log.warning("cluster: a %d-byte frame to %s is over NATS's max_payload (%d)%s",
                            n, node, limit + BATCH_OVERHEAD,
                            ": dead letter" if f[0] == wire.SEND else "; pair broken")
                if f[0] != wire.SEND:
                    self.break_pair(node, "a frame over max_payload")
                    return []
                continue
            if size + n > limit and chunks[-1]:
                chunks.append([])
                size = 0
            chunks[-1].append(f)
            size += n
        return chunks if frames else [[]]

    async def _publish_batch(self, node: str, inc: int, frames: list[list[Any]],
                             data: bytes | None = None) -> None:
        """Publish ``frames`` as the pair's next batch (``data``: them already encoded with
        the pair's next session and seq, by :meth:`_flush`)."""
        session, seq = self.pairs.outgoing(node, inc)
        if data is None:
            data = encode_batch(self.node, self.incarnation, inc, session, seq, frames)
        nc = self._nc
        try:
            if nc is None or not nc.is_connected:
                # nothing buffered while cut off (as heartbeats): it would arrive after the
                # cut as if nothing had happened
                raise ConnectionError("not connected to NATS")
            await nc.publish(f"{self.config.name}.node.{node}", data)
        except Exception as e:  # nats-py raises many kinds; the frames are lost
            self.lost += len(frames)
            if self.pairs.session(node) == session:
                self.break_pair(node, f"{len(frames)} frames lost: {e or type(e).__name__}")
            return
        self.sent[node] = self.sent.get(node, 0) + len(frames)

    async def _on_batch(self, msg: Any) -> None:
        self._check_frozen()
        b = check_batch(msg.data, self.node, self._max_frame)
        if b is None or b.bad:
            self.malformed += 1
            (log.warning if self.malformed == 1 else log.debug)(
                "cluster: malformed batch on %s dropped (%d so far)%s", msg.subject,
                self.malformed, "" if b is None else f": {b.bad} from {b.node}")
            if b is not None and self.is_up(b.node):
                self.break_pair(b.node, f"malformed batch: {b.bad}")
            return
        m = self.members.members.get(b.node)
        if m is None or b.incarnation > m.incarnation or (
            m.state is NodeState.DOWN and b.incarnation == m.incarnation
        ):
            # a batch is a sign of life: a node (a new run of one, one back after a cut) may
            # speak before its heartbeat reaches us, and we must be able to answer it; a
            # restarted node's old run goes down first
            self._act(self.members.heard(b.node, b.incarnation,
                                         0 if m is None else m.processes, time.monotonic()))
            m = self.members.members[b.node]
        verdict, expected = self.pairs.accept(b, m.incarnation)
        if verdict == "stale":
            # from before a cut or a restart: its frames are dropped, never delivered late
            (log.warning if b.frames else log.debug)(
                "cluster: stale batch from %s (incarnation %#x, session %d): %d frames "
                "dropped", b.node, b.incarnation, b.session, len(b.frames))
            return
        if verdict == "gap":
            self._broke(b.node, f"gap: batch {b.seq}, expected {expected}")
            return
        if verdict == "broke":
            self._broke(b.node, f"by {b.node}, session {b.session}", notify=False)
        if b.frames:
            self.received[b.node] = self.received.get(b.node, 0) + len(b.frames)
            self._deliver(b.node, b.frames)

    def peers(self) -> dict[str, list[int]]:
        """``{node: [incarnation, session]}`` of every other node up now: what this node's
        workers stamp their batches with and judge other workers' batches by (direct.py)."""
        pairs = self.pairs.pairs
        out: dict[str, list[int]] = {}
        for m in self.members.members.values():
            if m.state is NodeState.UP:
                p = pairs.get(m.node)
                session = p.session if p is not None and p.incarnation == m.incarnation else 0
                out[m.node] = [m.incarnation, session]
        return out

    def rows(self) -> list[dict[str, Any]]:
        """``actord nodes``: every known node and ourselves, by name (SPEC 11)."""
        now = time.time()
        rows = [{"node": self.node, "state": "up", "last_seen": round(now, 3),
                 "processes": self._processes(), "incarnation": self.incarnation,
                 "malformed": self.malformed, "lost": self.lost,
                 "too_large": self.too_large}]
        pairs = self.pairs
        for m in self.members.members.values():
            n = m.node
            rows.append({"node": n, "state": m.state.value,
                         "last_seen": round(self._seen_wall.get(n, 0.0), 3),
                         "processes": m.processes, "incarnation": m.incarnation,
                         "sent": self.sent.get(n, 0), "received": self.received.get(n, 0),
                         "gaps": pairs.gaps.get(n, 0), "stale": pairs.stale.get(n, 0),
                         "breaks": pairs.breaks.get(n, 0), "session": pairs.session(n)})
        return sorted(rows, key=lambda r: r["node"])

    # -- internals ------------------------------------------------------------------------------
    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("cluster: %s failed", task.get_name(), exc_info=task.exception())

    async def _connect(self) -> None:
        nc = await connect(self.config, f"actord {self.config.name}/{self.node}", self._tls,
                           self._on_error, self._on_disconnected, self._on_reconnected)
        self._nc = nc
        # our inbox first: a node that hears our heartbeat may send to us at once
        await nc.subscribe(self.inbox_subject, cb=self._on_batch)
        await nc.subscribe(self.subject, cb=self._on_heartbeat)
        self.connected = True
        log.info("cluster: connected to %s", nc.connected_url.netloc if nc.connected_url else "?")
        self._publish()
        await self._connected(nc)

    async def _connected(self, nc: Any) -> None:
        for hook in self.on_connect:
            try:
                await hook(nc)
            except Exception as e:  # a hook's trouble (NATS again) must not end the link
                log.warning("cluster: after connecting: %s", e or type(e).__name__)

    async def _beat(self) -> None:
        next_beat = time.monotonic()
        while True:
            self._check_frozen()
            now = time.monotonic()
            if now >= next_beat:
                self._publish()
                # on schedule (a late tick does not stretch the period the others see)
                next_beat = max(next_beat + self.interval, now + self.interval / 2)
            self._act(self.members.tick(now))
            await asyncio.sleep(max(0.0, min(next_beat - now, self.interval / 2)))

    def _check_frozen(self) -> None:
        """Were we ourselves stopped (SIGSTOP, a blocked loop) for longer than
        ``node_timeout``? Then every other node has declared us down (its silence rule):
        break every pair now, before anything that waited in NATS meanwhile is delivered
        (it is from before the cut). Run at each tick and before each message we handle,
        whichever the loop runs first after the stop."""
        now = time.monotonic()
        frozen = now - self._last_tick
        self._last_tick = now
        if frozen > self.config.node_timeout:
            self._act(self.members.tick(now))  # the nodes silent too long: down, once
            for node in self.members.up():
                self.break_pair(node, f"this node was stopped for {frozen:.1f}s")

    def _publish(self) -> None:
        nc = self._nc
        if nc is None or not nc.is_connected:
            return  # nothing buffered while cut off: a late heartbeat would lie about now
        data = msgpack.packb({"node": self.node, "incarnation": self.incarnation,
                              "processes": self._processes(), "ts": time.time(),
                              "sessions": self.pairs.sessions()})
        self._spawn(nc.publish(self.subject, data))

    async def _on_heartbeat(self, msg: Any) -> None:
        self._check_frozen()
        hb = check_heartbeat(msg.data)
        if hb is None:
            self.dropped += 1
            return
        node, incarnation, processes, sessions = hb
        if node == self.node:
            if incarnation != self.incarnation:
                self.dropped += 1  # another node calls itself by our name: said once per run
                if incarnation not in self._impostors:
                    self._impostors.add(incarnation)
                    log.warning("cluster: a node of incarnation %#x also calls itself %s",
                                incarnation, node)
            return
        self._act(self.members.heard(node, incarnation, processes, time.monotonic()))
        if self.members.members[node].incarnation == incarnation:
            self._seen_wall[node] = time.time()
            ours = sessions.get(self.node)
            if ours is not None and ours[0] == self.incarnation:
                if self.pairs.adopt(node, incarnation, ours[1]):
                    self._broke(node, f"by {node}, session {ours[1]}", notify=False)
                elif len(ours) > 2:
                    pair = self.pairs.pairs.get(node)
                    arrived = 0 if pair is None else pair.next_in
                    if self.pairs.heard_sent(node, incarnation, ours[1], ours[2]):
                        self._broke(node, f"gap: {node} sent {ours[2]} batches, {arrived} "
                                          "arrived")

    def _act(self, changes: list[Change]) -> None:
        """Log each membership change; a node down breaks its pair (the router's fallout)."""
        for c in changes:
            if c.state is NodeState.UP:
                log.info("node %s up (incarnation %#x)", c.node, c.incarnation)
                self.on_peers()
            else:
                log.warning("node %s down: %s", c.node, c.reason)
                self.break_pair(c.node, c.reason, down=True, incarnation=c.incarnation)

    async def _on_error(self, e: Exception) -> None:
        self._errors += 1
        # the first error of a run of failures is worth a line; retries every 0.5 s are not
        (log.warning if self._errors == 1 else log.debug)("cluster: NATS: %s", e or type(e))

    async def _on_disconnected(self) -> None:
        if self.connected:
            log.warning("cluster: NATS connection lost; other nodes go down after %.1fs "
                        "without it", self.members.limit)
        self.connected = False

    async def _on_reconnected(self) -> None:
        self.connected, self._errors = True, 0
        log.info("cluster: NATS connection back")
        # frames may have been lost while we were away: every pair still up is broken
        for node in self.members.up():
            self.break_pair(node, "NATS reconnect")
        if self._nc is not None:
            self._spawn(self._connected(self._nc))


__all__ = ["NodeLink", "check_heartbeat"]
