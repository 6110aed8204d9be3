"""Messages straight from worker to worker across nodes (SPEC 11's data path).

A clustered node's workers each have a NATS connection of their own: a message to another
node's process leaves its sender's worker on that connection and arrives in the worker that
runs the receiver, with no router on its way (routers carry everything else: calls, EXITED,
events, heartbeats; see core/batches.py). A PID names its worker: the low
:data:`INSTANCE_BITS` bits of a clustered node's PID serial are the *instance* of the worker
it runs on (a node-wide count of worker starts), and each worker listens on
``<cluster>.w.<node>.<instance>`` (:func:`subject`). Everything a worker queued for one other
worker in one loop tick leaves as one NATS message::

    [from_node, from_incarnation, to_incarnation, session, from_instance, seq, RUN...]
    RUN: [dest, from, topic, payload_bin, payload_bin, ...]

A run is consecutive messages of one sender to one receiver with one topic, in order (a
stream's tick is one run: its addresses are packed, sent and checked once, not per message);
each payload is the msgpack bytes its sender encoded.

**Sessions and sequences.** ``session`` is the pair session of the two nodes as the sending
worker knows it (its router tells it, PEERS). ``seq`` counts one session's batches of one
sending worker to one receiving worker from 0, so a gap is seen on the next batch, the first
of a session included; a lost *last* batch is seen through a fence (below). A receiving
worker judges each batch against the pair as its router has it (:meth:`Inbound.judge`):
the same session is checked for a gap; an older incarnation or session is from before a cut
(dropped, never delivered late); a newer one than its router knows yet waits until it does.
A gap breaks the pair of the two nodes, as a router's gap does.

**Fences.** NATS keeps order per connection, so a worker's messages to another worker arrive
in order, but nothing orders them against what its router sends (an EXITED after them). So
before a worker sends its router anything that may reach another node (a process's end, a
call), it sends a FENCE with how many batches it has published to each worker of each node
in the current session; the FENCE travels the routers' path ahead of that frame, and the
receiving worker holds every frame its router sends after it until those batches are in
(:meth:`Inbound.fence_met`). A fence not met within ``node_timeout`` is a lost batch: the
pair breaks. A worker that dies leaves no fence: its router says GONE for it first, and a
batch of a gone worker that arrives later is dropped (its processes' EXITs are on their way).

Invariant: pure (no I/O, no clock); a peer's bytes never raise out of :func:`check_direct`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

import msgpack

#: bits of a clustered PID's serial that name its worker instance (4096 worker starts in a
#: run before an instance number, and so a subject, is used again)
INSTANCE_BITS = 12
INSTANCE_MASK = (1 << INSTANCE_BITS) - 1
_NODE_RE = re.compile(r"[a-z0-9_-]{1,32}")
_MAX_UINT = 2**64 - 1

Verdict = Literal["ok", "stale", "hold", "gap", "gone"]


def subject(cluster: str, node: str, instance: int) -> str:
    """The subject worker ``instance`` of ``node`` listens on."""
    return f"{cluster}.w.{node}.{instance & INSTANCE_MASK}"


def instance_of(pid: str) -> int:
    """The worker instance a clustered node's (canonical) PID names."""
    return int(pid[pid.index("|") + 3:-1], 16) & INSTANCE_MASK


def serial_of(pid: str) -> int:
    """The serial of a (canonical) PID."""
    return int(pid[pid.index("|") + 3:-1], 16)


@dataclass(frozen=True)
class DirectBatch:
    """One batch from another node's worker whose header is well formed (its frames as
    decoded: not checked yet)."""

    node: str
    incarnation: int
    to_incarnation: int
    session: int
    instance: int
    seq: int
    frames: list[Any]  # the runs


def encode_direct(node: str, incarnation: int, to_incarnation: int, session: int,
                  instance: int, seq: int, frames: list[list[Any]]) -> bytes:
    """The bytes of one batch (payloads as the bytes their senders encoded)."""
    return msgpack.packb([node, incarnation, to_incarnation, session, instance, seq, *frames])


def _uint(v: Any) -> bool:
    return type(v) is int and 0 <= v <= _MAX_UINT


def check_direct(data: bytes, me: str) -> DirectBatch | None:
    """The batch in ``data`` for a worker of node ``me``, its header checked; None when
    that is malformed (the sender cannot be told). Its frames are checked by the receiving
    worker as it delivers them, in the same pass (worker/direct.py: this is the path of
    every message from another node): a malformed one drops the rest of the batch and
    breaks the pair."""
    try:
        batch = msgpack.unpackb(data, raw=False)
    except Exception:  # any decoding failure of a peer's bytes is "malformed"
        return None
    if type(batch) is not list or len(batch) < 6:
        return None
    node, inc, to_inc, session, instance, seq = batch[:6]
    if (type(node) is not str or _NODE_RE.fullmatch(node) is None or node == me
            or not _uint(inc) or not _uint(to_inc) or not _uint(session)
            or type(instance) is not int or not 0 <= instance <= INSTANCE_MASK
            or not _uint(seq)):
        return None
    return DirectBatch(node, inc, to_inc, session, instance, seq, batch[6:])


@dataclass
class Stream:
    """Batches from one worker of one run of a node, in one session: the next seq."""

    session: int
    next: int = 0


@dataclass
class Inbound:
    """A receiving worker's view (worker of node ``me``, run ``incarnation``): the pairs as
    its router has them (``peers``: node -> (incarnation, session), the nodes up) and every
    sending worker's stream."""

    me: str
    incarnation: int
    peers: dict[str, tuple[int, int]] = field(default_factory=dict)
    streams: dict[tuple[str, int, int], Stream] = field(default_factory=dict)
    gone: set[tuple[str, int, int]] = field(default_factory=set)  # (node, inc, instance)

    def set_peers(self, peers: dict[str, tuple[int, int]]) -> None:
        """The router's pairs now: streams of runs that are no longer the current one are
        forgotten."""
        self.peers = peers
        stale = [k for k in self.streams if peers.get(k[0], (-1,))[0] != k[1]]
        for k in stale:
            del self.streams[k]
        self.gone = {k for k in self.gone if peers.get(k[0], (-1,))[0] == k[1]}

    def judge(self, b: DirectBatch) -> tuple[Verdict, int]:
        """The verdict on ``b`` and the seq expected (``gap``). ``ok`` moves the stream on;
        ``hold``: judge it again when the peers change (a run or session this worker's
        router has not heard of yet, or a node not up)."""
        if b.to_incarnation != self.incarnation:
            return "stale", -1
        peer = self.peers.get(b.node)
        if peer is None:
            return "hold", -1
        inc, session = peer
        if b.incarnation != inc:
            return ("stale" if b.incarnation < inc else "hold"), -1
        if b.session != session:
            return ("stale" if b.session < session else "hold"), -1
        key = (b.node, inc, b.instance)
        if key in self.gone:
            return "gone", -1
        s = self.streams.get(key)
        if s is None or s.session != session:
            s = self.streams[key] = Stream(session)
        expected = s.next
        if b.seq != expected:
            s.next = b.seq + 1  # the next batch of this session is judged after this one
            return "gap", expected
        s.next = expected + 1
        return "ok", expected

    def fence_met(self, node: str, instance: int, session: int, count: int) -> bool:
        """Have ``count`` batches of ``session`` from worker ``instance`` of ``node`` arrived
        (or is the fence moot: the node down, its run or session moved on, the worker gone)?"""
        peer = self.peers.get(node)
        if peer is None:
            return True
        inc, current = peer
        if session != current:
            return session < current  # a newer one: our router has not heard of it yet
        key = (node, inc, instance)
        if count == 0 or key in self.gone:
            return True
        s = self.streams.get(key)
        return s is not None and s.session == session and s.next >= count

    def mark_gone(self, node: str, instance: int) -> None:
        """Worker ``instance`` of ``node`` (its current run) died: its later batches are
        dropped."""
        peer = self.peers.get(node)
        if peer is not None:
            self.gone.add((node, peer[0], instance))
            self.streams.pop((node, peer[0], instance), None)


__all__ = ["INSTANCE_BITS", "INSTANCE_MASK", "DirectBatch", "Inbound", "Stream",
           "check_direct", "encode_direct", "instance_of", "serial_of", "subject"]
