"""What a process is doing now, read from its task when asked (``ps``, ``actord info``).

Responsibility: turn a live process's asyncio task into a ``state`` string (SPEC 12) and a
short stack, and count its mailbox per channel. Nothing here runs on a message path: the
state is never tracked, it is computed from what the worker already holds (the task's
awaited future and coroutine chain, the channels' waiter lists, the pending router calls)
when a STATS or INFO request asks for it. The answer is exact at that instant: the worker
answers on its own loop, so no process code runs while it is computed.

A state is one word, optionally followed by ``:`` and what it is about (no space, so a
``ps`` row still splits into its columns):

    running              runnable: its task is scheduled (or it yields with ``sleep(0)``)
    waiting:CHANNELS     suspended in ``receive`` or ``select`` on these channels (``inbox``,
                         ``events``, ``listen:<topic>``, or a channel it made), ``|``-joined
    waiting              suspended on something else (a future, a lock, another task)
    calling:OP           awaiting the router's reply to a call (``spawn``, ``link``, ``exec``...)
    sleeping             in ``asyncio.sleep``
    upgrading            held by an upgrade (SPEC 5) asked for from a helper task
    cancelling           a CANCEL with a deadline was delivered and the deadline is armed
    exiting              its task has finished or is being cancelled
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from types import CodeType, FrameType
from typing import Any

from actord import channel
from actord.worker.proc import Proc

_RECEIVE = channel.Channel.receive.__code__
_SELECT = channel.select.__code__
_SLEEP: CodeType = asyncio.sleep.__code__
#: stack frames from these directories are the runtime's, not the process's (left out)
_RUNTIME_DIR = os.path.dirname(os.path.abspath(__file__))
_ACTORD_DIR = os.path.dirname(_RUNTIME_DIR)
#: the longest stack a reply carries (innermost frames kept)
STACK_LIMIT = 32


def _frames(task: asyncio.Task[Any]) -> Iterator[FrameType]:
    """The suspended frames of ``task``'s coroutine chain, outermost first."""
    obj: Any = task.get_coro()
    for _ in range(256):  # a bound: a chain is never that deep in practice
        frame = getattr(obj, "cr_frame", None) or getattr(obj, "gi_frame", None)
        if frame is None:
            return
        yield frame
        obj = getattr(obj, "cr_await", None) or getattr(obj, "gi_yieldfrom", None)


def _innermost(task: asyncio.Task[Any]) -> FrameType | None:
    """The innermost suspended frame of ``task`` (as :func:`_frames`, without a list: this
    runs for every process of a ``ps``)."""
    obj: Any = task.get_coro()
    frame = None
    for _ in range(256):
        inner = getattr(obj, "cr_frame", None)
        if inner is not None:
            frame, obj = inner, obj.cr_await
            continue
        inner = getattr(obj, "gi_frame", None)
        if inner is None:
            break
        frame, obj = inner, obj.gi_yieldfrom
    return frame


def _task_state(task: asyncio.Task[Any], calls: set[asyncio.Future[Any]],
                proc: Proc | None = None) -> str:
    """The state of one task (see the module docstring); ``proc``: the process whose own
    channels are looked at first (a receive on them needs no frame's locals)."""
    if task.done():
        return "exiting"
    waiter = getattr(task, "_fut_waiter", None)  # the future it is suspended on (CPython)
    if waiter is None or waiter.done():  # done: woken, its next step is scheduled
        return "exiting" if task.cancelling() else "running"
    if task.cancelling():
        return "exiting"
    if waiter in calls:
        return f"calling:{_call_op(list(_frames(task)))}"
    inner = _innermost(task)
    if inner is None:
        return "waiting"
    code = inner.f_code
    if code is _RECEIVE:
        if proc is not None:
            own = _own_channel(proc, waiter)
            if own is not None:
                return own
        return f"waiting:{inner.f_locals['self'].name or 'channel'}"
    if code is _SELECT:
        chans = inner.f_locals.get("channels", ())
        return "waiting:" + "|".join(ch.name or "channel" for ch in chans)
    if code is _SLEEP:
        return "sleeping"
    return "waiting"


def _own_channel(proc: Proc, waiter: asyncio.Future[Any]) -> str | None:
    """``"waiting:NAME"`` of the channel of ``proc``'s own that ``waiter`` waits on, if any."""
    inbox, events = proc.inbox, proc.events
    if inbox is not None and waiter in inbox._waiters:
        return "waiting:inbox"
    if events is not None and waiter in events._waiters:
        return "waiting:events"
    for listener in (proc.listeners or {}).values():
        if waiter in listener.ch._waiters:
            return f"waiting:{listener.ch.name}"
    return None


def _call_op(frames: list[FrameType]) -> str:
    """The API call a task awaits the router for: the innermost ``actord`` API frame's name
    (``_target_call`` names its ``op``)."""
    for frame in reversed(frames):
        code = frame.f_code
        if code.co_name == "_target_call":
            return str(frame.f_locals.get("op", "call"))
        if code.co_filename.startswith(_ACTORD_DIR):
            return code.co_name.lstrip("_")
    return "call"



def state_of(proc: Proc, calls: set[asyncio.Future[Any]]) -> str:
    """What ``proc`` is doing now; ``calls``: the futures of every pending router call and
    exec wait of this worker (:func:`call_futures`)."""
    if proc.upgrade_request is not None:
        return "upgrading"
    if proc.cancel_at is not None:
        return "cancelling"
    task = proc.task
    if task is None:
        return "running"  # started, its task not built yet
    state = _task_state(task, calls, proc)
    if state == "waiting" and proc.tasks:
        # suspended on a helper task (gather, wait_for...): say what the helpers wait on
        for helper in proc.tasks:
            if helper is not task and not helper.done():
                inner = _task_state(helper, calls, proc)
                if inner not in ("waiting", "exiting"):
                    return inner
    return state


def call_futures(pending: dict[int, asyncio.Future[Any]],
                 procs: dict[str, Proc]) -> set[asyncio.Future[Any]]:
    """Every future a process may await for the router: pending calls and exec results."""
    futures = set(pending.values())
    for proc in procs.values():
        if proc.execs:
            futures.update(proc.execs.values())
    return futures


def stack_of(proc: Proc) -> list[str]:
    """The process's main task's stack, outermost first, as ``"file:line in func"`` (the
    runtime's own frames left out; at most ``STACK_LIMIT``, innermost kept)."""
    if proc.task is None:
        return []
    lines = [
        f"{os.path.basename(f.f_code.co_filename)}:{f.f_lineno} in {f.f_code.co_name}"
        for f in _frames(proc.task)
        if not f.f_code.co_filename.startswith(_RUNTIME_DIR)
    ]
    return lines[-STACK_LIMIT:]


def mailbox_of(proc: Proc) -> dict[str, int]:
    """Messages and events not yet received, per place: held, then each channel."""
    box = {"held": len(proc.held), "held_events": len(proc.held_events)}
    if proc.inbox is not None:
        box["inbox"] = len(proc.inbox)
    if proc.events is not None:
        box["events"] = len(proc.events)
    for listener in (proc.listeners or {}).values():
        box[listener.ch.name] = len(listener.ch)
    return box


def info_of(proc: Proc, calls: set[asyncio.Future[Any]]) -> dict[str, Any]:
    """The worker's part of ``actord info`` for one live process."""
    return {
        "state": state_of(proc, calls),
        "trap_links": proc.trap_links,
        "mailbox": mailbox_of(proc),
        "sent": proc.sent,
        "received": proc.received,
        "started": proc.started,
        "stack": stack_of(proc),
    }
