"""Actors for ``scripts/bench_metrics.py``: many idle processes, each with one unread message."""

from __future__ import annotations

from actord import process


async def deaf() -> str:
    """Never read the inbox; end normally on CANCEL."""
    events = process.events()
    while True:
        event = await events.receive()
        if event.kind == process.event.CANCEL:
            return "cancelled"


async def fill(host: str, n: int) -> int:
    """Spawn ``n`` deaf processes on ``host`` and send each one message (left unread)."""
    for _ in range(n):
        pid = await process.spawn("m:deaf", host)
        process.send(pid, "unread", 1)
    return n
