"""Probe actors for ``process.upgrade`` (SPEC section 5); see ``api_probes`` for conventions."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from api_probes import kind, next_event, recv

from actord import channel, process

EXIT, LINK_DOWN = process.event.EXIT, process.event.LINK_DOWN


# -- processes that upgrade ------------------------------------------------------------------


async def up_v1(parent: str, name: str) -> None:
    """Register, trap links, queue mail in channels, then upgrade to ``api:up_v2`` on ``go``."""
    await process.registry.register(name)
    process.set_options(trap_links=True)
    inbox, kept, ctl = process.inbox(), process.listen("kept"), process.listen("ctl")
    process.send(parent, "ready", {"id": process.id(), "opts": process.get_options()})
    await recv(ch=ctl)  # "go": all the parent sent before it is queued in inbox and kept
    process.upgrade("api:up_v2", parent, name, len(inbox), len(kept))


async def up_v2(parent: str, name: str, queued_inbox: int, queued_kept: int) -> None:
    """Report what survived the upgrade, then wait to be terminated."""
    kept = process.listen("kept", message=True)
    rows: list[list[Any]] = []
    while not rows or rows[-1][0] != "end":
        msg = await recv()
        rows.append([msg.topic, msg.from_, msg.payload])
    kept_rows = []
    for _ in range(2):
        msg = await recv(ch=kept)
        kept_rows.append([msg.topic, msg.from_, msg.payload])
    process.send(parent, "report", {
        "pid": process.pid(),
        "id": process.id(),
        "opts": process.get_options(),
        "queued": [queued_inbox, queued_kept],
        "lookup": process.registry.lookup(name),
        "inbox": rows,
        "kept": kept_rows,
    })
    await process.inbox().receive()


async def up_to_waiter() -> None:
    """Become an ``api:waiter`` (a different process id) under the same PID."""
    process.upgrade("api:waiter")


async def up_unknown() -> None:
    """Upgrade to a process id the node does not know."""
    process.upgrade("api:nope")


async def up_bad_calls() -> dict[str, Any]:
    """Arguments upgrade refuses at the call site; the process then goes on."""
    return {
        "bad_id": await kind(lambda: process.upgrade("no colon")),
        "bad_args": await kind(lambda: process.upgrade(None, {1, 2})),
        "still": process.id(),
    }


async def up_from_task() -> None:
    """Call upgrade from a helper task: the whole process is replaced."""
    asyncio.get_running_loop().create_task(_upgrade_soon())
    await process.inbox().receive()


async def _upgrade_soon() -> None:
    process.upgrade("api:returner", "from-task")


async def up_in_task_group() -> None:
    """Call upgrade inside a TaskGroup (it reaches the runtime wrapped in a group)."""
    async with asyncio.TaskGroup() as tg:
        tg.create_task(process.inbox().receive())
        process.upgrade("api:returner", "from-group")


# -- probes ----------------------------------------------------------------------------------


async def upgrade_keeps(host: str) -> dict[str, Any]:
    """An upgrade keeps PID, queued mail (inbox, listen, held), links, monitors and names,
    resets trap_links and channels, and changes process.id()."""
    me = process.pid()
    name = f"up-{me}"
    process.set_options(trap_links=True)
    child = await process.spawn_monitored("api:up_v1", host, me, name)
    await process.link(child)
    ready = (await recv("ready")).payload
    for topic, value in [("m1", 1), ("kept", "l1"), ("m2", 2), ("ctl", "go"), ("m3", 3),
                         ("kept", "l2"), ("ctl", "after"), ("end", None)]:
        process.send(child, topic, value)
    report = (await recv("report")).payload
    out: dict[str, Any] = {"ready": ready, "report": report, "me": me, "child": child}
    out["lookup_here"] = process.registry.lookup(name) == child
    await process.terminate(child)
    out["events"] = [[e.kind, e.from_ == child, e.result]
                     for e in [await next_event(), await next_event()]]
    return out


async def upgrade_failures(host: str) -> dict[str, Any]:
    """A failed upgrade is an abnormal end ``upgrade: ...`` (seen by monitors and links)."""
    process.set_options(trap_links=True)
    child = await process.spawn_linked_monitored("api:up_unknown", host)
    events = [await next_event(), await next_event()]
    return {
        "events": [[e.kind, e.from_ == child, e.result] for e in events],
        "bad_calls": await process.exec("api:up_bad_calls", host),
        "from_task": await process.exec("api:up_from_task", host),
        "in_task_group": await process.exec("api:up_in_task_group", host),
    }


async def hot_reload(id: str, host: str, path: str, source: str) -> dict[str, Any]:
    """Run ``id``, rewrite its module to ``source``, ask it to upgrade, report what followed."""
    me = process.pid()
    child = await process.spawn_monitored(id, host, me)
    before = (await recv("version")).payload
    Path(path).write_text(source)
    process.send(child, "upgrade")
    ch, item = await channel.select(process.inbox(), process.events(), timeout=5)
    out: dict[str, Any] = {"child": child, "before": before}
    if ch is process.events():
        out["exit"] = item.result  # type: ignore[attr-defined]
        return out
    out["after"] = item.payload  # type: ignore[attr-defined]
    process.send(child, "stop")
    out["exit"] = (await next_event(EXIT, child)).result
    return out


async def hot_indirect(id: str, host: str) -> list[Any]:
    """Run ``id``, which reports and upgrades itself once; the two reports, then its end."""
    child = await process.spawn_monitored(id, host, process.pid())
    reports = [(await recv("version")).payload, (await recv("version")).payload]
    process.send(child, "stop")
    return [*reports, (await next_event(EXIT, child)).result]
