"""Counter: counts ``"inc"`` messages and answers ``"get"`` with the count.

The answer has topic ``"reply"`` (as echo's) and goes to the sender; a ``"get"`` without a
sender (``from_ == ""``) logs the count instead. Other topics are ignored. On CANCEL it ends
normally with the count as its result.
"""

from __future__ import annotations

import logging

from actord import channel, process

log = logging.getLogger(__name__)


async def main(start: int = 0) -> int:
    """Count from ``start`` until cancelled; return the count."""
    count = start
    inbox, events = process.inbox(), process.events()
    while True:
        ch, value = await channel.select(inbox, events)
        if ch is events:
            if value.kind == process.event.CANCEL:
                return count
        elif value.topic == "inc":
            count += 1
        elif value.topic == "get":
            if value.from_:
                process.send(value.from_, "reply", count)
            else:
                log.info("count: %d", count)
