"""FrameProtocol's write policy: when frames are written, and that they stay in order."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest
import uvloop

from actord.core import wire
from actord.transport import FrameProtocol


class FakeTransport:
    """Records every write; the protocol never learns it is not a socket."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass

    def frames(self) -> list[list[Any]]:
        return wire.FrameDecoder().feed(b"".join(self.writes))


def connected(on_frame: Any = lambda frame: None) -> tuple[FrameProtocol, FakeTransport]:
    proto = FrameProtocol(on_frame)
    transport = FakeTransport()
    proto.connection_made(transport)  # type: ignore[arg-type]
    return proto, transport


def test_a_lone_frame_is_written_at_once() -> None:
    """The first frame (nothing queued) leaves in send itself: no loop pass of latency."""

    async def main() -> None:
        proto, transport = connected()
        proto.send([1, "ping"])
        assert transport.frames() == [[1, "ping"]]

    uvloop.run(main())


def test_a_burst_costs_two_writes_then_one_per_loop_pass() -> None:
    """After the first frame, the rest of a burst is one write on the next loop pass; a
    stream that reads nothing keeps batching (one write per pass)."""

    async def main() -> None:
        proto, transport = connected()
        for i in range(100):
            proto.send([1, i])
        assert len(transport.writes) == 1
        await asyncio.sleep(0)
        assert len(transport.writes) == 2
        for i in range(100, 200):
            proto.send([1, i])
        assert len(transport.writes) == 2
        await asyncio.sleep(0)
        assert len(transport.writes) == 3
        assert transport.frames() == [[1, i] for i in range(200)]

    uvloop.run(main())


def test_frames_a_read_causes_are_written_once_when_it_is_handled() -> None:
    """Frames sent while handling a read are queued and written once per connection at the
    end of that read (the router's forwarding path)."""

    async def main() -> None:
        out, out_transport = connected()
        seen_during: list[int] = []

        def forward(frame: list[Any]) -> None:
            seen_during.append(len(out_transport.writes))
            out.send([11, *frame[1:]])

        inbound, _ = connected(forward)
        inbound.data_received(b"".join(wire.encode([1, i]) for i in range(50)))
        assert seen_during == [0] * 50  # nothing written while the read was handled
        assert len(out_transport.writes) == 1
        assert out_transport.frames() == [[11, i] for i in range(50)]

    uvloop.run(main())


@pytest.mark.parametrize("seed", range(20))
def test_order_holds_whatever_mixes_sends_reads_and_loop_passes(seed: int) -> None:
    """Frames leave in send order across every write path (at once, batched, end of read)."""

    async def main() -> None:
        rng = random.Random(seed)
        out, out_transport = connected()
        sent: list[int] = []
        n = 0

        def on_frame(frame: list[Any]) -> None:
            nonlocal n
            for _ in range(rng.randrange(3)):
                n += 1
                sent.append(n)
                out.send([1, n])

        inbound, _ = connected(on_frame)
        for _ in range(200):
            step = rng.randrange(3)
            if step == 0:
                n += 1
                sent.append(n)
                out.send([1, n])
            elif step == 1:
                inbound.data_received(wire.encode([1, 0]) * rng.randrange(1, 4))
            else:
                await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert [f[1] for f in out_transport.frames()] == sent

    uvloop.run(main())
