"""Actors for the crash-report and log tests (tests/test_crash_log.py)."""

from __future__ import annotations

import asyncio
import logging
import sys

from actord import process

log = logging.getLogger("probe.crash")


def _explode_deep_inside(message: str) -> None:
    raise ValueError(message)


async def raiser(message: str) -> None:
    """Fail with ``ValueError(message)`` raised from a helper (named in the traceback)."""
    _explode_deep_inside(message)


async def idle() -> None:
    """Wait for events forever (ignores CANCEL): ended only by terminate or a deadline."""
    events = process.events()
    while True:
        await events.receive()


async def logs(token: str) -> str:
    """Log ``token`` at DEBUG and at INFO (as ``<token>-debug`` and ``<token>-info``)."""
    log.debug("%s-debug", token)
    log.info("%s-info", token)
    return process.pid()


async def prints(token: str) -> str:
    """print() a line in two writes, a line to stderr, a flushed partial line and a line
    from a thread."""
    print(f"{token}-out", end="")
    print("-tail")
    print(f"{token}-err", file=sys.stderr)
    print(f"{token}-partial", end="", flush=True)
    await asyncio.to_thread(print, f"{token}-thread")
    return process.pid()


async def storm(count: int) -> list[str]:
    """Spawn ``count`` raisers on this process's host; their PIDs, once all have ended."""
    host = process.pid()[1:].split("|")[0]
    pids = [await process.spawn_monitored("t:c.raiser", host, f"storm {i}")
            for i in range(count)]
    events = process.events()
    ended = 0
    while ended < count:
        ev = await events.receive()
        if ev.kind == process.event.EXIT:
            ended += 1
    return pids


async def service_crasher() -> None:
    """A service that fails when told to (inbox topic ``raise``)."""
    msg = await process.inbox().receive()
    raise RuntimeError(f"service asked to fail: {msg.payload}")



async def linker(dest: str) -> None:
    """Link to ``dest`` (not trapping), log ``linked <dest>``, then wait forever."""
    await process.link(dest)
    log.info("linked %s", dest)
    await idle()


async def upgrader(id: str) -> None:
    """Upgrade to process ``id`` (whose module may fail to load)."""
    process.upgrade(id)
