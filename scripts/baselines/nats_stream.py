"""Baseline: a batched one-way stream between two OS processes through a nats-server.

This process (uvloop, its own connection) packs ``batch`` frames into one NATS message (a
batch in actord's node-to-node format), publishes it on ``P.stream`` and yields to its loop,
as actord's router does once per loop tick, until ``n`` frames are out, then sends "end";
the sink peer (another process, another connection) decodes every batch, frame and payload
and answers "done" on ``P.done``. The result is messages per second from the first publish
to "done". actord's cross-node stream (scenario i) is compared with it.

Run: python scripts/baselines/nats_stream.py [--n 100000] [--batch 100] [--url nats://...]
     (without --url it starts its own nats-server)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from typing import Any

import uvloop
from nats_common import PID_A, PID_B, Peer, batch, connect, frame, repeated, unbatch

UNIT = "msg/s"


async def measure(url: str, n: int, size: int) -> float:
    """Stream ``n`` frames, ``size`` per NATS message; messages per second until "done"."""
    prefix = f"bench.{os.urandom(6).hex()}"
    loop = asyncio.get_running_loop()
    nc = await connect(url)
    done: list[asyncio.Future[Any]] = [loop.create_future()]

    async def on_done(msg: Any) -> None:
        (f,) = unbatch(msg.data)
        done[0].set_result(f[4])

    await nc.subscribe(f"{prefix}.done", cb=on_done)
    peer = Peer("sink", url, prefix)
    await peer.start(nc, prefix)
    stream = f"{prefix}.stream"
    seq = 0

    async def send(frames: list[list[Any]]) -> None:
        nonlocal seq
        await nc.publish(stream, batch(seq, frames))
        seq += 1

    try:
        start = time.perf_counter()
        for first in range(0, n, size):
            await send([frame(PID_B, PID_A, "m", i) for i in range(first, min(first + size, n))])
            await asyncio.sleep(0)
        await send([frame(PID_B, PID_A, "end", None)])
        await done[0]
        elapsed = time.perf_counter() - start
        await send([frame(PID_B, PID_A, "stop", None)])
        await nc.flush()
    finally:
        await nc.close()
        peer.stop()
    return n / elapsed


def run(url: str, n: int = 100_000, size: int = 100) -> float:
    """Messages per second of a one-way stream of ``n`` frames through ``url``."""
    return uvloop.run(measure(url, n, size))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000, help="messages per run")
    parser.add_argument("--batch", type=int, default=100, help="frames per NATS message")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--url", help="a running nats-server (default: start one)")
    args = parser.parse_args()
    results = repeated(args.url, args.repeat, lambda url: run(url, args.n, args.batch))
    print(f"nats stream: median {results[len(results) // 2]:,.0f} msg/s "
          f"(min {results[0]:,.0f}, max {results[-1]:,.0f}; {args.n} messages x {args.repeat})")


if __name__ == "__main__":
    main()
