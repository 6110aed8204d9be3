"""Cluster membership: which other nodes are up, decided from heartbeats and a timeout.

Responsibility: the node table of SPEC 11 as an explicit state machine. Each other node is a
:class:`Member` in one of the :class:`NodeState` states; :func:`transition` is the one place a
state changes and refuses every move not in ``_MOVES``. :class:`Membership` feeds it:
:meth:`~Membership.heard` (a heartbeat arrived) and :meth:`~Membership.tick` (time passed)
return the :class:`Change` list the caller logs and acts on. Pure: time is passed in (one
monotonic clock, seconds), nothing is read, nothing is sent.

States and moves (a node never heard of has no row)::

            heard                  silent > limit, or a newer incarnation heard
    (none) -------> UP  ------------------------------------------------->  DOWN
                    ^                                                         |
                    +---------------------------------------------------------+
                         heard again: a fresh member (``meeting`` + 1)

An **incarnation** is one run of a node (:func:`new_incarnation`: its start time in ms, shifted
left 20 bits, plus 20 random bits; runs of one node started later have larger ones). A
heartbeat of an incarnation older than the one known is a late frame of a dead run: refused
(counted in ``stale``), never a change. A newer incarnation of an up node means it restarted
faster than the timeout: its old run goes DOWN, then the new one comes UP. A down node heard
again (same incarnation after a cut healed, or a new one) is a fresh member: its ``meeting``
counts up, so what belonged to an earlier meeting can be told apart and refused by the links.

When a node is down (the silence rule): its last heartbeat arrived more than ``limit`` =
``node_timeout + 1.25 * interval`` ago, ``interval`` being the heartbeat period (the caller
chooses it: ``actord.router.nodes``). A node stalled for less than ``node_timeout`` was
silent at most ``stall + interval`` (+ jitter) ``< limit``: nothing is declared
(SPEC 11); a killed one is declared at most ``limit + tick`` after its death. Our own cut-off
(our NATS connection lost) needs no rule of its own: no heartbeat arrives, so every other node
goes down by the same rule, which is SPEC 11's symmetric down.

Invariant: every change returned is a legal move, applied before it is returned, and a
member's ``incarnation`` never decreases.
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass

#: the low bits of an incarnation that are random (and of a PID serial base that are zero)
INCARNATION_SHIFT = 22


class NodeState(enum.Enum):
    """What this node believes of another node."""

    UP = "up"
    DOWN = "down"


_MOVES: frozenset[tuple[NodeState | None, NodeState]] = frozenset({
    (None, NodeState.UP),  # first heartbeat of a node never heard of
    (NodeState.UP, NodeState.DOWN),  # silent too long, or restarted (a newer incarnation)
    (NodeState.DOWN, NodeState.UP),  # heard again: a fresh member
})


class IllegalMove(Exception):
    """A move not in ``_MOVES`` (a bug in the caller, never a peer's doing)."""


@dataclass
class Member:
    """Another node as this one knows it."""

    node: str
    state: NodeState
    incarnation: int
    last_seen: float  # when its last heartbeat arrived (the caller's monotonic clock)
    processes: int = 0  # as its last heartbeat said
    meeting: int = 1  # how many times it came up (fresh members count up)


@dataclass(frozen=True)
class Change:
    """One state change, for the log and for whoever acts on it (``reason`` for DOWN)."""

    node: str
    state: NodeState
    incarnation: int
    reason: str = ""


def transition(member: Member | None, to: NodeState) -> None:
    """Check the move of ``member`` (None: not known yet) to ``to``; IllegalMove if refused."""
    frm = None if member is None else member.state
    if (frm, to) not in _MOVES:
        raise IllegalMove(f"node {getattr(member, 'node', '?')}: {frm} -> {to}")
    if member is not None:
        member.state = to


def new_incarnation(now_wall: float, rng: random.Random | None = None) -> int:
    """An incarnation for a run starting at ``now_wall`` (epoch seconds)."""
    bits = (rng or random.SystemRandom()).getrandbits(INCARNATION_SHIFT)
    return (int(now_wall * 1000) << INCARNATION_SHIFT) | bits


def serial_base(incarnation: int) -> int:
    """The first PID serial of a run: its start in ms, shifted left 22 bits (below 2**64
    until 2109).

    A later run of the node starts at least 1 ms later, so its base is at least 2**22 above
    this run's. A run's serials step by 2**12 (their low 12 bits name the worker a process
    runs on, core/direct.py), so an earlier run's serial could reach it only by spawning over
    2**10 processes per millisecond of its life (a million a second), twenty times more than
    a router can. (A wall clock set back between two runs is the one way around it.)
    """
    return (incarnation >> INCARNATION_SHIFT) << INCARNATION_SHIFT


class Membership:
    """The other nodes of the cluster, each with its state; ``limit``: the silence rule's."""

    def __init__(self, me: str, limit: float) -> None:
        self.me = me
        self.limit = limit
        self.members: dict[str, Member] = {}
        self.stale = 0  # heartbeats refused: an incarnation older than the one known

    def heard(self, node: str, incarnation: int, processes: int, now: float) -> list[Change]:
        """A heartbeat of ``node`` arrived at ``now``: the changes it causes."""
        if node == self.me:
            return []  # our own, echoed by NATS
        m = self.members.get(node)
        if m is None:
            transition(None, NodeState.UP)
            self.members[node] = Member(node, NodeState.UP, incarnation, now, processes)
            return [Change(node, NodeState.UP, incarnation)]
        if incarnation < m.incarnation:
            self.stale += 1
            return []
        changes = []
        if m.state is NodeState.UP and incarnation > m.incarnation:
            transition(m, NodeState.DOWN)
            changes.append(Change(node, NodeState.DOWN, m.incarnation, "restarted"))
        m.incarnation, m.last_seen, m.processes = incarnation, now, processes
        if m.state is NodeState.DOWN:
            transition(m, NodeState.UP)
            m.meeting += 1
            changes.append(Change(node, NodeState.UP, incarnation))
        return changes

    def tick(self, now: float) -> list[Change]:
        """Time is ``now``: every up node silent longer than ``limit`` goes down."""
        changes = []
        for m in self.members.values():
            silent = now - m.last_seen
            if m.state is NodeState.UP and silent > self.limit:
                transition(m, NodeState.DOWN)
                changes.append(Change(
                    m.node, NodeState.DOWN, m.incarnation, f"no heartbeat for {silent:.1f}s"
                ))
        return changes

    def up(self) -> list[str]:
        """The nodes up now, sorted."""
        return sorted(n for n, m in self.members.items() if m.state is NodeState.UP)


__all__ = [
    "INCARNATION_SHIFT",
    "Change",
    "IllegalMove",
    "Member",
    "Membership",
    "NodeState",
    "new_incarnation",
    "serial_base",
    "transition",
]
