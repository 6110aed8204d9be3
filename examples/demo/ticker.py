"""Ticker: every ``interval`` seconds, logs a tick count and sends ``"tick"`` to ``echo``.

The timer is ``channel.select``'s timeout, not messages to itself. ``echo`` may not be
registered (yet): that tick is skipped. Echo's replies are received and dropped, so the
mailbox stays empty. Ends normally with ``"stopped"`` on CANCEL.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from actord import channel, process
from actord.errors import NotFoundError

log = logging.getLogger(__name__)


async def main(interval: float = 1.0) -> str:
    """Tick every ``interval`` seconds until cancelled."""
    if interval <= 0:
        raise ValueError(f"interval must be > 0, got {interval!r}")
    inbox, events = process.inbox(), process.events()
    loop = asyncio.get_running_loop()
    count = 0
    due = loop.time() + interval
    while True:
        try:
            ch, value = await channel.select(inbox, events, timeout=max(0.0, due - loop.time()))
        except TimeoutError:
            count += 1
            log.info("tick %d", count)
            with contextlib.suppress(NotFoundError):
                process.send("echo", "tick", count)
            # Ticks stay on the interval grid; after a stall, skip the missed ones.
            due = max(due + interval, loop.time())
            continue
        if ch is events and value.kind == process.event.CANCEL:
            return "stopped"
