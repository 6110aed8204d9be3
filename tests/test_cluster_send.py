"""SPEC 11, second step: messages cross nodes, in order, and a lost frame is never silent.

A real nats-server (tests/cluster_support.py) and two real daemons with ``node_timeout =
"1s"``; frames are published by hand (nats-py) to play a malformed or gapped peer.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actord.core import wire
from actord.core.batches import encode_batch
from actord.testing import Daemon, wait_for
from tests.cluster_support import (
    NatsServer,
    cluster_config,
    exec_in_thread,
    node_row,
    publish,
    running_pair,
)

PROCESSES = {
    "t:idle": "semantics_probes:idle",
    "t:checker": "cluster_probes:seq_checker",
    "t:sender": "cluster_probes:seq_sender",
    "t:one": "cluster_probes:one_message",
    "t:sizes": "cluster_probes:size_checker",
    "t:big": "cluster_probes:size_sender",
}


@pytest.fixture
def pair(tmp_path: Path, nats: NatsServer) -> Iterator[tuple[Daemon, Daemon]]:
    """Nodes n1 and n2, each seeing the other up."""
    yield from running_pair(tmp_path, lambda n: cluster_config(n, [nats.url], PROCESSES))


row = node_row


def dead_letters(d: Daemon) -> int:
    return int(d.call("status")["dead_letters"])


def test_1000_messages_cross_in_order_and_the_report_comes_back(
    pair: tuple[Daemon, Daemon]
) -> None:
    """An actor on n1 sends 1,000 numbered messages to one on n2, which checks order and
    completeness and reports back across the nodes."""
    n1, n2 = pair
    n = 1000
    checker = n2.call("spawn", id="t:checker", host="t:a", args=[n])
    assert checker.startswith("{n2@")
    got = n1.exec("t:sender", "t:a", checker, n, timeout=30)
    assert got["topic"] == "report" and got["from"] == checker, got
    assert got["report"] == {"n": n, "in_order": True, "first_bad": None}, got
    assert row(n1, "n2")["sent"] >= n and row(n2, "n1")["received"] >= n
    assert row(n2, "n1")["gaps"] == row(n1, "n2")["gaps"] == 0
    assert row(n2, "n2")["malformed"] == 0


def test_the_cli_sends_to_a_remote_pid(pair: tuple[Daemon, Daemon]) -> None:
    """`actord send` on n1 to a PID on n2: delivered there, with no sender."""
    n1, n2 = pair
    thread, out = exec_in_thread(n2, "t:one")
    pid = wait_for(lambda: next((p["pid"] for p in n2.call("ps") if p["id"] == "t:one"), None),
                   10, what="t:one running on n2")
    sent = n1.cli("send", pid, "hello", "42")
    assert sent.returncode == 0, sent.stderr
    thread.join(25)
    assert not thread.is_alive() and out, "no exec result"
    assert out[0].get("value") == ["hello", 42, ""], out


def test_sends_to_a_dead_remote_pid_or_a_down_node_are_dead_letters(
    pair: tuple[Daemon, Daemon]
) -> None:
    """A dead PID on n2: a dead letter on n2. An unknown node, or n2 once down: a dead letter
    on n1. No error either way."""
    n1, n2 = pair
    pid = n2.call("spawn", id="t:idle", host="t:a")
    n2.kill(pid)
    before = dead_letters(n2)
    assert n1.cli("send", pid, "x", "1").returncode == 0
    wait_for(lambda: dead_letters(n2) == before + 1, 5, what="the dead letter counted on n2")
    mine = dead_letters(n1)
    assert n1.cli("send", "{n9@t:a|0x00001}", "x").returncode == 0
    assert dead_letters(n1) == mine + 1
    n2.kill9()
    wait_for(lambda: row(n1, "n2")["state"] == "down", 3, what="n2 down on n1")
    n1.call("send", dest=pid, topic="x")
    assert dead_letters(n1) == mine + 2


def test_a_malformed_batch_is_dropped_counted_and_logged_once(
    pair: tuple[Daemon, Daemon], nats: NatsServer
) -> None:
    """Garbage on n2's subject: dropped, counted, one log line; n2 keeps routing."""
    n1, n2 = pair
    inc1, inc2 = row(n2, "n1")["incarnation"], row(n2, "n2")["incarnation"]
    bad = [
        b"\xc1", msgpack.packb({"a": 1}), msgpack.packb(["n1", inc1, inc2]),
        msgpack.packb(["N 1", inc1, inc2, 0, 0]), msgpack.packb(["n1", -1, inc2, 0, 0]),
    ]
    # a well-formed header with a bad frame: the sender is known, so its pair breaks too
    bad_frames = [
        msgpack.packb(["n1", inc1, inc2, 0, 0, [wire.SEND, "{n2@t:a|0x00001}", "", "t", "s"]]),
        msgpack.packb(["n1", inc1, inc2, 0, 0, [wire.SEND, "{n1@t:a|0x00001}", "", "t", b"1"]]),
        msgpack.packb(["n1", inc1, inc2, 0, 0, [99, "{n2@t:a|0x00001}", "", "t", b"\x01"]]),
    ]
    publish(nats.url, "t.node.n2", *bad, *bad_frames)
    wait_for(lambda: row(n2, "n2")["malformed"] == len(bad) + len(bad_frames), 5,
             what="every bad batch counted")
    assert n2.log().count("malformed batch on") == 1, n2.log()
    assert row(n2, "n1")["breaks"] >= 1 and "pair with n1 broken (malformed batch" in n2.log()
    checker = n2.call("spawn", id="t:checker", host="t:a", args=[10])
    got = n1.exec("t:sender", "t:a", checker, 10, timeout=30)
    assert got["report"]["in_order"] and got["report"]["n"] == 10
    assert row(n2, "n1")["gaps"] == 0


def test_a_gap_or_a_stale_batch_is_logged_and_counted(
    pair: tuple[Daemon, Daemon], nats: NatsServer
) -> None:
    """A batch that skips seqs (the test pretending to be n1): one log line, `gaps` counted;
    one from an older incarnation of n1: `stale`, dropped. Traffic goes on after both."""
    n1, n2 = pair
    inc1, inc2 = row(n2, "n1")["incarnation"], row(n2, "n2")["incarnation"]
    session = row(n2, "n1")["session"]
    publish(nats.url, "t.node.n2", encode_batch("n1", inc1, inc2, session, 1_000_000, []))
    wait_for(lambda: row(n2, "n1")["gaps"] == 1, 5, what="the gap counted")
    assert "pair with n1 broken (gap: batch 1000000, expected" in n2.log(), n2.log()
    # n2 told n1 (its next batch or heartbeat): both sides are at the new session
    wait_for(lambda: row(n1, "n2")["session"] == row(n2, "n1")["session"] > session, 5,
             what="n1 at n2's new session")
    stale = encode_batch("n1", inc1 - 1, inc2, 0, 0, [[wire.SEND, "{n2@t:a|0x00001}", "", "t",
                                                       b"\x01"]])
    publish(nats.url, "t.node.n2", stale)
    wait_for(lambda: row(n2, "n1")["stale"] == 1, 5, what="the stale batch counted")
    assert "stale batch from n1" in n2.log()
    checker = n2.call("spawn", id="t:checker", host="t:a", args=[10])
    got = n1.exec("t:sender", "t:a", checker, 10, timeout=30)
    assert got["report"]["in_order"] and got["report"]["n"] == 10


def test_a_lost_last_batch_is_found_from_the_senders_heartbeats(
    pair: tuple[Daemon, Daemon], nats: NatsServer
) -> None:
    """Heartbeats say how many batches were sent in the session: n2 hearing (twice) that n1
    sent more than arrived breaks the pair (one log line, a gap counted), and n1 follows."""
    n1, n2 = pair
    checker = n2.call("spawn", id="t:checker", host="t:a", args=[3])  # the pair meets
    assert n1.exec("t:sender", "t:a", checker, 3, timeout=30)["report"]["n"] == 3
    inc1, inc2 = row(n2, "n1")["incarnation"], row(n2, "n2")["incarnation"]
    session = row(n2, "n1")["session"]
    hb = msgpack.packb({"node": "n1", "incarnation": inc1, "processes": 0, "ts": 0.0,
                        "sessions": {"n2": [inc2, session, 10**6]}})
    # twice in a row (the real n1's heartbeats in between reset the count: try again)
    wait_for(lambda: publish(nats.url, "t.hb", hb, hb) or
             "pair with n1 broken (gap: n1 sent 1000000 batches" in n2.log(), 5,
             what="the gap found on n2")
    assert row(n2, "n1")["gaps"] == 1
    wait_for(lambda: row(n1, "n2")["session"] == row(n2, "n1")["session"] > session, 5,
             what="n1 at n2's new session")


def test_big_messages_are_cut_into_batches_and_one_over_max_payload_is_a_dead_letter(
    pair: tuple[Daemon, Daemon]
) -> None:
    """Three 600 KB messages in one tick go out as several batches (NATS's max_payload is
    1 MB), in order; a 2 MB one is counted in `too_large` and logged, the next one arrives."""
    n1, n2 = pair
    kb = 1024
    checker = n2.call("spawn", id="t:sizes", host="t:a", args=[4])
    got = n1.exec("t:big", "t:a", checker, [600 * kb, 600 * kb, 600 * kb, 2048 * kb, 10],
                  timeout=30)
    assert got == [[0, 600 * kb], [1, 600 * kb], [2, 600 * kb], [4, 10]], got
    assert row(n1, "n1")["too_large"] == 1
    assert "over NATS's max_payload" in n1.log()
    assert row(n2, "n1")["gaps"] == 0


def test_pair_sessions_and_sequencing_rules() -> None:
    """Per pair: seq 0 first, then +1; another seq is a gap (the pair breaks: a new session,
    the batch dropped); a higher session is the peer's break (we follow, then deliver); a
    lower session, an older incarnation or a batch for another run of us is stale; a
    heartbeat saying more batches were sent than arrived, twice, is a gap too."""
    from actord.core.batches import Pairs, check_batch

    def b(inc: int, seq: int, session: int = 0, to: int = 7) -> Any:
        batch = check_batch(encode_batch("n1", inc, to, session, seq, []), "n2", 100)
        assert batch is not None and not batch.bad
        return batch

    pairs = Pairs(7)
    assert [pairs.accept(b(5, s), 5)[0] for s in (0, 1, 2)] == ["ok"] * 3
    assert pairs.accept(b(5, 4), 5) == ("gap", 3)
    assert pairs.session("n1") == 1  # we broke: session 1, seqs from 0
    assert pairs.accept(b(5, 5), 5)[0] == "stale"  # the old session's: from before the cut
    assert pairs.accept(b(5, 0, session=1), 5) == ("ok", 0)  # the peer followed
    assert pairs.accept(b(5, 0, session=3), 5) == ("broke", 0)  # the peer broke twice
    assert pairs.outgoing("n1", 5) == (3, 0)
    assert pairs.accept(b(5, 2, session=4), 5) == ("gap", 0)  # a new session's lost start
    assert pairs.session("n1") == 5
    assert pairs.accept(b(4, 0), 5)[0] == "stale"  # an older run of n1
    assert pairs.accept(b(5, 0, session=5, to=6), 5)[0] == "stale"  # for an earlier run of us
    assert pairs.accept(b(9, 0), 5)[0] == "ok"  # a new run of n1: a fresh pair at session 0
    assert not pairs.adopt("n1", 9, 0) and pairs.adopt("n1", 9, 2) and pairs.session("n1") == 2
    assert pairs.gaps == {"n1": 2} and pairs.stale == {"n1": 3}
    # a lost last batch: the peer's heartbeat says 2 were sent, 1 arrived; twice -> a gap
    assert pairs.accept(b(9, 0, session=2), 9) == ("ok", 0)
    assert not pairs.heard_sent("n1", 9, 2, 1)  # all arrived
    assert not pairs.heard_sent("n1", 9, 2, 2)  # one short: maybe still on its way
    assert pairs.accept(b(9, 1, session=2), 9) == ("ok", 1)  # it was
    assert not pairs.heard_sent("n1", 9, 2, 3) and pairs.heard_sent("n1", 9, 2, 3)  # lost
    assert pairs.session("n1") == 3 and pairs.gaps == {"n1": 3}
    assert pairs.sessions() == {"n1": [9, 3, 0]}


def test_a_new_run_meets_fresh_and_a_session_never_met_is_adopted() -> None:
    """A break of a restarted node's old run leaves its new run a fresh pair (session 0, as
    the new run has it); a peer that says it is at session 2 with a run we never exchanged a
    batch with (its workers may have) is a break we follow, a peer at 0 is not."""
    from actord.core.batches import Pairs

    old, new = 5 << 22, 6 << 22
    pairs = Pairs(7)
    pairs.outgoing("n1", old)
    pairs.break_("n1", incarnation=old)  # the old run went down: its pair breaks
    assert pairs.next_out("n1", new) == (0, 0)
    assert pairs.session("n1") == 0
    fresh = Pairs(7)
    assert not fresh.adopt("n3", new, 0)
    assert fresh.adopt("n3", new, 2) and fresh.session("n3") == 2
    assert not fresh.adopt("n3", new, 2)  # once


def test_check_batch_refuses_what_is_not_a_batch_for_us() -> None:
    """Header and every frame checked; one bad frame refuses the batch."""
    from actord.core.batches import check_batch

    ok = [wire.SEND, "{n2@t:a|0x00001}", "{n1@t:a|0x00002}", "t", b"\x01"]
    good = encode_batch("n1", 1, 2, 0, 0, [ok, [*ok[:2], "", "t", b""]])
    batch = check_batch(good, "n2", 10)
    assert batch is not None and len(batch.frames) == 2 and batch.frames[0][4] == b"\x01"
    for bad in (  # no sender can be told: None
        b"", b"\xc1", msgpack.packb(["n1", 1, 2, 0]), msgpack.packb(["n2", 1, 2, 0, 0]),
        msgpack.packb(["n1", 1, 2, 0, True]), msgpack.packb(["n1", 1.0, 2, 0, 0]),
    ):
        assert check_batch(bad, "n2", 10) is None, bad
    exited, call = [wire.EXITED, "{n1@t:a|0x00002}"], [wire.CALL, 1, "{n1@t:a|0x00002}"]
    for frame in (  # the sender is known: a Batch saying why, with no frames
        [*ok[:4], b"x" * 11],  # over max_frame
        [ok[0], ok[1], "{n3@t:a|0x00002}", "t", b""], [ok[0], "{t:a|0x00001}", "", "t", b""],
        ok[:4], [wire.DELIVER, *ok[1:]], [*ok[:3], "t" * wire.MAX_ADDRESS, b""], "frame",
        [*exited, {"value": 1, "error": "x"}], [*exited, {"error": 3}], [*exited, None],
        [wire.EXITED, "{n2@t:a|0x00002}", {"value": 1}],  # an end of a process of ours
        [*call, "register", {}], [*call, "spawn", "x"], [wire.CALL, -1, "", "link", {}],
        [wire.EVENT, ok[1], "pid.exit", "", None, None, None],  # EXIT crosses as EXITED
        [wire.EVENT, ok[1], "pid.cancel", "", None, "soon", None], [wire.REPLY, 1, 2, None],
    ):
        batch = check_batch(encode_batch("n1", 1, 2, 0, 0, [ok, frame]), "n2", 10)
        assert batch is not None and batch.bad and batch.frames == [], frame


_leaf = st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1), st.floats(),
                  st.text(max_size=20), st.binary(max_size=20),
                  st.sampled_from(["n1", "n2", "{n2@t:a|0x00001}", "{n1@t:a|0x00002}", ""]),
                  st.just(wire.SEND))


@settings(max_examples=150, deadline=None)
@given(st.one_of(
    st.binary(max_size=200),
    st.lists(st.recursive(_leaf, lambda c: st.lists(c, max_size=6), max_leaves=20),
             max_size=8).map(msgpack.packb),
))
def test_check_batch_never_raises(data: bytes) -> None:
    """Any bytes from another node: a Batch or None, never an exception (and a good Batch's
    frames are all of the five kinds)."""
    from actord.core.batches import check_batch

    batch = check_batch(data, "n2", 100)
    if batch is not None:
        assert all(f[0] in (wire.SEND, wire.EVENT, wire.EXITED, wire.CALL, wire.REPLY)
                   for f in batch.frames)


def test_a_nats_restart_that_loses_a_frame_breaks_the_pair(
    pair: tuple[Daemon, Daemon], nats: NatsServer
) -> None:
    """nats-server stopped: a send from n1 meanwhile is counted `lost` on n1, which breaks
    its pair with n2 (and the reconnect breaks it again); n2 follows when it hears n1's new
    session. The lost message never arrives; later ones do."""
    n1, n2 = pair
    thread, out = exec_in_thread(n2, "t:one", timeout=60.0)  # a server restart under load
    pid = wait_for(lambda: next((p["pid"] for p in n2.call("ps") if p["id"] == "t:one"), None),
                   10, what="t:one running on n2")
    nats.stop()
    wait_for(lambda: "cluster: NATS connection lost" in n1.log(), 5, what="n1 cut off")
    n1.call("send", dest=pid, topic="during")
    wait_for(lambda: row(n1, "n1")["lost"] == 1, 5, what="the send counted lost")
    wait_for(lambda: "pair with n2 broken (1 frames lost" in n1.log(), 5, what="the break")
    nats.start()
    wait_for(lambda: row(n1, "n2")["state"] == row(n2, "n1")["state"] == "up" and
             row(n1, "n2")["last_seen"] > 0, 10, what="both up again")
    wait_for(lambda: row(n2, "n1")["session"] == row(n1, "n2")["session"] > 0, 10,
             what="n2 at n1's new session")
    # a send right after the reconnect may meet one more break (a batch published before
    # the other node had subscribed again: a gap, its batch dropped): send until one lands
    wait_for(lambda: n1.call("send", dest=pid, topic="after") is None and bool(out), 20,
             interval=0.5, what="a send after the restart delivered")
    thread.join(5)
    assert out[0].get("value", [None])[0] == "after", (out, n1.log(), n2.log())
    assert row(n2, "n1")["breaks"] >= 1
