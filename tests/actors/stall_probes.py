"""Probe actors for tests/test_stall.py: an actor that blocks its worker's event loop.

The block is the thing under test, not synchronisation: the test decides when it ends (it
creates a file) and ``limit`` bounds it, so no worker stays blocked past a failed test.
"""

from __future__ import annotations

import os
import time


async def block_until(path: str, limit: float) -> str:
    """Block this worker's event loop (``time.sleep``, never awaiting) until ``path`` exists
    or ``limit`` seconds passed; then end normally. ``path + ".blocked"`` says it began."""
    end = time.monotonic() + limit
    with open(path + ".blocked", "w"):
        pass
    while not os.path.exists(path) and time.monotonic() < end:
        time.sleep(0.02)
    return "unblocked"
