"""Untrusted frames from a worker never crash the router (SPEC 10): a property test that
feeds random and mutated frames to a real Router over a real socketpair."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from actord.core import config, wire
from actord.router import Router, WorkerLink
from actord.transport import FrameProtocol

CONFIG = config.parse(
    '[daemon]\nsocket = "/tmp/fuzz.sock"\n[hosts."f:h"]\nworkers = 1\n'
    '[processes."f:p"]\nentry = "m:f"\n',
    "fuzz.toml",
)
OPS = [wire.SEND, wire.CALL, wire.EXITED, wire.LOG, wire.UPGRADED, wire.STATS, wire.HELLO,
       wire.STARTED, wire.TRACE, 99]
CALLS = ["spawn", "terminate", "cancel", "monitor", "unmonitor", "link", "unlink", "register",
         "unregister", "nope"]

scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8) \
    | st.binary(max_size=8)
values = st.recursive(scalars, lambda c: st.lists(c, max_size=3)
                      | st.dictionaries(st.text(max_size=6), c, max_size=3), max_leaves=8)


@st.composite
def frames(draw: st.DrawFn, pids: list[str]) -> list[Any]:
    """A frame with a real op and fields that are sometimes right, often wrong."""
    op = draw(st.sampled_from(OPS))
    pid = st.sampled_from(pids) | st.text(max_size=6) | values
    if op == wire.CALL:
        # target calls take a map; spawn a positional array (a wire.SpawnRequest)
        args = draw(st.dictionaries(
            st.sampled_from(["dest", "name", "pid", "id", "host", "args", "deadline", "reason"]),
            pid | st.just("f:p") | st.just("f:h"), max_size=5)
            | st.lists(pid | st.just("f:p") | st.just("f:h") | st.integers(0, 31),
                       min_size=8, max_size=10)
            | values)
        fields = [draw(st.integers()), draw(pid), draw(st.sampled_from(CALLS) | values), args]
    else:
        fields = draw(st.lists(pid | values, max_size=6))
    return [op, *draw(st.lists(st.just(None), max_size=0)), *fields][: draw(st.integers(1, 7))]


async def _run(batch: list[list[Any]]) -> tuple[Router, list[list[Any]]]:
    loop = asyncio.get_running_loop()
    router = Router(CONFIG)
    ours, theirs = socket.socketpair()
    _, conn = await loop.connect_accepted_socket(lambda: FrameProtocol(lambda f: None), ours)
    sent: list[list[Any]] = []
    conn.send = sent.append  # type: ignore[method-assign]  # capture what the worker would get
    # START goes out pre-encoded
    conn.send_encoded = lambda data: sent.extend(wire.FrameDecoder().feed(data))  # type: ignore[method-assign]
    link = WorkerLink("f:h", 0, conn, 0)
    router.attach(link)
    for _ in range(2):
        router.spawn("", wire.spawn_request("f:p", "f:h"))
    for frame in batch:
        if conn.closed:
            break
        router.on_frame(link, frame)  # must never raise
    # the router's tables stay consistent: every live PID is on a worker that knows it
    for pid, entry in router.procs.items():
        assert pid in entry.worker.pids
    # and everything it would send to a worker is well-formed for the worker's handlers
    for frame in sent:
        if frame[0] == wire.START:
            start = wire.Start._make(frame[:wire.START_FIELDS])
            assert isinstance(start.args, list) and isinstance(start.ctx or {}, dict)
            assert all(isinstance(t, str) for t, _ in start.messages or [])
        if frame[0] == wire.EVENT and frame[5] is not None:
            assert isinstance(frame[5], int | float)
    conn.close()
    theirs.close()
    return router, sent


KNOWN_BAD = [
    [wire.LOG, float("inf"), "x", "m", ""],  # int(inf): OverflowError
    [wire.SEND, [1], "", "t", b""],  # unhashable destination
    [wire.EXITED, {"a": 1}, 5],
    [wire.CALL, 1, "{f:h|0x00001}", "spawn", {"id": "f:p", "host": "f:h"}],  # a map
    [wire.CALL, 1, "{f:h|0x00001}", "spawn", [[1], "f:h", [], 0, None, None, None, None, None]],
    [wire.CALL, 1, "{f:h|0x00001}", "spawn", ["f:p", "f:h", [], 0, None, None, None, None,
                                              [["t", 1], "x"]]],
    [wire.CALL, 1, "{f:h|0x00001}", "cancel", {"dest": "{f:h|0x00002}", "deadline": "x"}],
    [wire.STATS, [], {}],
]


def test_call_from_an_unknown_caller_is_answered() -> None:
    """A call whose caller is not a live process of that worker gets NOT_FOUND, never
    silence: the worker keeps a future per call until its reply."""
    _, sent = asyncio.run(_run([[wire.CALL, 41, "{f:h|0x00099}", "monitor",
                                 {"dest": "{f:h|0x00001}"}]]))
    replies = [f for f in sent if f[0] == wire.REPLY]
    assert replies == [[wire.REPLY, 41, "NOT_FOUND", "no live caller {f:h|0x00099}"]]


def test_known_bad_frames_drop_the_worker_without_raising() -> None:
    """Each known-bad frame is rejected (worker dropped or call refused), never raised."""
    for frame in KNOWN_BAD:
        asyncio.run(_run([frame]))


@given(st.data())
@settings(max_examples=200, deadline=None)
def test_random_frames_never_escape_the_router(data: st.DataObject) -> None:
    """Any sequence of frames is handled or drops the worker; no exception escapes."""
    pids = ["{f:h|0x00001}", "{f:h|0x00002}"]
    batch = data.draw(st.lists(frames(pids), max_size=8))
    asyncio.run(_run(batch))
