"""Probe actors for the remote-operation tests (``tests/test_cluster_remote.py``).

No probe sleeps to synchronise: every wait is for a message or an event, bounded by ``WAIT``.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable
from typing import Any

from actord import channel, process
from actord.errors import AlreadyExistsError, NotFoundError, ProcessError, ProcessFailedError

#: every wait in a probe is bounded by this (seconds)
WAIT = 20.0


async def idle() -> None:
    """Wait until a message or an event (a CANCEL) arrives, or until terminated."""
    await channel.select(process.inbox(), process.events(), timeout=3600)


async def value(v: Any) -> Any:
    """Return ``v``."""
    return v


async def crash(message: str) -> None:
    """End abnormally."""
    raise RuntimeError(message)


async def watch_remote(host: str, n: int) -> dict[str, Any]:
    """Spawn ``n`` idle processes on ``host`` linked and monitored (trapping links), then
    collect events until every child has sent its EXIT and LINK_DOWN; then anything more
    for one second (there must be nothing). Returns ``{"events": [[kind, from, error,
    epoch seconds]], "extra": n, "children": [pid]}``."""
    process.set_options(trap_links=True)
    children = [await process.spawn_linked_monitored("r:idle", host) for _ in range(n)]
    events = process.events()
    rows: list[list[Any]] = []
    while len(rows) < 2 * n:
        _, ev = await channel.select(events, timeout=WAIT)
        rows.append([ev.kind, ev.from_, (ev.result or {}).get("error"), time.time()])
    return {"events": rows, "extra": await count_events(1.0), "children": children}


async def exec_remote(host: str, v: Any) -> Any:
    """``exec`` a child on ``host`` that returns ``v``, and one that raises."""
    ok = await process.exec("r:value", host, v)
    try:
        await process.exec("r:crash", host, "far")
    except ProcessFailedError as e:
        return {"ok": ok, "failed": e.error}
    return {"ok": ok, "failed": None}


async def exec_then_end(host: str) -> None:
    """Exec an idle child on ``host``: the test ends us while it runs (the child must then
    be cancelled: ``exec cancelled``)."""
    await process.exec("r:idle", host, timeout=WAIT)


async def calls_on(dest: str) -> dict[str, Any]:
    """Monitor (twice), link, unlink, unmonitor ``dest`` (another node's); then terminate
    it: no event may come (no edge is left)."""
    process.set_options(trap_links=True)
    await process.monitor(dest)
    try:
        await process.monitor(dest)
        twice = None
    except AlreadyExistsError as e:
        twice = type(e).__name__
    await process.link(dest)
    await process.unlink(dest)
    await process.unmonitor(dest)
    await process.terminate(dest)
    return {"twice": twice, "extra": await count_events(0.5)}


async def count_events(seconds: float) -> int:
    """How many events arrive within ``seconds`` (measured on the monotonic clock: a
    select's timer counts from the loop's cached time, which an entry's import delays)."""
    end = time.monotonic() + seconds
    n = 0
    while (left := end - time.monotonic()) > 0:
        try:
            await channel.select(process.events(), timeout=left)
            n += 1
        except TimeoutError:
            pass
    return n


async def outcome(call: Awaitable[Any]) -> str:
    """Await ``call``: "ok", or its ProcessError's kind."""
    try:
        await call
    except ProcessError as e:
        return e.kind
    return "ok"


async def monitor_of(dest: str) -> str:
    """Monitor ``dest``: "ok", or the error's kind."""
    return await outcome(process.monitor(dest))


async def name_holder(name: str) -> Any:
    """Register ``name``, then return the first message's payload."""
    await process.registry.register(name)
    _, msg = await channel.select(process.inbox(), timeout=WAIT)
    return msg.payload


async def claim(name: str) -> str:
    """Try to register ``name``: "ok", or the error's kind."""
    return await outcome(process.registry.register(name))


async def watch_name(name: str) -> dict[str, Any]:
    """Monitor the holder of ``name``, tell it (by name) to end, and at its EXIT look the
    name up (SPEC 4 rule 4: released before the EXIT); then claim it ourselves."""
    holder = process.registry.lookup(name)
    await process.monitor(holder)
    process.send(name, "go", "bye")
    _, ev = await channel.select(process.events(), timeout=WAIT)
    try:
        at_exit: str | None = process.registry.lookup(name)
    except NotFoundError:
        at_exit = None
    return {"exit": [ev.kind, ev.from_ == holder, ev.result], "at_exit": at_exit,
            "claim": await claim(name)}


async def try_terminate(dest: str) -> str:
    """Terminate ``dest``: "ok", or the error's kind."""
    return await outcome(process.terminate(dest))


async def as_scope(scope: str, dest: str) -> str:
    """:func:`try_terminate` of ``dest`` run by a child with actor ``test:scoped`` and scope
    ``[scope]``."""
    builder = process.SpawnBuilder().with_actor({"id": "test:scoped"}).with_scope([scope])
    result: str = await builder.exec("r:try_terminate", "t:a", dest)
    return result
