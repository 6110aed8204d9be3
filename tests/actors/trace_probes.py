"""Actors for the ``actord trace`` tests (tests/test_trace.py)."""

from __future__ import annotations

import time
from typing import Any

from actord import process


async def idle() -> None:
    """Wait on the inbox forever."""
    async for _ in process.inbox():
        pass


async def echo() -> None:
    """Answer every message with topic ``re:<topic>`` and the same payload."""
    async for msg in process.inbox():
        if msg.from_:
            process.send(msg.from_, "re:" + msg.topic, msg.payload)


async def exchange(dest: str, messages: list[list[Any]]) -> str:
    """Send each ``[topic, value]`` to ``dest``, waiting for its answer before the next;
    returns this probe's PID."""
    inbox = process.inbox()
    for topic, value in messages:
        process.send(dest, topic, value)
        await inbox.receive()
    return process.pid()


async def sender(dest: str, n: int) -> int:
    """Send ``n`` messages ``m`` (payload i) to ``dest``."""
    for i in range(n):
        process.send(dest, "m", i)
    return n


async def odd_topic(dest: str) -> None:
    """Send ``dest`` a message whose topic holds a lone surrogate (msgpack cannot carry it:
    only a process of the same worker can get it), then a plain ``m``."""
    process.send(dest, "odd" + chr(0xD800))
    process.send(dest, "m")


async def doer() -> str:
    """On its first message: spawn an idle child, link, unlink, monitor, unmonitor and
    monitor it again, terminate it, wait for its EXIT, exec a ``sender`` of nothing;
    returns the child's PID."""
    inbox, events = process.inbox(), process.events()
    await inbox.receive()
    child = await process.spawn("t:idle", "t:b")
    await process.link(child)
    await process.unlink(child)
    await process.monitor(child)
    await process.unmonitor(child)
    await process.monitor(child)
    await process.terminate(child)
    await events.receive()
    await process.exec("t:sender", "t:b", child, 0)
    return child


async def pinger() -> None:
    """Per ``go`` message ``[echo, n]``: ``n`` round trips with ``echo`` (one message each
    way), then a ``done`` message to the sender of ``go`` with the round trips per second."""
    inbox = process.inbox()
    while True:
        go = await inbox.receive()
        dest, n = go.payload
        started = time.perf_counter()
        for i in range(n):
            process.send(dest, "ping", i)
            await inbox.receive()
        process.send(go.from_, "done", n / (time.perf_counter() - started))


async def measure(pinger: str, echo: str, n: int) -> float:
    """Ask ``pinger`` for ``n`` round trips with ``echo``; its rate (round trips/s)."""
    process.send(pinger, "go", echo, n)
    done = await process.inbox().receive()
    rate: float = done.payload
    return rate
