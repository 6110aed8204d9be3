"""actord: Erlang-style actors for Python, supervised across OS worker processes.

The public API for process code is ``actord.process``, ``actord.channel``, ``actord.ctx``
``actord.errors`` and ``actord.supervisor``; this package only re-exports them, loaded on
first use (PEP 562) so that ``actord`` CLI commands do not pay for importing the runtime.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

_MODULES = {"channel", "ctx", "errors", "process", "supervisor"}
_NAMES = {
    "AlreadyExistsError": "actord.errors",
    "InvalidError": "actord.errors",
    "NotFoundError": "actord.errors",
    "PermissionDeniedError": "actord.errors",
    "ProcessError": "actord.errors",
    "ProcessFailedError": "actord.errors",
    "Event": "actord.messages",
    "Message": "actord.messages",
}


def __getattr__(name: str) -> Any:
    if name in _MODULES:
        return importlib.import_module(f"actord.{name}")
    if name in _NAMES:
        return getattr(importlib.import_module(_NAMES[name]), name)
    raise AttributeError(f"module 'actord' has no attribute {name!r}")


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
