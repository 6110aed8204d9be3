"""Baseline: a batched one-way stream of msgpack frames through the relay process.

Three OS processes: this one (uvloop) -> relay -> sink. This process encodes ``batch``
frames, writes them with one ``write`` and yields to its loop, until ``n`` frames are out,
then sends "end"; the sink decodes every frame and payload and answers "done" (back through
the relay). The result is messages per second from the first write to "done". actord's
cross-worker stream (scenario b) and fan-in (g) are compared with it.

Run: python scripts/baselines/stream_relay.py [--n 200000] [--batch 100]
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import time

import uvloop
from baseline_common import (
    PID_A,
    PID_B,
    FrameConn,
    Frames,
    Peers,
    connect,
    decode,
    frame,
    socketpair,
)

UNIT = "msg/s"


async def measure(sock: socket.socket, n: int, batch: int) -> float:
    """Stream ``n`` frames through ``sock``; messages per second until the sink's "done"."""
    loop = asyncio.get_running_loop()
    done: list[asyncio.Future[int]] = [loop.create_future()]

    def on_frames(conn: FrameConn, frames: Frames) -> None:
        for _, body in frames:
            if decode(body)[2] == "done":
                done[0].set_result(0)

    conn = await connect(sock, on_frames)
    conn.write(frame(PID_B, PID_A, "end", None))  # one round trip: relay and sink are up
    await done[0]
    done[0] = loop.create_future()
    start = time.perf_counter()
    for first in range(0, n, batch):
        conn.write(b"".join([frame(PID_B, PID_A, "m", i)
                             for i in range(first, min(first + batch, n))]))
        await asyncio.sleep(0)
    conn.write(frame(PID_B, PID_A, "end", None))
    await done[0]
    elapsed = time.perf_counter() - start
    assert conn.transport is not None
    conn.transport.close()
    return n / elapsed


def run(n: int = 200_000, batch: int = 100) -> float:
    """Messages per second of a one-way stream of ``n`` frames through the relay."""
    here, relay_a = socketpair()
    relay_b, there = socketpair()
    peers = Peers()
    peers.start("relay", relay_a, relay_b)
    peers.start("sink", there)
    try:
        return uvloop.run(measure(here, n, batch))
    finally:
        peers.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200_000, help="messages per run")
    parser.add_argument("--batch", type=int, default=100, help="frames per write")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    results = sorted(run(args.n, args.batch) for _ in range(args.repeat))
    print(f"relay stream: median {results[len(results) // 2]:,.0f} msg/s "
          f"(min {results[0]:,.0f}, max {results[-1]:,.0f}; {args.n} messages x {args.repeat})")


if __name__ == "__main__":
    main()
