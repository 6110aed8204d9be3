"""The seam under the actor API: what a process asks of the kernel that runs it.

Responsibility: name, once, the calls process code makes of whatever runs it (``Kernel``:
send, a router call, resolving a destination, permission checks, exec, the size rule) and
what the API reads and sets on the calling process (``ProcessState``: its PID, id, channels,
options, context); hold the one installed kernel and the current-process context variable;
find the caller (``require_process``). A worker's runtime implements ``Kernel`` and installs
itself when the worker starts; a cluster step can implement the same calls for remote work.
The interface says *what a process asks*, never how it travels (no frames here).

Invariant: this module imports only vocabulary, so the API (``process``, ``builder``, ``ctx``,
``supervisor``) reaches a role only through it, and importing the API loads no role.

Upgrade is the one call that is not a method: ``process.upgrade`` raises :class:`Upgrade`
inside the process's code, and the kernel that runs the process catches it and restarts the
process in the new code under the same PID.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable
from typing import Any, Protocol

from actord.channel import Channel
from actord.errors import InvalidError


class ProcessState(Protocol):
    """The calling process as the API sees it (the worker's is ``worker.proc.Proc``)."""

    pid: str
    id: str
    alive: bool
    context: dict[str, Any]
    actor: dict[str, Any] | None
    trap_links: bool
    #: the process's main task: an upgrade from another task cancels it
    task: asyncio.Task[Any] | None
    #: an upgrade asked for from a helper task, taken up when the main task unwinds
    upgrade_request: tuple[str, list[Any]] | None

    def open_inbox(self) -> Channel:
        """``inbox()``: created once; takes every held message."""
        ...

    def open_events(self) -> Channel:
        """``events()``: created once; takes every held event."""
        ...

    def listen(self, topic: str, as_message: bool) -> Channel:
        """``listen(topic)``: takes the held messages of ``topic``; one listener per topic."""
        ...

    def unlisten(self, ch: Channel) -> None:
        """Stop a listener; later messages of its topic go to the inbox (or are held)."""
        ...


class Kernel(Protocol):
    """The calls a process makes of what runs it; each raises the SPEC's errors."""

    #: the largest value a process may send (wire's size rule)
    max_frame: int

    def send(self, proc: Any, dest: str, topic: str, payload: Any) -> None:
        """Send one message from ``proc``; ``dest`` is a PID string (checked here)."""
        ...

    def request(self, proc: Any, op: str, args: Any) -> Awaitable[Any]:
        """A call only the router can decide (spawn, link, cancel, register...): its
        reply's value, or the ``ProcessError`` it answers with."""
        ...

    def resolve(self, dest: object) -> str:
        """A canonical PID from a PID or a registered name (INVALID / NOT_FOUND)."""
        ...

    def permit(self, proc: Any, action: str, resource: str) -> None:
        """PERMISSION_DENIED unless ``proc`` may do ``action`` on ``resource`` (SPEC 7)."""
        ...

    def check_escalation(self, proc: Any, actor: dict[str, Any]) -> None:
        """PERMISSION_DENIED unless ``proc`` may start a process running as ``actor``."""
        ...

    async def exec(self, proc: Any, args: Any, timeout: float | None) -> Any:
        """Spawn an exec child (``args``: the spawn request) and return its value."""
        ...


#: The kernel of this OS process (set by ``install``; None where no process can run).
installed: Kernel | None = None

#: The process whose code is running (set inside each process task, inherited by its tasks;
#: a ``ProcessState`` of the installed kernel's own type, which the kernel reads as such).
current: contextvars.ContextVar[Any] = contextvars.ContextVar("actord_proc", default=None)


def install(kernel: Kernel) -> None:
    """Make ``kernel`` the one that runs this OS process's processes."""
    global installed
    installed = kernel


class Upgrade(BaseException):
    """Raised by ``process.upgrade`` to unwind the current code (BaseException: not caught
    by the ``except Exception`` of actor code)."""

    def __init__(self, id: str, args: list[Any]) -> None:
        super().__init__(id)
        self.id = id
        self.args_ = args


def require_process() -> tuple[Kernel, ProcessState]:
    """The kernel and the calling process; INVALID outside a process."""
    proc = current.get()
    if proc is not None and proc.alive:  # the common case first: one test, no raise
        kernel = installed
        if kernel is not None:
            return kernel, proc
    kernel = installed
    if proc is None or kernel is None:
        raise InvalidError("not called from inside an actord process")
    if not proc.alive:
        # a terminated process runs no more code: unwind whatever still runs
        raise asyncio.CancelledError()
    return kernel, proc
