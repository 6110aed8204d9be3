"""Actors for tests/test_oversize.py: values too large to carry (SPEC 2's size rule).

A probe tries one oversized call and returns what it raised as ``[kind, message]`` (or
``None`` when nothing was raised), so the test asserts on the caller's view. Bystanders idle
on every host and answer pings: they must outlive every probe.
"""

from __future__ import annotations

import logging
from typing import Any

from actord import channel, process
from actord.errors import ProcessError, ProcessFailedError

WAIT = 10.0


async def bystander() -> None:
    """Answer every message with topic "pong" until cancelled."""
    inbox, events = process.inbox(), process.events()
    while True:
        ch, value = await channel.select(inbox, events)
        if ch is events and value.kind == process.event.CANCEL:
            return
        if ch is inbox and value.from_:
            process.send(value.from_, "pong", value.payload)


async def sizer() -> None:
    """Answer every message with the size of its payload (len of a str/bytes/list)."""
    async for msg in process.inbox():
        process.send(msg.from_, "size", len(msg.payload))


async def idle(*args: Any) -> None:
    """Wait for a CANCEL; a child the spawn probes may start (it never should)."""
    events = process.events()
    while (await events.receive()).kind != process.event.CANCEL:
        pass


async def returns(size: int, kind: str = "str") -> Any:
    """Return a value whose payload is ``size`` long."""
    return _value(size, kind)


async def raises(size: int) -> None:
    """End abnormally with an exception message of ``size`` characters."""
    raise ValueError("e" * size)


async def logs(size: int) -> str:
    """Log one record of ``size`` characters, then return."""
    logging.getLogger("oversize").warning("big record %s", "r" * size)
    return "logged"


async def reason_target(parent: str | None = None) -> None:
    """On CANCEL, tell ``parent`` (or, without one, the registry: a name) how long the reason
    was and whether it was cut; then wait to be terminated."""
    events = process.events()
    while True:
        ev = await events.receive()
        if ev.kind == process.event.CANCEL:
            reason = ev.reason or ""
            seen = f"reason-{len(reason)}-{'cut' if 'more characters cut' in reason else 'whole'}"
            if parent:
                process.send(parent, "reason", seen)
            else:
                await process.registry.register(seen)


def _value(size: int, kind: str) -> Any:
    if kind == "bytes":
        return b"b" * size
    if kind == "list":
        return ["l" * 1000] * (size // 1000)
    return "s" * size


async def _outcome(call: Any) -> list[Any] | None:
    """``[kind, message]`` of the ProcessError that awaiting ``call`` raises, else None."""
    try:
        await call
    except ProcessError as e:
        return [e.kind, str(e)]
    return None


def _sync_outcome(call: Any, *args: Any) -> list[Any] | None:
    try:
        call(*args)
    except ProcessError as e:
        return [e.kind, str(e)]
    return None


async def send_probe(dest: str, size: int, kind: str) -> Any:
    """Send one value of ``size`` to ``dest`` (a sizer): the error, or the size it received."""
    err = _sync_outcome(process.send, dest, "big", _value(size, kind))
    if err is not None:
        return err
    _, msg = await channel.select(process.inbox(), timeout=WAIT)
    return msg.payload


async def spawn_probe(host: str, size: int) -> dict[str, Any]:
    """Every way a spawn carries a value, each with one of ``size``: what each raised."""
    big = "a" * size
    out: dict[str, Any] = {}
    for name in ("spawn", "spawn_monitored", "spawn_linked", "spawn_linked_monitored"):
        out[name] = await _outcome(getattr(process, name)("o:idle", host, big))
    out["exec"] = await _outcome(process.exec("o:idle", host, big))
    out["with_message"] = _sync_outcome(process.with_context({}).with_message, "t", big)
    out["with_context"] = _sync_outcome(process.with_context, {"k": big})
    # each part fits, together they do not: the spawn's frame is refused
    half = "h" * (size // 2 + 1024)
    builder = process.with_context({"k": half}).with_message("t", half)
    out["together"] = await _outcome(builder.spawn("o:idle", host, half))
    out["upgrade"] = _sync_outcome(process.upgrade, None, big)
    return out


async def exec_probe(host: str, size: int, kind: str) -> Any:
    """exec a child returning a value of ``size``: the child's error, or the value's length."""
    try:
        value = await process.exec("o:returns", host, size, kind)
    except ProcessFailedError as e:
        return ["FAILED", e.error]
    return len(value)


async def monitor_probe(host: str, size: int) -> Any:
    """spawn_monitored a child returning ``size`` characters: the result of its EXIT."""
    child = await process.spawn_monitored("o:returns", host, size)
    _, ev = await channel.select(process.events(), timeout=WAIT)
    assert ev.from_ == child
    return ev.result


async def cancel_probe(host: str, size: int) -> Any:
    """cancel a child with a reason of ``size`` characters: the error, or what the child saw."""
    child = await process.spawn("o:reason", host, process.pid())
    seen = await _outcome(process.cancel(child, reason="c" * size))
    if seen is None:
        _, msg = await channel.select(process.inbox(), timeout=WAIT)
        seen = msg.payload
    await process.terminate(child)
    return seen


async def ping_probe(*targets: str) -> int:
    """Ping every target (bystanders); how many answered."""
    for target in targets:
        process.send(target, "ping", target)
    answered = 0
    for _ in targets:
        _, msg = await channel.select(process.inbox(), timeout=WAIT)
        answered += msg.topic == "pong"
    return answered


async def topic_probe(dest: str, size: int) -> Any:
    """Send one small value to ``dest`` with a topic of ``size`` characters: the error."""
    return _sync_outcome(process.send, dest, "t" * size, 1)
