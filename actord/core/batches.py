"""Frames between nodes (SPEC 11): the batch format, its check at the boundary, and the
per-pair sessions and sequences that make a lost frame never silent.

A router sends everything for one other node in one NATS message per loop tick, published on
``<cluster>.node.<dest-node>``, as the msgpack array::

    [from_node, from_incarnation, to_incarnation, session, seq, frame, frame, ...]

    [SEND, dest, from, topic, payload_bin]           a message (the worker's SEND as is)
    [EVENT, dest, kind, from, result, deadline, reason]   kind: pid.cancel or exec.exit
    [EXITED, pid, result]        a process of the sender ended: the receiver fans it out to
                                 its own processes that monitored or were linked to it
    [CALL, req, caller, op, args]    op in :data:`REMOTE_CALLS`; req NO_REPLY: answer nothing
    [REPLY, req, error_kind|None, value]
    [FENCE, from_instance, session, {instance: batches}]   before a worker's end or call:
                                 what its worker published to ours (core/direct.py)
    [GONE, instance]             a worker of the sender died (core/direct.py)

``dest`` is always a PID of the receiving node, ``from``/``caller``/``pid`` one of the
sending node (or ``""``: its control socket). ``payload_bin`` is the msgpack bytes the
sender encoded: routers never decode it. ``to_incarnation`` is the receiver's incarnation as
the sender knows it (a batch for an earlier run of the receiver is refused: its PIDs are all
dead).

**Sessions.** Two nodes share a session number per pair (:class:`Pairs`), 0 when they first
meet. Either side may *break* the pair (a gap, a malformed batch, a reconnect that may have
lost frames, the other node silent or restarted): it bumps the session, drops what it had
queued for the other node, and fans out "node down" to its own processes at once. The other
side learns the higher session from the next batch or heartbeat and breaks too (its own
fallout, no further bump). Batches of a lower session are from before the cut: dropped, so
nothing from before a cut is ever delivered late. ``seq`` counts one session's batches from
0, so a gap inside a session is seen by the receiver on the next batch, or (a lost last
batch) from the sender's heartbeats, which say how many batches it sent
(:meth:`Pairs.heard_sent`).

Verdicts of :meth:`Pairs.accept`:

- ``"ok"``: the expected batch: delivered.
- ``"broke"``: a higher session: the peer broke the pair; the receiver breaks too (its
  fallout) and then delivers the batch (it is the new session's); a new session's batch
  that is not its first is a gap as well (``"gap"``).
- ``"gap"``: another seq in this session: the receiver breaks the pair (its session goes
  above the batch's) and drops the batch; it tells the peer with an empty batch.
- ``"stale"``: an older incarnation, a batch for an earlier run of the receiver, or a lower
  session: dropped, counted.

Invariant: pure (no I/O, no clock); a peer's bytes never raise out of :func:`check_batch`,
and a batch it returns without ``bad`` holds only well-formed frames addressed as above.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

import msgpack

from actord.core import wire
from actord.core.direct import INSTANCE_MASK

_NODE_RE = re.compile(r"[a-z0-9_-]{1,32}")
_MAX_INT = 2**64 - 1
#: the calls a node may make on another node's processes (checked by the caller's node)
REMOTE_CALLS = frozenset(
    {"spawn", "terminate", "cancel", "monitor", "unmonitor", "link", "unlink"}
)
_REMOTE_EVENTS = frozenset({wire.EV_CANCEL, wire.EV_EXEC})
_SEND = wire.SEND

Verdict = Literal["ok", "broke", "gap", "stale"]


@dataclass(frozen=True)
class Batch:
    """One batch from another node whose header is well formed. ``bad`` says why its frames
    were refused (then ``frames`` is empty): the sender is known, so its pair can break."""

    node: str
    incarnation: int
    to_incarnation: int
    session: int
    seq: int
    frames: list[list[Any]]
    bad: str = ""


def encode_batch(node: str, incarnation: int, to_incarnation: int, session: int, seq: int,
                 frames: list[list[Any]]) -> bytes:
    """The bytes of one batch (payloads of SENDs as their bytes)."""
    return msgpack.packb([node, incarnation, to_incarnation, session, seq, *frames])


def _uint(v: Any) -> bool:
    return type(v) is int and 0 <= v <= _MAX_INT


def is_result(r: Any) -> bool:
    """True for an :data:`~actord.core.wire.ExitResult`: ``{"value": v}`` or
    ``{"error": str}``."""
    if type(r) is not dict or len(r) != 1:
        return False
    if "value" in r:
        return True
    error = r.get("error")
    return type(error) is str and len(error) <= 2 * wire.MAX_TEXT


def _instance(v: Any) -> bool:
    return type(v) is int and 0 <= v <= INSTANCE_MASK


def _ours(pid: Any, mine: str) -> bool:
    return type(pid) is str and pid.startswith(mine) and len(pid) <= wire.MAX_ADDRESS


def _sender(pid: Any, theirs: str, empty: bool = True) -> bool:
    return type(pid) is str and ((empty and pid == "") or pid.startswith(theirs)) and (
        len(pid) <= wire.MAX_ADDRESS)


def _bad_frame(f: Any, mine: str, theirs: str, max_frame: int) -> str:
    """Why frame ``f`` is refused ("" when it is well formed)."""
    if type(f) is not list or not f:
        return "a frame that is no array"
    op, n = f[0], len(f)
    if op == wire.SEND:
        if n != 5:
            return "SEND of the wrong length"
        _, dest, from_, topic, payload = f
        if not (_ours(dest, mine) and _sender(from_, theirs) and type(topic) is str
                and type(payload) is bytes and len(payload) <= max_frame
                and len(topic) + len(dest) <= wire.MAX_ADDRESS):
            return "bad SEND"
    elif op == wire.EVENT:
        if n != 7:
            return "EVENT of the wrong length"
        _, dest, kind, from_, result, deadline, reason = f
        if not (_ours(dest, mine) and kind in _REMOTE_EVENTS and _sender(from_, theirs)
                and (result is None or is_result(result))
                and (deadline is None or (type(deadline) in (int, float)))
                and (reason is None or (type(reason) is str and len(reason) <= 2 * wire.MAX_TEXT))):
            return "bad EVENT"
    elif op == wire.EXITED:
        if n != 3 or not _sender(f[1], theirs, empty=False) or not is_result(f[2]):
            return "bad EXITED"
    elif op == wire.CALL:
        if n != 5:
            return "CALL of the wrong length"
        _, req, caller, call, args = f
        if not (_uint(req) and _sender(caller, theirs) and call in REMOTE_CALLS
                and type(args) in (dict, list)):
            return "bad CALL"
    elif op == wire.REPLY:
        if n != 4 or not _uint(f[1]) or not (f[2] is None or type(f[2]) is str):
            return "bad REPLY"
    elif op == wire.FENCE:
        if n != 4 or not _instance(f[1]) or not _uint(f[2]) or type(f[3]) is not dict or not all(
            _instance(k) and _uint(v) for k, v in f[3].items()
        ):
            return "bad FENCE"
    elif op == wire.GONE:
        if n != 2 or not _instance(f[1]):
            return "bad GONE"
    else:
        return f"unknown op {op!r}"
    return ""


def check_batch(data: bytes, me: str, max_frame: int) -> Batch | None:
    """The batch in ``data`` for node ``me``; None when its header is malformed (the sender
    cannot be told), a :class:`Batch` with ``bad`` set when a frame is (one bad frame
    refuses the whole batch)."""
    try:
        # int map keys are values too (a spawn's args, a result): as every frame decoder
        batch = msgpack.unpackb(data, raw=False, strict_map_key=False)
    except Exception:  # any decoding failure of a peer's bytes is "malformed"
        return None
    if type(batch) is not list or len(batch) < 5:
        return None
    node, inc, to_inc, session, seq = batch[:5]
    if (type(node) is not str or _NODE_RE.fullmatch(node) is None or node == me
            or not _uint(inc) or not _uint(to_inc) or not _uint(session) or not _uint(seq)):
        return None
    mine, theirs = "{" + me + "@", "{" + node + "@"
    frames = batch[5:]
    max_address = wire.MAX_ADDRESS
    for f in frames:
        # a message (nearly every frame) checked inline: this runs once per frame received
        if type(f) is list and len(f) == 5 and f[0] == _SEND:
            _, dest, from_, topic, payload = f
            if (type(dest) is str and type(from_) is str and type(topic) is str
                    and type(payload) is bytes and dest.startswith(mine)
                    and (not from_ or from_.startswith(theirs))
                    and len(payload) <= max_frame
                    and len(topic) + len(dest) <= max_address and len(from_) <= max_address):
                continue
        why = _bad_frame(f, mine, theirs, max_frame)
        if why:
            return Batch(node, inc, to_inc, session, seq, [], why)
    return Batch(node, inc, to_inc, session, seq, frames)


@dataclass
class Pair:
    """This node and one other node (of one incarnation of it): the session they share and
    the next seq each way."""

    incarnation: int
    session: int = 0
    next_in: int = 0
    next_out: int = 0
    short: int = -1  # batches the peer said it sent that had not all arrived (see heard_sent)


@dataclass
class Pairs:
    """Every pair this node (of incarnation ``incarnation``) is in, by the other node."""

    incarnation: int
    pairs: dict[str, Pair] = field(default_factory=dict)
    gaps: dict[str, int] = field(default_factory=dict)
    stale: dict[str, int] = field(default_factory=dict)
    breaks: dict[str, int] = field(default_factory=dict)

    def _pair(self, node: str, incarnation: int) -> Pair:
        """The pair with ``incarnation`` of ``node`` (a fresh one for a newer run)."""
        p = self.pairs.get(node)
        if p is None or incarnation > p.incarnation:
            p = self.pairs[node] = Pair(incarnation)
        return p

    def next_out(self, node: str, incarnation: int) -> tuple[int, int]:
        """``(session, seq)`` the next batch to ``incarnation`` of ``node`` will carry
        (:meth:`outgoing` takes it)."""
        p = self._pair(node, incarnation)
        return p.session, p.next_out

    def outgoing(self, node: str, incarnation: int) -> tuple[int, int]:
        """``(session, seq)`` of the next batch to ``incarnation`` of ``node``."""
        p = self._pair(node, incarnation)
        seq = p.next_out
        p.next_out = seq + 1
        return p.session, seq

    def session(self, node: str) -> int:
        p = self.pairs.get(node)
        return 0 if p is None else p.session

    def break_(self, node: str, above: int = -1, incarnation: int | None = None) -> None:
        """This side breaks the pair: a session above both the current one and ``above``,
        seqs from 0 again. A pair never used here is made for ``incarnation`` of ``node``
        first (its workers may have used it), unless that is None (never met)."""
        self.breaks[node] = self.breaks.get(node, 0) + 1
        p = self.pairs.get(node)
        if p is None or (incarnation is not None and incarnation > p.incarnation):
            if incarnation is None:
                return  # never met: nothing crossed, nothing to break
            p = self.pairs[node] = Pair(incarnation)
        p.session = max(p.session, above) + 1
        p.next_in = p.next_out = 0
        p.short = -1

    def adopt(self, node: str, incarnation: int, session: int) -> bool:
        """The peer says it is at ``session`` with us (its heartbeat): True when that is a
        break we have not seen (the caller breaks too); the pair is then at that session."""
        p = self.pairs.get(node)
        if p is None or p.incarnation < incarnation:
            # never met this run here (its workers may have): at its session, a break if
            # that is above 0
            if session == 0:
                return False
            self.pairs[node] = Pair(incarnation, session)
            self.breaks[node] = self.breaks.get(node, 0) + 1
            return True
        if p.incarnation != incarnation or session <= p.session:
            return False
        p.session, p.next_in, p.next_out, p.short = session, 0, 0, -1
        self.breaks[node] = self.breaks.get(node, 0) + 1
        return True

    def accept(self, b: Batch, known_incarnation: int | None) -> tuple[Verdict, int]:
        """The verdict on ``b`` and the seq expected before it (``known_incarnation``: the
        membership's incarnation of ``b.node``, None when never heard). The pair's state
        moves as the verdict says (see the module docstring)."""
        p = self.pairs.get(b.node)
        if b.to_incarnation != self.incarnation or (
            known_incarnation is not None and b.incarnation < known_incarnation
        ) or (p is not None and (b.incarnation < p.incarnation or (
            b.incarnation == p.incarnation and b.session < p.session))):
            self.stale[b.node] = self.stale.get(b.node, 0) + 1
            return "stale", -1
        p = self._pair(b.node, b.incarnation)
        verdict: Verdict = "ok"
        if b.session > p.session:
            p.session, p.next_in, p.next_out, p.short = b.session, 0, 0, -1
            self.breaks[b.node] = self.breaks.get(b.node, 0) + 1
            verdict = "broke"
        expected = p.next_in
        if b.seq != expected:
            self.gaps[b.node] = self.gaps.get(b.node, 0) + 1
            self.break_(b.node, b.session)
            return "gap", expected
        p.next_in = expected + 1
        return verdict, expected

    def heard_sent(self, node: str, incarnation: int, session: int, sent: int) -> bool:
        """The peer's heartbeat says it sent ``sent`` batches to us in ``session``: True
        (a gap: the caller breaks the pair) when fewer arrived, twice in a row with the same
        count (once may be a batch still on its way). This finds a lost *last* batch, which
        no later batch would show."""
        p = self.pairs.get(node)
        if p is None or p.incarnation != incarnation or p.session != session:
            return False
        if sent <= p.next_in:
            p.short = -1
            return False
        if p.short != sent:
            p.short = sent
            return False
        self.gaps[node] = self.gaps.get(node, 0) + 1
        self.break_(node, session)
        return True

    def sessions(self) -> dict[str, list[int]]:
        """For our heartbeat: ``{node: [its incarnation, session, batches sent in it]}``."""
        return {n: [p.incarnation, p.session, p.next_out] for n, p in self.pairs.items()}


__all__ = ["REMOTE_CALLS", "Batch", "Pair", "Pairs", "Verdict", "check_batch", "encode_batch",
           "is_result"]
