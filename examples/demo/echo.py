"""Echo: answers every inbox message with topic ``"reply"`` and the same payload.

A message without a sender (``from_ == ""``, e.g. ``actord send echo hi``) is logged instead.
Ends normally with ``"stopped"`` on CANCEL.
"""

from __future__ import annotations

import logging

from actord import channel, process

log = logging.getLogger(__name__)


async def main() -> str:
    """Echo until cancelled."""
    inbox, events = process.inbox(), process.events()
    while True:
        ch, value = await channel.select(inbox, events)
        if ch is events:
            if value.kind == process.event.CANCEL:
                return "stopped"
        elif value.from_:
            process.send(value.from_, "reply", value.payload)
        else:
            log.info("echo: %r", value.payload)
