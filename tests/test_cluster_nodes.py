"""SPEC 11, node failures across links and monitors: kill -9, stalls short and long, a
restarted node, a restarted nats-server, and `global:` names on node down.

A real nats-server (tests/cluster_support.py) and real daemons with ``node_timeout = "1s"``,
fresh for each test (each one kills or stops a node). Probes: ``tests/actors/node_probes.py``.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from actord.client import CommandError
from actord.testing import Daemon, stop_all, wait_for
from tests.api_support import REMOTE
from tests.cluster_support import NatsServer, Running, cluster_config, node_row, up_nodes

PROCESSES = {
    "t:idle": "semantics_probes:idle",
    **{f"t:{name}": f"node_probes:{name}" for name in (
        "watcher", "receiver", "ticker", "counter", "echo", "meet", "old_pid", "global_holder",
        "global_watch", "cancellable", "exec_caller", "pending_call", "round_trip")},
    "t:checker": "cluster_probes:seq_checker",
    "t:sender": "cluster_probes:seq_sender",
    "t:endless": "cluster_probes:endless_sender",
}
NODE_TIMEOUT = 1.0

pytestmark = list(REMOTE)


class Nodes:
    """The nodes a test starts on one nats-server; all stopped at teardown."""

    def __init__(self, tmp_path: Path, nats: NatsServer) -> None:
        self.tmp_path, self.nats = tmp_path, nats
        self.started: list[Daemon] = []

    def start(self, *names: str, run: int = 0) -> list[Daemon]:
        """Start nodes ``names`` (a ``run``-th start gets its own work dir); wait until every
        running node sees every one up."""
        for name in names:
            d = Daemon(self.tmp_path / f"{name}.{run}",
                       cluster_config(name, [self.nats.url], PROCESSES))
            self.started.append(d.start())
        live = self.live()
        wait_for(lambda: all(len(up_nodes(d)) == len(live) for d in live), 10,
                 what="every node up on every node")
        return self.started[-len(names):]

    def live(self) -> list[Daemon]:
        return [d for d in self.started if d.proc is not None and d.proc.poll() is None]


@pytest.fixture
def nodes(tmp_path: Path, nats: NatsServer) -> Iterator[Nodes]:
    ns = Nodes(tmp_path, nats)
    yield ns
    for d in ns.live():
        os.kill(d.pid, signal.SIGCONT)  # a test that failed mid-stall
    stop_all(ns.started)


def state(d: Daemon, node: str) -> str | None:
    """How ``d`` sees ``node`` (up/down), or None if it never heard of it."""
    return {r["node"]: r["state"] for r in d.call("nodes")}.get(node)


def pair_row(d: Daemon, node: str) -> dict[str, Any]:
    """``node``'s row in ``d``'s ``nodes`` (``session``: the pair's, ``breaks``: its count)."""
    return {r["node"]: r for r in d.call("nodes")}[node]  # type: ignore[no-any-return]


def incarnation(d: Daemon, node: str) -> int:
    return int({r["node"]: r["incarnation"] for r in d.call("nodes")}[node])


def watch(d: Daemon, targets: list[str], link: bool, ready: str,
          expect: int | None = None) -> Running:
    """A watcher on ``d`` of ``targets`` (see ``node_probes.watcher``), its edges in place
    when this returns."""
    run = Running(d, "t:watcher", targets, link, ready, expect)
    wait_for(lambda: ready in d.call("registry"), 10, what=f"{ready} watching")
    return run


def finish(d: Daemon, run: Running, name: str) -> Any:
    """Tell the probe registered as ``name`` on ``d`` that the nodes have settled; its value."""
    d.call("send", dest=name, topic="done")
    return run.result()


def down(node: str) -> dict[str, str]:
    return {"error": f"node down: {node}"}


def test_kill9_gives_every_watcher_one_node_down_in_time(nodes: Nodes) -> None:
    """kill -9 of n3: each monitor on n1 and n2 gets one EXIT, each trapping link one
    LINK_DOWN, per process of n3, error "node down: n3", within node_timeout + 1 s."""
    n1, n2, n3 = nodes.start("n1", "n2", "n3")
    targets = [n3.call("spawn", id="t:idle", host="t:a") for _ in range(2)]
    runs = [(d, link, name, watch(d, targets, link, name))
            for d in (n1, n2) for link, name in ((False, "w-mon"), (True, "w-link"))]
    killed = time.time()
    n3.kill9()
    wait_for(lambda: state(n1, "n3") == state(n2, "n3") == "down", NODE_TIMEOUT + 2,
             interval=0.05, what="n3 down on n1 and n2")
    for d, link, name, run in runs:
        out = finish(d, run, name)
        kind = "pid.link.down" if link else "pid.exit"
        assert sorted((r[:3] for r in out["rows"]), key=lambda r: r[1]) == sorted(
            [kind, t, down("n3")] for t in targets), out
        assert out["extra"] == [], out
        late = max(r[3] for r in out["rows"]) - killed
        assert late <= NODE_TIMEOUT + 1, (late, out)
    for d in (n1, n2):
        assert "node n3 down" in d.log()


def test_kill9_ends_exec_calls_both_ways(nodes: Nodes) -> None:
    """kill -9 of n2: an exec from n1 of a child on n2 fails with "node down: n2"; a child on
    n1 of an exec from n2 gets CANCEL "exec cancelled"."""
    n1, n2 = nodes.start("n1", "n2")
    calling = Running(n1, "t:exec_caller", "n2@t:a", "child-on-2")
    n2.call("spawn", id="t:exec_caller", host="t:a", args=["n1@t:a", "child-on-1"])
    wait_for(lambda: "child-on-2" in n2.call("registry") and "child-on-1" in n1.call("registry"),
             10, what="both exec children running")
    child = n1.call("registry")["child-on-1"]
    mon = watch(n1, [child], False, "w-mon")
    n2.kill9()
    out = calling.result()
    assert out["kind"] == "FAILED" and out["error"] == "node down: n2", out
    got = finish(n1, mon, "w-mon")
    assert [r[:3] for r in got["rows"]] == [
        ["pid.exit", child, {"value": ["pid.cancel", "exec cancelled"]}]], got
    assert got["extra"] == [], got


def test_a_stall_shorter_than_node_timeout_breaks_no_edge(nodes: Nodes) -> None:
    """SIGSTOP of n2 for half of node_timeout while n1 sends to a process there: all of it
    arrives in order; n1's monitor of it sees only its normal end, a trapping link nothing."""
    n1, n2 = nodes.start("n1", "n2")
    n = 40
    counter = n2.call("spawn", id="t:counter", host="t:a", args=[n])
    mon = watch(n1, [counter], False, "w-mon")
    lnk = watch(n1, [counter], True, "w-link", expect=0)
    os.kill(n2.pid, signal.SIGSTOP)
    stopped = time.monotonic()
    try:
        for i in range(n // 2):
            n1.call("send", dest=counter, topic="seq", values=[i])
        wait_for(lambda: time.monotonic() - stopped >= NODE_TIMEOUT / 2, NODE_TIMEOUT,
                 what="half of node_timeout")
    finally:
        os.kill(n2.pid, signal.SIGCONT)
    for i in range(n // 2, n):
        n1.call("send", dest=counter, topic="seq", values=[i])
    # past node_timeout + one heartbeat since the stop: a late down would be declared by now
    wait_for(lambda: time.monotonic() - stopped >= NODE_TIMEOUT * 1.5, 2 * NODE_TIMEOUT,
             what="node_timeout * 1.5 since the stop")
    out = finish(n1, mon, "w-mon")
    assert [r[:3] for r in out["rows"]] == [["pid.exit", counter, {"value": list(range(n))}]]
    assert out["extra"] == [], out
    assert finish(n1, lnk, "w-link") == {"rows": [], "extra": []}
    assert state(n1, "n2") == state(n2, "n1") == "up"
    assert " down" not in n1.log() and " down" not in n2.log()


@pytest.mark.parametrize("stall", [0, NODE_TIMEOUT + 0.5], ids=["cont-at-down", "long"])
def test_a_stall_past_node_timeout_is_down_on_both_sides_and_nothing_arrives_late(
    nodes: Nodes, stall: float
) -> None:
    """SIGSTOP of n2 until n1 declares it down (and for ``stall`` s at least) while a process
    on n1 keeps sending to one on n2 (each monitoring the other): both get EXIT "node down:
    <other>", a call pending on n2 fails NOT_FOUND; after SIGCONT the receiver gets nothing
    sent during the stop, nor anything after the EXIT; then the nodes meet afresh."""
    n1, n2 = nodes.start("n1", "n2")
    receiving = Running(n2, "t:receiver")
    receiver = wait_for(lambda: next(
        (p["pid"] for p in n2.call("ps") if p["id"] == "t:receiver"), None), 10, what="receiver")
    target = n2.call("spawn", id="t:cancellable", host="t:a", args=["target"])
    ticking = Running(n1, "t:ticker", receiver)
    sender = wait_for(lambda: next(
        (p["pid"] for p in n1.call("ps") if p["id"] == "t:ticker"), None), 10, what="ticker")
    wait_for(lambda: "receiving" in n2.call("registry"), 10,
             what="both monitors in place, five ticks received")
    stopped = time.time()
    os.kill(n2.pid, signal.SIGSTOP)
    try:
        pending = Running(n1, "t:pending_call", target)  # no answer from a stopped node
        wait_for(lambda: state(n1, "n2") == "down", NODE_TIMEOUT + 2, interval=0.05,
                 what="n2 down on n1")
        ticker = ticking.result()  # it ends on its EXIT of the receiver
        kind, message = pending.result()
        assert kind == "NOT_FOUND" and "node down: n2" in message, (kind, message)
        # at least ``stall`` s: past node_timeout on n2's clock too, or (0) SIGCONT as soon
        # as n1 has declared n2 down, before n2's own node_timeout has passed
        wait_for(lambda: time.time() - stopped >= stall, stall + 1, what=f"a {stall} s stall")
    finally:
        resumed = time.time()
        os.kill(n2.pid, signal.SIGCONT)
    assert ticker["exit"][:3] == ["pid.exit", receiver, down("n2")], ticker
    assert ticker["exit"][3] - stopped <= NODE_TIMEOUT + 1, ticker
    wait_for(lambda: "receiver-exit" in n2.call("registry"), NODE_TIMEOUT + 2,
             what="n2 sees n1 down too: the receiver's EXIT of the ticker")
    wait_for(lambda: state(n1, "n2") == state(n2, "n1") == "up", 10, what="both up again")
    out = finish(n2, receiving, "receiver")
    assert out["exit"][:3] == ["pid.exit", sender, down("n1")], out
    ticks = out["ticks"]
    assert [t[0] for t in ticks] == list(range(len(ticks))), "not an in-order prefix"
    assert len(ticks) >= 5, ticks
    late = [t for t in ticks if t[2] >= resumed]  # [i, sent_at, arrived_at]
    assert late == [], (f"{len(late)} of {ticker['sent']} ticks sent before the cut arrived "
                        f"after SIGCONT (SIGSTOP at {stopped:.3f}, SIGCONT at {resumed:.3f}); "
                        f"first: {late[0]}")
    assert out["after"] == [] and out["extra"] == [], out
    # the pair meets again fresh: new links, monitors and messages work both ways
    for d, host in ((n1, "n2@t:a"), (n2, "n1@t:a")):
        assert d.exec("t:meet", "t:a", host) == {
            "pong": ["pong", 7, True],
            "events": [["pid.exit", True, {"error": "RuntimeError: asked to"}],
                       ["pid.link.down", True, {"error": "RuntimeError: asked to"}]],
        }


def test_a_restarted_nodes_old_pids_are_dead(nodes: Nodes) -> None:
    """A PID of n2's first run, while n2 is down and once it runs again: send is a dead
    letter, monitor and link are NOT_FOUND, `actord kill` of it is NOT_FOUND."""
    n1, n2 = nodes.start("n1", "n2")
    old = n2.call("spawn", id="t:idle", host="t:a")
    first = incarnation(n1, "n2")
    n2.kill9()
    wait_for(lambda: state(n1, "n2") == "down", NODE_TIMEOUT + 2, what="n2 down on n1")
    # a stream to the old PID goes on across the restart: dead letters on n1 (its subject
    # is also a worker's of n2's next run, which must not see a stream begin before it)
    streamer = n1.call("spawn", id="t:endless", host="t:a", args=[old])
    dead = {"send": None, "monitor": "NOT_FOUND", "link": "NOT_FOUND"}
    before = n1.call("status")["dead_letters"]
    assert n1.exec("t:old_pid", "t:a", old) == dead
    assert n1.call("status")["dead_letters"] > before
    (n2,) = nodes.start("n2", run=1)
    assert incarnation(n1, "n2") > first
    streamed = n1.call("status")["dead_letters"]
    wait_for(lambda: n1.call("status")["dead_letters"] > streamed + 10_000, 10,
             what="the stream to the old PID going on after the restart")
    n1.call("kill", dest=streamer)

    def letters() -> int:
        return int(n1.call("status")["dead_letters"] + n2.call("status")["dead_letters"])
    before, breaks = letters(), node_row(n1, "n2")["breaks"]
    assert n1.exec("t:old_pid", "t:a", old) == dead
    wait_for(lambda: letters() == before + 1, 5,
             what="the send to the old PID counted as a dead letter (on n1 or on n2)")
    # never sent to the new run's worker (same subject): no stream begun there, and no fence
    # for it (which that worker would wait for in vain, holding its router's frames, then
    # break the pair): a kill of a new process there, which waits for its EXIT, goes through
    fresh = n1.call("spawn", id="t:idle", host="n2@t:a")
    n1.call("kill", dest=fresh)
    assert node_row(n1, "n2")["breaks"] == breaks and "gap" not in n2.log()
    assert "fence" not in n2.log(), n2.log()
    with pytest.raises(CommandError) as err:
        n1.call("kill", dest=old)
    assert err.value.kind == "NOT_FOUND"
    assert old not in {p["pid"] for p in n2.call("ps")}


def test_a_nats_restart_breaks_the_links_once_and_traffic_resumes(
    nodes: Nodes, nats: NatsServer
) -> None:
    """nats-server stopped and started again on its port: the nodes reconnect; every monitor
    and trapping link across them (frames may have been lost) gets exactly one EXIT /
    LINK_DOWN "node down: <other>", and the untrapped ends of those links die of it; then
    messages, links and monitors work again."""
    n1, n2 = nodes.start("n1", "n2")
    on1 = n1.call("spawn", id="t:idle", host="t:a")
    on2 = n2.call("spawn", id="t:idle", host="t:a")
    runs = [(d, name, watch(d, [t], link, name))
            for d, t, other in ((n1, on2, "2"), (n2, on1, "1"))
            for link, name in ((False, f"mon-{other}"), (True, f"link-{other}"))]
    nats.stop()
    nats.start()
    wait_for(lambda: "cluster: NATS connection lost" in n1.log(), 5, what="n1 saw the cut")
    wait_for(lambda: state(n1, "n2") == state(n2, "n1") == "up", 10, what="both up again")
    for d, name, run in runs:
        other, target = ("n2", on2) if d is n1 else ("n1", on1)
        kind = "pid.link.down" if name.startswith("link") else "pid.exit"
        out = finish(d, run, name)
        assert [r[:3] for r in out["rows"]] == [[kind, target, down(other)]], (name, out)
        assert out["extra"] == [], (name, out)
    # traffic once the breaks have settled: both sides on one session of the pair, and a
    # round trip through it (a batch published before the other node subscribed again is
    # one more gap: that pair breaks again, its batch dropped, never silently)
    wait_for(lambda: (pair_row(n1, "n2")["session"] == pair_row(n2, "n1")["session"] >= 1),
             10, what="one session on both sides")
    wait_for(lambda: n1.exec("t:round_trip", "t:a", "n2@t:a"), 20, interval=0.2,
             what="a round trip n1 -> n2 -> n1")
    n = 200
    checker = n2.call("spawn", id="t:checker", host="t:a", args=[n])
    got = n1.exec("t:sender", "t:a", checker, n)
    assert got["report"] == {"n": n, "in_order": True, "first_bad": None}, got
    assert n1.exec("t:meet", "t:a", "n2@t:a")["events"][0][2] == {
        "error": "RuntimeError: asked to"}
    for d, pid in ((n1, on1), (n2, on2)):  # linked, untrapped, to a watcher across the cut
        wait_for(lambda d=d, pid=pid: pid not in {p["pid"] for p in d.call("ps")}, 5,
                 what=f"{pid} ended by its broken link")


def test_kill9_releases_global_names_before_the_exits(nodes: Nodes) -> None:
    """A `global:` name held on n3: kill -9 of n3 releases it before n1's monitor gets the
    EXIT ("node down: n3"), within node_timeout + 1 s; n1 can claim it then."""
    n1, _n2, n3 = nodes.start("n1", "n2", "n3")
    name = "global:lock-kill9"
    holder = n3.call("spawn", id="t:global_holder", host="t:a", args=[name])
    wait_for(lambda: "holding" in n3.call("registry"), 10, what="the global name claimed")
    watching = Running(n1, "t:global_watch", holder, name)
    wait_for(lambda: "global-watching" in n1.call("registry"), 10, what="n1 watching")
    killed = time.monotonic()
    n3.kill9()
    out = watching.result()
    assert time.monotonic() - killed <= NODE_TIMEOUT + 1.5
    assert out == {"before": True, "exit": ["pid.exit", holder, down("n3")],
                   "at_exit": "NOT_FOUND", "claim": None}, out
