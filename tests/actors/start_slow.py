"""A module whose import takes ``$ACTORD_TEST_SLOW_IMPORT`` seconds, then writes
``time.monotonic()`` to ``$ACTORD_TEST_IMPORT_MARKER``: when did its entry finish loading."""

import os
import time

from actord import process

time.sleep(float(os.environ.get("ACTORD_TEST_SLOW_IMPORT", "0")))
_marker = os.environ.get("ACTORD_TEST_IMPORT_MARKER")
if _marker:
    with open(_marker, "w") as f:
        f.write(repr(time.monotonic()))


async def main() -> None:
    """Serve until CANCEL."""
    events = process.events()
    while (await events.receive()).kind != process.event.CANCEL:
        pass
