"""actord.core.nodes: the membership state machine, by table and against a model."""

from __future__ import annotations

import random

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from actord.core.nodes import (
    INCARNATION_SHIFT,
    Change,
    IllegalMove,
    Member,
    Membership,
    NodeState,
    new_incarnation,
    serial_base,
    transition,
)

UP, DOWN = NodeState.UP, NodeState.DOWN


def test_first_heartbeat_brings_a_node_up() -> None:
    """A node never heard of is up at its first heartbeat; our own heartbeat is ignored."""
    t = Membership("n1", limit=1.25)
    assert t.heard("n1", 5, 0, 0.0) == []
    assert t.heard("n2", 7, 3, 0.0) == [Change("n2", UP, 7)]
    assert t.up() == ["n2"] and t.members["n2"].processes == 3


def test_silence_longer_than_the_limit_is_down_and_shorter_is_nothing() -> None:
    """Silent for exactly the limit: still up; a moment past it: down, saying how long."""
    t = Membership("n1", limit=1.25)
    t.heard("n2", 7, 0, 10.0)
    assert t.tick(11.25) == []
    assert t.tick(11.4) == [Change("n2", DOWN, 7, "no heartbeat for 1.4s")]
    assert t.tick(20.0) == []  # declared once


def test_late_heartbeat_of_an_old_incarnation_is_refused() -> None:
    """A frame of an earlier run changes nothing and is counted as stale."""
    t = Membership("n1", limit=1.0)
    t.heard("n2", 9, 0, 0.0)
    assert t.heard("n2", 8, 0, 0.5) == []
    assert t.stale == 1 and t.members["n2"].last_seen == 0.0


def test_a_newer_incarnation_of_an_up_node_is_a_restart() -> None:
    """Restarted faster than the timeout: the old run goes down, then the new one comes up."""
    t = Membership("n1", limit=1.0)
    t.heard("n2", 9, 0, 0.0)
    assert t.heard("n2", 12, 0, 0.2) == [Change("n2", DOWN, 9, "restarted"), Change("n2", UP, 12)]
    assert t.members["n2"].meeting == 2


def test_a_down_node_heard_again_is_a_fresh_member() -> None:
    """After a cut heals (same incarnation), the node is up again as a new meeting."""
    t = Membership("n1", limit=1.0)
    t.heard("n2", 9, 0, 0.0)
    t.tick(2.0)
    assert t.heard("n2", 9, 0, 3.0) == [Change("n2", UP, 9)]
    assert t.members["n2"].meeting == 2


@pytest.mark.parametrize(("frm", "to", "ok"), [
    (None, UP, True), (None, DOWN, False), (UP, DOWN, True), (UP, UP, False),
    (DOWN, UP, True), (DOWN, DOWN, False),
])
def test_transition_refuses_illegal_moves(frm: NodeState | None, to: NodeState, ok: bool) -> None:
    """Only the moves of the diagram are legal."""
    member = None if frm is None else Member("n2", frm, 1, 0.0)
    if ok:
        transition(member, to)
        assert member is None or member.state is to
    else:
        with pytest.raises(IllegalMove):
            transition(member, to)


def test_incarnations_and_serial_bases_grow_with_the_start_time() -> None:
    """A run started a millisecond later has a larger incarnation and a base 2**20 higher."""
    rng = random.Random(1)
    a, b = new_incarnation(1000.0, rng), new_incarnation(1000.001, rng)
    assert b > a
    assert serial_base(b) - serial_base(a) == 1 << INCARNATION_SHIFT
    assert serial_base(a) <= a < serial_base(a) + (1 << INCARNATION_SHIFT)


NODES = ["n2", "n3", "n4"]
LIMIT = 1.0


class MembershipMachine(RuleBasedStateMachine):
    """Membership against a model: last heartbeat time, incarnation and up/down per node."""

    def __init__(self) -> None:
        super().__init__()
        self.t = Membership("n1", LIMIT)
        self.now = 0.0
        self.model: dict[str, tuple[int, float, bool, int]] = {}  # inc, seen, up, meeting

    @rule(dt=st.floats(0.0, 2.0))
    def time_passes(self, dt: float) -> None:
        self.now += dt

    @rule(node=st.sampled_from(NODES), inc=st.integers(1, 4), processes=st.integers(0, 9))
    def heartbeat(self, node: str, inc: int, processes: int) -> None:
        changes = self.t.heard(node, inc, processes, self.now)
        old = self.model.get(node)
        if old is None:
            assert changes == [Change(node, UP, inc)]
            self.model[node] = (inc, self.now, True, 1)
        elif inc < old[0]:
            assert changes == []
        else:
            _, _, was_up, meeting = old
            expected = []
            if was_up and inc > old[0]:
                expected.append(Change(node, DOWN, old[0], "restarted"))
            if not was_up or inc > old[0]:
                expected.append(Change(node, UP, inc))
                meeting += 1
            assert changes == expected
            self.model[node] = (inc, self.now, True, meeting)

    @rule()
    def tick(self) -> None:
        changes = self.t.tick(self.now)
        expected = set()
        for node, (inc, seen, up, meeting) in self.model.items():
            if up and self.now - seen > LIMIT:
                expected.add((node, inc))
                self.model[node] = (inc, seen, False, meeting)
        assert {(c.node, c.incarnation) for c in changes} == expected
        assert all(c.state is DOWN for c in changes)

    @invariant()
    def states_match_the_model(self) -> None:
        for node, (inc, _, up, meeting) in self.model.items():
            m = self.t.members[node]
            assert (m.state is UP) == up and m.incarnation == inc and m.meeting == meeting
        assert self.t.up() == sorted(n for n, v in self.model.items() if v[2])


TestMembershipMachine = MembershipMachine.TestCase
TestMembershipMachine.settings = settings(max_examples=120, stateful_step_count=40, deadline=None)
