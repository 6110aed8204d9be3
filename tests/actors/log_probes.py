"""Actors for the ``actord logs`` tests (tests/test_logs.py)."""

from __future__ import annotations

import logging

from actord import process

log = logging.getLogger("probe.logs")


def _fail_deep_inside(message: str) -> None:
    raise RuntimeError(message)


async def talker() -> None:
    """Per inbox message: topic ``info``/``warning``/``error`` logs its payload at that level;
    ``raise`` fails with ``RuntimeError(payload)`` from a helper (named in the traceback)."""
    async for msg in process.inbox():
        if msg.topic == "raise":
            _fail_deep_inside(msg.payload)
        log.log(logging.getLevelName(msg.topic.upper()), "%s", msg.payload)


async def burst(token: str, count: int) -> int:
    """Log ``count`` INFO records ``<token> <i>``, i from 0; returns ``count``."""
    for i in range(count):
        log.info("%s %d", token, i)
    return count
