"""Specification of actord.core.topology: who hears of an exit, and that nothing leaks."""

from __future__ import annotations

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from actord.core.topology import Fallout, Topology

# -- examples --------------------------------------------------------------------------------


def test_monitor_twice_is_refused() -> None:
    """A second monitor of the same target by the same watcher returns False."""
    t = Topology()
    assert t.monitor("a", "b") is True
    assert t.monitor("a", "b") is False
    assert t.monitors_of("b") == ("a",)
    assert t.monitoring("a") == ("b",)


def test_unmonitor_is_idempotent() -> None:
    """unmonitor returns True once, then False, and leaves no edge."""
    t = Topology()
    t.monitor("a", "b")
    assert t.unmonitor("a", "b") is True
    assert t.unmonitor("a", "b") is False
    assert t.unmonitor("x", "y") is False
    assert len(t) == 0


def test_exit_notifies_monitors_in_install_order() -> None:
    """Watchers are listed once each, in the order their monitors were installed."""
    t = Topology()
    for watcher in ("c", "a", "b"):
        t.monitor(watcher, "x")
    assert t.exit("x", abnormal=False) == Fallout(monitors=("c", "a", "b"), links=())


def test_remonitor_after_unmonitor_moves_to_the_end() -> None:
    """A monitor removed and installed again counts as installed last."""
    t = Topology()
    t.monitor("a", "x")
    t.monitor("b", "x")
    t.unmonitor("a", "x")
    t.monitor("a", "x")
    assert t.exit("x", abnormal=False).monitors == ("b", "a")


def test_unmonitor_then_exit_sends_no_exit() -> None:
    """A watcher that unmonitored before the exit is not notified."""
    t = Topology()
    t.monitor("a", "x")
    t.monitor("b", "x")
    t.unmonitor("a", "x")
    assert t.exit("x", abnormal=True).monitors == ("b",)


@pytest.mark.parametrize(
    ("abnormal", "expected_links"),
    [(False, ()), (True, ("b", "c"))],
    ids=["normal-no-link-down", "abnormal-link-down"],
)
def test_link_down_only_on_abnormal_exit(abnormal: bool, expected_links: tuple[str, ...]) -> None:
    """Partners get LINK_DOWN only when the exit is abnormal; the links go either way."""
    t = Topology()
    t.link("a", "b")
    t.link("c", "a")
    assert t.exit("a", abnormal).links == expected_links
    assert t.links_of("b") == ()
    assert t.links_of("c") == ()
    assert len(t) == 0


def test_link_is_bidirectional_and_idempotent() -> None:
    """Linking twice (either direction) is a no-op; both ends see the link."""
    t = Topology()
    assert t.link("a", "b") is True
    assert t.link("a", "b") is False
    assert t.link("b", "a") is False
    assert t.links_of("a") == ("b",)
    assert t.links_of("b") == ("a",)


def test_self_link_is_a_noop() -> None:
    """link(a, a) returns False and records nothing."""
    t = Topology()
    assert t.link("a", "a") is False
    assert t.unlink("a", "a") is False
    assert len(t) == 0


def test_unlink_is_idempotent_from_either_end() -> None:
    """unlink works from either end, returns True once, then False."""
    t = Topology()
    t.link("a", "b")
    assert t.unlink("b", "a") is True
    assert t.unlink("a", "b") is False
    assert len(t) == 0


def test_self_monitor_appears_in_its_own_fallout() -> None:
    """A PID monitoring itself is listed among its watchers and leaves no edge behind."""
    t = Topology()
    assert t.monitor("a", "a") is True
    t.monitor("b", "a")
    assert t.exit("a", abnormal=False).monitors == ("a", "b")
    assert len(t) == 0


def test_exit_removes_the_pids_own_monitors() -> None:
    """An exiting watcher's monitors of others are removed; the targets are not notified."""
    t = Topology()
    t.monitor("a", "x")
    t.monitor("a", "y")
    t.monitor("b", "x")
    assert t.exit("a", abnormal=True) == Fallout()
    assert t.monitors_of("x") == ("b",)
    assert t.monitors_of("y") == ()
    assert t.monitoring("a") == ()


def test_second_exit_is_empty() -> None:
    """Exiting the same PID twice yields nothing the second time."""
    t = Topology()
    t.monitor("a", "x")
    t.link("b", "x")
    assert t.exit("x", abnormal=True) == Fallout(monitors=("a",), links=("b",))
    assert t.exit("x", abnormal=True) == Fallout()
    assert t.exit("never-seen", abnormal=True) == Fallout()


def test_len_counts_pids_with_any_edge() -> None:
    """len is the number of distinct PIDs on any edge, and 0 after every PID exits."""
    t = Topology()
    t.monitor("a", "b")
    t.link("b", "c")
    t.monitor("d", "d")
    assert len(t) == 4
    for pid in "abcd":
        t.exit(pid, abnormal=True)
    assert len(t) == 0


# -- property test against a naive model ------------------------------------------------------

MAX_ALIVE = 6


class TopologyMachine(RuleBasedStateMachine):
    """Random monitor/link/exit traffic among live PIDs, checked against sets of pairs."""

    def __init__(self) -> None:
        super().__init__()
        self.topology = Topology()
        self.serial = 0
        self.alive: list[str] = []
        self.dead: list[str] = []
        # the model: insertion-ordered sets of (watcher, target) pairs and of link pairs
        self.monitors: dict[tuple[str, str], None] = {}
        self.links: dict[frozenset[str], None] = {}

    def _pids(self) -> list[str]:
        return self.alive + self.dead

    @precondition(lambda self: len(self.alive) < MAX_ALIVE)
    @rule()
    def spawn(self) -> None:
        self.serial += 1
        self.alive.append(f"p{self.serial}")

    @precondition(lambda self: bool(self.alive))
    @rule(data=st.data())
    def monitor(self, data: st.DataObject) -> None:
        watcher = data.draw(st.sampled_from(self.alive), label="watcher")
        target = data.draw(st.sampled_from(self.alive), label="target")
        expected = (watcher, target) not in self.monitors
        assert self.topology.monitor(watcher, target) is expected
        self.monitors[(watcher, target)] = None

    @precondition(lambda self: bool(self.alive))
    @rule(data=st.data())
    def unmonitor(self, data: st.DataObject) -> None:
        watcher = data.draw(st.sampled_from(self._pids()), label="watcher")
        target = data.draw(st.sampled_from(self._pids()), label="target")
        expected = (watcher, target) in self.monitors
        assert self.topology.unmonitor(watcher, target) is expected
        self.monitors.pop((watcher, target), None)

    @precondition(lambda self: bool(self.alive))
    @rule(data=st.data())
    def link(self, data: st.DataObject) -> None:
        a = data.draw(st.sampled_from(self.alive), label="a")
        b = data.draw(st.sampled_from(self.alive), label="b")
        pair = frozenset((a, b))
        expected = a != b and pair not in self.links
        assert self.topology.link(a, b) is expected
        if a != b:
            self.links[pair] = None

    @precondition(lambda self: bool(self.alive))
    @rule(data=st.data())
    def unlink(self, data: st.DataObject) -> None:
        a = data.draw(st.sampled_from(self._pids()), label="a")
        b = data.draw(st.sampled_from(self._pids()), label="b")
        pair = frozenset((a, b))
        expected = a != b and pair in self.links
        assert self.topology.unlink(a, b) is expected
        self.links.pop(pair, None)

    @precondition(lambda self: bool(self.alive))
    @rule(data=st.data(), abnormal=st.booleans())
    def exit(self, data: st.DataObject, abnormal: bool) -> None:
        pid = data.draw(st.sampled_from(self.alive), label="pid")
        self._exit_and_check(pid, abnormal)

    @precondition(lambda self: bool(self.dead))
    @rule(data=st.data(), abnormal=st.booleans())
    def exit_again(self, data: st.DataObject, abnormal: bool) -> None:
        pid = data.draw(st.sampled_from(self.dead), label="pid")
        assert self.topology.exit(pid, abnormal) == Fallout()

    @precondition(lambda self: bool(self.alive))
    @rule(abnormal=st.booleans())
    def exit_everyone(self, abnormal: bool) -> None:
        for pid in list(self.alive):
            self._exit_and_check(pid, abnormal)
        assert len(self.topology) == 0

    def _exit_and_check(self, pid: str, abnormal: bool) -> None:
        expected_monitors = tuple(w for (w, t) in self.monitors if t == pid)
        expected_links = tuple(_other(pair, pid) for pair in self.links if pid in pair)
        fallout = self.topology.exit(pid, abnormal)
        # exactly one EXIT per installed monitor, in install order
        assert fallout.monitors == expected_monitors
        assert len(set(fallout.monitors)) == len(fallout.monitors)
        # LINK_DOWN only on abnormal exit, once per partner
        assert fallout.links == (expected_links if abnormal else ())
        assert len(set(fallout.links)) == len(fallout.links)
        # every edge touching pid is gone, on both sides
        self.monitors = {m: None for m in self.monitors if pid not in m}
        self.links = {pair: None for pair in self.links if pid not in pair}
        self.alive.remove(pid)
        self.dead.append(pid)
        for other in self._pids():
            assert pid not in self.topology.monitors_of(other)
            assert pid not in self.topology.monitoring(other)
            assert pid not in self.topology.links_of(other)
        # a second exit yields nothing
        assert self.topology.exit(pid, abnormal=True) == Fallout()

    @invariant()
    def matches_model(self) -> None:
        for pid in self._pids():
            assert self.topology.monitors_of(pid) == tuple(
                w for (w, t) in self.monitors if t == pid
            )
            assert self.topology.monitoring(pid) == tuple(t for (w, t) in self.monitors if w == pid)
            assert self.topology.links_of(pid) == tuple(
                _other(pair, pid) for pair in self.links if pid in pair
            )

    @invariant()
    def len_counts_pids_with_edges(self) -> None:
        on_edges = {p for pair in self.monitors for p in pair} | {
            p for pair in self.links for p in pair
        }
        assert len(self.topology) == len(on_edges)
        assert on_edges <= set(self.alive)  # no edge mentions an exited PID

    def teardown(self) -> None:
        for pid in list(self.alive):
            self.topology.exit(pid, abnormal=True)
        assert len(self.topology) == 0  # no leaks once every PID has exited


def _other(pair: frozenset[str], pid: str) -> str:
    (other,) = pair - {pid}
    return other


TestTopologyMachine = TopologyMachine.TestCase
TestTopologyMachine.settings = settings(max_examples=120, stateful_step_count=40, deadline=None)
