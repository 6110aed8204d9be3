"""The frame format: round trips, chunking, and untrusted bytes (sans-I/O, no processes)."""

from __future__ import annotations

import os

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actord.core import wire

values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats(allow_nan=False)
    | st.text(max_size=20) | st.binary(max_size=20),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=5), children, max_size=4),
    max_leaves=12,
)
frames = st.builds(lambda op, rest: [op, *rest], st.integers(0, 40), st.lists(values, max_size=5))


@given(st.lists(frames, max_size=10), st.integers(1, 50))
@settings(max_examples=200)
def test_frames_survive_any_chunking(batch: list[list[object]], chunk: int) -> None:
    """A stream of frames decodes to the same frames however the bytes are split."""
    data = b"".join(wire.encode(f) for f in batch)
    decoder = wire.FrameDecoder()
    out: list[list[object]] = []
    for i in range(0, len(data), chunk):
        out.extend(decoder.feed(data[i : i + chunk]))
    assert out == batch


@given(st.binary(max_size=200))
@settings(max_examples=250)
def test_random_bytes_only_ever_raise_frame_error(data: bytes) -> None:
    """Arbitrary bytes either decode to frames or raise FrameError, nothing else."""
    decoder = wire.FrameDecoder(max_frame=1024)
    try:
        for frame in decoder.feed(data):
            assert type(frame) is list and type(frame[0]) is int
    except wire.FrameError:
        pass


@pytest.mark.parametrize(
    "data",
    [
        msgpack.packb({"not": "a list"}),
        msgpack.packb([]),
        msgpack.packb(["op-is-a-string"]),
        msgpack.packb(42),
        b"\xc1",  # a msgpack byte that is never valid
    ],
    ids=["map", "empty-list", "string-op", "int", "reserved-byte"],
)
def test_non_frames_are_rejected(data: bytes) -> None:
    """Valid msgpack that is not ``[int, ...]`` is a FrameError."""
    with pytest.raises(wire.FrameError):
        wire.FrameDecoder().feed(data)


def test_oversized_frame_is_rejected() -> None:
    """A frame beyond max_frame and its slack raises FrameError instead of buffering without
    bound."""
    decoder = wire.FrameDecoder(max_frame=1024)
    too_big = 1024 + wire.FRAME_ENVELOPE + wire.READ_SLACK
    with pytest.raises(wire.FrameError, match="frame too large"):
        decoder.feed(wire.encode([1, b"x" * too_big]))


def test_largest_legal_frame_is_accepted_in_any_reads() -> None:
    """A value of max_frame with a full envelope decodes when fed in socket-sized reads that
    also start the next frame (the decoder's slack covers one read)."""
    decoder = wire.FrameDecoder(max_frame=4096)
    frame = [wire.SEND, "p" * (wire.FRAME_ENVELOPE - 100), "", "t", b"v" * 4091]
    data = wire.encode(frame) * 2
    out: list[list[object]] = []
    for i in range(0, len(data), 256 * 1024):
        out.extend(decoder.feed(data[i : i + 256 * 1024]))
    assert out == [frame, frame]


@pytest.mark.parametrize(
    "value", ["s" * 95, b"b" * 95, "é" * 40, [1] * 97, "s" * 100_000, b"b" * 70_000],
    ids=["str", "bytes", "non-ascii", "list", "str32", "bin32"],
)
def test_copy_value_size_limit(value: object) -> None:
    """copy_value passes a value whose encoding fits ``max_size`` (and any with room to
    spare, on the fast path) and raises ValueTooLarge with the encoded size one byte under."""
    size = len(wire.encode_value(value))
    assert wire.copy_value(value, size) == value
    assert wire.copy_value(value, size + 5) == value
    with pytest.raises(wire.ValueTooLarge) as err:
        wire.copy_value(value, size - 1)
    assert err.value.size == size
    assert str(err.value) == f"message too large: {size} bytes > max_frame ({size - 1})"


def test_clip_text() -> None:
    """Texts within the bound are kept; longer ones are cut with a marker of what was cut."""
    assert wire.clip_text("abc", 3) == "abc"
    assert wire.clip_text("abcdef", 3) == "abc... [3 more characters cut]"


def test_payload_values_roundtrip() -> None:
    """User values: tuples arrive as lists, bytes stay bytes, int map keys are allowed."""
    value = {"t": (1, 2), "b": b"\x00", 7: "int key"}
    assert wire.decode_value(wire.encode_value(value)) == {"t": [1, 2], "b": b"\x00", 7: "int key"}


def test_non_msgpack_value_raises_type_error() -> None:
    """encode_value refuses anything that is not a msgpack type."""
    with pytest.raises(TypeError):
        wire.encode_value({1, 2})


@given(values)
@settings(max_examples=300)
def test_copy_value_is_what_the_wire_delivers(value: object) -> None:
    """copy_value (same-worker delivery) equals an encode/decode round trip, types included."""
    assert repr(wire.copy_value(value)) == repr(wire.decode_value(wire.encode_value(value)))


def test_copy_value_never_shares_a_container() -> None:
    """Lists and dicts are deep-copied; only immutable scalars are passed through."""
    value = {"a": [1, {"b": b"x"}]}
    copy = wire.copy_value(value)
    assert copy == value and copy is not value
    assert copy["a"] is not value["a"] and copy["a"][1] is not value["a"][1]
    assert wire.copy_value((1, 2)) == [1, 2]


@pytest.mark.parametrize(
    "value",
    [2**64, -(2**63) - 1, "\ud800", {1, 2}, bytearray(b"x"), 1 + 2j, True.__class__],
    ids=["int-too-big", "int-too-small", "lone-surrogate", "set", "bytearray", "complex",
         "type"],
)
def test_copy_value_refuses_what_encode_value_refuses(value: object) -> None:
    """A value the wire would refuse (or change) takes the encoding path and fails or converts
    exactly as encode_value does."""
    try:
        expected = wire.decode_value(wire.encode_value(value))
    except (TypeError, ValueError, OverflowError) as e:
        with pytest.raises(type(e)):
            wire.copy_value(value)
    else:
        assert repr(wire.copy_value(value)) == repr(expected)


def _rss_kib() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs Linux /proc")
def test_decoder_memory_follows_its_reads_not_its_total() -> None:
    """Decoders fed many small frames keep a small buffer each. msgpack's default (1 MiB)
    was touched page by page at the rate a connection read, until all of it was resident:
    the router's RSS "slope" in the soak (its quiet connections). Here 8 decoders read 1 MiB
    each in small frames: ~8 MiB resident with the default buffer, ~0.5 MiB with 64 KiB."""
    frame = wire.encode([wire.SEND, "{chaos:a|0x00001}", "{chaos:b|0x00002}", "seq", b"x" * 40])
    decoders = [wire.FrameDecoder() for _ in range(8)]
    before = _rss_kib()
    for _ in range((1 << 20) // len(frame)):
        for decoder in decoders:
            decoder.feed(frame)
    assert _rss_kib() - before < 3 * 1024


def test_named_shapes_pack_to_the_same_bytes_as_lists() -> None:
    """A SpawnRequest and a Start are msgpack arrays, byte for byte what the positional
    lists they name encode to, and decode back to those lists."""
    request = [
        "p:id", "p:host", [1, "two"], wire.SPAWN_LINK | wire.SPAWN_EXEC, {"k": "v"},
        {"id": "alice", "meta": {}}, ["s"], "name", [["topic", [1]]],
    ]
    assert wire.SpawnRequest._fields == (
        "id", "host", "args", "flags", "ctx", "actor", "scope", "name", "messages")
    assert wire.encode(wire.SpawnRequest(*request)) == wire.encode(request)
    assert wire.encode(wire.spawn_request("p:id", "p:host")) == wire.encode(
        ["p:id", "p:host", [], 0, None, None, None, None, None])
    start = [wire.START, "{h|0x00001}", "p:id", "m:f", [1], None, None, None, None]
    assert len(start) == wire.START_FIELDS
    assert wire.encode(wire.Start(*start)) == wire.encode(start)
    assert wire.encode(wire.Start(*start) + wire.START_ACK) == wire.encode([*start, True])
    call = [wire.CALL, 1, "{h|0x00001}", "spawn", wire.SpawnRequest(*request)]
    assert wire.FrameDecoder().feed(wire.encode(call)) == [[*call[:4], request]]


def test_exit_result_helpers() -> None:
    """One shape per end: a value for a normal end, an error string for an abnormal one."""
    normal, abnormal = wire.exit_value([1]), wire.exit_error("ValueError: x")
    assert normal == {"value": [1]} and abnormal == {"error": "ValueError: x"}
    assert not wire.is_abnormal(normal) and wire.is_abnormal(abnormal)
    assert wire.value_of(normal) == [1] and wire.value_of(abnormal) is None
    assert wire.error_of(abnormal) == "ValueError: x"
