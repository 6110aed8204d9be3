"""The two values a process receives: ``Message`` (inbox, listen) and ``Event`` (events).

Plain slotted records, allocated once per delivery; nothing here does I/O.
"""

from __future__ import annotations

from typing import Any


class Message:
    """A message: ``topic``, ``from_`` (sender PID, ``""`` when none) and ``payload``."""

    __slots__ = ("_seq", "from_", "payload", "topic")

    def __init__(self, topic: str, from_: str, payload: Any) -> None:
        self.topic = topic
        self.from_ = from_
        self.payload = payload
        # arrival number in the receiver's mailbox: an upgrade re-queues in this order
        self._seq = 0

    def __repr__(self) -> str:
        return f"Message(topic={self.topic!r}, from_={self.from_!r}, payload={self.payload!r})"


class Event:
    """A lifecycle event: ``kind`` is ``pid.exit``, ``pid.link.down`` or ``pid.cancel``.

    ``from_`` is the PID the event is about (the canceller for CANCEL); ``result`` is
    ``{"value": v}`` or ``{"error": s}`` for EXIT and LINK_DOWN; ``deadline`` (epoch seconds)
    and ``reason`` are set for CANCEL.
    """

    __slots__ = ("deadline", "from_", "kind", "reason", "result")

    def __init__(
        self,
        kind: str,
        from_: str,
        result: dict[str, Any] | None = None,
        deadline: float | None = None,
        reason: str | None = None,
    ) -> None:
        self.kind = kind
        self.from_ = from_
        self.result = result
        self.deadline = deadline
        self.reason = reason

    def __repr__(self) -> str:
        return (
            f"Event(kind={self.kind!r}, from_={self.from_!r}, result={self.result!r}, "
            f"deadline={self.deadline!r}, reason={self.reason!r})"
        )
