"""Specification of actord.core.registry: one holder per name, names released on exit."""

from __future__ import annotations

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from actord.core.registry import Registry
from actord.errors import AlreadyExistsError

# -- examples --------------------------------------------------------------------------------


def test_register_then_lookup() -> None:
    """A registered name resolves to its PID; an unknown name resolves to None."""
    r = Registry()
    assert r.register("db", "p1") is True
    assert r.lookup("db") == "p1"
    assert r.lookup("nope") is None


def test_register_same_name_same_pid_is_a_noop() -> None:
    """Registering a name again for its holder returns False and changes nothing."""
    r = Registry()
    r.register("db", "p1")
    assert r.register("db", "p1") is False
    assert r.snapshot() == {"db": "p1"}
    assert r.names_of("p1") == ("db",)


def test_register_name_held_by_another_pid_raises() -> None:
    """A name held by another PID is ALREADY_EXISTS and stays with its holder."""
    r = Registry()
    r.register("db", "p1")
    with pytest.raises(AlreadyExistsError) as info:
        r.register("db", "p2")
    assert info.value.kind == "ALREADY_EXISTS"
    assert r.lookup("db") == "p1"
    assert r.names_of("p2") == ()


def test_unregister_is_idempotent() -> None:
    """unregister returns True once, then False; the name is then free for anyone."""
    r = Registry()
    r.register("db", "p1")
    assert r.unregister("db") is True
    assert r.unregister("db") is False
    assert r.names_of("p1") == ()
    assert r.register("db", "p2") is True


def test_release_returns_names_in_registration_order() -> None:
    """release removes every name of a PID and returns them in registration order."""
    r = Registry()
    r.register("b", "p1")
    r.register("x", "p2")
    r.register("a", "p1")
    assert r.names_of("p1") == ("b", "a")
    assert r.release("p1") == ("b", "a")
    assert r.snapshot() == {"x": "p2"}
    assert r.release("p1") == ()
    assert len(r) == 1


def test_snapshot_is_a_copy() -> None:
    """Mutating a snapshot does not change the registry."""
    r = Registry()
    r.register("db", "p1")
    snap = r.snapshot()
    snap["db"] = "p9"
    snap["other"] = "p9"
    assert r.snapshot() == {"db": "p1"}


def test_len_counts_names() -> None:
    """len is the number of registered names, not of PIDs."""
    r = Registry()
    r.register("a", "p1")
    r.register("b", "p1")
    r.register("c", "p2")
    assert len(r) == 3


# -- property test against a naive model ------------------------------------------------------

NAMES = ("n0", "n1", "n2", "n3", "n4")
MAX_ALIVE = 4


class RegistryMachine(RuleBasedStateMachine):
    """Random register/unregister/exit traffic, checked against a plain insertion-ordered dict."""

    def __init__(self) -> None:
        super().__init__()
        self.registry = Registry()
        self.serial = 0
        self.alive: list[str] = []
        self.dead: list[str] = []
        self.model: dict[str, str] = {}  # name -> pid, in registration order

    @precondition(lambda self: len(self.alive) < MAX_ALIVE)
    @rule()
    def spawn(self) -> None:
        self.serial += 1
        self.alive.append(f"p{self.serial}")

    @precondition(lambda self: bool(self.alive))
    @rule(data=st.data(), name=st.sampled_from(NAMES))
    def register(self, data: st.DataObject, name: str) -> None:
        pid = data.draw(st.sampled_from(self.alive), label="pid")
        holder = self.model.get(name)
        if holder is not None and holder != pid:
            with pytest.raises(AlreadyExistsError):
                self.registry.register(name, pid)
            return
        assert self.registry.register(name, pid) is (holder is None)
        self.model[name] = pid

    @rule(name=st.sampled_from(NAMES))
    def unregister(self, name: str) -> None:
        assert self.registry.unregister(name) is (name in self.model)
        self.model.pop(name, None)

    @rule(name=st.sampled_from(NAMES))
    def lookup(self, name: str) -> None:
        assert self.registry.lookup(name) == self.model.get(name)

    @precondition(lambda self: bool(self.alive))
    @rule(data=st.data())
    def exit(self, data: st.DataObject) -> None:
        pid = data.draw(st.sampled_from(self.alive), label="pid")
        expected = tuple(n for n, p in self.model.items() if p == pid)
        assert self.registry.release(pid) == expected
        self.model = {n: p for n, p in self.model.items() if p != pid}
        self.alive.remove(pid)
        self.dead.append(pid)
        assert self.registry.release(pid) == ()

    @invariant()
    def matches_model(self) -> None:
        assert self.registry.snapshot() == self.model
        assert list(self.registry.snapshot()) == list(self.model)
        assert len(self.registry) == len(self.model)
        for pid in self.alive + self.dead:
            assert self.registry.names_of(pid) == tuple(
                n for n, p in self.model.items() if p == pid
            )

    @invariant()
    def no_name_points_at_an_exited_pid(self) -> None:
        assert set(self.registry.snapshot().values()) <= set(self.alive)

    def teardown(self) -> None:
        for pid in list(self.alive):
            self.registry.release(pid)
        assert len(self.registry) == 0  # every name released once every PID has exited


TestRegistryMachine = RegistryMachine.TestCase
TestRegistryMachine.settings = settings(max_examples=120, stateful_step_count=40, deadline=None)
