"""The actor-facing API (SPEC section 3): what process code calls.

Calls whose outcome only the router can decide are coroutines; the rest are plain and never
block. Every call checks that it runs inside a process (else INVALID) and validates its
arguments here, at the call site, so a bad topic or value never reaches the wire. What only
the runtime can do (send, router calls, exec...) is asked of the installed kernel
(``actord.kernel``); this module knows no role.
"""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace
from typing import Any, NoReturn

from actord import ids
from actord import kernel as _kernel
from actord.builder import DEFAULT as _DEFAULT_BUILDER
from actord.builder import SpawnBuilder
from actord.channel import Channel
from actord.core import wire
from actord.durations import cancel_deadline
from actord.errors import InvalidError
from actord.kernel import Upgrade, current, require_process
from actord.messages import Event, Message
from actord.values import check_topic
from actord.values import payload as _payload

event = SimpleNamespace(CANCEL=wire.EV_CANCEL, EXIT=wire.EV_EXIT, LINK_DOWN=wire.EV_LINK_DOWN)

_OPTIONS = ("trap_links",)
_current_proc = current.get


def pid() -> str:
    """The caller's PID."""
    return require_process()[1].pid


def id() -> str:
    """The caller's process id (``namespace:name``)."""
    return require_process()[1].id


def send(dest: str, topic: str, *values: Any) -> None:
    """Send one message; a dead PID makes it a dead letter (no error)."""
    # The hot path of every message: the common cases are inlined (a live caller, a plain
    # str topic, a PID destination, one value); anything else takes the general helpers,
    # which raise. Two lookups find the caller and its kernel, as require_process does.
    proc = _current_proc()
    rt = _kernel.installed
    if proc is None or rt is None or not proc.alive:
        rt, proc = require_process()
    if type(topic) is not str or not topic or topic[0] == "@":
        check_topic(topic)
    if type(dest) is not str or not dest or dest[0] != "{":
        dest = rt.resolve(dest)
    rt.send(proc, dest, topic, values[0] if len(values) == 1 else _payload(values))


# The SpawnBuilder's own coroutines (with nothing set), not wrappers: one coroutine level
# less per spawn.
spawn = _DEFAULT_BUILDER.spawn
spawn_monitored = _DEFAULT_BUILDER.spawn_monitored
spawn_linked = _DEFAULT_BUILDER.spawn_linked
spawn_linked_monitored = _DEFAULT_BUILDER.spawn_linked_monitored


async def _target_call(op: str, dest: str, **extra: Any) -> Any:
    rt, proc = require_process()
    return await rt.request(proc, op, {"dest": rt.resolve(dest), **extra})


async def terminate(dest: str) -> None:
    """Hard stop: the target ends abnormally with ``"process terminated"``."""
    await _target_call("terminate", dest)


async def cancel(
    dest: str, deadline: str | int | None = None, *, reason: str | None = None
) -> None:
    """Deliver CANCEL; past ``deadline`` the runtime terminates the target."""
    at = cancel_deadline(deadline, time.time())
    if reason is not None and not isinstance(reason, str):
        raise InvalidError("reason must be a string")
    await _target_call("cancel", dest, deadline=at, reason=reason)


async def monitor(dest: str) -> None:
    """Watch ``dest``: exactly one EXIT when it ends."""
    await _target_call("monitor", dest)


async def unmonitor(dest: str) -> None:
    """Stop watching; no new EXIT for ``dest`` after this returns."""
    await _target_call("unmonitor", dest)


async def link(dest: str) -> None:
    """Link both ways: an abnormal end of either sends LINK_DOWN to the other."""
    await _target_call("link", dest)


async def unlink(dest: str) -> None:
    """Remove a link (idempotent)."""
    await _target_call("unlink", dest)


def get_options() -> dict[str, Any]:
    """The caller's options, e.g. ``{"trap_links": False}``."""
    proc = require_process()[1]
    return {"trap_links": proc.trap_links}


def set_options(**options: Any) -> None:
    """Set options; an unknown option or a wrong type is INVALID."""
    proc = require_process()[1]
    for key, value in options.items():
        if key not in _OPTIONS:
            raise InvalidError(f"unknown option {key!r}")
        if not isinstance(value, bool):
            raise InvalidError(f"option {key!r} takes a bool")
    if "trap_links" in options:
        proc.trap_links = options["trap_links"]


def inbox() -> Channel:
    """The caller's message channel (the same object on every call)."""
    return require_process()[1].open_inbox()


def events() -> Channel:
    """The caller's event channel (the same object on every call)."""
    return require_process()[1].open_events()


def listen(topic: str, message: bool = False) -> Channel:
    """A channel taking every message of ``topic`` (payloads, or Messages with ``message``)."""
    proc = require_process()[1]
    return proc.listen(check_topic(topic), bool(message))


def unlisten(ch: Channel) -> None:
    """Close a ``listen`` channel; later messages of its topic go to the inbox."""
    require_process()[1].unlisten(ch)


async def exec(
    id: str,
    host: str,
    *args: Any,
    timeout: float | None = None,
) -> Any:
    """Spawn, wait, return the child's value; ProcessFailedError / TimeoutError otherwise."""
    return await _DEFAULT_BUILDER.exec(id, host, *args, timeout=timeout)


def upgrade(id: str | None = None, *args: Any) -> NoReturn:
    """Replace the running code under the same PID (never returns)."""
    rt, proc = require_process()
    new_id = proc.id if id is None else id
    if not ids.is_id(new_id):
        raise InvalidError(f"bad process id {new_id!r}")
    try:
        # held in the worker, never framed, but held to the same size rule as spawn args
        wire.check_size(wire.encode_value(list(args)), rt.max_frame)
    except wire.ValueTooLarge as e:
        raise InvalidError(str(e)) from None
    except (TypeError, ValueError, OverflowError) as e:
        raise InvalidError(f"upgrade args are not msgpack values: {e}") from None
    task = asyncio.current_task()
    if task is not proc.task and proc.task is not None:
        # called from a helper task: unwind the main task too; the Upgrade that ends this
        # helper is no error to report ("Task exception was never retrieved")
        proc.upgrade_request = (new_id, list(args))
        proc.task.cancel()
        if task is not None:
            task.add_done_callback(_retrieve)
    raise Upgrade(new_id, list(args))


def _retrieve(task: asyncio.Task[Any]) -> None:
    if not task.cancelled():
        task.exception()


def with_context(values: dict[str, Any]) -> SpawnBuilder:
    """A SpawnBuilder whose children get these context values."""
    require_process()
    return SpawnBuilder().with_context(values)


_check_name = ids.check_name


async def _register(name: str, pid: str | None = None) -> None:
    rt, proc = require_process()
    _check_name(name)
    pid = proc.pid if pid is None else ids.canonical_pid(pid)
    await rt.request(proc, "register", {"name": name, "pid": pid})


def _lookup(name: str) -> str:
    rt, _ = require_process()
    return rt.resolve(_check_name(name))


async def _unregister(name: str) -> bool:
    rt, proc = require_process()
    return bool(await rt.request(proc, "unregister", {"name": _check_name(name)}))


registry = SimpleNamespace(register=_register, lookup=_lookup, unregister=_unregister)

__all__ = [
    "Event",
    "Message",
    "SpawnBuilder",
    "cancel",
    "event",
    "events",
    "exec",
    "get_options",
    "id",
    "inbox",
    "link",
    "listen",
    "monitor",
    "pid",
    "registry",
    "send",
    "set_options",
    "spawn",
    "spawn_linked",
    "spawn_linked_monitored",
    "spawn_monitored",
    "terminate",
    "unlink",
    "unlisten",
    "unmonitor",
    "upgrade",
    "with_context",
]
