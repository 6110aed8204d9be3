"""Probe actors for node failures (``tests/test_cluster_nodes.py``): watchers of processes on
another node, a sender that keeps sending through a stall, a fresh meeting after a cut.

No probe sleeps to synchronise: every wait is for a message or an event, bounded by ``WAIT``
(the ticker's 20 ms select timeout only paces its sends). A probe that must show that nothing
more arrives waits for the test's ``done`` message (sent once the nodes have settled), then
fences (a round trip through its router) and counts what came after.
"""

from __future__ import annotations

import inspect
import time
from typing import Any

from actord import channel, process
from actord.errors import ProcessError
from actord.messages import Event, Message

# isort: split
from api_probes import kind
from semantics_probes import drain

#: every wait in a probe is bounded by this (seconds)
WAIT = 20.0


async def fence() -> None:
    """A round trip through the router: what it emitted for us before now has arrived."""
    await process.registry.unregister("node-probes-fence")


async def until_done() -> None:
    """Wait for the test's ``done`` message, then fence."""
    while True:
        msg = (await channel.select(process.inbox(), timeout=WAIT))[1]
        if isinstance(msg, Message) and msg.topic == "done":
            break
    await fence()


def drain_events() -> list[list[Any]]:
    """Every event queued now, as ``[kind, from_, result]``."""
    return [[ev.kind, ev.from_, ev.result] for ev in drain(process.events())]


def row(ev: Event) -> list[Any]:
    """An event as ``[kind, from_, result, arrival time (epoch seconds)]``."""
    return [ev.kind, ev.from_, ev.result, time.time()]


async def watcher(targets: list[str], link: bool, ready: str,
                  expect: int | None = None) -> dict[str, Any]:
    """Monitor every target (or link to it, trapping, if ``link``), register ``ready`` (the
    test waits for it), and take ``expect`` events (default one per target); after ``done``,
    count any more."""
    process.set_options(trap_links=link)
    for target in targets:
        await (process.link(target) if link else process.monitor(target))
    await process.registry.register(ready)
    events = process.events()
    n = len(targets) if expect is None else expect
    rows = [row((await channel.select(events, timeout=WAIT))[1]) for _ in range(n)]
    await until_done()
    return {"rows": rows, "extra": drain_events()}


async def receiver() -> dict[str, Any]:
    """Take ticks ``[i, sent_at]`` from the first sender (monitored once it says hello, then
    told ``ready``) until its EXIT; it registers ``receiving`` at the fifth tick and
    ``receiver-exit`` at the EXIT (the test waits for them); after ``done``, report what came
    after the EXIT too."""
    inbox, events = process.inbox(), process.events()
    hello = (await channel.select(inbox, timeout=WAIT))[1]
    sender = hello.from_
    await process.monitor(sender)
    await process.registry.register("receiver")
    process.send(sender, "ready")
    ticks: list[list[Any]] = []
    while True:
        ch, item = await channel.select(inbox, events, timeout=WAIT)
        if ch is events:
            exit_row = row(item)
            await process.registry.register("receiver-exit")
            break
        if item.topic == "tick":
            ticks.append([*item.payload, time.time()])
            if len(ticks) == 5:
                await process.registry.register("receiving")
    after: list[Any] = []
    while True:  # anything from the sender after its EXIT breaks SPEC 4; "done" ends the wait
        msg = (await channel.select(inbox, timeout=WAIT))[1]
        if msg.topic == "done":
            break
        after.append([msg.topic, msg.payload])
    await fence()
    after += [[m.topic, m.payload] for m in drain(inbox)]
    return {"exit": exit_row, "ticks": ticks, "after": after, "extra": drain_events()}


async def ticker(dest: str) -> dict[str, Any]:
    """Say hello to ``dest``, monitor it, and once it is ready send ``tick [i, sent_at]``
    every 20 ms until an event comes (its EXIT): return how many were sent and the event."""
    await process.monitor(dest)
    process.send(dest, "hello")
    ready = (await channel.select(process.inbox(), timeout=WAIT))[1]
    assert ready.topic == "ready", ready
    await process.registry.register("ticking")
    events = process.events()
    i = 0
    while True:
        try:
            ev = (await channel.select(events, timeout=0.02))[1]
        except TimeoutError:
            process.send(dest, "tick", i, time.time())
            i += 1
            continue
        return {"sent": i, "exit": row(ev)}


async def counter(n: int) -> list[Any]:
    """The payloads of the first ``n`` inbox messages, in arrival order."""
    inbox = process.inbox()
    return [(await channel.select(inbox, timeout=WAIT))[1].payload for _ in range(n)]


async def echo() -> None:
    """Answer ``ping`` with ``pong`` (same payload); raise ``RuntimeError`` on ``raise``."""
    async for msg in process.inbox():
        if msg.topic == "raise":
            raise RuntimeError("asked to")
        process.send(msg.from_, "pong", msg.payload)


async def meet(host: str) -> dict[str, Any]:
    """A fresh pair: spawn an echo on ``host`` linked (trapping) and monitored, ping it, make
    it fail: one pong, then its EXIT and LINK_DOWN."""
    process.set_options(trap_links=True)
    child = await process.spawn_linked_monitored("t:echo", host)
    process.send(child, "ping", 7)
    pong = (await channel.select(process.inbox(), timeout=WAIT))[1]
    process.send(child, "raise")
    events = process.events()
    rows = [(await channel.select(events, timeout=WAIT))[1] for _ in range(2)]
    return {"pong": [pong.topic, pong.payload, pong.from_ == child],
            "events": [[ev.kind, ev.from_ == child, ev.result] for ev in rows]}


async def old_pid(pid: str) -> dict[str, Any]:
    """What send, monitor and link of ``pid`` (a process of a dead run) give."""
    return {
        "send": await kind(lambda: process.send(pid, "hello")),
        "monitor": await kind(lambda: process.monitor(pid)),
        "link": await kind(lambda: process.link(pid)),
    }


async def resolve(name: str) -> Any:
    """``registry.lookup(name)`` (awaited if it is a coroutine): the PID, or the error kind."""
    try:
        found = process.registry.lookup(name)
        if inspect.isawaitable(found):
            found = await found
    except ProcessError as e:
        return e.kind
    return found


async def global_holder(name: str) -> None:
    """Claim the ``global:`` name ``name``, register ``holding`` (local: the test waits for
    it), then hold both until ended."""
    await process.registry.register(name)
    await process.registry.register("holding")
    await process.inbox().receive()


async def global_watch(holder: str, name: str) -> dict[str, Any]:
    """Monitor ``holder``, register ``ready``; at its EXIT resolve ``name`` at once (SPEC 11:
    released before the EXITs), then claim it here."""
    await process.monitor(holder)
    before = await resolve(name)
    await process.registry.register("global-watching")
    ev = (await channel.select(process.events(), timeout=WAIT))[1]
    at_exit = await resolve(name)
    return {"before": before == holder, "exit": [ev.kind, ev.from_, ev.result],
            "at_exit": at_exit, "claim": await kind(lambda: process.registry.register(name))}


async def cancellable(ready: str) -> list[Any]:
    """Register ``ready`` (the test waits for it), then wait for a CANCEL: ``[reason, from_]``."""
    await process.registry.register(ready)
    ev = (await channel.select(process.events(), timeout=WAIT))[1]
    return [ev.kind, ev.reason]


async def exec_caller(host: str, ready: str) -> dict[str, Any]:
    """Exec ``cancellable(ready)`` on ``host``: its value, or what the exec raised."""
    try:
        return {"value": await process.exec("t:cancellable", host, ready)}
    except ProcessError as e:
        return {"kind": e.kind, "error": getattr(e, "error", "") or str(e)}


async def pending_call(pid: str) -> list[Any]:
    """``terminate(pid)``: ``[kind, message]`` of its error, or ``[None, ""]``."""
    try:
        await process.terminate(pid)
    except ProcessError as e:
        return [e.kind, str(e)]
    return [None, ""]


async def round_trip(host: str) -> bool:
    """Spawn a monitored echo on ``host`` and ping it: True on its pong, False when a break
    comes first (its EXIT, e.g. "node down") or the spawn fails; the echo is ended."""
    try:
        child = await process.spawn_monitored("t:echo", host)
    except ProcessError:
        return False
    process.send(child, "ping", 1)
    ch, _ = await channel.select(process.inbox(), process.events(), timeout=WAIT)
    if ch is process.inbox():
        await kind(lambda: process.terminate(child))
        return True
    return False
