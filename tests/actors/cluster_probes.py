"""Probe actors for the cross-node tests (``tests/test_cluster_send.py``).

No probe sleeps to synchronise: every wait is for a message, bounded by ``WAIT``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from actord import channel, process

#: every wait in a probe is bounded by this (seconds)
WAIT = 20.0


async def seq_checker(n: int) -> dict[str, Any]:
    """Take ``n`` messages ``i`` (0..n-1 expected in order), then report to their sender."""
    inbox = process.inbox()
    got: list[int] = []
    sender = ""
    for _ in range(n):
        msg = (await channel.select(inbox, timeout=WAIT))[1]
        sender = msg.from_
        got.append(msg.payload)
    report = {"n": len(got), "in_order": got == list(range(n)),
              "first_bad": next((i for i, v in enumerate(got) if v != i), None)}
    process.send(sender, "report", report)
    return report


async def seq_sender(dest: str, n: int) -> Any:
    """Send ``n`` numbered messages to ``dest`` (on another node), then wait for its report."""
    for i in range(n):
        process.send(dest, "seq", i)
    msg = (await channel.select(process.inbox(), timeout=WAIT))[1]
    return {"topic": msg.topic, "from": msg.from_, "report": msg.payload}


async def one_message() -> list[Any]:
    """The first message that arrives: ``[topic, payload, from]``."""
    msg = (await channel.select(process.inbox(), timeout=WAIT))[1]
    return [msg.topic, msg.payload, msg.from_]


async def size_checker(n: int) -> list[Any]:
    """Take ``n`` messages of bytes; report ``[i, len]`` of each (``i``: its first byte)."""
    inbox = process.inbox()
    got: list[Any] = []
    sender = ""
    for _ in range(n):
        msg = (await channel.select(inbox, timeout=WAIT))[1]
        sender = msg.from_
        got.append([msg.payload[0], len(msg.payload)])
    process.send(sender, "report", got)
    return got


async def size_sender(dest: str, sizes: list[int]) -> Any:
    """Send one message of ``sizes[i]`` bytes (first byte ``i``) each, then end with a
    marker and wait for the report."""
    for i, size in enumerate(sizes):
        process.send(dest, "big", bytes([i]) * size)
    msg = (await channel.select(process.inbox(), timeout=WAIT))[1]
    return msg.payload


async def endless_sender(dest: str, tally: str | None = None) -> None:
    """Send numbered messages to ``dest`` until killed, yielding to the loop every 50; with
    ``tally``, tell it the count sent so far every 50 (after those messages)."""
    i = 0
    while True:
        process.send(dest, "seq", i)
        i += 1
        if i % 50 == 0:
            if tally is not None:
                process.send(tally, "sent", i)
            await asyncio.sleep(0)


async def last_tally() -> int:
    """Monitor the sender of the first ``sent`` count; return the last count before its
    EXIT."""
    inbox, events = process.inbox(), process.events()
    first = (await channel.select(inbox, timeout=WAIT))[1]
    await process.monitor(first.from_)
    last = first.payload
    while True:
        ch, value = await channel.select(inbox, events, timeout=WAIT)
        if ch is events:
            return int(last)
        last = value.payload


async def watch_stream(linger: float) -> dict[str, Any]:
    """Monitor the sender of the first message, take its numbered messages until its EXIT,
    then keep listening ``linger`` s: what came, in order or not, and what came after."""
    inbox, events = process.inbox(), process.events()
    first = (await channel.select(inbox, timeout=WAIT))[1]
    sender = first.from_
    await process.monitor(sender)
    got = [first.payload]
    while True:
        ch, value = await channel.select(inbox, events, timeout=WAIT)
        if ch is events:
            ended = [value.kind, value.from_, value.result]
            break
        got.append(value.payload)
    late = 0
    try:
        while True:
            await channel.select(inbox, timeout=linger)
            late += 1
    except TimeoutError:
        pass
    return {"n": len(got), "in_order": got == list(range(got[0], got[0] + len(got))),
            "exit": ended, "late": late}
