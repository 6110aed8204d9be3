"""One process's state inside a worker, and the mailbox routing rule of SPEC section 4.2.

A message goes to the ``listen`` channel of its topic if there is one, else to ``inbox()``
if it was created, else it is *held* in arrival order. Creating ``listen(t)`` takes the held
messages of topic ``t``; creating ``inbox()`` takes all the other held ones. Events go only
to ``events()`` (held until it exists). Invariant: a message is in exactly one place (held,
one channel, or received), so ``mailbox_depth`` counts each undelivered message once.

Every arriving message gets the receiver's next arrival number (``Message._seq``, also its
count of messages received), so an upgrade can put what waits in the old channels back in
arrival order, each with its sender (SPEC section 5).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Any

from actord.channel import Channel
from actord.errors import AlreadyExistsError, InvalidError
from actord.messages import Event, Message


class Listener:
    """One ``listen`` channel; a payload-only one remembers the Messages its items came from."""

    __slots__ = ("as_message", "ch", "sources")

    def __init__(self, ch: Channel, as_message: bool) -> None:
        self.ch = ch
        self.as_message = as_message
        # payload-only: the Messages of the last len(ch) items, oldest first (for upgrade)
        self.sources: deque[Message] = deque()

    def put(self, msg: Message) -> None:
        """Queue one message (or its payload) in the channel."""
        if self.as_message:
            self.ch._put(msg)
            return
        if not self.ch._put(msg.payload):
            return  # closed by the process: dropped
        sources = self.sources
        sources.append(msg)
        while len(sources) > len(self.ch):  # those were received: forget them
            sources.popleft()


class TaskList(list[asyncio.Task[Any]]):
    """The tasks a process started, finished ones included until the next ``prune``.

    A done-callback per task (to forget it when it ends) costs a loop callback per task,
    about a microsecond; instead finished tasks are dropped in bulk once the list outgrows
    twice its live size, which is O(1) per task amortised.
    """

    __slots__ = ("limit",)

    def __init__(self) -> None:
        super().__init__()
        self.limit = 32

    def prune(self) -> None:
        """Forget the finished tasks."""
        self[:] = [task for task in self if not task.done()]
        self.limit = max(32, 2 * len(self))


class Proc:
    """A process: identity, channels, held mail, options, and the tasks it owns.

    Memory: thousands of processes idle in one worker, and most never hold mail, listen,
    start tasks or exec, so those containers are created on first use (a deque alone is
    760 bytes): ``held``/``held_events`` are the empty tuple until something is held,
    ``listeners``/``tasks``/``execs`` are None until first needed.
    """

    __slots__ = (
        "actor",
        "alive",
        "cancel_at",
        "cancel_timer",
        "context",
        "evaluator",
        "events",
        "execs",
        "held",
        "held_events",
        "id",
        "inbox",
        "listeners",
        "meta",
        "pid",
        "received",
        "scope",
        "sent",
        "started",
        "task",
        "tasks",
        "trap_links",
        "upgrade_request",
    )

    def __init__(
        self,
        pid: str,
        id: str,
        context: dict[str, Any],
        actor: dict[str, Any] | None,
        scope: list[str] | None,
    ) -> None:
        self.pid = pid
        self.id = id
        self.context = context
        self.actor = actor
        self.scope = scope
        self.alive = True
        self.task: asyncio.Task[Any] | None = None
        # tasks the process started (see runtime.task_factory); None until the first one
        self.tasks: TaskList | None = None
        self.held: deque[Message] | tuple[()] = ()
        self.held_events: deque[Event] | tuple[()] = ()
        self.inbox: Channel | None = None
        self.events: Channel | None = None
        self.listeners: dict[str, Listener] | None = None
        self.trap_links = False
        # the earliest cancel deadline (loop time) and its timer; uvloop returns a plain
        # Handle (no .when()) for a deadline already past, so the time is kept here
        self.cancel_at: float | None = None
        self.cancel_timer: asyncio.Handle | None = None
        self.upgrade_request: tuple[str, list[Any]] | None = None
        # exec children this process waits for -> their result (set on EV_EXEC); None: none
        self.execs: dict[str, asyncio.Future[dict[str, Any]]] | None = None
        # (guard, evaluator, allows everything): the policy evaluator, cached until a reload
        # swaps the guard
        self.evaluator: tuple[Any, Any, bool] | None = None
        self.meta = {"pid": pid}  # call metadata for policy conditions (``meta.pid``)
        # for ps and info (worker.introspect): messages it sent, messages delivered to it
        # (queued or taken), and when it started (epoch seconds)
        self.sent = 0
        self.received = 0
        self.started = time.time()

    # -- delivery (hot path) -------------------------------------------------------------------
    def deliver(self, msg: Message) -> None:
        """Route one arriving message (SPEC 4.2)."""
        # Its arrival number is the receiver's count of messages delivered (shown by ps and
        # info): increasing per receiver, which is all an upgrade's re-ordering needs.
        msg._seq = self.received = self.received + 1
        listeners = self.listeners
        if listeners:
            listener = listeners.get(msg.topic)
            if listener is not None:
                listener.put(msg)
                return
        inbox = self.inbox
        if inbox is not None:
            inbox._put(msg)
        elif self.held:
            self.held.append(msg)
        else:
            self.held = deque((msg,))

    def deliver_event(self, event: Event) -> None:
        """Queue one lifecycle event."""
        if self.events is not None:
            self.events._put(event)
        elif self.held_events:
            self.held_events.append(event)
        else:
            self.held_events = deque((event,))

    # -- channel creation ----------------------------------------------------------------------
    def open_inbox(self) -> Channel:
        """``inbox()``: created once; takes every held message."""
        inbox = self.inbox
        if inbox is None:
            inbox = self.inbox = Channel("inbox")
            held, self.held = self.held, ()
            for msg in held:
                inbox._put(msg)
        return inbox

    def open_events(self) -> Channel:
        """``events()``: created once; takes every held event."""
        events = self.events
        if events is None:
            events = self.events = Channel("events")
            held, self.held_events = self.held_events, ()
            for ev in held:
                events._put(ev)
        return events

    def listen(self, topic: str, as_message: bool) -> Channel:
        """``listen(topic)``: takes the held messages of ``topic``; one listener per topic."""
        if self.listeners is None:
            self.listeners = {}
        if topic in self.listeners:
            raise AlreadyExistsError(f"already listening on topic {topic!r}")
        ch = Channel(f"listen:{topic}")
        listener = self.listeners[topic] = Listener(ch, as_message)
        keep: list[Message] = []
        for msg in self.held:
            if msg.topic == topic:
                listener.put(msg)
            else:
                keep.append(msg)
        self.held = deque(keep) if keep else ()
        return ch

    def unlisten(self, ch: Channel) -> None:
        """Stop a listener; later messages of its topic go to the inbox (or are held)."""
        listeners = self.listeners or {}
        for topic, listener in list(listeners.items()):
            if listener.ch is ch:
                del listeners[topic]
                ch.close()
                return
        raise InvalidError("not a listen channel of this process")

    def reset_channels(self) -> None:
        """For upgrade: put everything queued in channels back to held mail, in arrival order."""
        queued: list[Message] = list(self.held)
        if self.inbox is not None:
            queued.extend(self.inbox._drain())  # type: ignore[arg-type]
            self.inbox.close()
        for listener in (self.listeners or {}).values():
            items = listener.ch._drain()
            if listener.as_message:
                queued.extend(items)  # type: ignore[arg-type]
            elif items:
                queued.extend(list(listener.sources)[-len(items):])
            listener.ch.close()
        queued.sort(key=_arrival)
        self.held = deque(queued) if queued else ()
        if self.events is not None:
            events = self.events._drain()
            self.events.close()
            events.extend(self.held_events)
            self.held_events = deque(events) if events else ()  # type: ignore[arg-type]
        self.inbox = None
        self.events = None
        self.listeners = None
        self.trap_links = False

    def mailbox_depth(self) -> int:
        """Messages and events not yet received: held plus queued in channels."""
        n = len(self.held) + len(self.held_events)
        if self.inbox is not None:
            n += len(self.inbox)
        if self.events is not None:
            n += len(self.events)
        for listener in (self.listeners or {}).values():
            n += len(listener.ch)
        return n


def _arrival(msg: Message) -> int:
    return msg._seq
