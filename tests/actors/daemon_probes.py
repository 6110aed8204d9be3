"""Probe actors for the daemon-level tests: worker crashes, bad frames, logs, shutdown.

Tests drive long-lived probes from outside with ``ask`` (exec'd through the control socket):
it sends one command message and returns the reply. No probe sleeps to synchronise.
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
from typing import Any

import msgpack

from actord import channel, process
from actord.core import wire
from actord.errors import NotFoundError, ProcessError, ProcessFailedError

WAIT = 10.0
log = logging.getLogger("probe.daemon")


def _lookup(name: str) -> str | None:
    try:
        return process.registry.lookup(name)
    except NotFoundError:
        return None


async def ask(dest: str, topic: str, value: Any = None) -> Any:
    """Send ``topic``/``value`` to ``dest`` and return the payload of its reply."""
    process.send(dest, topic, value)
    msg = (await channel.select(process.inbox(), timeout=WAIT))[1]
    return msg.payload


async def recorder(trap: bool) -> None:
    """Record events; obey commands ``monitor``, ``link``, ``watch``, ``respawn``, ``exec``,
    ``fence``, ``report``.

    ``watch`` gives ``{pid: [names]}``: when an EXIT of such a pid arrives, the recorder looks
    its names up at once and records what it found (SPEC 4.4: they are already released).
    """
    process.set_options(trap_links=trap)
    inbox, events = process.inbox(), process.events()
    names: dict[str, list[str]] = {}
    respawn: dict[str, list[str]] = {}
    seen: list[dict[str, Any]] = []
    while True:
        ch, item = await channel.select(inbox, events)
        if ch is events:
            found = {n: _lookup(n) for n in names.get(item.from_, ())}
            seen.append({"kind": item.kind, "from": item.from_, "result": item.result,
                         "names": found})
            if item.from_ in respawn:  # react at once: spawn there again
                try:
                    spawned = {"value": await process.spawn(*respawn.pop(item.from_))}
                except ProcessError as e:
                    spawned = {"error": e.kind}
                seen.append({"kind": "respawn", "from": item.from_, "result": spawned})
            continue
        reply: Any = "ok"
        if item.topic == "monitor":
            await process.monitor(item.payload)
        elif item.topic == "link":
            await process.link(item.payload)
        elif item.topic == "watch":
            names.update(item.payload)
        elif item.topic == "fence":
            await process.registry.unregister("daemon-probes-fence")
        elif item.topic == "respawn":  # [pid, id, host]: spawn id on host when pid ends
            respawn[item.payload[0]] = item.payload[1:]
        elif item.topic == "exec":
            # owned by this process: its end cancels the task
            asyncio.get_running_loop().create_task(_exec(seen, *item.payload))
        elif item.topic == "report":
            reply = seen
        process.send(item.from_, "reply", reply)


async def _exec(seen: list[dict[str, Any]], id: str, host: str) -> None:
    try:
        value = await process.exec(id, host)
    except ProcessFailedError as e:
        seen.append({"kind": "exec", "from": e.pid, "result": {"error": e.error}})
    else:
        seen.append({"kind": "exec", "from": "", "result": {"value": value}})


async def exec_waiter(id: str, host: str) -> Any:
    """Exec ``id`` on ``host`` and wait for its result."""
    return await process.exec(id, host)


async def cancel_echo() -> dict[str, Any]:
    """Wait for a CANCEL; end with its reason and sender (for a monitor to see)."""
    async for event in process.events():
        if event.kind == process.event.CANCEL:
            return {"reason": event.reason, "from": event.from_}
    return {}


async def idle() -> None:
    """Wait on the inbox forever (never calls ``events()``)."""
    async for _ in process.inbox():
        pass


async def os_pid() -> int:
    """The OS pid of the worker this process runs in."""
    return os.getpid()


async def saboteur(kind: str) -> None:
    """Write a bad frame straight onto this worker's router socket, then wait to be ended."""
    fd = int(sys.argv[sys.argv.index("--fd") + 1])
    bad = {
        "garbage": b"\xc1\xc1\xc1",
        "not-a-frame": msgpack.packb({"op": 1}),
        "unknown-op": msgpack.packb([99, "x"]),
        "short-send": msgpack.packb([wire.SEND]),
        "unhashable-key": b"\x92\x01\x81\x91\x01\x02",
    }[kind]
    os.write(fd, bad)
    await asyncio.Event().wait()


async def chatty(token: str) -> str:
    """Log one record at INFO through the standard ``logging`` module; return our PID."""
    log.info("chatty says %s", token)
    return process.pid()


async def graceful() -> str:
    """Return normally on CANCEL (logging that it did)."""
    ev = await process.events().receive()
    log.info("graceful %s got %s", process.pid(), ev.kind)
    return "stopped"


async def stubborn() -> None:
    """Ignore every CANCEL: only the shutdown deadline ends it."""
    events = process.events()
    while True:
        ev = await events.receive()
        log.info("stubborn %s ignores %s", process.pid(), ev.kind)


async def start_sleeper(detach: bool) -> int:
    """Start ``sleep 300`` (in a new session if ``detach``); return its OS pid."""
    child = subprocess.Popen(["sleep", "300"], start_new_session=detach,
                             stdin=subprocess.DEVNULL)
    return child.pid


async def orphan_maker() -> int:
    """Start a shell that leaves a ``sleep`` behind and exits; return the orphan's OS pid."""
    out = subprocess.run(["sh", "-c", "sleep 300 >/dev/null 2>&1 & echo $!"],
                         capture_output=True, text=True, check=True)
    return int(out.stdout)


async def blocker() -> None:
    """Block this worker's event loop (a misbehaving actor): only SIGKILL ends the worker."""
    import time

    time.sleep(300)
