"""Baseline: two OS processes ping-ponging msgpack frames through a nats-server (raw nats-py).

This process (uvloop, its own connection) publishes a "ping" frame on ``P.ping`` and waits
for the echo peer's (another process, another connection) "pong" on ``P.pong``, ``n`` times;
the result is the mean round trip in microseconds. Each message is a one-frame batch in
actord's node-to-node format, decoded on both sides. The floor for actord's cross-node
ping-pong (scenario h): the same server, the same client library, no routers or workers.

Run: python scripts/baselines/nats_pingpong.py [--n 2000] [--url nats://...]
     (without --url it starts its own nats-server)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from typing import Any

import uvloop
from nats_common import PID_A, PID_B, Peer, batch, connect, frame, repeated, unbatch, value

UNIT = "us"


async def measure(url: str, n: int, warmup: int) -> float:
    """Warm up, then the mean of ``n`` round trips through the server at ``url``, in us."""
    prefix = f"bench.{os.urandom(6).hex()}"
    loop = asyncio.get_running_loop()
    nc = await connect(url)
    waiter: list[asyncio.Future[Any]] = [loop.create_future()]

    async def on_pong(msg: Any) -> None:
        (f,) = unbatch(msg.data)
        waiter[0].set_result(value(f[4]))

    await nc.subscribe(f"{prefix}.pong", cb=on_pong)
    peer = Peer("echo", url, prefix)
    await peer.start(nc, prefix)
    ping = f"{prefix}.ping"

    async def rounds(count: int) -> None:
        for i in range(count):
            fut = waiter[0] = loop.create_future()
            await nc.publish(ping, batch(i, [frame(PID_B, PID_A, "ping", i)]))
            if await fut != i:
                raise AssertionError("pong out of order")

    try:
        await rounds(warmup)
        start = time.perf_counter()
        await rounds(n)
        elapsed = time.perf_counter() - start
        await nc.publish(ping, batch(0, [frame(PID_B, PID_A, "stop", None)]))
        await nc.flush()
    finally:
        await nc.close()
        peer.stop()
    return elapsed / n * 1e6


def run(url: str, n: int = 2000, warmup: int = 100) -> float:
    """Mean round-trip time in microseconds over ``n`` round trips through ``url``."""
    return uvloop.run(measure(url, n, warmup))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="round trips per run")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--url", help="a running nats-server (default: start one)")
    args = parser.parse_args()
    results = repeated(args.url, args.repeat, lambda url: run(url, args.n))
    print(f"nats ping-pong RTT: median {results[len(results) // 2]:.1f} us "
          f"(min {results[0]:.1f}, max {results[-1]:.1f}; {args.n} round trips x {args.repeat})")


if __name__ == "__main__":
    main()
