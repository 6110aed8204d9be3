"""SPEC section 3: every API call made outside a process raises InvalidError (no daemon)."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from actord import channel, ctx, process
from actord.errors import InvalidError

PLAIN: dict[str, Callable[[], Any]] = {
    "pid": process.pid,
    "id": process.id,
    "send": lambda: process.send("{t:a|0x00001}", "t", 1),
    "get_options": process.get_options,
    "set_options": lambda: process.set_options(trap_links=True),
    "inbox": process.inbox,
    "events": process.events,
    "listen": lambda: process.listen("t"),
    "unlisten": lambda: process.unlisten(channel.Channel()),
    "upgrade": process.upgrade,
    "with_context": lambda: process.with_context({"a": 1}),
    "registry.lookup": lambda: process.registry.lookup("n"),
    "ctx.get": lambda: ctx.get("k"),
    "ctx.all": ctx.all,
}

PID = "{t:a|0x00001}"
AWAITED: dict[str, Callable[[], Coroutine[Any, Any, Any]]] = {
    "spawn": lambda: process.spawn("t:x", "t:a"),
    "spawn_monitored": lambda: process.spawn_monitored("t:x", "t:a"),
    "spawn_linked": lambda: process.spawn_linked("t:x", "t:a"),
    "spawn_linked_monitored": lambda: process.spawn_linked_monitored("t:x", "t:a"),
    "terminate": lambda: process.terminate(PID),
    "cancel": lambda: process.cancel(PID, "1s"),
    "monitor": lambda: process.monitor(PID),
    "unmonitor": lambda: process.unmonitor(PID),
    "link": lambda: process.link(PID),
    "unlink": lambda: process.unlink(PID),
    "exec": lambda: process.exec("t:x", "t:a"),
    "registry.register": lambda: process.registry.register("n"),
    "registry.unregister": lambda: process.registry.unregister("n"),
}


@pytest.mark.parametrize("name", sorted(PLAIN))
def test_plain_call_outside_a_process(name: str) -> None:
    """A plain API call outside a process raises InvalidError (kind "INVALID")."""
    with pytest.raises(InvalidError) as info:
        PLAIN[name]()
    assert info.value.kind == "INVALID"


@pytest.mark.parametrize("name", sorted(AWAITED))
def test_coroutine_call_outside_a_process(name: str) -> None:
    """An awaited API call outside a process raises InvalidError (kind "INVALID")."""
    with pytest.raises(InvalidError) as info:
        asyncio.run(AWAITED[name]())
    assert info.value.kind == "INVALID"


def test_router_calls_are_coroutines_and_the_rest_plain() -> None:
    """The SPEC table's kinds: router-decided calls are ``async def``, the others plain."""
    awaited = ["spawn", "spawn_monitored", "spawn_linked", "spawn_linked_monitored",
               "terminate", "cancel", "monitor", "unmonitor", "link", "unlink", "exec"]
    plain = ["pid", "id", "send", "get_options", "set_options", "inbox", "events", "listen",
             "unlisten", "upgrade", "with_context"]
    assert all(inspect.iscoroutinefunction(getattr(process, n)) for n in awaited)
    assert not any(inspect.iscoroutinefunction(getattr(process, n)) for n in plain)
    assert inspect.iscoroutinefunction(process.registry.register)
    assert inspect.iscoroutinefunction(process.registry.unregister)
    assert not inspect.iscoroutinefunction(process.registry.lookup)
    builder = process.SpawnBuilder()
    for n in ("spawn", "spawn_monitored", "spawn_linked", "spawn_linked_monitored", "exec"):
        assert inspect.iscoroutinefunction(getattr(builder, n)), n
    for n in ("with_context", "with_actor", "with_scope", "with_name", "with_message"):
        assert not inspect.iscoroutinefunction(getattr(builder, n)), n


def test_event_constants_need_no_process() -> None:
    """The event kind constants are plain strings, usable anywhere."""
    assert process.event.CANCEL == "pid.cancel"
    assert process.event.EXIT == "pid.exit"
    assert process.event.LINK_DOWN == "pid.link.down"


def test_error_kinds() -> None:
    """Every ProcessError subclass carries its SPEC kind string."""
    from actord import errors

    assert {cls.__name__: cls.kind for cls in (
        errors.InvalidError, errors.NotFoundError, errors.PermissionDeniedError,
        errors.AlreadyExistsError, errors.ProcessFailedError)} == {
        "InvalidError": "INVALID", "NotFoundError": "NOT_FOUND",
        "PermissionDeniedError": "PERMISSION_DENIED", "AlreadyExistsError": "ALREADY_EXISTS",
        "ProcessFailedError": "FAILED",
    }
    failed = errors.ProcessFailedError("x", pid="{t:a|0x00001}", error="ValueError: v")
    assert (failed.pid, failed.error) == ("{t:a|0x00001}", "ValueError: v")
    assert all(issubclass(c, errors.ProcessError) for c in (
        errors.InvalidError, errors.NotFoundError, errors.PermissionDeniedError,
        errors.AlreadyExistsError, errors.ProcessFailedError))
