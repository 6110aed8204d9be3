"""The control socket under hypothesis (SPEC section 10): nothing a client sends takes the
router down.

One real daemon serves every example. Well-formed requests ``[30, req_id, command, args]``
(known and unknown commands, plausible and random arguments) must each get exactly one
reply, echoing ``req_id``, on a connection that keeps working. Malformed input (random
bytes, valid frames with bytes flipped, inserted, deleted or cut) may get replies or a
dropped connection, nothing else. After every example the daemon still answers ``status``.
``shutdown`` is never sent: it is the one command whose correct effect is to stop serving.
"""

from __future__ import annotations

import contextlib
import socket
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from actord.core import wire
from actord.testing import Daemon
from tests.conftest import config_text

PROCESSES = {"t:fz.value": "semantics_probes:value", "t:fz.idle": "semantics_probes:idle"}
#: every command but shutdown; an ``exec`` may only run ``t:fz.value`` (it ends at once), so
#: no reply waits on a process that never ends (``spawn`` may start ``t:fz.idle``)
COMMANDS = ["status", "nodes", "ps", "spawn", "send", "kill", "cancel", "exec", "registry",
            "services", "start", "stop", "restart", "reload", "logs", "top", "trace"]
REPLY_WAIT = 15.0

scalars = (st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1)
           | st.floats(allow_nan=False) | st.text(max_size=12) | st.binary(max_size=12))
values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=10,
)


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    d = Daemon(tmp_path_factory.mktemp("fuzz"), config_text(PROCESSES, shutdown_timeout="1s"))
    d.start()
    d.idle_pid = d.call("spawn", id="t:fz.idle", host="t:a", args=[])  # type: ignore[attr-defined]
    yield d
    assert d.proc is not None and d.proc.poll() is None, "the daemon died during the fuzz"
    assert d.stop() == 0, d.log()
    # the only tracebacks are crash reports of processes spawned with random arguments
    assert all(not tb or "actord.crash: process" in head for head, tb in d.records()), d.log()


#: the keys each command reads, so that most requests get past the first check
KEYS = {
    "spawn": ["id", "host", "args", "name"], "exec": ["id", "host", "args", "timeout"],
    "send": ["dest", "topic", "values"], "kill": ["dest"],
    "cancel": ["dest", "deadline", "reason"], "ps": ["host"],
    "start": ["service"], "stop": ["service"], "restart": ["service"],
    "logs": ["after", "wait", "lines", "pid", "host", "level"],
    "trace": ["dest", "session", "wait", "events", "limit", "duration", "stop"],
}


def fields(pid: str) -> dict[str, st.SearchStrategy[Any]]:
    """Per argument: values that pass or just miss its validation, or anything at all."""
    plausible: dict[str, list[Any]] = {
        "id": ["t:fz.value", "t:fz.value", "t:fz.idle", "t:nope", "bad id", ""],
        "host": ["t:a", "t:b", "t:nope", ""],
        "args": [[], [1], [1, 2], ["x"], [None]],
        "name": ["n1", "n2", "{bad", "", 5, None],
        "dest": [pid, "{t:a|0x00001}", "{t:a|0xfffff}", "n1", "nope", "", "{"],
        "topic": ["t", "", "@x", 5, None],
        "values": [[], [1], [1, 2], "x", {"a": 1}, None],
        "deadline": ["5ms", "1s", 0, 10, -1, "bad", 1.5, None],
        "reason": ["r", None, 5],
        "timeout": [0, 0.01, 1, -1, None, "1", 1e300, float("inf")],
        "service": ["s", "t:a", ""],
        "pid": [pid, "{t:a|0xfffff}", "n1", "nope", "", "{", 5],
        "after": [0, 1, 10**9, -1, "1", None],
        "wait": [0, 0.01, -1, "1", 11, None],
        "lines": [0, 5, 10**6, -1, "5", None],
        "level": ["info", "ERROR", "loud", 5, None],
        "session": [None, 1, 2, -1, "1"],
        "events": [None, ["send"], ["exit", "spawn"], ["nope"], [], "send"],
        "limit": [1, 5, 0, -1, "5", None],
        "duration": [0.01, 1, -1, "1s", None],
        "stop": [True, False, None],
    }
    return {k: st.integers(0, 3).flatmap(lambda i, v=v: values if i == 3 else st.sampled_from(v))
            for k, v in plausible.items()}


def args_strategy(pid: str, command: str) -> st.SearchStrategy[Any]:
    """A map with the command's keys (some dropped) and perhaps random extras, or anything."""
    by_key = fields(pid)
    keys = KEYS.get(command, [])
    extra = st.dictionaries(st.sampled_from(list(by_key)) | st.text(max_size=6),
                            values, max_size=3)
    targeted = st.builds(
        lambda fixed, drop, more: {**more, **{k: v for k, v in fixed.items() if k not in drop}},
        st.fixed_dictionaries({k: by_key[k] for k in keys}),
        st.sets(st.sampled_from(keys)) if keys else st.just(set()),
        extra,
    )
    # one in five: anything at all, often not a map
    return st.integers(0, 4).flatmap(lambda i: values if i == 4 else targeted)


def _exec_safe(command: Any, args: Any) -> bool:
    """False for an exec that may wait forever: of the never-ending probe, or with a name
    (a taken name makes exec wait for the process holding it, maybe that probe)."""
    return not (command == "exec" and isinstance(args, dict)
                and (args.get("id") == "t:fz.idle" or args.get("name")))


def _connect(d: Daemon) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(REPLY_WAIT)
    s.connect(d.socket)
    return s


def _roundtrip(value: Any) -> Any:
    """``value`` as the daemon will see (and echo) it."""
    return wire.FrameDecoder().feed(wire.encode([0, value]))[0][1]


def _replies_until(s: socket.socket, dec: wire.FrameDecoder, done: Any) -> list[list[Any]]:
    """Frames read until ``done(frames)`` holds; EOF or a timeout fails the test."""
    frames: list[list[Any]] = []
    while not done(frames):
        data = s.recv(65536)
        assert data, f"connection dropped; got so far: {frames!r:.300}"
        frames += dec.feed(data)
    return frames


def _still_serving(d: Daemon) -> None:
    st_ = d.call("status")
    assert st_["os_pid"] == d.pid


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_well_formed_requests_get_exactly_one_reply(daemon: Daemon, data: st.DataObject) -> None:
    """Any ``[30, req_id, command, args]``: one reply echoing req_id; the connection lives on."""
    pid: str = daemon.idle_pid  # type: ignore[attr-defined]
    req_id = data.draw(scalars | st.lists(scalars, max_size=3), label="req_id")
    command = data.draw(st.integers(0, 9).flatmap(  # one in ten: not a command
        lambda i: st.text(max_size=8) if i == 9 else st.sampled_from(COMMANDS)), label="command")
    args = data.draw(args_strategy(pid, command), label="args")
    if command == "shutdown" or not _exec_safe(command, args):
        return
    want = _roundtrip(req_id)
    sentinel = f"sentinel-{uuid.uuid4()}"
    s = _connect(daemon)
    try:
        dec = wire.FrameDecoder()
        s.sendall(wire.encode([wire.CTL_REQUEST, req_id, command, args]))
        first = _replies_until(s, dec, lambda fs: len(fs) >= 1)
        s.sendall(wire.encode([wire.CTL_REQUEST, sentinel, "status", {}]))
        rest = _replies_until(s, dec, lambda fs: any(f[1] == sentinel for f in fs))
    finally:
        s.close()
    frames = first + rest
    assert all(f[0] == wire.CTL_REPLY and len(f) == 4 for f in frames), frames
    mine = [f for f in frames if f[1] != sentinel]
    assert len(mine) == 1, f"{command} {args!r:.200}: {len(mine)} replies"
    assert mine[0][1] == want
    assert mine[0][2] is None or isinstance(mine[0][2], str)
    event(f"{command if command in COMMANDS else 'unknown'}: {mine[0][2] or 'ok'}")
    _still_serving(daemon)


def _mutate(data: st.DataObject, frame: bytes) -> bytes:
    out = bytearray(frame)
    for _ in range(data.draw(st.integers(1, 4), label="mutations")):
        op = data.draw(st.sampled_from(["flip", "insert", "delete", "truncate", "repeat"]))
        at = data.draw(st.integers(0, max(len(out) - 1, 0)))
        if op == "flip" and out:
            out[at] = data.draw(st.integers(0, 255))
        elif op == "insert":
            out[at:at] = data.draw(st.binary(min_size=1, max_size=8))
        elif op == "delete" and out:
            del out[at:at + data.draw(st.integers(1, 8))]
        elif op == "truncate":
            del out[at:]
        elif op == "repeat":
            out[at:at] = out[at:at + data.draw(st.integers(1, 16))]
    return bytes(out)


def _send_garbage(d: Daemon, payload: bytes) -> None:
    """Send ``payload``, read whatever comes back for a moment, close."""
    s = _connect(d)
    s.settimeout(0.05)
    try:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            s.sendall(payload)
        dec = wire.FrameDecoder(max_frame=64 << 20)
        with contextlib.suppress(TimeoutError, ConnectionResetError):
            while data := s.recv(65536):
                for frame in dec.feed(data):
                    assert frame[0] == wire.CTL_REPLY, frame
    finally:
        s.close()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_mutated_frames_never_crash_the_router(daemon: Daemon, data: st.DataObject) -> None:
    """A valid request with bytes flipped, inserted, deleted or cut: replies or a drop only."""
    pid: str = daemon.idle_pid  # type: ignore[attr-defined]
    command = data.draw(st.sampled_from(COMMANDS), label="command")
    args = data.draw(args_strategy(pid, command), label="args")
    if not _exec_safe(command, args):
        return
    frame = wire.encode([wire.CTL_REQUEST, data.draw(st.integers(0, 2**32)), command, args])
    _send_garbage(daemon, _mutate(data, frame))
    _still_serving(daemon)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(payload=st.binary(min_size=1, max_size=300))
def test_random_bytes_never_crash_the_router(daemon: Daemon, payload: bytes) -> None:
    """Arbitrary bytes on the control socket: replies or a drop only; the daemon serves on."""
    _send_garbage(daemon, payload)
    _still_serving(daemon)
