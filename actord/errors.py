"""Every exception actord raises, each with a stable ``.kind`` string.

Invariant: the ``kind`` strings are part of the public contract (SPEC section 3) and travel
on the wire as-is, so :func:`from_kind` can rebuild the same exception in another process.
"""

from __future__ import annotations


class ProcessError(Exception):
    """Base of every failure of the process API."""

    kind = "ERROR"


class InvalidError(ProcessError):
    """A bad argument: topic, value type, duration, option, or a call outside a process."""

    kind = "INVALID"


class NotFoundError(ProcessError):
    """An unknown process id, host or name, or a target that is not alive."""

    kind = "NOT_FOUND"


class PermissionDeniedError(ProcessError):
    """The caller's scope does not allow the action on the resource."""

    kind = "PERMISSION_DENIED"


class AlreadyExistsError(ProcessError):
    """A name held by another PID, or a monitor that is already installed."""

    kind = "ALREADY_EXISTS"


class ProcessFailedError(ProcessError):
    """``exec``'s child ended abnormally; ``.pid`` and ``.error`` say which and why."""

    kind = "FAILED"

    def __init__(self, message: str, *, pid: str = "", error: str = "") -> None:
        super().__init__(message)
        self.pid = pid
        self.error = error


class ConfigError(Exception):
    """A config file that cannot be used; the message is one line naming file, key and problem."""


_BY_KIND: dict[str, type[ProcessError]] = {
    cls.kind: cls
    for cls in (InvalidError, NotFoundError, PermissionDeniedError, AlreadyExistsError)
}


def from_kind(kind: str, message: str) -> ProcessError:
    """Rebuild the exception for a ``kind`` received from the router."""
    return _BY_KIND.get(kind, ProcessError)(message)


__all__ = [
    "AlreadyExistsError",
    "ConfigError",
    "InvalidError",
    "NotFoundError",
    "PermissionDeniedError",
    "ProcessError",
    "ProcessFailedError",
    "from_kind",
]
