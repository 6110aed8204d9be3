"""Actors for the supervised-service tests (tests/test_services.py)."""

from actord import channel, process


def _record(path, line):
    if path:
        with open(path, "a") as f:
            f.write(line + "\n")


async def obedient(label=None, record=None):
    """Serve until told to end.

    Inbox topic "return" ends it normally with the payload as value, "raise" raises
    ``RuntimeError``; CANCEL ends it normally with "cancelled", after appending
    ``"<label> <reason>"`` to the file ``record`` (if given).
    """
    inbox, events = process.inbox(), process.events()
    while True:
        ch, value = await channel.select(inbox, events)
        if ch is events and value.kind == process.event.CANCEL:
            _record(record, f"{label} {value.reason}")
            return "cancelled"
        if ch is inbox and value.topic == "return":
            return value.payload
        if ch is inbox and value.topic == "raise":
            raise RuntimeError(f"asked to fail: {value.payload}")


async def stubborn():
    """Ignore CANCEL (and everything else) forever."""
    events = process.events()
    while True:
        await events.receive()


async def crasher():
    """Fail at once."""
    raise RuntimeError("crash on start")


async def needs(name, label=None, record=None):
    """Resolve ``name`` first (NOT_FOUND ends it abnormally), then behave like ``obedient``."""
    process.registry.lookup(name)
    return await obedient(label, record)
