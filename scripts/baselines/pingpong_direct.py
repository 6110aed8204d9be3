"""Baseline: two OS processes ping-ponging length-prefixed msgpack frames over a socketpair.

This process (uvloop) sends a "ping" frame and waits for the echo peer's "pong", ``n``
times; the result is the mean round trip in microseconds. Both sides decode the frame and
its payload, as actord's processes do. The floor for actord's cross-worker ping-pong
without a router in between.

Run: python scripts/baselines/pingpong_direct.py [--n 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

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
    value,
)

UNIT = "us"


async def ping(conn: FrameConn, waiter: list[Any], n: int) -> None:
    """``n`` round trips over ``conn`` (the reply sets ``waiter[0]``)."""
    loop = asyncio.get_running_loop()
    for i in range(n):
        fut = waiter[0] = loop.create_future()
        conn.write(frame(PID_B, PID_A, "ping", i))
        if await fut != i:
            raise AssertionError("pong out of order")


def pinger() -> tuple[list[Any], Any]:
    """A ``waiter`` cell and the frame callback that resolves it with each pong's value."""
    waiter: list[Any] = [None]

    def on_frames(conn: FrameConn, frames: Frames) -> None:
        for _, body in frames:
            waiter[0].set_result(value(decode(body)[3]))

    return waiter, on_frames


async def measure(sock: Any, n: int, warmup: int) -> float:
    """Warm up, then the mean of ``n`` round trips over ``sock``, in microseconds."""
    waiter, on_frames = pinger()
    conn = await connect(sock, on_frames)
    await ping(conn, waiter, warmup)
    start = time.perf_counter()
    await ping(conn, waiter, n)
    elapsed = time.perf_counter() - start
    assert conn.transport is not None
    conn.transport.close()
    return elapsed / n * 1e6


def run(n: int = 2000, warmup: int = 100) -> float:
    """Mean round-trip time in microseconds over ``n`` round trips."""
    here, there = socketpair()
    peers = Peers()
    peers.start("echo", there)
    try:
        return uvloop.run(measure(here, n, warmup))
    finally:
        peers.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="round trips per run")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    results = sorted(run(args.n) for _ in range(args.repeat))
    print(f"direct ping-pong RTT: median {results[len(results) // 2]:.1f} us "
          f"(min {results[0]:.1f}, max {results[-1]:.1f}; {args.n} round trips x {args.repeat})")


if __name__ == "__main__":
    main()
