"""Actors for the walking-skeleton tests."""

from actord import process


async def echo():
    """Reply to every inbox message with topic "reply" and the same payload."""
    inbox = process.inbox()
    async for msg in inbox:
        if msg.from_:
            process.send(msg.from_, "reply", msg.payload)


async def add(a, b):
    return a + b


async def ping(host):
    """Spawn an echo on ``host``, send it one message, return what came back."""
    child = await process.spawn("t:echo", host)
    process.send(child, "hi", 1, 2)
    msg = await process.inbox().receive()
    await process.terminate(child)
    return [msg.topic, msg.payload, msg.from_ == child]


async def gc_objects():
    """How many objects the worker's cyclic GC tracks (a leak of ended processes shows here)."""
    import gc

    return len(gc.get_objects())
