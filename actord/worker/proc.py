"""One process's state inside a worker, and the mailbox routing rule of SPEC section 4.2.

A message goes to the ``listen`` channel of its topic if there is one, else to ``inbox()``
if it was created, else it is *held* in arrival order. Creating ``listen(t)`` takes the held
messages of topic ``t``; creating ``inbox()`` takes all the other held ones. Events go only
to ``events()`` (held until it exists). Invariant: a message is in exactly one place (held,
one channel, or received), so ``mailbox_depth`` counts each undelivered message once.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

from actord.channel import Channel
from actord.errors import AlreadyExistsError, InvalidError
from actord.messages import Event, Message


class Proc:
    """A process: identity, channels, held mail, options, and the tasks it owns."""

    __slots__ = (
        "actor",
        "alive",
        "cancel_timer",
        "context",
        "events",
        "held",
        "held_events",
        "id",
        "inbox",
        "listeners",
        "pid",
        "scope",
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
        self.tasks: set[asyncio.Task[Any]] = set()
        self.held: deque[Message] = deque()
        self.held_events: deque[Event] = deque()
        self.inbox: Channel | None = None
        self.events: Channel | None = None
        # topic -> (channel, deliver whole Message objects?)
        self.listeners: dict[str, tuple[Channel, bool]] = {}
        self.trap_links = False
        self.cancel_timer: asyncio.TimerHandle | None = None
        self.upgrade_request: tuple[str, list[Any]] | None = None

    # -- delivery (hot path) -------------------------------------------------------------------
    def deliver(self, msg: Message) -> None:
        """Route one arriving message (SPEC 4.2)."""
        if self.listeners:
            entry = self.listeners.get(msg.topic)
            if entry is not None:
                entry[0]._put(msg if entry[1] else msg.payload)
                return
        if self.inbox is not None:
            self.inbox._put(msg)
        else:
            self.held.append(msg)

    def deliver_event(self, event: Event) -> None:
        """Queue one lifecycle event."""
        if self.events is not None:
            self.events._put(event)
        else:
            self.held_events.append(event)

    # -- channel creation ----------------------------------------------------------------------
    def open_inbox(self) -> Channel:
        """``inbox()``: created once; takes every held message."""
        if self.inbox is None:
            self.inbox = Channel("inbox")
            held, self.held = self.held, deque()
            for msg in held:
                self.inbox._put(msg)
        return self.inbox

    def open_events(self) -> Channel:
        """``events()``: created once; takes every held event."""
        if self.events is None:
            self.events = Channel("events")
            for ev in self.held_events:
                self.events._put(ev)
            self.held_events.clear()
        return self.events

    def listen(self, topic: str, as_message: bool) -> Channel:
        """``listen(topic)``: takes the held messages of ``topic``; one listener per topic."""
        if topic in self.listeners:
            raise AlreadyExistsError(f"already listening on topic {topic!r}")
        ch = Channel(f"listen:{topic}")
        self.listeners[topic] = (ch, as_message)
        keep: deque[Message] = deque()
        for msg in self.held:
            if msg.topic == topic:
                ch._put(msg if as_message else msg.payload)
            else:
                keep.append(msg)
        self.held = keep
        return ch

    def unlisten(self, ch: Channel) -> None:
        """Stop a listener; later messages of its topic go to the inbox (or are held)."""
        for topic, (listener, _) in list(self.listeners.items()):
            if listener is ch:
                del self.listeners[topic]
                ch.close()
                return
        raise InvalidError("not a listen channel of this process")

    def reset_channels(self) -> None:
        """For upgrade: put everything queued in channels back to held mail, in order."""
        held: deque[Message] = deque()
        if self.inbox is not None:
            held.extend(self.inbox._drain())  # type: ignore[arg-type]
            self.inbox.close()
        for topic, (ch, as_message) in self.listeners.items():
            for item in ch._drain():
                held.append(item if as_message else Message(topic, "", item))  # type: ignore[arg-type]
            ch.close()
        held.extend(self.held)
        self.held = held
        if self.events is not None:
            queued = self.events._drain()
            self.events.close()
            queued.extend(self.held_events)
            self.held_events = deque(queued)  # type: ignore[arg-type]
        self.inbox = None
        self.events = None
        self.listeners = {}
        self.trap_links = False

    def mailbox_depth(self) -> int:
        """Messages and events not yet received: held plus queued in channels."""
        n = len(self.held) + len(self.held_events)
        if self.inbox is not None:
            n += len(self.inbox)
        if self.events is not None:
            n += len(self.events)
        for ch, _ in self.listeners.values():
            n += len(ch)
        return n
