"""Frames between nodes (SPEC 11): the batch format, its check at the boundary, and the
per-pair sequence that makes a lost frame never silent.

A router sends everything for one other node in one NATS message per loop tick, published on
``<cluster>.node.<dest-node>``, as the msgpack array::

    [from_node, from_incarnation, to_incarnation, seq, frame, frame, ...]
    frame = [SEND, dest_pid, from_pid, topic, payload_bin]   (the worker's SEND frame as is)

``payload_bin`` is the msgpack bytes the sender encoded: routers never decode it.
``to_incarnation`` is the receiver's incarnation as the sender knows it (a batch for an
earlier run of the receiver is refused: its PIDs are all dead). ``seq`` counts the batches of
one sender incarnation to one receiver incarnation from 0, one per batch, never reused.

The receiver (:class:`Inbound`) keeps, per sender node, the incarnation and the next ``seq``
it expects, and classifies each batch (:meth:`Inbound.accept`):

- ``"ok"``: the expected one (or the first of a new, newer incarnation, seq 0): delivered.
- ``"gap"``: another seq (batches lost, e.g. across a NATS reconnect, or a forged one): the
  pair is broken; the batch is delivered as the first of a fresh meeting (the next expected
  seq is the one after it). Logged and counted (``gaps`` in ``actord nodes``).
- ``"stale"``: an incarnation older than the one known for that node, or a batch for an
  earlier run of this node: dropped, logged and counted.

**What the next step (links and monitors across nodes) must do on a gap**: break the pair
exactly as the sender node going down does (SPEC 11): every link between a process of this
node and a process of that node fires EXIT / LINK_DOWN with ``"node down: <node>"`` on this
side, every monitor gets its event, once; then the pair goes on as a fresh meeting (nothing
linked across it). A stale batch is never delivered.

Invariant: pure (no I/O, no clock); a peer's bytes never raise out of :func:`check_batch`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

import msgpack

from actord.core import wire

_NODE_RE = re.compile(r"[a-z0-9_-]{1,32}")
_MAX_INT = 2**64 - 1

Verdict = Literal["ok", "gap", "stale"]


@dataclass(frozen=True)
class Batch:
    """One checked batch from another node."""

    node: str
    incarnation: int
    to_incarnation: int
    seq: int
    frames: list[list[Any]]


def encode_batch(node: str, incarnation: int, to_incarnation: int, seq: int,
                 frames: list[list[Any]]) -> bytes:
    """The bytes of one batch (``frames``: SEND frames, payloads as their bytes)."""
    return msgpack.packb([node, incarnation, to_incarnation, seq, *frames])


def _uint(v: Any) -> bool:
    return type(v) is int and 0 <= v <= _MAX_INT


def check_batch(data: bytes, me: str, max_frame: int) -> Batch | None:
    """The batch in ``data`` for node ``me``, or None when anything in it is malformed.

    Every frame must be ``[SEND, dest, from, topic, payload]`` with ``dest`` a PID of node
    ``me``, ``from`` a PID of the sending node (or ``""``), ``topic`` a str, ``payload``
    bytes no longer than ``max_frame``: one bad frame refuses the whole batch.
    """
    try:
        batch = msgpack.unpackb(data, raw=False)
    except Exception:  # any decoding failure of a peer's bytes is "malformed"
        return None
    if type(batch) is not list or len(batch) < 4:
        return None
    node, inc, to_inc, seq = batch[:4]
    if (type(node) is not str or _NODE_RE.fullmatch(node) is None or node == me
            or not _uint(inc) or not _uint(to_inc) or not _uint(seq)):
        return None
    mine, theirs = "{" + me + "@", "{" + node + "@"
    frames = batch[4:]
    for f in frames:
        if type(f) is not list or len(f) != 5 or f[0] != wire.SEND:
            return None
        _, dest, from_, topic, payload = f
        if (type(dest) is not str or not dest.startswith(mine)
                or type(from_) is not str or (from_ and not from_.startswith(theirs))
                or type(topic) is not str or type(payload) is not bytes
                or len(payload) > max_frame or len(topic) + len(dest) > wire.MAX_ADDRESS):
            return None
    return Batch(node, inc, to_inc, seq, frames)


class Inbound:
    """The receiving side of every pair (other node -> this node): what each batch is."""

    def __init__(self, incarnation: int) -> None:
        self.incarnation = incarnation  # this node's
        self.expect: dict[str, tuple[int, int]] = {}  # node -> (its incarnation, next seq)
        self.gaps: dict[str, int] = {}
        self.stale: dict[str, int] = {}

    def accept(self, b: Batch, known_incarnation: int | None) -> tuple[Verdict, int]:
        """The verdict on ``b`` and the seq expected before it (``known_incarnation``: the
        membership's incarnation of ``b.node``, None when never heard)."""
        if b.to_incarnation != self.incarnation or (
            known_incarnation is not None and b.incarnation < known_incarnation
        ):
            self.stale[b.node] = self.stale.get(b.node, 0) + 1
            return "stale", -1
        inc, expected = self.expect.get(b.node, (-1, 0))
        if b.incarnation < inc:
            self.stale[b.node] = self.stale.get(b.node, 0) + 1
            return "stale", -1
        if b.incarnation > inc:
            expected = 0  # a new run of that node: its first batch to us is seq 0
        self.expect[b.node] = (b.incarnation, b.seq + 1)
        if b.seq != expected:
            self.gaps[b.node] = self.gaps.get(b.node, 0) + 1
            return "gap", expected
        return "ok", expected


__all__ = ["Batch", "Inbound", "Verdict", "check_batch", "encode_batch"]
