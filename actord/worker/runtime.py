"""The worker's runtime: one worker's tables, composed from the modules that do its jobs.

One ``Runtime`` per worker OS process; it is the worker's ``actord.kernel.Kernel`` and
installs itself as the kernel when it is made. It starts processes as asyncio tasks, delivers
messages and events to them, sends their calls to the router and turns every ending into
exactly one ``EXITED`` frame. Each job is a module, whose class ``Runtime`` inherits (the
methods share these tables with no extra call level or attribute lookup on a hot path):

    worker.frames      frames from the router: one handler per kind (``_handlers`` below)
    worker.lifecycle   a process's task, its one end (EXITED), crash reports, owned tasks
    worker.entries     entry loading, and switching a process to new code (upgrade)
    worker.calls       permit, resolve, router calls and their REPLY, exec
    worker.send        the send path (same worker: delivered at once; else one SEND frame)

Invariants: a process is in ``procs`` iff it is alive; once dead it never reports again;
same-worker messages skip the router but keep per-pair order because delivery to a local
process is immediate; no frame it sends breaks ``wire``'s size rule (a value over
``max_frame`` fails its call, a result over it ends its process with ``"result too large"``),
so no value a process makes can cost the worker its router link.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from types import ModuleType
from typing import Any

from actord import kernel
from actord.core import wire
from actord.core.config import SecurityConfig
from actord.security import Guard
from actord.transport import FrameProtocol
from actord.worker.calls import Calls
from actord.worker.entries import Entries
from actord.worker.frames import RouterFrames
from actord.worker.lifecycle import CRASH_REPORTS_PER_SECOND, CrashLimit, Lifecycle
from actord.worker.proc import Proc
from actord.worker.send import SendPath


class Runtime(RouterFrames, Lifecycle, Entries, Calls, SendPath):
    """State of one worker; its jobs' methods come from the classes it inherits."""

    def __init__(self, conn: FrameProtocol, host: str, index: int,
                 max_frame: int = wire.DEFAULT_MAX_FRAME) -> None:
        self.conn = conn
        self.host = host
        self.index = index
        self.max_frame = max_frame  # the largest value a process may send (wire's size rule)
        self.loop = asyncio.get_running_loop()
        self.procs: dict[str, Proc] = {}
        self.names: dict[str, str] = {}
        self.guard = Guard(SecurityConfig())  # replaced by INIT's before any process runs
        self.processes: dict[str, str] = {}  # process id -> entry
        self.pending: dict[int, asyncio.Future[Any]] = {}
        # request id -> caller, for the spawn calls of exec (see ``_on_reply``)
        self.exec_spawns: dict[int, Proc] = {}
        self.next_req = 0
        self.dead_letters = 0
        # canonical PIDs of other workers already checked by ``send`` (bounded, see there)
        self._checked_pids: set[str] = set()
        self.stopping = asyncio.Event()
        self._module_stamp: dict[str, tuple[int, int]] = {}
        # entry -> (module name, attribute, module, function): see ``load_entry``
        self._entries: dict[str, tuple[str, str, ModuleType, Callable[..., Any]]] = {}
        self.crash_limit = CrashLimit(self.loop, CRASH_REPORTS_PER_SECOND)
        self._handlers: dict[int, Callable[[list[Any]], None]] = {
            wire.DELIVER: self._on_deliver,
            wire.START: self._on_start,
            wire.EVENT: self._on_event,
            wire.REPLY: self._on_reply,
            wire.NAME: self._on_name,
            wire.KILL: self._on_kill,
            wire.STATS_REQ: self._on_stats,
            wire.SHUTDOWN: self._on_shutdown,
            wire.INIT: self._on_init,
            wire.PROCESSES: self._on_processes,
            wire.SECURITY: self._on_security,
        }
        kernel.install(self)
