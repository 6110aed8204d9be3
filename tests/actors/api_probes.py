"""Probe actors for the SPEC section 3 API tests: shared helpers, helper actors, messaging.

A probe runs one scenario inside the daemon and returns its observations as a msgpack value;
``tests/test_api_*.py`` assert on them. Helpers never sleep to synchronise: every wait is a
``channel.select`` with a timeout, so a missing message fails the probe instead of hanging.
Absence of an event is proven with a *witness*: a process linked to the target that dies
right after it, so its EXIT arrives after any event the target's end could have caused.
"""

from __future__ import annotations

import contextlib
import inspect
import time
from collections.abc import Callable
from typing import Any

from actord import channel, ctx, process
from actord.errors import NotFoundError, ProcessError
from actord.messages import Event, Message

WAIT = 5.0

# -- helpers used by every probe module ------------------------------------------------------


def remote(host: str) -> bool:
    """True for a host of another node (``node@host``)."""
    return "@" in host


def unknown_host(host: str) -> str:
    """A host that does not exist, on the node of ``host``."""
    node, _, _ = host.rpartition("@")
    return f"{node}@t:nope" if node else "t:nope"


async def kind(call: Callable[[], Any]) -> str | None:
    """The ``.kind`` of the ProcessError that ``call()`` raises (awaited if needed), or None."""
    try:
        result = call()
        if inspect.isawaitable(result):
            await result
    except ProcessError as e:
        return e.kind
    return None


async def recv(topic: str | None = None, ch: channel.Channel | None = None) -> Any:
    """The next item of ``ch`` (default: the inbox); a Message must have ``topic``."""
    try:
        _, item = await channel.select(ch or process.inbox(), timeout=WAIT)
    except TimeoutError:
        raise AssertionError(f"no {topic or 'item'} within {WAIT}s") from None
    if topic is not None and (not isinstance(item, Message) or item.topic != topic):
        raise AssertionError(f"expected a message of topic {topic!r}, got {item!r}")
    return item


async def next_event(kind_: str | None = None, from_: str | None = None) -> Event:
    """The next event; it must be of ``kind_`` (and about ``from_``) when given."""
    try:
        _, ev = await channel.select(process.events(), timeout=WAIT)
    except TimeoutError:
        raise AssertionError(f"no event {kind_ or ''} within {WAIT}s") from None
    assert isinstance(ev, Event)
    if (kind_ is not None and ev.kind != kind_) or (from_ is not None and ev.from_ != from_):
        raise AssertionError(f"expected event {kind_} from {from_}, got {ev!r}")
    return ev


def event_dict(ev: Event) -> dict[str, Any]:
    """An event as a msgpack value."""
    return {"kind": ev.kind, "from": ev.from_, "result": ev.result, "deadline": ev.deadline,
            "reason": ev.reason}


async def events_until_exit(pid: str) -> list[list[Any]]:
    """Every event up to and including the EXIT of ``pid``, as ``[kind, from_, result]``."""
    seen: list[list[Any]] = []
    while True:
        ev = await next_event()
        seen.append([ev.kind, ev.from_, ev.result])
        if ev.kind == process.event.EXIT and ev.from_ == pid:
            return seen


async def witness_of(target: str, host: str) -> str:
    """A monitored process linked to ``target``: its EXIT follows every event of target's end."""
    w = await process.spawn_monitored("api:witness", host, target, process.pid())
    await recv("linked")
    return w


async def reap(*pids: str) -> None:
    """Terminate whatever of ``pids`` is still alive."""
    for pid in pids:
        with contextlib.suppress(NotFoundError):
            await process.terminate(pid)


async def dump(recorder: str) -> list[list[Any]]:
    """What a recorder got so far, as ``[topic, from_, payload]`` rows."""
    process.send(recorder, "dump")
    return (await recv("dump")).payload  # type: ignore[no-any-return]


# -- helper actors ---------------------------------------------------------------------------


async def recorder() -> None:
    """Record inbox messages; on ``dump`` reply with every one recorded before it."""
    seen: list[list[Any]] = []
    async for msg in process.inbox():
        assert isinstance(msg, Message)
        if msg.topic == "dump":
            process.send(msg.from_, "dump", seen)
        else:
            seen.append([msg.topic, msg.from_, msg.payload])


async def sender(dest: str, msgs: list[list[Any]]) -> int:
    """Send ``[topic, *values]`` rows to ``dest`` in order."""
    for topic, *values in msgs:
        process.send(dest, topic, *values)
    return len(msgs)


async def waiter() -> None:
    """Answer ``ping`` with ``pong``; never reads events, so it ignores CANCEL."""
    async for msg in process.inbox():
        assert isinstance(msg, Message)
        if msg.topic == "ping":
            process.send(msg.from_, "pong")


async def reporter(parent: str) -> str:
    """Report every event to ``parent`` (topic ``event``) and answer ``ping``; ends on ``stop``."""
    inbox, events = process.inbox(), process.events()
    process.send(parent, "up")
    while True:
        _, item = await channel.select(inbox, events)
        if isinstance(item, Event):
            process.send(parent, "event", event_dict(item))
            continue
        assert isinstance(item, Message)
        if item.topic == "stop":
            return "stopped"
        process.send(item.from_, "pong")


async def crasher(message: str = "boom") -> None:
    """End abnormally with ``ValueError: message``."""
    raise ValueError(message)


async def returner(*args: Any) -> Any:
    """Return the args as received (a tuple: it arrives as a list)."""
    return args


async def witness(target: str, parent: str) -> None:
    """Link to ``target``, tell ``parent``, then wait to die with it."""
    await process.link(target)
    process.send(parent, "linked")
    await process.inbox().receive()


async def ctx_reader() -> dict[str, Any]:
    """The caller's context as seen by ``ctx``, plus a NOT_FOUND check."""
    return {"all": ctx.all(), "missing": await kind(lambda: ctx.get("no-such-key"))}


# -- messaging probes ------------------------------------------------------------------------


async def identity(host: str) -> dict[str, Any]:
    """pid(), id(), the same channels on every call, and a child's own view of itself."""
    child = await process.exec("api:identity_leaf", host)
    return {
        "pid": process.pid(),
        "id": process.id(),
        "inbox_same": process.inbox() is process.inbox(),
        "events_same": process.events() is process.events(),
        "child": child,
        "events": [process.event.CANCEL, process.event.EXIT, process.event.LINK_DOWN],
    }


async def identity_leaf() -> list[str]:
    """``[pid, id]`` of a child."""
    return [process.pid(), process.id()]


async def payload_shapes(host: str) -> dict[str, Any]:
    """Message payload shapes through a recorder on ``host``, and the child-arg shapes."""
    rec = await process.spawn("api:recorder", host)
    process.send(rec, "none")
    process.send(rec, "one", 1)
    process.send(rec, "many", 1, "a", None)
    process.send(rec, "tuple", (1, 2))
    process.send(rec, "bytes", b"\x00\xff")
    process.send(rec, "intkeys", {1: "one", 2: [True, 1.5]})
    process.send(rec, "nested", {"l": [(1,), {"b": b"x"}]})
    rows = await dump(rec)
    await reap(rec)
    args = await process.exec("api:returner", host, (1, 2), b"\x01", {3: "three"}, None)
    return {
        "rows": rows,
        "me": process.pid(),
        "bytes_is_bytes": isinstance(rows[4][2], bytes),
        "args": args,
        "args_bytes_is_bytes": isinstance(args[1], bytes),
        "args_int_key": list(args[2]) == [3],
    }


async def send_errors(host: str) -> dict[str, Any]:
    """Topic and value checks at the call site, names, and dead letters."""
    child = await process.spawn_monitored("api:waiter", host)
    out: dict[str, Any] = {}
    for label, topic in [("empty", ""), ("at", "@x"), ("int", 5), ("none", None)]:
        out[f"topic_{label}"] = await kind(lambda t=topic: process.send(child, t, 1))
        out[f"listen_{label}"] = await kind(lambda t=topic: process.listen(t))
    out["value_set"] = await kind(lambda: process.send(child, "t", {1, 2}))
    out["value_object"] = await kind(lambda: process.send(child, "t", object()))
    out["value_nested"] = await kind(lambda: process.send(child, "t", [1, {"a": object()}]))
    out["spawn_arg_set"] = await kind(lambda: process.spawn("api:waiter", host, {1}))
    out["unknown_name"] = await kind(lambda: process.send("no-such-name", "t"))
    out["bad_dest"] = await kind(lambda: process.send(5, "t"))  # type: ignore[arg-type]
    for label, bad in [("garbage", "{garbage"), ("empty", "{}"), ("nohex", "{t:a|0x}"),
                       ("long", "{t:a|0x" + "1" * 17 + "}")]:
        out[f"pid_{label}_send"] = await kind(lambda d=bad: process.send(d, "t", 1))
        out[f"pid_{label}_monitor"] = await kind(lambda d=bad: process.monitor(d))
    out["name_newline"] = await kind(lambda: process.registry.register("a\nb"))
    out["name_long"] = await kind(lambda: process.registry.register("n" * 256))
    out["name_max"] = await kind(lambda: process.registry.register("n" * 255))
    # a non-canonical spelling of a live PID is that PID: short, upper-case, extra zeros (as
    # many as fit in 16 digits: a clustered node's serials have 16 already)
    host_part, serial = child[1:-1].split("|0x")
    short = f"{{{host_part}|0x{int(serial, 16):x}}}"
    zeros = "0" * min(3, 16 - len(serial))
    for label, spelling in [("short", short),
                            ("upper", f"{{{host_part}|0X{serial.upper()}}}"),
                            ("zeros", f"{{{host_part}|0x{zeros}{serial}}}")]:
        process.send(spelling, "ping")
        out[f"pong_{label}"] = (await recv("pong")).from_ == child
    out["lookup_noncanonical"] = await kind(lambda: process.monitor(short))
    out["ok"] = await kind(lambda: process.send(child, "fine", 1))
    process.send(child, "ping")
    out["pong"] = (await recv("pong")).from_ == child
    await process.terminate(child)
    await next_event(process.event.EXIT, child)
    out["dead_pid"] = await kind(lambda: process.send(child, "t", 1))
    return out


async def listen_routing(host: str) -> dict[str, Any]:
    """listen() with raw payloads and with Messages, the inbox for the rest, and unlisten()."""
    me = process.pid()
    process.send(me, "held", "early")  # arrives before listen("held") exists: held for it
    held = process.listen("held")
    raw, full = process.listen("raw"), process.listen("full", message=True)
    msgs = [["raw", 1], ["other", 2], ["full", 3], ["raw", 4, 5], ["done"]]
    src = await process.spawn("api:sender", host, me, msgs)
    other = await recv("other")
    await recv("done")
    got_full = full.receive_nowait()
    assert isinstance(got_full, Message)
    out: dict[str, Any] = {
        "held": held.receive_nowait(),
        "raw": [raw.receive_nowait(), raw.receive_nowait()],
        "full": [got_full.topic, got_full.from_ == src, got_full.payload],
        "other": [other.payload, other.from_ == src],
        "dup_listen": await kind(lambda: process.listen("raw")),
    }
    process.unlisten(raw)
    out["closed_after_unlisten"] = raw.closed
    out["unlisten_twice"] = await kind(lambda: process.unlisten(raw))
    out["unlisten_inbox"] = await kind(lambda: process.unlisten(process.inbox()))
    await process.spawn("api:sender", host, me, [["raw", 6], ["done"]])
    after = await recv("raw")
    await recv("done")
    out["after_unlisten"] = [after.payload, after.from_ != ""]
    process.unlisten(full)
    process.unlisten(held)
    return out


async def channels() -> dict[str, Any]:
    """Channel behaviour through a real process: select, timeout, nowait, len, close, async for."""
    me = process.pid()
    out: dict[str, Any] = {}
    inbox = process.inbox()
    t0 = time.monotonic()
    try:
        await channel.select(inbox, timeout=0.05)
        out["timeout"] = "no timeout"
    except TimeoutError:
        out["timeout"] = round(time.monotonic() - t0, 2) >= 0.04
    try:
        inbox.receive_nowait()
        out["empty"] = "no Empty"
    except channel.Empty:
        out["empty"] = True
    x, y = process.listen("x"), process.listen("y")
    process.send(me, "x", 1)
    process.send(me, "y", 2)
    first = await channel.select(y, x, timeout=WAIT)
    second = await channel.select(y, x, timeout=WAIT)
    out["select_order"] = [first[0] is y, first[1], second[0] is x, second[1]]
    z = process.listen("z")
    for i in range(3):
        process.send(me, "z", i)
    out["len"] = len(z)
    z.close()
    out["after_close"] = [z.receive_nowait(), await z.receive(), z.receive_nowait()]
    try:
        await z.receive()
        out["closed"] = "no Closed"
    except channel.Closed:
        out["closed"] = True
    it = process.listen("it")
    for i in range(3):
        process.send(me, "it", i)
    process.unlisten(it)
    out["async_for"] = [v async for v in it]
    out["select_bad"] = await kind(lambda: channel.select())
    return out


async def message_event_attrs(host: str) -> dict[str, Any]:
    """Message and Event attributes for EXIT (value/error), LINK_DOWN and CANCEL."""
    me = process.pid()
    out: dict[str, Any] = {}
    src = await process.spawn("api:sender", host, me, [["hello", "w", 1]])
    msg = await recv("hello")
    out["message"] = [msg.topic, msg.from_ == src, msg.payload]
    ok = await process.spawn_monitored("api:returner", host, "v")
    out["exit_value"] = event_dict(await next_event(process.event.EXIT, ok))
    bad = await process.spawn_monitored("api:crasher", host, "bad thing")
    out["exit_error"] = event_dict(await next_event(process.event.EXIT, bad))
    process.set_options(trap_links=True)
    linked = await process.spawn_linked("api:crasher", host, "linked thing")
    out["link_down"] = event_dict(await next_event(process.event.LINK_DOWN, linked))
    before = time.time()
    await process.cancel(me, "30s", reason="why")
    cancel = event_dict(await next_event(process.event.CANCEL, me))
    out["cancel"] = {**cancel, "deadline_ok": before + 29 < cancel["deadline"] < time.time() + 31}
    await process.cancel(me)
    out["cancel_plain"] = event_dict(await next_event(process.event.CANCEL, me))
    out["me"] = me
    out["pids"] = {"ok": ok, "bad": bad, "linked": linked}
    return out
