"""The tables of one worker, which every job of its ``Runtime`` reads and writes.

Each job module (frames, lifecycle, entries, calls, send) is a class built on
``WorkerState``; ``Runtime`` inherits them all, so a method reaches a table as one attribute
of ``self``, with no extra lookup on a hot path. Invariant: a process is in ``procs`` iff it
is alive.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from types import ModuleType
from typing import TYPE_CHECKING, Any

from actord.core import wire
from actord.core.config import SecurityConfig
from actord.security import Guard
from actord.transport import FrameProtocol
from actord.worker.proc import Proc

if TYPE_CHECKING:
    from actord.worker.direct import DirectLink


class WorkerState:
    """The worker's router link, process table, names, policies, and pending calls."""

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
        # messages sent and received by the processes that ended here: STATS totals are these
        # plus the live processes' own counts (``Proc.sent``/``received``), so a message costs
        # one increment at each end and no worker-wide one
        self.ended_sent = 0
        self.ended_received = 0
        # canonical PIDs of other workers already checked by ``send`` (bounded, see there)
        self._checked_pids: set[str] = set()
        self.stopping = asyncio.Event()
        # a clustered node's worker: its own NATS connection to other nodes' workers (INIT)
        self.direct: DirectLink | None = None
        self._module_stamp: dict[str, tuple[int, int]] = {}
        # entry -> (module name, attribute, module, function): see ``load_entry``
        self._entries: dict[str, tuple[str, str, ModuleType, Callable[..., Any]]] = {}

    def message_totals(self) -> tuple[int, int]:
        """Messages this worker's processes sent and were delivered, ended ones included
        (a same-worker message counts once in each): the STATS totals."""
        procs = self.procs.values()
        return (self.ended_sent + sum(p.sent for p in procs),
                self.ended_received + sum(p.received for p in procs))
