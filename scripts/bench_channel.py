"""Benchmark: put+receive rate of actord's Channel against asyncio.Queue, on uvloop.

Two cases, each the median of 5 runs:
  queued   put one item, then receive it: the receiver never waits (receive's fast path)
  wakeup   a consumer task waits on an empty channel and is woken for every item

Run: python scripts/bench_channel.py [items]    (a benchmark, not a test; nothing is asserted)
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from collections.abc import Awaitable, Callable

import uvloop

from actord.channel import Channel

RUNS = 5
Case = Callable[[int], Awaitable[None]]


async def channel_queued(n: int) -> None:
    ch = Channel("bench")
    put, receive = ch._put, ch.receive
    for i in range(n):
        put(i)
        await receive()


async def queue_queued(n: int) -> None:
    q: asyncio.Queue[int] = asyncio.Queue()
    put, get = q.put_nowait, q.get
    for i in range(n):
        put(i)
        await get()


async def channel_wakeup(n: int) -> None:
    ch = Channel("bench")

    async def consume() -> None:
        for _ in range(n):
            await ch.receive()

    consumer = asyncio.create_task(consume())
    await asyncio.sleep(0)
    for i in range(n):
        ch._put(i)
        await asyncio.sleep(0)  # let the consumer take it, so it waits again
    await consumer


async def queue_wakeup(n: int) -> None:
    q: asyncio.Queue[int] = asyncio.Queue()

    async def consume() -> None:
        for _ in range(n):
            await q.get()

    consumer = asyncio.create_task(consume())
    await asyncio.sleep(0)
    for i in range(n):
        q.put_nowait(i)
        await asyncio.sleep(0)
    await consumer


def rate(case: Case, n: int) -> float:
    """Median items per second over RUNS runs, each on a fresh uvloop loop."""
    rates = []
    for _ in range(RUNS):
        start = time.perf_counter()
        uvloop.run(case(n))
        rates.append(n / (time.perf_counter() - start))
    return statistics.median(rates)


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    print(f"put+receive, {n:,} items, median of {RUNS} runs, uvloop {uvloop.__version__}")
    for label, ours, theirs, size in (
        ("queued", channel_queued, queue_queued, n),
        ("wakeup", channel_wakeup, queue_wakeup, n // 5),
    ):
        ch_rate, q_rate = rate(ours, size), rate(theirs, size)
        print(
            f"  {label:7} Channel {ch_rate / 1e6:6.2f} M/s   asyncio.Queue {q_rate / 1e6:6.2f} M/s"
            f"   ratio {ch_rate / q_rate:4.2f}x"
        )


if __name__ == "__main__":
    main()
