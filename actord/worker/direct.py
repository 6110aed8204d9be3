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
    PEERS, GONE        the pairs' sessions, a dead worker of another node: applied at once,
                       even behind a fence (they can settle it)

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
import contextvars
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

import msgspec

from actord import ids, natsconn
from actord.core import wire
from actord.core.config import ClusterConfig
from actord.core.direct import (
    INSTANCE_MASK,
    DirectBatch,
    Inbound,
    check_direct,
    encode_direct,
    instance_of,
    serial_of,
    subject,
)
from actord.core.nodes import serial_base
from actord.messages import Message
from actord.transport import FrameProtocol
from actord.worker.proc import Proc


class Runtime(Protocol):
    """What a direct link uses of its worker's runtime (``worker.runtime.Runtime``)."""

    procs: dict[str, Proc]
    conn: FrameProtocol
    loop: asyncio.AbstractEventLoop
    max_frame: int
    _handlers: dict[int, Callable[[list[Any]], None]]  # swapped while a fence holds frames

    def on_frame(self, frame: list[Any]) -> None: ...

log = logging.getLogger("actord.cluster")
_MAX_ADDRESS = wire.MAX_ADDRESS
_decode_value = wire.decode_value

#: seconds a worker waits for its first NATS connection before it takes processes anyway
CONNECT_WAIT = 2.0

#: messages waiting for a process of ours that has not started yet (all of them together)
MAX_EARLY = 100_000
#: batches waiting for a pair this worker's router has not heard of yet (beyond: dropped)
MAX_HELD = 10_000
#: bytes of a batch besides its frames (header, msgpack framing), and per frame: a bound,
#: so a batch cut by these never exceeds NATS's max_payload
BATCH_OVERHEAD = 256
FRAME_OVERHEAD = 32


class DirectLink:
    """One worker's NATS connection and its direct pairs with other nodes' workers."""

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
        self._out: dict[str, list[list[Any]]] = {}
        self._flushing = False
        self._seq: dict[tuple[str, int, int], list[int]] = {}  # (node, inc, inst) -> [session, n]
        self._dirty: set[str] = set()  # subjects published to since the last FENCE
        self._asked: set[tuple[str, int]] = set()  # (node, session) PAIR_BREAKs sent
        self._tasks: set[asyncio.Task[Any]] = set()
        # receiving
        self._held: deque[tuple[float, DirectBatch]] = deque()  # judged "hold"
        self._fence: tuple[str, int, int, int, float] | None = None  # what router frames wait for
        self._waiting: list[list[Any]] = []  # router frames behind the fence
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
            await nc.subscribe(self.subject, cb=self._on_batch,
                               pending_msgs_limit=-1, pending_bytes_limit=-1)
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
        if self._out and not self._flushing:
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
                if self._out:
                    await self._flush()
                await nc.drain()
        except Exception:  # a broken connection may raise anything while closing
            pass

    def _spawn(self, coro: Any) -> None:
        """A task of the worker's, not of the process whose send started it (the loop's task
        factory would make it that process's, cancelled at its end): built directly, in a
        context of its own."""
        task = asyncio.Task(coro, loop=self.rt.loop, context=contextvars.Context())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

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

    # -- sending ----------------------------------------------------------------------------------
    def send(self, dest: str, from_: str, topic: str, payload: bytes) -> bool:
        """Queue a message for another node's process ``dest`` (canonical); False when
        ``dest`` is one of our node's (the router's path). Consecutive messages of one
        sender to one receiver with one topic share one run (core/direct.py)."""
        to = self._routes.get(dest, "")  # the subject of dest's worker (a str: its hash is
        if to == "":                       # cached, a tuple's is not); "": not seen yet
            to = self._route(dest)
        if to is None:
            return False
        runs = self._out.get(to)
        if runs is None:
            self._out[to] = [[dest, from_, topic, payload]]
            self._dirty.add(to)
            if not self._flushing and self.connected:
                self._flushing = True
                self._spawn(self._flush())
        else:
            run = runs[-1]
            if run[0] is dest and run[1] is from_ and run[2] is topic:
                run.append(payload)
            else:
                runs.append([dest, from_, topic, payload])
        return True

    def _route(self, dest: str) -> str | None:
        node = ids.node_of(dest)
        to = None
        if node is not None and node != self.node:
            instance = instance_of(dest)
            to = subject(self.config.name, node, instance)
            self._targets[to] = (node, instance)
        if len(self._routes) >= 65536:
            self._routes.clear()
        self._routes[dest] = to
        return to

    async def _flush(self) -> None:
        """Publish what was queued: one batch per destination worker, in order. Every batch
        is numbered before the first await, so a FENCE made meanwhile counts it."""
        try:
            while self._out and self.connected:
                out, self._out = self._out, {}
                ready: list[tuple[str, str, bytes, int]] = []
                for to, runs in out.items():
                    node, instance = self._targets[to]
                    peer = self.peers.get(node)
                    if peer is None:  # the node is down: dead letters, as the router's
                        self._dead(_messages(runs))
                        continue
                    runs = self._this_run(runs, serial_base(peer[0]))
                    if not runs:
                        continue
                    for data, n in self._batches(node, peer, instance, runs):
                        ready.append((to, node, data, n))
                nc = self.nc
                for to, node, data, n in ready:
                    try:
                        if not self.connected:
                            raise ConnectionError("not connected to NATS")
                        await nc.publish(to, data)
                    except Exception as e:  # nats-py raises many kinds; the messages are lost
                        self._count(node, 4, n)
                        self._break(node, f"{n} messages lost: {e or type(e).__name__}")
                        continue
                    self._count(node, 0, n)
            if self._out and not self.connected and self.nc is not None:
                self._drop_unsent()
        finally:
            self._flushing = False

    def _drop_unsent(self) -> None:
        """Cut off from NATS after the first connection: what is queued is lost, and each
        pair it was for breaks (nothing is buffered to arrive after the cut as if in order)."""
        out, self._out = self._out, {}
        for to, runs in out.items():
            node, n = self._targets[to][0], _messages(runs)
            self._count(node, 4, n)
            self._break(node, f"{n} messages lost: not connected to NATS")

    def _this_run(self, runs: list[list[Any]], base: int) -> list[list[Any]]:
        """The runs for processes of the node's current run: a PID whose serial is below its
        run's serial base is of an earlier run (core/nodes.py), dead; its messages are dead
        letters here, never sent (its worker's subject may be a worker's of the new run,
        whose stream from us they would start)."""
        if all(serial_of(run[0]) >= base for run in runs):
            return runs
        live = [run for run in runs if serial_of(run[0]) >= base]
        self._dead(_messages(runs) - _messages(live))
        return live

    def _batches(self, node: str, peer: tuple[int, int], instance: int,
                 runs: list[list[Any]]) -> list[tuple[bytes, int]]:
        """``runs`` as numbered batches that fit NATS's max_payload, each with its count of
        messages: one, nearly always (encoded whole first; only a batch over it is cut, by a
        bound of each message's size). A message that fits in none is a dead letter, logged."""
        inc, session = peer
        key = (node, inc, instance)
        seq = self._seq.get(key)
        if seq is None or seq[0] != session:
            seq = self._seq[key] = [session, 0]
        data = encode_direct(self.node, self.incarnation, inc, session, self.instance, seq[1],
                             runs)
        nc = self.nc
        limit = nc.max_payload if nc is not None else 1 << 20
        if len(data) <= limit:
            seq[1] += 1
            return [(data, _messages(runs))]
        limit -= BATCH_OVERHEAD
        chunks: list[list[list[Any]]] = [[]]
        size = 0
        for dest, from_, topic, *payloads in runs:
            head = 4 * (len(dest) + len(from_) + len(topic)) + FRAME_OVERHEAD
            for payload in payloads:
                n = len(payload) + head
                if n > limit:
                    self._dead(1)
                    self.too_large += 1
                    log.warning("cluster: a %d-byte message to %s is over NATS's max_payload "
                                "(%d): dead letter", n, dest, limit + BATCH_OVERHEAD)
                    continue
                if size + n > limit and chunks[-1]:
                    chunks.append([])
                    size = 0
                chunks[-1].append([dest, from_, topic, payload])
                size += n
        out = []
        for chunk in chunks:
            if chunk:
                out.append((encode_direct(self.node, self.incarnation, inc, session,
                                          self.instance, seq[1], chunk), len(chunk)))
                seq[1] += 1
        return out

    def fence(self) -> None:
        """Before a frame to the router that may reach another node: FENCE, the batches
        published (or queued) this session to each worker sent to since the last one."""
        fences: dict[str, list[Any]] = {}
        for to in self._dirty:
            node, instance = self._targets[to]
            peer = self.peers.get(node)
            if peer is None:
                continue
            inc, session = peer
            seq = self._seq.get((node, inc, instance))
            n = seq[1] if seq is not None and seq[0] == session else 0
            if to in self._out:
                n += 1
            if n:
                fences.setdefault(node, [session, {}])[1][instance] = n
        self._dirty.clear()
        if fences:
            self.rt.conn.send([wire.FENCE, fences])

    # -- receiving --------------------------------------------------------------------------------
    async def _on_batch(self, msg: Any) -> None:
        b = check_direct(msg.data, self.node)
        if b is None:
            self._malformed(f"batch on {msg.subject}", None)
            return
        self._judge(b)
        if self._fence is not None:
            self._check_fence()

    def _judge(self, b: DirectBatch) -> None:
        verdict, expected = self.inbound.judge(b)
        if verdict == "ok":
            self._count(b.node, 1, self._deliver(b))
        elif verdict == "hold":
            if len(self._held) >= MAX_HELD:
                self._count(b.node, 3, 1)
                log.debug("cluster: too many held batches: one from %s dropped", b.node)
                return
            self._held.append((time.monotonic() + self.timeout, b))
            self._arm()
        elif verdict == "gap":
            self._count(b.node, 2, 1)
            self._break(b.node, f"gap: batch {b.seq} from worker {b.instance}, expected "
                                f"{expected}")
        else:  # stale, gone: from before a cut, or of a dead worker
            self._count(b.node, 3, 1)
            log.debug("cluster: %s batch from %s worker %d: %d runs dropped", verdict,
                      b.node, b.instance, len(b.frames))

    def _deliver(self, b: DirectBatch) -> int:
        """Each run of an accepted batch checked at the boundary (a list: our dest, a sender
        of its node, a topic, then payloads within the size rule) and its messages delivered,
        in one pass: this runs for every message from another node. A malformed run drops
        the rest of the batch and breaks the pair. Returns the messages delivered."""
        procs = self.rt.procs
        decode = _decode_value
        theirs = "{" + b.node + "@"
        max_frame = self.rt.max_frame
        delivered = 0
        for run in b.frames:
            if type(run) is list and len(run) > 3:
                dest, from_, topic = run[0], run[1], run[2]
                if (type(dest) is str and type(from_) is str and type(topic) is str
                        and from_.startswith(theirs) and len(topic) + len(dest) <= _MAX_ADDRESS
                        and len(from_) <= _MAX_ADDRESS):
                    proc = procs.get(dest)
                    for payload in run[3:]:
                        if type(payload) is not bytes or len(payload) > max_frame:
                            break
                        try:
                            value = decode(payload)
                        except Exception:  # a peer's bytes: any decoding failure is malformed
                            break
                        if proc is None:
                            self._undelivered(dest, Message(topic, from_, value))
                        else:
                            proc.deliver(Message(topic, from_, value))
                        delivered += 1
                    else:
                        continue
            self._malformed("run", b.node)
            break
        return delivered

    def _malformed(self, what: str, node: str | None) -> None:
        """A malformed batch, frame or payload from ``node`` (None: not known): counted, the
        first logged, the pair broken."""
        self.malformed += 1
        (log.warning if self.malformed == 1 else log.debug)(
            "cluster: malformed %s%s dropped (%d so far)", what,
            f" from {node}" if node else "", self.malformed)
        if node is not None:
            self._break(node, f"a malformed {what}")

    def _undelivered(self, dest: str, msg: Message) -> None:
        """A message for no live process here: one whose START is still on its way waits
        for it (a PID of ours above the last started); any other is a dead letter."""
        try:
            ours = instance_of(dest) == self.instance and serial_of(dest) > self._last_started
        except ValueError:  # not a PID at all
            ours = False
        if ours and self._early_count < MAX_EARLY:
            early = self._early.get(dest)
            if early is None:
                early = self._early[dest] = (time.monotonic() + self.timeout, [])
                self._arm()
            early[1].append(msg)
            self._early_count += 1
        else:
            self._dead(1)

    def started(self, pid: str) -> list[Message]:
        """A process of ours starts: the messages that arrived for it before (in order)."""
        self._last_started = max(self._last_started, serial_of(pid))
        if not self._early:
            return []
        early = self._early.pop(pid, None)
        if early is None:
            return []
        self._early_count -= len(early[1])
        return early[1]

    # -- the router's frames --------------------------------------------------------------------
    def set_peers(self, peers: dict[str, list[int]]) -> None:
        """PEERS: the nodes up and the pairs' sessions. Queued messages for a pair that
        moved on are from before its cut: dropped. Held batches are judged again."""
        new = {node: (int(v[0]), int(v[1])) for node, v in peers.items()}
        self._expired = 0
        old, self.peers = self.peers, new
        for to in [to for to in self._out if old.get(self._targets[to][0]) != new.get(
                self._targets[to][0])]:
            self._count(self._targets[to][0], 4, len(self._out.pop(to)))
        self.inbound.set_peers(new)
        if self._held:
            held, self._held = self._held, deque()
            for _, b in held:
                self._judge(b)
        if self._fence is not None:
            self._check_fence()

    def gone(self, node: str, instance: int) -> None:
        """GONE: a worker of ``node`` died; its batches from now on are dropped."""
        self.inbound.mark_gone(node, instance)
        if self._fence is not None:
            self._check_fence()

    def on_fence(self, frame: list[Any], handlers: dict[int, Callable[[list[Any]], None]]
                 ) -> None:
        """FENCE ``[FENCE, node, instance, session, batches]``: unless it is met, every
        router frame after it waits (``handlers``: the runtime's, swapped back on release)."""
        _, node, instance, session, count = frame
        if self.inbound.fence_met(node, instance, session, count):
            return
        self._fence = (node, instance, session, count, time.monotonic() + self.timeout)
        self._handlers = handlers
        hold = self._waiting.append
        waiting: dict[int, Callable[[list[Any]], None]] = {op: hold for op in handlers}
        waiting[wire.PEERS] = handlers[wire.PEERS]
        waiting[wire.GONE] = handlers[wire.GONE]
        self.rt._handlers = waiting
        self._arm()

    def _check_fence(self, now: float | None = None) -> None:
        fence = self._fence
        assert fence is not None
        node, instance, session, count, deadline = fence
        if not self.inbound.fence_met(node, instance, session, count):
            if (now or time.monotonic()) < deadline:
                return
            self._break(node, f"fence: {count} batches of worker {instance} expected, "
                              "not all arrived")
        self._release()

    def _release(self) -> None:
        """The fence is met (or given up): the waiting frames run in order; one of them may
        be another fence, which holds the rest again."""
        self._fence = None
        self.rt._handlers = self._handlers
        waiting, self._waiting = self._waiting, []
        for i, frame in enumerate(waiting):
            self.rt.on_frame(frame)
            if self._fence is not None:
                self._waiting[:0] = waiting[i + 1:]
                return

    # -- time ---------------------------------------------------------------------------------
    def _arm(self) -> None:
        """A timer while anything waits (held batches, a fence, early messages)."""
        if self._timer is None:
            self._timer = self.rt.loop.call_later(min(0.25, self.timeout / 4), self._tick)

    def _tick(self) -> None:
        self._timer = None
        now = time.monotonic()
        while self._held and self._held[0][0] <= now:
            _, b = self._held.popleft()
            self._count(b.node, 3, 1)
            self._expired += 1
            (log.warning if self._expired == 1 else log.debug)(
                "cluster: a batch from %s worker %d never matched a pair its router knows "
                "(incarnation %#x, session %d): %d runs dropped", b.node, b.instance,
                b.incarnation, b.session, len(b.frames))
        if self._fence is not None:
            self._check_fence(now)
        if self._early:
            # a START comes well within node_timeout of a message its process was sent (the
            # sender learnt the PID after the START left): later, the PID was never ours
            for pid in [pid for pid, (deadline, _) in self._early.items() if deadline <= now]:
                n = len(self._early.pop(pid)[1])
                self._early_count -= n
                self._dead(n)
        if self._held or self._fence is not None or self._early:
            self._arm()

    def _dead(self, n: int) -> None:
        """``n`` dead letters: counted by the router (``actord status``), as those of the
        routers' path are, in one DEAD_LETTERS frame per loop tick."""
        if not self._dead_letters:
            self.rt.loop.call_soon(self._tell_dead)
        self._dead_letters += n

    def _tell_dead(self) -> None:
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


def _messages(runs: list[list[Any]]) -> int:
    """The messages in ``runs``."""
    return sum(len(run) for run in runs) - 3 * len(runs)


__all__ = ["DirectLink"]
