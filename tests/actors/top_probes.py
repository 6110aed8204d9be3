"""Processes for tests/test_top.py: a stream of messages at a steady rate."""

import asyncio

from actord import process


async def stream(dest: str, per_second: int) -> None:
    """Send ``dest`` ``per_second`` messages a second, in tenths, until cancelled."""
    n = 0
    while True:
        for _ in range(max(1, per_second // 10)):
            n += 1
            process.send(dest, "tick", n)
        await asyncio.sleep(0.1)
