"""Probe actors for ``actord info`` and the true ``state`` of ``ps`` (tests/test_info.py).

``agent`` does what the messages it reads say, so a test drives one process step by step
through the CLI's ``send`` and reads the result through ``info``; lines marked ``# WAIT-...``
are where it waits, which the test finds in this file to check the stack ``info`` shows.
"""

from __future__ import annotations

import asyncio
from typing import Any

from actord import channel, process


async def agent() -> None:
    """Run commands from the inbox, one a message: the topic names it, the payload is its
    argument. Unknown topics are ignored (only counted as received)."""
    inbox = process.inbox()
    while True:
        msg = await inbox.receive()  # WAIT-INBOX
        await _command(msg.topic, msg.payload)


async def _command(topic: str, arg: Any) -> None:
    if topic in ("link", "unlink", "monitor", "unmonitor"):
        await getattr(process, topic)(arg)
    elif topic == "trap":
        process.set_options(trap_links=True)
    elif topic == "send":  # [dest, topic, n]
        for i in range(arg[2]):
            process.send(arg[0], arg[1], i)
    elif topic == "spawn_linked":  # [id, host]: the child is registered as its name
        pid = await process.spawn_linked(arg[0], arg[1])
        await process.registry.register(f"child-of-{process.pid()}", pid)
    elif topic == "exec":  # [id, host]: a child that never returns by itself
        await process.exec(arg[0], arg[1])
    elif topic == "sleep":
        await asyncio.sleep(3600)  # WAIT-SLEEP
    elif topic == "busy":
        while True:
            await asyncio.sleep(0)
    elif topic == "select":  # wait on a listen channel, events, and a channel of its own
        mine = channel.Channel("mine")
        await channel.select(process.listen("jobs"), process.events(), mine)


async def idle() -> None:
    """Wait for an event (a CANCEL ends it, normally)."""
    await process.events().receive()


async def holder() -> None:
    """Keep topic ``keep`` in a listen channel and hold every other message (no inbox);
    wait on events."""
    process.listen("keep")
    await process.events().receive()
