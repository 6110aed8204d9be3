"""Baseline: a one-way stream through an ``asyncio.Queue`` between two tasks of one process.

The producer puts ``batch`` items (``(topic, from, value)`` tuples) and yields to the loop,
until ``n`` are queued; the consumer awaits ``get()`` ``n`` times. The result is messages
per second on uvloop. actord's same-worker stream (scenario c) is compared with it.

Run: python scripts/baselines/queue_stream.py [--n 200000] [--batch 100]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

import uvloop

UNIT = "msg/s"


async def measure(n: int, batch: int) -> float:
    """Messages per second from the first put to the consumer's last get."""
    queue: asyncio.Queue[tuple[str, str, Any]] = asyncio.Queue()

    async def consume() -> None:
        get = queue.get
        for _ in range(n):
            await get()

    consumer = asyncio.create_task(consume())
    await asyncio.sleep(0)  # the consumer waits on an empty queue before the clock starts
    start = time.perf_counter()
    put = queue.put_nowait
    for i in range(n):
        put(("m", "producer", i))
        if i % batch == batch - 1:
            await asyncio.sleep(0)
    await consumer
    return n / (time.perf_counter() - start)


def run(n: int = 200_000, batch: int = 100) -> float:
    """Messages per second through an asyncio.Queue (fresh uvloop loop)."""
    return uvloop.run(measure(n, batch))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200_000, help="messages per run")
    parser.add_argument("--batch", type=int, default=100, help="puts between yields")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    results = sorted(run(args.n, args.batch) for _ in range(args.repeat))
    print(f"asyncio.Queue stream: median {results[len(results) // 2]:,.0f} msg/s "
          f"(min {results[0]:,.0f}, max {results[-1]:,.0f}; {args.n} messages x {args.repeat})")


if __name__ == "__main__":
    main()
