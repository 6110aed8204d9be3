"""A module whose import takes two seconds (a service stopped while its entry loads)."""

import time

from actord import process

time.sleep(2.0)


async def main() -> str:
    """Serve until CANCEL."""
    events = process.events()
    while (await events.receive()).kind != process.event.CANCEL:
        pass
    return "cancelled"
