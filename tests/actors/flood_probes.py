"""Actors for the flood/backpressure test (tests/test_flood.py)."""

import asyncio
import time

from actord import channel, process


async def slow_sink():
    """A receiver whose worker is mostly blocked: it reads its socket only between sleeps."""
    inbox = process.inbox()
    got = 0
    while True:
        time.sleep(0.02)  # blocks the whole worker on purpose (a slow peer)
        while True:
            try:
                msg = inbox.receive_nowait()
            except channel.Empty:
                break
            if msg.topic == "count?":
                process.send(msg.from_, "count", got)
            else:
                got += 1
        await asyncio.sleep(0)


async def producer(dest, count, size):
    """Send ``count`` messages of ``size`` bytes to ``dest`` as fast as possible."""
    blob = b"x" * size
    start = time.perf_counter()
    for i in range(count):
        process.send(dest, "blob", blob)
        if i % 256 == 0:
            await asyncio.sleep(0)  # let this worker write to the router
    return time.perf_counter() - start


async def ponger():
    async for msg in process.inbox():
        process.send(msg.from_, "pong", msg.payload)


async def pinger(dest, rounds):
    """Round trips to ``dest``; returns the RTTs in microseconds."""
    inbox = process.inbox()
    rtts = []
    for i in range(rounds):
        t = time.perf_counter()
        process.send(dest, "ping", i)
        _, msg = await channel.select(inbox, timeout=10)
        assert msg.payload == i
        rtts.append((time.perf_counter() - t) * 1e6)
    return rtts


async def ask_count(dest):
    """The sink's count of flood messages received."""
    process.send(dest, "count?")
    _, msg = await channel.select(process.inbox(), timeout=30)
    return msg.payload
