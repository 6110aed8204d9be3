"""The value rules of the actor API: what a topic is, and how send's values make a payload.

Pure functions with no state, shared by ``process`` (send), ``builder`` (queued messages) and
``control`` (the CLI's send), so a topic or payload means the same wherever it enters.
"""

from __future__ import annotations

from typing import Any

from actord.errors import InvalidError


def check_topic(topic: object) -> str:
    """A topic is a non-empty str not starting with ``@`` (else INVALID)."""
    if not isinstance(topic, str) or not topic or topic[0] == "@":
        raise InvalidError(f"bad topic {topic!r}: must be a non-empty string not starting with @")
    return topic


def payload(values: tuple[Any, ...]) -> Any:
    """The payload of ``send(dest, topic, *values)``: None, the one value, or a list."""
    if not values:
        return None
    return values[0] if len(values) == 1 else list(values)
