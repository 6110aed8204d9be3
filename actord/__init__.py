"""actord: Erlang-style actors for Python, supervised across OS worker processes.

The public API for process code is ``actord.process``, ``actord.channel``, ``actord.ctx``
``actord.errors`` and ``actord.supervisor``; this package only re-exports them.
"""

from actord import channel, ctx, errors, process, supervisor
from actord.errors import (
    AlreadyExistsError,
    InvalidError,
    NotFoundError,
    PermissionDeniedError,
    ProcessError,
    ProcessFailedError,
)
from actord.messages import Event, Message

__all__ = [
    "AlreadyExistsError",
    "Event",
    "InvalidError",
    "Message",
    "NotFoundError",
    "PermissionDeniedError",
    "ProcessError",
    "ProcessFailedError",
    "channel",
    "ctx",
    "errors",
    "process",
    "supervisor",
]
