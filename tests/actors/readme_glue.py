"""Test glue for tests/test_readme.py: a process that talks to the README's examples.

Copied next to the README's own code (``myapp/...``) on the python_path of the README
configs the test runs; nothing in the README refers to it.
"""

from actord import process, supervisor


async def ask(dest, topic, *values):
    """Send one message to ``dest`` and return the first answer: ``[topic, payload, from_]``."""
    process.send(dest, topic, *values)
    msg = await process.inbox().receive()
    return [msg.topic, msg.payload, msg.from_]


async def children(dest):
    """The supervisor ``dest``'s ``which_children`` answer."""
    return await supervisor.which_children(dest)
