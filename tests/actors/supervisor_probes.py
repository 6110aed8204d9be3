"""Probe actors for the supervisor tests (tests/test_supervisor.py).

The supervisor itself is ``sup:sup``, whose entry is ``actord.supervisor:run`` straight
from config. Children report to the probe that started them (``parent``) with inbox
messages: ``up [label, pid]`` when they start, ``cancelled [label, pid, reason, t]`` when
they get CANCEL (``t``: ``time.monotonic()``, one clock for every OS process of the machine,
so the order of stops is read from it, not from the arrival order of messages from several
senders). Every wait is bounded (``WAIT``); nothing sleeps to synchronise.
"""

from __future__ import annotations

import time
from typing import Any

from actord import channel, process, supervisor
from actord.errors import NotFoundError
from actord.messages import Event, Message

WAIT = 5.0
EXIT, CANCEL = process.event.EXIT, process.event.CANCEL


# -- children --------------------------------------------------------------------------------


def _tell(parent: str | None, topic: str, *values: Any) -> None:
    if parent:
        process.send(parent, topic, list(values))


async def child(label: str, parent: str | None = None) -> Any:
    """Report ``up``; ``return`` ends it normally, ``raise`` abnormally; CANCEL: return."""
    me = process.pid()
    _tell(parent, "up", label, me)
    inbox, events = process.inbox(), process.events()
    while True:
        _, item = await channel.select(inbox, events)
        if isinstance(item, Event) and item.kind == CANCEL:
            _tell(parent, "cancelled", label, me, item.reason, time.monotonic())
            return "cancelled"
        if isinstance(item, Message) and item.topic == "return":
            return item.payload
        if isinstance(item, Message) and item.topic == "raise":
            raise RuntimeError(f"asked to fail: {label}")


async def stubborn(label: str, parent: str | None = None) -> None:
    """Report ``up``; report CANCEL as ``ignored`` and go on running."""
    me = process.pid()
    _tell(parent, "up", label, me)
    async for ev in process.events():
        assert isinstance(ev, Event)
        if ev.kind == CANCEL:
            _tell(parent, "ignored", label, me, ev.reason, time.monotonic())


async def crasher(label: str, parent: str | None = None) -> None:
    """Report ``up``, then fail at once."""
    _tell(parent, "up", label, process.pid())
    raise RuntimeError(f"crash on start: {label}")


async def bomb(target: str, parent: str) -> None:
    """Link to ``target``, report ``linked``, then fail when told ``boom``."""
    await process.link(target)
    _tell(parent, "linked")
    async for msg in process.inbox():
        assert isinstance(msg, Message)
        if msg.topic == "boom":
            raise RuntimeError("boom")


# -- helpers ---------------------------------------------------------------------------------


def spec(label: str, host: str, parent: str | None, **keys: Any) -> dict[str, Any]:
    """A child spec of ``sup:child`` (or ``process=...``) reporting to ``parent``."""
    return {"id": label, "process": keys.pop("process", "sup:child"), "host": host,
            "args": [label, parent], **keys}


async def next_item(timeout: float = WAIT) -> Message | Event:
    """The next event, else the next inbox message, within ``timeout``."""
    try:
        _, item = await channel.select(process.events(), process.inbox(), timeout=timeout)
    except TimeoutError:
        raise AssertionError(f"nothing arrived within {timeout}s") from None
    assert isinstance(item, Message | Event)
    return item


async def collect(topic: str, count: int, log: list[list[Any]]) -> list[list[Any]]:
    """Wait for ``count`` messages of ``topic``; every message read is appended to ``log``."""
    got: list[list[Any]] = []
    while len(got) < count:
        item = await next_item()
        if isinstance(item, Event):
            raise AssertionError(f"unexpected event {item!r} while waiting for {topic}")
        log.append([item.topic, *item.payload])
        if item.topic == topic:
            got.append(item.payload)
    return got


async def until_exit(pid: str, log: list[list[Any]]) -> dict[str, Any]:
    """Read messages into ``log`` until the EXIT of ``pid``; its result."""
    while True:
        item = await next_item()
        if isinstance(item, Event):
            if item.kind == EXIT and item.from_ == pid:
                assert item.result is not None
                return item.result
            raise AssertionError(f"unexpected event {item!r}")
        log.append([item.topic, *item.payload])


def drain(log: list[list[Any]]) -> None:
    """Append every message already queued to ``log``."""
    while True:
        try:
            msg = process.inbox().receive_nowait()
        except channel.Empty:
            return
        assert isinstance(msg, Message)
        log.append([msg.topic, *msg.payload])


async def alive(pid: str) -> bool:
    """True if ``pid`` is a live process."""
    try:
        await process.monitor(pid)
    except NotFoundError:
        return False
    await process.unmonitor(pid)
    return True


async def entry_change(sup: str, label: str, old: str | None) -> list[list[Any]]:
    """Ask ``which_children`` until ``label``'s entry is no longer ``old``; the last answer."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        rows = await supervisor.which_children(sup)
        if dict(map(tuple, rows)).get(label, "gone") != old:
            return rows
    raise AssertionError(f"{label} still {old} after {WAIT}s")


async def shutdown(sup: str, log: list[list[Any]]) -> dict[str, Any]:
    """CANCEL the (monitored) supervisor; its EXIT result, messages read into ``log``."""
    await process.cancel(sup, "10s")
    result = await until_exit(sup, log)
    drain(log)
    return result


# -- probes ----------------------------------------------------------------------------------


async def strategy_probe(strategy: str, sup_host: str, hosts: list[str],
                         expect_ups: int) -> dict[str, Any]:
    """Three children a, b (named), c; terminate b, wait for ``expect_ups`` restarts, CANCEL."""
    me = process.pid()
    name = f"sup-b-{me}"
    children = [spec(label, host, me) for label, host in zip("abc", hosts, strict=True)]
    children[1]["name"] = name
    sup = await process.spawn_monitored("sup:sup", sup_host, children, strategy)
    start_log: list[list[Any]] = []
    await collect("up", 3, start_log)
    before = await supervisor.which_children(sup)
    old = before[1][1]
    await process.terminate(old)
    restart_log: list[list[Any]] = []
    await collect("up", expect_ups, restart_log)
    after = await supervisor.which_children(sup)
    out: dict[str, Any] = {"before": before, "after": after, "restart_log": restart_log,
                           "named": process.registry.lookup(name)}
    out["old_alive"] = [await alive(pid) for _, pid in before]
    out["new_alive"] = [await alive(pid) for _, pid in after]
    stop_log: list[list[Any]] = []
    out["sup_exit"] = await shutdown(sup, stop_log)
    out["stop_log"] = stop_log
    out["alive_after_stop"] = [await alive(pid) for _, pid in after]
    return out


async def restart_types_probe(restart: str) -> dict[str, Any]:
    """One child of type ``restart`` per kind of end; each child's entry after its end."""
    me = process.pid()
    ends = ("return", "raise", "kill")
    sup = await process.spawn_monitored(
        "sup:sup", "t:a", [spec(end, "t:b", me, restart=restart) for end in ends])
    log: list[list[Any]] = []
    await collect("up", 3, log)
    pids = dict(map(tuple, await supervisor.which_children(sup)))
    out: dict[str, Any] = {}
    for end in ends:
        old = pids[end]
        if end == "kill":
            await process.terminate(old)
        else:
            process.send(old, end, "bye")
        rows = await entry_change(sup, end, old)
        new = dict(map(tuple, rows)).get(end, "gone")
        if isinstance(new, str) and new.startswith("{"):
            [[_, up_pid]] = await collect("up", 1, log)
            out[end] = "restarted" if up_pid == new else f"wrong up {up_pid}"
        else:
            out[end] = "kept" if new is None else "gone"
    out["sup_exit"] = await shutdown(sup, log)
    return out


async def group_probe(strategy: str) -> dict[str, Any]:
    """A group restart forgets a temporary sibling and restarts a normally ended transient."""
    me = process.pid()
    children = [spec("p", "t:a", me), spec("temp", "t:b", me, restart="temporary"),
                spec("tran", "t:b", me, restart="transient")]
    sup = await process.spawn_monitored("sup:sup", "t:a", children, strategy)
    log: list[list[Any]] = []
    await collect("up", 3, log)
    pids = dict(map(tuple, await supervisor.which_children(sup)))
    process.send(pids["tran"], "return", "done")
    out: dict[str, Any] = {"tran_ended": await entry_change(sup, "tran", pids["tran"])}
    await process.terminate(pids["p"])
    await collect("up", 2, log)
    out["after"] = await supervisor.which_children(sup)
    out["temp_alive"] = await alive(pids["temp"])
    out["sup_exit"] = await shutdown(sup, log)
    out["log"] = log
    return out


async def intensity_probe() -> dict[str, Any]:
    """A child that always crashes, intensity 2 in 10 s: the supervisor gives up."""
    me = process.pid()
    children = [spec("a", "t:a", me), spec("b", "t:b", me, process="sup:crasher")]
    sup = await process.spawn_monitored("sup:sup", "t:a", children, "one_for_one", 2, "10s")
    log: list[list[Any]] = []
    out: dict[str, Any] = {"sup_exit": await until_exit(sup, log)}
    drain(log)
    out["log"] = log
    a = next(row[2] for row in log if row[:2] == ["up", "a"])
    out["a_alive"] = await alive(a)
    return out


async def cancel_probe() -> dict[str, Any]:
    """CANCEL: a (5 s), b (ignores CANCEL, 300 ms) and c (brutal_kill) stop last to first."""
    me = process.pid()
    children = [spec("a", "t:a", me), spec("b", "t:b", me, process="sup:stubborn",
                                           shutdown="300ms"),
                spec("c", "t:b", me, shutdown="brutal_kill")]
    sup = await process.spawn_monitored("sup:sup", "t:a", children)
    log: list[list[Any]] = []
    ups = await collect("up", 3, log)
    pids = {label: pid for label, pid in ups}
    for pid in pids.values():
        await process.monitor(pid)
    t0 = time.monotonic()
    await process.cancel(sup, reason="test")
    exits: list[list[Any]] = []
    while True:
        item = await next_item()
        if isinstance(item, Message):
            log.append([item.topic, *item.payload])
            continue
        assert item.kind == EXIT, item
        label = next((k for k, v in pids.items() if v == item.from_), "sup")
        exits.append([label, item.result])
        if label == "sup":
            break
    drain(log)
    return {"exits": exits, "log": log, "took": time.monotonic() - t0}


async def terminated_probe(host: str) -> dict[str, Any]:
    """Terminate the supervisor: its linked children die with it."""
    me = process.pid()
    sup = await process.spawn_monitored(
        "sup:sup", "t:a", [spec(label, host, me) for label in "abc"])
    log: list[list[Any]] = []
    ups = await collect("up", 3, log)
    for _, pid in ups:
        await process.monitor(pid)
    await process.terminate(sup)
    results: dict[str, Any] = {}
    while len(results) < 4:
        item = await next_item()
        assert isinstance(item, Event) and item.kind == EXIT, item
        label = next((lb for lb, pid in ups if pid == item.from_), "sup")
        results[label] = item.result
    drain(log)
    return {"exits": results, "log": log}


async def linked_failure_probe() -> dict[str, Any]:
    """A process linked to the supervisor fails: the supervisor stops its children and fails."""
    me = process.pid()
    sup = await process.spawn_monitored(
        "sup:sup", "t:a", [spec("a", "t:a", me), spec("b", "t:b", me)])
    log: list[list[Any]] = []
    await collect("up", 2, log)
    b = await process.spawn("sup:bomb", "t:b", sup, me)
    await collect("linked", 1, log)
    process.send(b, "boom")
    result = await until_exit(sup, log)
    drain(log)
    return {"sup_exit": result, "log": log, "bomb": b}


async def backoff_probe() -> dict[str, Any]:
    """With a 300 ms backoff the restart waits; meanwhile the child's entry is None."""
    me = process.pid()
    sup = await process.spawn_monitored(
        "sup:sup", "t:a", [spec("a", "t:b", me)], "one_for_one", 3, "5s",
        {"initial": "300ms", "max": "300ms", "factor": 1.0, "jitter": 0.0})
    log: list[list[Any]] = []
    [[_, old]] = await collect("up", 1, log)
    t0 = time.monotonic()
    await process.terminate(old)
    waiting = await entry_change(sup, "a", old)
    [[_, new]] = await collect("up", 1, log)
    took = time.monotonic() - t0
    after = await supervisor.which_children(sup)
    return {"waiting": waiting, "after": after, "new": new, "took": took,
            "sup_exit": await shutdown(sup, log)}


async def which(dest: str) -> list[list[Any]]:
    """The ``which_children`` answer of the supervisor ``dest``."""
    return await supervisor.which_children(dest)
