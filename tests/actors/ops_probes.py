"""Probe actors for the operations tests (tests/test_systemd.py, tests/test_metrics.py)."""

from __future__ import annotations

import os

from actord import process


async def environ(*names: str) -> dict[str, str | None]:
    """The worker's values of the environment variables ``names`` (None when unset)."""
    return {name: os.environ.get(name) for name in names}


async def deaf() -> str:
    """Never read the inbox (its messages stay in the mailbox); end normally on CANCEL."""
    events = process.events()
    while True:
        event = await events.receive()
        if event.kind == process.event.CANCEL:
            return "cancelled"
