"""The node link (SPEC 11): this node's NATS connection, its heartbeats, and who else is up.

Only a node with ``[cluster]`` has one (``Router.cluster``); ``nats`` is imported in
:meth:`NodeLink.start`, never at import time, so a single node never loads it. What it does::

    every interval (node_timeout / 4, at most 0.5 s):
        publish  <name>.hb  msgpack {node, incarnation, processes, ts}
    on each heartbeat on <name>.hb (ours included, ignored):
        checked at the boundary (malformed: dropped and counted) -> Membership.heard
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

Messages to other nodes (:meth:`forward`): a SEND whose PID names another node that is up is
queued for that node; once per loop tick, everything queued for a node goes out as one batch
on ``<name>.node.<node>`` (format, sequence and gap rules: :mod:`actord.core.batches`). A
node down or unknown takes nothing (the caller counts a dead letter). Batches arriving on our
own subject are checked at the boundary (malformed: dropped, counted in ``malformed``, the
first logged), sequenced (:class:`~actord.core.batches.Inbound`: a gap or a stale batch is one
log line and a count in the node's row) and handed to ``deliver`` (the Router's).

Invariant: every task is owned here and cancelled by :meth:`close`; the membership table is
only changed by the callbacks of this one connection, on the daemon's event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import ssl
import time
from collections.abc import Callable
from typing import Any

import msgpack

from actord.core.batches import Inbound, check_batch, encode_batch
from actord.core.config import ClusterConfig
from actord.core.nodes import Change, Membership, NodeState, new_incarnation
from actord.errors import ConfigError

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


def check_heartbeat(data: bytes) -> tuple[str, int, int] | None:
    """``(node, incarnation, processes)`` of a heartbeat's bytes, or None when malformed."""
    try:
        hb = msgpack.unpackb(data, raw=False)
    except Exception:  # any decoding failure of a peer's bytes is "malformed"
        return None
    if not isinstance(hb, dict):
        return None
    node, inc, procs = hb.get("node"), hb.get("incarnation"), hb.get("processes")
    if (
        not isinstance(node, str) or _NODE_RE.fullmatch(node) is None
        or type(inc) is not int or inc < 0 or type(procs) is not int or procs < 0
    ):
        return None
    return node, inc, procs


class NodeLink:
    """This node in its cluster: the NATS connection, heartbeats and the membership table."""

    def __init__(self, cluster: ClusterConfig, processes: Callable[[], int],
                 source: str = "config",
                 deliver: Callable[[list[list[Any]]], None] | None = None,
                 max_frame: int = 2**20) -> None:
        self.config = cluster
        self._source = source  # the config file, for the one line a bad TLS file gets
        self.node = cluster.node
        self.incarnation = new_incarnation(time.time())
        self.interval = min(cluster.node_timeout / 4, MAX_INTERVAL)
        self.members = Membership(cluster.node, cluster.node_timeout + self.interval)
        self.subject = f"{cluster.name}.hb"
        self.dropped = 0  # malformed heartbeats
        self.connected = False
        self._processes = processes
        self._nc: Any = None  # nats.aio.client.Client once connected
        self._seen_wall: dict[str, float] = {}  # node -> epoch seconds of its last heartbeat
        self._tasks: set[asyncio.Task[Any]] = set()
        self._errors = 0
        self._tls = self._tls_context()  # loaded now: a bad file refuses the start
        self._impostors: set[int] = set()  # incarnations heard using our node name
        # frames between nodes (core/batches.py)
        self.inbox_subject = f"{cluster.name}.node.{cluster.node}"
        self._deliver = deliver or (lambda frames: None)
        self._max_frame = max_frame
        self.inbound = Inbound(self.incarnation)
        self.malformed = 0  # batches dropped at the boundary
        self._outbox: dict[tuple[str, int], list[list[Any]]] = {}  # (node, its inc) -> frames
        self._flushing = False
        self._seq_out: dict[tuple[str, int], int] = {}  # (node, its inc) -> next seq
        self.sent: dict[str, int] = {}  # frames published, per node
        self.received: dict[str, int] = {}  # frames delivered from, per node
        self.lost = 0  # frames whose publish failed (the receiver sees a gap)
        self.too_large = 0  # frames over NATS's max_payload: dead letters

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

    def forward(self, frame: list[Any]) -> bool:
        """Queue a SEND frame for the node its PID names; False (a dead letter for the
        caller) when that is no other node up now."""
        dest = frame[1]
        if type(dest) is not str or dest[:1] != "{":
            return False
        at = dest.find("@")
        if at < 1:
            return False
        m = self.members.members.get(dest[1:at])
        if m is None or m.state is not NodeState.UP:
            return False
        key = (m.node, m.incarnation)
        queued = self._outbox.get(key)
        if queued is None:
            self._outbox[key] = [frame]
            if not self._flushing:
                self._flushing = True
                self._spawn(self._flush())
        else:
            queued.append(frame)
        return True

    async def _flush(self) -> None:
        """Publish what was queued this tick: one batch per destination, in order. A tick's
        frames are encoded whole first: only a batch over max_payload is cut (:meth:`_chunks`,
        a Python step per frame that the common case skips)."""
        try:
            while self._outbox:
                out, self._outbox = self._outbox, {}
                nc = self._nc
                limit = nc.max_payload if nc is not None else 1 << 20
                for (node, inc), queued in out.items():
                    seq = self._seq_out.get((node, inc), 0)
                    data = encode_batch(self.node, self.incarnation, inc, seq, queued)
                    if len(data) <= limit:
                        await self._publish_batch(node, inc, queued, data)
                        continue
                    for frames in self._chunks(node, queued):
                        await self._publish_batch(node, inc, frames)
        finally:
            self._flushing = False

    def _chunks(self, node: str, frames: list[list[Any]]) -> list[list[list[Any]]]:
        """``frames`` cut into batches that fit NATS's max_payload; a frame that fits in
        none is a dead letter, counted in ``too_large`` (logged the first time)."""
        nc = self._nc
        limit = (nc.max_payload if nc is not None else 1 << 20) - BATCH_OVERHEAD
        chunks: list[list[list[Any]]] = [[]]
        size = 0
        for f in frames:
            n = len(f[4]) + 4 * (len(f[1]) + len(f[2]) + len(f[3])) + FRAME_OVERHEAD  # UTF-8 <= 4x
            if n > limit:
                self.too_large += 1
                if self.too_large == 1:
                    log.warning("cluster: a %d-byte message to %s is over NATS's max_payload "
                                "(%d): dead letter", len(f[4]), node, limit + BATCH_OVERHEAD)
                continue
            if size + n > limit and chunks[-1]:
                chunks.append([])
                size = 0
            chunks[-1].append(f)
            size += n
        return [c for c in chunks if c]

    async def _publish_batch(self, node: str, inc: int, frames: list[list[Any]],
                             data: bytes | None = None) -> None:
        """Publish ``frames`` as the pair's next batch (``data``: them already encoded with
        that seq, by :meth:`_flush`)."""
        seq = self._seq_out.get((node, inc), 0)
        self._seq_out[(node, inc)] = seq + 1
        if data is None:
            data = encode_batch(self.node, self.incarnation, inc, seq, frames)
        nc = self._nc
        try:
            if nc is None or not nc.is_connected:
                # nothing buffered while cut off (as heartbeats): it would arrive after the
                # cut as if nothing had happened; lost now, the receiver sees the gap
                raise ConnectionError("not connected to NATS")
            await nc.publish(f"{self.config.name}.node.{node}", data)
        except Exception as e:  # nats-py raises many kinds; the frames are lost
            self.lost += len(frames)
            log.warning("cluster: %d frames to %s lost (%s); it will see a gap",
                        len(frames), node, e or type(e).__name__)
            return
        self.sent[node] = self.sent.get(node, 0) + len(frames)

    async def _on_batch(self, msg: Any) -> None:
        b = check_batch(msg.data, self.node, self._max_frame)
        if b is None:
            self.malformed += 1
            (log.warning if self.malformed == 1 else log.debug)(
                "cluster: malformed batch on %s dropped (%d so far)", msg.subject, self.malformed)
            return
        m = self.members.members.get(b.node)
        verdict, expected = self.inbound.accept(b, None if m is None else m.incarnation)
        if verdict == "stale":
            log.warning("cluster: stale batch from %s (incarnation %#x, for %#x) dropped",
                        b.node, b.incarnation, b.to_incarnation)
            return
        if verdict == "gap":
            log.warning("cluster: gap from %s: batch %d, expected %d; pair broken, "
                        "going on as a fresh meeting", b.node, b.seq, expected)
        if b.frames:
            self.received[b.node] = self.received.get(b.node, 0) + len(b.frames)
            self._deliver(b.frames)

    def rows(self) -> list[dict[str, Any]]:
        """``actord nodes``: every known node and ourselves, by name (SPEC 11)."""
        now = time.time()
        rows = [{"node": self.node, "state": "up", "last_seen": round(now, 3),
                 "processes": self._processes(), "incarnation": self.incarnation,
                 "malformed": self.malformed, "lost": self.lost,
                 "too_large": self.too_large}]
        inb = self.inbound
        for m in self.members.members.values():
            n = m.node
            rows.append({"node": n, "state": m.state.value,
                         "last_seen": round(self._seen_wall.get(n, 0.0), 3),
                         "processes": m.processes, "incarnation": m.incarnation,
                         "sent": self.sent.get(n, 0), "received": self.received.get(n, 0),
                         "gaps": inb.gaps.get(n, 0), "stale": inb.stale.get(n, 0)})
        return sorted(rows, key=lambda r: r["node"])

    # -- internals ------------------------------------------------------------------------------
    def _tls_context(self) -> ssl.SSLContext | None:
        tls = self.config.tls
        if tls is None:
            return None
        try:
            context = ssl.create_default_context(cafile=tls.ca)
            if tls.cert is not None:
                context.load_cert_chain(tls.cert, tls.key)
        except (OSError, ValueError) as e:  # ssl.SSLError is an OSError
            raise ConfigError(f"{self._source}: cluster.tls: cannot load: {e}") from None
        return context

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
        import nats  # only a clustered node loads nats-py

        options: dict[str, Any] = {
            "servers": list(self.config.servers),
            "name": f"actord {self.config.name}/{self.node}",
            "allow_reconnect": True,
            "max_reconnect_attempts": -1,  # never give up: a node keeps trying to rejoin
            "reconnect_time_wait": 0.5,
            "connect_timeout": 2,
            # the client notices a dead server within ~2 s and reconnects (a new meeting)
            "ping_interval": 1,
            "max_outstanding_pings": 2,
            "error_cb": self._on_error,
            "disconnected_cb": self._on_disconnected,
            "reconnected_cb": self._on_reconnected,
        }
        if self.config.credentials is not None:
            options["user_credentials"] = self.config.credentials
        if self._tls is not None:
            options["tls"] = self._tls
        nc = await nats.connect(**options)
        self._nc = nc
        # our inbox first: a node that hears our heartbeat may send to us at once
        await nc.subscribe(self.inbox_subject, cb=self._on_batch)
        await nc.subscribe(self.subject, cb=self._on_heartbeat)
        self.connected = True
        log.info("cluster: connected to %s", nc.connected_url.netloc if nc.connected_url else "?")
        self._publish()

    async def _beat(self) -> None:
        next_beat = 0.0
        while True:
            now = time.monotonic()
            if now >= next_beat:
                self._publish()
                next_beat = now + self.interval
            self._log(self.members.tick(now))
            await asyncio.sleep(self.interval / 2)

    def _publish(self) -> None:
        nc = self._nc
        if nc is None or not nc.is_connected:
            return  # nothing buffered while cut off: a late heartbeat would lie about now
        data = msgpack.packb({"node": self.node, "incarnation": self.incarnation,
                              "processes": self._processes(), "ts": time.time()})
        self._spawn(nc.publish(self.subject, data))

    async def _on_heartbeat(self, msg: Any) -> None:
        hb = check_heartbeat(msg.data)
        if hb is None:
            self.dropped += 1
            return
        node, incarnation, processes = hb
        if node == self.node:
            if incarnation != self.incarnation:
                self.dropped += 1  # another node calls itself by our name: said once per run
                if incarnation not in self._impostors:
                    self._impostors.add(incarnation)
                    log.warning("cluster: a node of incarnation %#x also calls itself %s",
                                incarnation, node)
            return
        changes = self.members.heard(node, incarnation, processes, time.monotonic())
        if self.members.members[node].incarnation == incarnation:
            self._seen_wall[node] = time.time()
        self._log(changes)

    def _log(self, changes: list[Change]) -> None:
        for c in changes:
            if c.state is NodeState.UP:
                log.info("node %s up (incarnation %#x)", c.node, c.incarnation)
            else:
                log.warning("node %s down: %s", c.node, c.reason)

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


__all__ = ["NodeLink", "check_heartbeat"]
