"""Trace sessions (SPEC 12, ``actord trace``): the router's side of tracing one process.

A session is one client's trace of one local process: the kinds it wants, its limit, its
deadline and a bounded queue of records the client has not read yet. The first session of a
process sends its worker ``[TRACE_ON, pid]``, the last one to end ``[TRACE_OFF, pid]``; the
worker's ``[TRACE, pid, records, dropped]`` frames are fanned out to the process's sessions
here, and the process's end (whatever ends it, its worker's death included) adds an ``exit``
record to each and ends them.

The client reads a session as ``actord logs -f`` reads the log ring: a long poll that
answers at once when records are queued, else when one comes, its end, or the poll's wait
(:meth:`Traces.read`); one poll per session at a time.

Invariants: nothing waits on a client: a session keeps at most :data:`QUEUE` records (plus
its ``exit``) and counts those it had no room for (``missed``, with the worker's
``dropped``, whatever their kind), which its next read reports; a record is converted and checked
(:func:`actord.core.trace.as_dict`) only when a session keeps it, so a client that stops
reading costs the router a count per record. A session takes at most ``limit`` records, then
ends; once it ended no record is added, and it is forgotten when its end has been read or its
client is gone.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import time
from collections.abc import Callable
from typing import Any

from actord.core import wire
from actord.core.trace import MAX_ERROR, as_dict, clip, size
from actord.core.wire import ExitResult
from actord.errors import InvalidError, NotFoundError
from actord.router.slots import ProcEntry, WorkerLink

#: records a session keeps for its client; beyond, they are counted as missed
QUEUE = 4096
#: the most records one read returns
MAX_READ = 1000


class Session:
    """One client's trace of one process."""

    __slots__ = ("end", "id", "kinds", "limit", "missed", "owner", "pid", "queue", "taken",
                 "timer", "waiter")

    def __init__(self, id: int, pid: str, kinds: frozenset[str] | None, limit: int,
                 owner: object) -> None:
        self.id = id
        self.pid = pid
        self.kinds = kinds  # None: every kind
        self.limit = limit
        self.owner = owner  # what the client's connection is known by (see Traces.start)
        self.queue: collections.deque[dict[str, Any]] = collections.deque()
        self.taken = 0  # records kept so far (the limit counts these)
        self.missed = 0  # records lost since the last read
        self.end: str | None = None  # why it ended: limit, duration, exit, stopped, closed
        self.timer: asyncio.TimerHandle | None = None
        self.waiter: asyncio.Future[None] | None = None

    def wake(self) -> None:
        """Answer the waiting read, if any."""
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)


class Traces:
    """Every trace session of the node, by id and by traced process."""

    def __init__(self, procs: dict[str, ProcEntry],
                 on_exit: Callable[[str, Callable[[ExitResult], None]], None]) -> None:
        self.procs = procs
        self.on_exit = on_exit
        self.sessions: dict[int, Session] = {}
        self.by_pid: dict[str, list[Session]] = {}  # the traced processes' live sessions
        self._watched: set[str] = set()  # processes with an exit callback of ours
        self._next = 0
        self.frames = 0  # TRACE frames read (``status``: are workers still tracing?)

    # -- sessions ------------------------------------------------------------------------------
    def start(self, pid: str, kinds: frozenset[str] | None, limit: int,
              duration: float | None, owner: object) -> Session:
        """A new session of local process ``pid`` (NOT_FOUND if it is not alive); its
        ``owner`` alone may read it."""
        entry = self.procs.get(pid)
        if entry is None:
            raise NotFoundError(f"process {pid} is not alive")
        self._next += 1
        s = self.sessions[self._next] = Session(self._next, pid, kinds, limit, owner)
        group = self.by_pid.setdefault(pid, [])
        group.append(s)
        if len(group) == 1:
            entry.worker.conn.send([wire.TRACE_ON, pid])
        if pid not in self._watched:
            self._watched.add(pid)
            self.on_exit(pid, functools.partial(self._exited, pid))
        if duration is not None:
            s.timer = asyncio.get_running_loop().call_later(duration, self.stop, s, "duration")
        return s

    def get(self, id: Any, owner: object) -> Session:
        """The session ``id`` of ``owner`` (NOT_FOUND for another client's, or a gone one)."""
        s = self.sessions.get(id) if type(id) is int else None
        if s is None or s.owner is not owner:
            raise NotFoundError(f"no trace session {id!r} on this connection")
        return s

    def stop(self, s: Session, why: str) -> None:
        """End ``s``: it takes no more records (what is queued can still be read); the last
        session of its process switches the trace off in the worker."""
        if s.end is not None:
            return
        s.end = why
        if s.timer is not None:
            s.timer.cancel()
        group = self.by_pid.get(s.pid)
        if group is not None and s in group:
            group.remove(s)
            if not group:
                del self.by_pid[s.pid]
                entry = self.procs.get(s.pid)
                if entry is not None:
                    entry.worker.conn.send([wire.TRACE_OFF, s.pid])
        s.wake()

    def close(self, s: Session) -> None:
        """Forget ``s`` (its client is gone)."""
        self.stop(s, "closed")
        self.sessions.pop(s.id, None)

    async def read(self, s: Session, wait: float, budget: int) -> dict[str, Any]:
        """``{"records", "missed", "end"}``: the records queued for ``s`` (at most
        :data:`MAX_READ`, within about ``budget`` bytes; waiting up to ``wait`` seconds for
        one), how many it lost since the last read, and once the queue is empty its end
        (None while it goes on). A session whose end was read is forgotten."""
        if s.waiter is not None:
            raise InvalidError(f"trace session {s.id} is already being read")
        if not s.queue and s.end is None and wait > 0:
            s.waiter = asyncio.get_running_loop().create_future()
            try:
                async with asyncio.timeout(wait):
                    await s.waiter
            except TimeoutError:
                pass
            finally:
                s.waiter = None
        records: list[dict[str, Any]] = []
        queue = s.queue
        while queue and len(records) < MAX_READ:
            budget -= size(queue[0])
            if records and budget < 0:
                break
            records.append(queue.popleft())
        missed, s.missed = s.missed, 0
        end = s.end if not queue else None
        if end is not None:
            self.sessions.pop(s.id, None)
        return {"records": records, "missed": missed, "end": end}

    # -- from the workers ----------------------------------------------------------------------
    def frame(self, link: WorkerLink, frame: list[Any]) -> None:
        """A worker's ``[TRACE, pid, records, dropped]``: each record to the sessions of
        ``pid`` that want its kind, while they have room and are under their limit."""
        _, pid, records, dropped = frame
        if type(records) is not list or type(dropped) is not int or dropped < 0:
            raise ValueError("bad TRACE frame")
        self.frames += 1
        group = self.by_pid.get(pid)
        entry = self.procs.get(pid)
        if group is None or entry is None or entry.worker is not link:
            return  # a trace that just ended (its TRACE_OFF crossed this frame)
        for s in list(group):
            s.missed += dropped
            kinds, queue = s.kinds, s.queue
            for r in records:
                if kinds is not None and r[1] not in kinds:
                    continue
                if len(queue) >= QUEUE:
                    s.missed += 1
                    continue
                queue.append(as_dict(r))
                s.taken += 1
                if s.taken >= s.limit:
                    self.stop(s, "limit")
                    break
            s.wake()

    def _exited(self, pid: str, result: ExitResult) -> None:
        """``pid`` ended: an ``exit`` record for each of its sessions (kept even in a full
        queue), which end."""
        self._watched.discard(pid)
        record = {"ts": time.time(), "kind": "exit",
                  "error": clip(result.get("error"), MAX_ERROR)}
        for s in self.by_pid.pop(pid, ()):
            if s.kinds is None or "exit" in s.kinds:
                s.queue.append(record)
            s.end = "exit"
            if s.timer is not None:
                s.timer.cancel()
            s.wake()

    def counts(self) -> dict[str, int]:
        """For ``status``: sessions open, processes traced, TRACE frames read."""
        return {"sessions": len(self.sessions), "traced": len(self.by_pid),
                "frames": self.frames}
