"""The pure rules of the workers' direct path (actord/core/direct.py): the batch header
check, the verdicts on batches and the fences, against a model where that helps."""

from __future__ import annotations

import msgpack
from hypothesis import given, settings
from hypothesis import strategies as st

from actord.core.direct import (
    INSTANCE_BITS,
    DirectBatch,
    Inbound,
    check_direct,
    encode_direct,
    instance_of,
    serial_of,
    subject,
)

INC1, INC2 = 7 << 22, 9 << 22


def batch(seq: int, session: int = 0, instance: int = 3, inc: int = INC1,
          to_inc: int = INC2, node: str = "n1") -> DirectBatch:
    b = check_direct(encode_direct(node, inc, to_inc, session, instance, seq, [["d", "f", "t",
                                                                                b"\x01"]]), "n2")
    assert b is not None
    return b


def inbound(session: int = 0) -> Inbound:
    ib = Inbound("n2", INC2)
    ib.set_peers({"n1": (INC1, session)})
    return ib


def test_pids_name_their_worker_and_subjects_follow() -> None:
    pid = "{n1@app:main|0x%x}" % ((5 << 40) | (77 << INSTANCE_BITS) | 3)
    assert instance_of(pid) == 3 and serial_of(pid) == (5 << 40) | (77 << INSTANCE_BITS) | 3
    assert subject("prod", "n1", 3) == subject("prod", "n1", 3 + (1 << INSTANCE_BITS)) \
        == "prod.w.n1.3"


def test_check_direct_refuses_what_is_no_batch_for_us() -> None:
    good = encode_direct("n1", INC1, INC2, 0, 3, 0, [])
    assert check_direct(good, "n2") == DirectBatch("n1", INC1, INC2, 0, 3, 0, [])
    for bad in [
        b"\xc1", msgpack.packb({"a": 1}), msgpack.packb(["n1", INC1, INC2, 0, 3]),
        encode_direct("n2", INC1, INC2, 0, 3, 0, []),  # from ourselves
        encode_direct("N 1", INC1, INC2, 0, 3, 0, []),
        encode_direct("n1", INC1, INC2, 0, 1 << INSTANCE_BITS, 0, []),
        msgpack.packb(["n1", -1, INC2, 0, 3, 0]), msgpack.packb(["n1", INC1, INC2, 0, 3, "0"]),
    ]:
        assert check_direct(bad, "n2") is None, bad


@settings(max_examples=300)
@given(st.binary(max_size=200))
def test_check_direct_never_raises(data: bytes) -> None:
    check_direct(data, "n2")
    check_direct(msgpack.packb(["n1", INC1, INC2, 0, 3, 0, data]), "n2")


def test_verdicts() -> None:
    ib = inbound(session=2)
    assert ib.judge(batch(0, session=2)) == ("ok", 0)
    assert ib.judge(batch(1, session=2)) == ("ok", 1)
    assert ib.judge(batch(3, session=2)) == ("gap", 2)
    assert ib.judge(batch(4, session=2)) == ("ok", 4)  # the stream goes on after the gap
    assert ib.judge(batch(9, session=1))[0] == "stale"  # from before a cut
    assert ib.judge(batch(0, session=3))[0] == "hold"  # a break our router has not heard of
    assert ib.judge(batch(0, session=2, inc=INC1 - 1))[0] == "stale"  # an earlier run
    assert ib.judge(batch(0, session=2, inc=INC1 + 1))[0] == "hold"  # a run not heard of yet
    assert ib.judge(batch(0, session=2, to_inc=INC2 - 1))[0] == "stale"  # for our earlier run
    assert ib.judge(batch(0, node="n3"))[0] == "hold"  # a node not up (yet)
    ib.set_peers({"n1": (INC1, 3)})  # the break reached our router: a new session, seq 0
    assert ib.judge(batch(0, session=3)) == ("ok", 0)
    ib.mark_gone("n1", 3)
    assert ib.judge(batch(1, session=3))[0] == "gone"
    assert ib.judge(batch(0, session=3, instance=4)) == ("ok", 0)  # other workers go on


def test_fences() -> None:
    ib = inbound(session=1)
    assert ib.fence_met("n1", 3, 1, 0)  # nothing published: met
    assert not ib.fence_met("n1", 3, 1, 2)
    ib.judge(batch(0, session=1))
    assert not ib.fence_met("n1", 3, 1, 2)
    ib.judge(batch(1, session=1))
    assert ib.fence_met("n1", 3, 1, 2)
    assert not ib.fence_met("n1", 4, 1, 1)  # another worker's batches
    assert not ib.fence_met("n1", 4, 2, 1)  # a newer session our router has not heard of
    assert ib.fence_met("n1", 4, 0, 5)  # an older session: moot, the pair broke since
    ib.mark_gone("n1", 4)
    assert ib.fence_met("n1", 4, 1, 1)  # its worker died: moot
    ib.set_peers({})
    assert ib.fence_met("n1", 3, 1, 99)  # the node is down: moot


@settings(max_examples=200)
@given(st.lists(st.tuples(st.integers(0, 2), st.integers(0, 6)), max_size=30))
def test_one_streams_verdicts_match_a_model(batches: list[tuple[int, int]]) -> None:
    """Batches (session, seq) of one worker, the router's session moving up as a model of
    breaks does: ``ok`` exactly when the seq is the next one of the current session, ``gap``
    when the session is current but the seq is not, ``stale``/``hold`` for older/newer."""
    ib = inbound(0)
    session, expected = 0, 0
    for s, seq in batches:
        verdict, _ = ib.judge(batch(seq, session=s))
        if s < session:
            assert verdict == "stale"
        elif s > session:
            assert verdict == "hold"
            session, expected = s, 0  # the router hears of it: the batch is judged again
            ib.set_peers({"n1": (INC1, s)})
            verdict, _ = ib.judge(batch(seq, session=s))
        if s == session:
            assert verdict == ("ok" if seq == expected else "gap")
            expected = seq + 1
        assert ib.fence_met("n1", 3, session, expected)
        assert not ib.fence_met("n1", 3, session, expected + 1)
