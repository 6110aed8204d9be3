"""The worker's runtime: one worker's tables, composed from the modules that do its jobs.

One ``Runtime`` per worker OS process; it is the worker's ``actord.kernel.Kernel`` and
installs itself as the kernel when it is made. It starts processes as asyncio tasks, delivers
messages and events to them, sends their calls to the router and turns every ending into
exactly one ``EXITED`` frame. Each job is a class in its own module, built on the tables of
``worker.state``; ``Runtime`` inherits them all, so their methods share the tables with no
extra call level or attribute lookup on a hot path:

    worker.state       the tables (router link, process table, names, policies, calls)
    worker.entries     entry loading: ``module:function`` -> the coroutine function to run
    worker.lifecycle   a process's task, upgrades, its one end (EXITED), crash reports
    worker.frames      frames from the router: one handler per kind (``_handlers`` below)
    worker.calls       permit, resolve, router calls and their REPLY, exec
    worker.send        the send path (same worker: delivered at once; else one SEND frame)
    worker.direct      a clustered node's: messages to and from other nodes' workers
    worker.trace       TRACE_ON/OFF: tracing variants swapped in for a traced process

Invariants: a process is in ``procs`` iff it is alive; once dead it never reports again;
same-worker messages skip the router but keep per-pair order because delivery to a local
process is immediate; no frame it sends breaks ``wire``'s size rule (a value over
``max_frame`` fails its call, a result over it ends its process with ``"result too large"``),
so no value a process makes can cost the worker its router link.
"""

from __future__ import annotations

from actord import kernel
from actord.core import wire
from actord.transport import FrameProtocol
from actord.worker.frames import RouterFrames
from actord.worker.lifecycle import CRASH_REPORTS_PER_SECOND, CrashLimit
from actord.worker.send import SendPath
from actord.worker.trace import TraceFrames


class Runtime(RouterFrames, SendPath, TraceFrames):
    """One worker: its tables (``WorkerState``) and every job's methods; a ``Kernel``."""

    def __init__(self, conn: FrameProtocol, host: str, index: int,
                 max_frame: int = wire.DEFAULT_MAX_FRAME) -> None:
        super().__init__(conn, host, index, max_frame)
        self.crash_limit = CrashLimit(self.loop, CRASH_REPORTS_PER_SECOND)
        self._handlers = {
            wire.DELIVER: self._on_deliver,
            wire.START: self._on_start,
            wire.EVENT: self._on_event,
            wire.REPLY: self._on_reply,
            wire.NAME: self._on_name,
            wire.KILL: self._on_kill,
            wire.TOP_REQ: self._on_top,
            wire.STATS_REQ: self._on_stats,
            wire.INFO_REQ: self._on_info,
            wire.SHUTDOWN: self._on_shutdown,
            wire.INIT: self._on_init,
            wire.PROCESSES: self._on_processes,
            wire.SECURITY: self._on_security,
            wire.TRACE_ON: self._on_trace_on,
            wire.TRACE_OFF: self._on_trace_off,
            wire.PEERS: self._on_peers,
            wire.FENCE: self._on_fence,
            wire.GONE: self._on_gone,
        }
        self._recorder = None  # worker.trace: made by the first trace (set here: see there)
        kernel.install(self)
