"""SPEC 11's data path: messages between nodes go worker to worker (actord/core/direct.py).

A real nats-server and two real daemons with ``node_timeout = "1s"``. The test plays a
misbehaving worker of n1 by publishing on an n2 worker's subject (nats-py), and kills a real
worker with SIGKILL while it streams to another node.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actord.core import wire
from actord.core.direct import INSTANCE_BITS, encode_direct, instance_of, serial_of
from actord.testing import Daemon, wait_for
from tests.cluster_support import (
    NatsServer,
    cluster_config,
    exec_in_thread,
    kill_sender_while_receiver_stopped,
    node_row,
    publish,
    running_pair,
)

PROCESSES = {
    "t:checker": "cluster_probes:seq_checker",
    "t:sender": "cluster_probes:seq_sender",
    "t:one": "cluster_probes:one_message",
    "t:endless": "cluster_probes:endless_sender",
    "t:watch": "cluster_probes:watch_stream",
    "t:tally": "cluster_probes:last_tally",
}

row = node_row


@pytest.fixture
def pair(tmp_path: Path, nats: NatsServer) -> Iterator[tuple[Daemon, Daemon]]:
    """Nodes n1 and n2, each seeing the other up."""
    yield from running_pair(tmp_path, lambda n: cluster_config(n, [nats.url], PROCESSES))


def worker_pids(d: Daemon) -> set[int]:
    return {w["os_pid"] for h in d.call("status")["hosts"] for w in h["workers"]}


def router_rows(d: Daemon) -> dict[str, dict[str, Any]]:
    """`status`'s node rows: the router's own counts, without its workers' (`nodes` adds
    those)."""
    return {r["node"]: r for r in d.call("status")["cluster"]["nodes"]}


def header(n1: Daemon, n2: Daemon) -> tuple[int, int, int]:
    """(n1's incarnation, n2's, their session) as n2 has them."""
    return row(n2, "n1")["incarnation"], row(n2, "n2")["incarnation"], row(n2, "n1")["session"]


def test_messages_cross_worker_to_worker_not_through_the_routers(
    pair: tuple[Daemon, Daemon]
) -> None:
    """1,000 messages n1 -> n2 and the report back: `nodes` counts them (its workers'), the
    routers' own node links carried next to none of them."""
    n1, n2 = pair
    n = 1000
    checker = n2.call("spawn", id="t:checker", host="t:a", args=[n])
    got = n1.exec("t:sender", "t:a", checker, n, timeout=30)
    assert got["report"] == {"n": n, "in_order": True, "first_bad": None}, got
    assert row(n1, "n2")["sent"] >= n and row(n2, "n1")["received"] >= n
    # the routers carried the spawn, the exec's calls and EXITEDs: a handful of frames
    assert router_rows(n1)["n2"]["sent"] < 20 and router_rows(n2)["n1"]["received"] < 20
    assert row(n2, "n1")["gaps"] == 0 and row(n2, "n2")["malformed"] == 0


def test_a_gap_on_a_workers_subject_breaks_the_pair_and_a_stale_batch_is_dropped(
    pair: tuple[Daemon, Daemon], nats: NatsServer
) -> None:
    """A batch (the test playing a worker of n1) that skips seqs: the pair breaks on both
    sides (one log line naming the worker and the gap); one of the session before the break
    is dropped and counted; real traffic goes on after both."""
    n1, n2 = pair
    probe = n2.call("spawn", id="t:checker", host="t:a", args=[1])
    subject = f"t.w.n2.{instance_of(probe)}"
    inc1, inc2, session = header(n1, n2)
    run = ["{n2@t:a|0x00001}", "{n1@t:a|0x00001}", "t", msgpack.packb(1)]
    publish(nats.url, subject, encode_direct("n1", inc1, inc2, session, 4000, 5, [run]))
    wait_for(lambda: row(n2, "n1")["gaps"] >= 1, 5, what="the gap counted")
    assert "pair with n1 broken (worker t:a/0: gap: batch 5 from worker 4000, expected 0)" \
        in n2.log(), n2.log()
    wait_for(lambda: row(n1, "n2")["session"] == row(n2, "n1")["session"] > session, 5,
             what="n1 at n2's new session")
    stale_before = row(n2, "n1")["stale"]
    publish(nats.url, subject, encode_direct("n1", inc1, inc2, session, 4000, 0, [run]))
    wait_for(lambda: row(n2, "n1")["stale"] > stale_before, 5, what="the stale batch counted")
    n2.call("send", dest=probe, topic="seq", payload=0)  # the probe may end
    checker = n2.call("spawn", id="t:checker", host="t:a", args=[10])
    got = n1.exec("t:sender", "t:a", checker, 10, timeout=30)
    assert got["report"]["in_order"] and got["report"]["n"] == 10


def test_a_message_that_comes_before_its_receivers_start_waits_for_it(
    pair: tuple[Daemon, Daemon], nats: NatsServer
) -> None:
    """A message for the next PID of n2's worker (its START not sent yet, as when a batch
    overtakes the router's START) waits in the worker and is the process's first message."""
    n1, n2 = pair
    last = n2.call("spawn", id="t:checker", host="t:a", args=[1])
    serial = serial_of(last)
    upcoming = "{n2@t:a|0x%05x}" % (((serial >> INSTANCE_BITS) + 1) << INSTANCE_BITS
                                     | instance_of(last))
    inc1, inc2, session = header(n1, n2)
    sender = "{n1@t:a|0x00007}"
    publish(nats.url, f"t.w.n2.{instance_of(last)}", encode_direct(
        "n1", inc1, inc2, session, 4001, 0, [[upcoming, sender, "early", msgpack.packb(42)]]))
    thread, out = exec_in_thread(n2, "t:one")
    thread.join(25)
    assert out and out[0]["pid"] == upcoming, out
    assert out[0]["value"] == ["early", 42, sender], out
    n2.call("send", dest=last, topic="seq", payload=0)


_text = st.text(max_size=12)
_pidish = st.one_of(_text, st.sampled_from(["{n2@t:a|0x01001}", "{n1@t:a|0x00001}"]))
_run = st.one_of(
    st.lists(st.one_of(_pidish, st.binary(max_size=8), st.integers(), st.none()),
             max_size=6),
    st.tuples(_pidish, _pidish, _text, st.binary(max_size=8)).map(list),
    st.integers(), st.binary(max_size=8),
)


def test_batches_fuzzed_on_a_workers_subject_never_crash_the_worker(
    pair: tuple[Daemon, Daemon], nats: NatsServer
) -> None:
    """Batches as a worker of n1 with any runs (hypothesis), on n2's worker's subject, and
    bytes that are no batch: the worker lives on (same OS pid, its router answers), malformed
    ones are counted and break the pair, and n1 and n2 still talk after."""
    import nats as nats_py

    n1, n2 = pair
    probe = n2.call("spawn", id="t:checker", host="t:a", args=[1])
    subject = f"t.w.n2.{instance_of(probe)}"
    workers = worker_pids(n2)
    inc1, inc2, _ = header(n1, n2)
    loop = asyncio.new_event_loop()
    nc = loop.run_until_complete(nats_py.connect(nats.url))
    seqs = iter(range(10**9))

    @settings(max_examples=120, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
    @given(st.lists(_run, max_size=4), st.integers(0, 3), st.booleans())
    def one(runs: list[Any], session: int, header_ok: bool) -> None:
        try:
            data = (encode_direct("n1", inc1, inc2, session, 4002, next(seqs), runs)
                    if header_ok else msgpack.packb(runs))
        except (TypeError, ValueError, OverflowError):
            return
        loop.run_until_complete(nc.publish(subject, data))
        loop.run_until_complete(nc.flush())
        assert n2.call("ping") is not None

    try:
        one()
        loop.run_until_complete(nc.publish(subject, b"\xc1\x00garbage"))
        loop.run_until_complete(nc.close())
    finally:
        loop.close()
    assert worker_pids(n2) == workers
    assert row(n2, "n2")["malformed"] > 0 and row(n2, "n1")["breaks"] > 0
    assert "Traceback" not in n2.log()
    n2.call("send", dest=probe, topic="seq", payload=0)
    checker = n2.call("spawn", id="t:checker", host="t:a", args=[10])
    got = n1.exec("t:sender", "t:a", checker, 10, timeout=30)
    assert got["report"]["in_order"] and got["report"]["n"] == 10


def test_kill9_of_a_streaming_worker_ends_its_stream_before_its_exit(
    pair: tuple[Daemon, Daemon]
) -> None:
    """A process on n1 streams to a watcher on n2 that monitors it; its worker is SIGKILLed:
    the watcher gets every message it got in order, then exactly one EXIT ("worker
    crashed"), and nothing after it (batches of the dead worker still on their way are
    dropped: its router said GONE before the EXITED)."""
    n1, n2 = pair
    thread, out = exec_in_thread(n2, "t:watch", 1.0)
    watcher = wait_for(lambda: next((p["pid"] for p in n2.call("ps") if p["id"] == "t:watch"),
                                    None), 10, what="the watcher running")
    n1.call("spawn", id="t:endless", host="t:a", args=[watcher])
    wait_for(lambda: n2.call("info", dest=watcher)["received"] > 2000, 10,
             what="the stream flowing")
    (worker,) = worker_pids(n1)
    os.kill(worker, signal.SIGKILL)
    thread.join(25)
    assert out, "the watcher did not return"
    r = out[0]["value"]
    assert r["in_order"] and r["n"] > 2000, r
    assert r["exit"][0] == wire.EV_EXIT and r["exit"][2] == {"error": "worker crashed"}, r
    assert r["late"] == 0, r


@pytest.fixture
def two_hosts(tmp_path: Path, nats: NatsServer) -> Iterator[tuple[Daemon, Daemon]]:
    """Nodes n1 and n2, each with hosts t:a and t:b of one worker each."""
    yield from running_pair(tmp_path, lambda n: cluster_config(
        n, [nats.url], PROCESSES, hosts={"t:a": 1, "t:b": 1}))


def test_a_killed_workers_messages_already_published_reach_a_stopped_receiver(
    two_hosts: tuple[Daemon, Daemon]
) -> None:
    """n1's streaming process S is SIGKILLed with its worker while the worker of its
    receiver W on n2 is SIGSTOPped: when W's worker runs again, the router's GONE and S's
    EXIT are in its pipe and S's last batches in its NATS socket. W must take every message
    S had published before its last count reached a tally T on n2's other worker (same
    connection, so those were routed first), then the EXIT: a dead worker's published
    batches are delivered, only those NATS routes after its end are dropped."""
    r, last = kill_sender_while_receiver_stopped(*two_hosts)
    assert r["in_order"] and r["exit"][2] == {"error": "worker crashed"}, r
    assert r["n"] >= last > 2000, (r, last)
    assert r["late"] == 0, r
