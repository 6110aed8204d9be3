"""SPEC section 4 against a real daemon: order, routing, ends, links, in one worker and across.

Placement: host ``t:a`` has one worker and ``t:b`` two, and every scenario runs on ``t:a``;
so a probe on ``t:a`` shares the scenario's worker (same-worker fast path), one on ``t:b``
is on another worker and host (through the router), and one on ``n2@t:a`` is on another node
(the scenario then runs on n1 of a three-node cluster, started only if such a case runs).
Each scenario lives in ``tests/actors/semantics_probes.py`` and returns what it observed.
"""

from __future__ import annotations

import inspect
import json
from typing import Any

import pytest

from actord.core import wire
from actord.testing import Daemon, wait_for
from tests.actors import semantics_probes
from tests.api_support import OTHER_NODE, REMOTE
from tests.cluster_support import module_cluster
from tests.conftest import module_daemon

PROCESSES = {
    f"t:sem.{name}": f"semantics_probes:{name}"
    for name, fn in vars(semantics_probes).items()
    if inspect.iscoroutinefunction(fn) and fn.__module__ == semantics_probes.__name__
}

SAME, OTHER = "t:a", "t:b"
PLACES = pytest.mark.parametrize(
    "host", [SAME, OTHER, pytest.param(OTHER_NODE, marks=REMOTE)],
    ids=["same-worker", "other-host", "other-node"],
)


@pytest.fixture(scope="module")
def single(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Any:
    yield from module_daemon(request, tmp_path_factory, PROCESSES)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Nodes n1, n2, n3 for the other-node cases (started only if one runs)."""
    yield from module_cluster(tmp_path_factory, PROCESSES, left=0)


def run(daemon: Daemon, name: str, *args: Any) -> Any:
    """Exec scenario ``name`` on ``t:a`` and return its value."""
    return daemon.exec(f"t:sem.{name}", SAME, *args)


# -- 4.1 order, nothing lost or duplicated --------------------------------------------------------
@PLACES
@pytest.mark.parametrize("how", ["return", "raise"])
def test_messages_then_exit_in_order(daemon: Daemon, host: str, how: str) -> None:
    """N numbered messages then an end: when EXIT (then LINK_DOWN) arrives, all N are queued."""
    r = run(daemon, "scenario_order_then_exit", host, 300, how)
    assert r["payloads"] == list(range(300)) and r["from_child"]
    child = r["child"]
    if how == "return":
        assert r["events"] == [["pid.exit", child, {"value": 300}]]
    else:
        err = {"error": "RuntimeError: after 300"}
        assert r["events"] == [["pid.exit", child, err], ["pid.link.down", child, err]]
    assert r["extra"] == 0


@PLACES
def test_an_exec_childs_messages_come_before_its_result(daemon: Daemon, host: str) -> None:
    """An exec child that sends N messages to its caller and returns: when exec returns, all
    N are queued, in order (across nodes: the result waits behind the child's batches)."""
    assert run(daemon, "scenario_exec_messages_first", host, 3000) == {"n": 3000,
                                                                        "in_order": True}


@PLACES
def test_messages_listen_and_events_keep_order(daemon: Daemon, host: str) -> None:
    """Messages on a listen topic, on the inbox and CANCELs from one sender arrive in order."""
    r = run(daemon, "scenario_mixed_order", host, 60)
    assert r == {"value": {"violations": [], "taken": True}}


@pytest.mark.parametrize("hosts", [
    [SAME, OTHER, OTHER, SAME],
    pytest.param([SAME, OTHER_NODE, OTHER, "n3@t:b"], marks=REMOTE),
], ids=["one-node", "three-nodes"])
def test_many_senders_nothing_lost_or_duplicated(daemon: Daemon, hosts: list[str]) -> None:
    """Four senders (same worker, other host, other nodes) flood one receiver: each stream
    intact, in order."""
    r = run(daemon, "scenario_many_senders", hosts, 2000)
    assert r == {"in_order": True, "counts": {f"s{i}": 2000 for i in range(4)}, "late": 0}


# -- 4.1 causality for names ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("reg_hosts", "checker", "relay"),
    [([SAME], SAME, SAME), ([OTHER], SAME, OTHER), ([SAME, OTHER], OTHER, SAME)],
    ids=["same-worker", "registrant-elsewhere", "checker-elsewhere"],
)
def test_registered_name_resolves_for_whoever_hears_of_it(
    daemon: Daemon, reg_hosts: list[str], checker: str, relay: str
) -> None:
    """Told of a name (directly or via a relay) after register/unregister returned: it resolves."""
    rows = run(daemon, "scenario_name_causality", reg_hosts, checker, relay, 20)
    assert len(rows) == 40
    assert [name for name, ok in rows if not ok] == []


# -- 4.2 routing inside the receiver --------------------------------------------------------------
@PLACES
def test_messages_held_until_channels_exist(daemon: Daemon, host: str) -> None:
    """Held messages go to listen(t) / inbox() as they are created; later ones on arrival."""
    r = run(daemon, "scenario_hold", host)
    assert r == {"value": {
        "a": [1, 4],
        "inbox": [["b", 2], ["c", 3], ["b", 5]],
        "b": [],
        "a2": [6],
        "b2": [7],
        "inbox2": [["c", 8]],
        "events": 0,
    }}


@PLACES
def test_events_only_reach_events(daemon: Daemon, host: str) -> None:
    """An EXIT goes to events() only; a message whose topic is "pid.exit" stays a message."""
    r = run(daemon, "scenario_events_only", host)
    assert r["event"][:2] == ["pid.exit", True] and r["event"][2] == {"value": 42}
    assert r["inbox"] == 0 and r["listen"] == 0
    assert r["message"] == ["pid.exit", "not an event", 0]


def test_mailbox_depth_in_ps(daemon: Daemon) -> None:
    """`ps --json` counts held and queued messages; receiving them lowers the count."""
    pid = daemon.call("spawn", id="t:sem.drainer", host=OTHER, args=[])
    for i in range(5):
        daemon.call("send", dest=pid, topic="t", values=[i])

    def depth() -> int:
        return next(r["mailbox"] for r in daemon.call("ps") if r["pid"] == pid)

    wait_for(lambda: depth() == 5, what="5 held messages")
    rows = json.loads(daemon.cli("ps", "--json").stdout)
    assert next(r["mailbox"] for r in rows if r["pid"] == pid) == 5
    daemon.call("cancel", dest=pid, reason="3")
    wait_for(lambda: depth() == 2, what="2 messages left")
    daemon.call("cancel", dest=pid, reason="stop")
    wait_for(lambda: all(r["pid"] != pid for r in daemon.call("ps")), what="drainer ended")


# -- 4.3 / 4.4 / 4.5 ends: names, EXIT, LINK_DOWN ------------------------------------------------
ENDS = {
    "return": {"value": "bye"},
    "raise": {"error": "ValueError: boom"},
    "terminate": {"error": "process terminated"},
    "self_terminate": {"error": "process terminated"},
    "cancel_return": {"value": "cancelled"},
    "cancel_deadline": {"error": "cancel deadline exceeded"},
    "link_failure": {"error": "linked process failed"},
}


@PLACES
@pytest.mark.parametrize("how", list(ENDS))
def test_every_end(daemon: Daemon, how: str, host: str) -> None:
    """Names released before any EXIT; one EXIT per monitor; LINK_DOWN iff abnormal."""
    r = run(daemon, "scenario_end", how, host, [SAME, OTHER, OTHER])
    result = ENDS[how]
    abnormal = wire.is_abnormal(result)
    assert r["target"] == [result]
    assert set(r["names_at_exit"].values()) == {None}
    plain_end = "linked process failed" if abnormal else "process terminated"
    assert r["plain"] == [{"error": plain_end}]
    for i, (watcher_exit,) in enumerate(r["watchers"]):
        trapped = i % 2 == 1
        seen = watcher_exit["value"]
        assert set(seen["names_at_exit"].values()) == {None}, seen
        kinds = [row[0] for row in seen["events"]]
        assert kinds == (["pid.exit", "pid.link.down"] if trapped and abnormal else ["pid.exit"])
        assert all(row[2] == result for row in seen["events"])
        assert seen["extra"] == 0
    assert r["other_exits"] == {} and r["extra_events"] == 0


@pytest.mark.parametrize("hosts", [
    [SAME, OTHER, SAME, OTHER, OTHER],
    # each member spawns the next: node-qualified hosts, so the chain goes n1 n2 n1 n3 n2
    pytest.param(["n1@t:a", OTHER_NODE, "n1@t:b", "n3@t:a", "n2@t:b"], marks=REMOTE),
], ids=["one-node", "three-nodes"])
@pytest.mark.parametrize("fail_at", [0, 2], ids=["head", "middle"])
def test_untrapped_link_failure_cascades_across_workers(
    daemon: Daemon, fail_at: int, hosts: list[str]
) -> None:
    """A chain linked across hosts (and nodes), none calling events(): one failure ends them
    all."""
    r = run(daemon, "scenario_chain", hosts, fail_at)
    exits = r["exits"]
    assert len(exits) == len(hosts)
    for pid, results in exits.items():
        want = "RuntimeError: die" if pid == r["failed"] else "linked process failed"
        assert results == [{"error": want}], (pid, results)


@pytest.mark.parametrize("host", [OTHER, pytest.param(OTHER_NODE, marks=REMOTE)],
                         ids=["other-host", "other-node"])
def test_no_message_after_exit_when_sender_worker_dies(daemon: Daemon, host: str) -> None:
    """A sender whose worker is killed mid-burst: a prefix of its messages, then EXIT, no more."""
    for _ in range(3):
        r = run(daemon, "scenario_crash_order", host, 20_000)
        assert r["exit"] == ["pid.exit", r["child"], {"error": "worker crashed"}]
        assert r["prefix"], r
        assert r["after"] == [0], r


def test_nothing_left_behind(daemon: Daemon) -> None:
    """After every scenario (and a worker crash) no process is left and no name is held."""
    wait_for(lambda: daemon.call("status")["processes"] == 0, what="no process left")
    assert daemon.call("registry") == {}


@PLACES
def test_two_cancels_with_past_deadlines_in_one_batch(daemon: Daemon, host: str) -> None:
    """Two CANCELs whose deadline has passed, handled together, end the target with "cancel
    deadline exceeded" and leave its worker alive (a regression found by scripts/chaos.py)."""
    restarts = sum(w["restarts"] for w in daemon.workers())
    result = run(daemon, "double_cancel_past_deadline", host)
    assert result == {"error": "cancel deadline exceeded"}
    assert sum(w["restarts"] for w in daemon.workers()) == restarts
