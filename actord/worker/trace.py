"""Tracing processes in the worker (SPEC 12, ``actord trace``).

Responsibility: while the router has a trace on for a process (``[TRACE_ON, pid]`` until
``[TRACE_OFF, pid]`` or its end), record what it does (see :mod:`actord.core.trace`): the
messages it sends and receives, the spawn/link/unlink/monitor/unmonitor calls it makes
(spawns by exec included; when their reply comes, if they succeeded) and the events it is
given; send them in one ``[TRACE, pid, records, dropped]`` frame per process every
:data:`~actord.core.trace.FLUSH_EVERY` seconds.

No extra work on the message path when no trace is on: nothing here is tested per message.
A trace swaps tracing variants in instead, and the last one to end swaps them out:

- the traced process's object becomes a :class:`TracedProc` (same layout as ``Proc``): its
  ``deliver``/``deliver_event`` record, then do what ``Proc``'s do, and setting its
  ``alive`` to False (every end does, in ``Lifecycle._mark_dead``, before its EXITED is
  sent) sends its last records and ends its trace;
- while any process of the worker is traced, the kernel the process API calls
  (``actord.kernel.installed``) is a :class:`TracingKernel` in front of the runtime: the
  runtime's own calls, then a record if the caller is traced (one dict lookup per send of
  this worker's processes, only then). The runtime object itself never changes: swapping its
  class would slow its attribute reads for good (CPython 3.11 then keeps its ``__dict__`` as
  a real dict, about 3x slower to read, even once swapped back).

Bounds: at most :data:`~actord.core.trace.MAX_BATCH` records per process per frame; beyond,
they are only counted (``dropped``, sent with the next frame) and not even made, so tracing
never holds a process up and a frame stays small. The router, not the worker, keeps what a
slow client has not read yet; it adds the ``exit`` record with the process's result.
"""

from __future__ import annotations

import asyncio
import functools
import time
from typing import Any, ClassVar

from actord import kernel
from actord.core import wire
from actord.core.trace import CALLS, FLUSH_EVERY, MAX_BATCH, MAX_ERROR, MAX_TOPIC, clip
from actord.messages import Event, Message
from actord.worker.calls import Calls
from actord.worker.proc import Proc
from actord.worker.state import WorkerState

_time = time.time
_encode_value = wire.encode_value
#: Proc's ``alive`` slot (TracedProc's ``alive`` property reads and sets it)
_alive: Any = Proc.__dict__["alive"]


class _Buffer:
    """One traced process's records not sent yet, and how many were dropped."""

    __slots__ = ("dropped", "records")

    def __init__(self) -> None:
        self.records: list[list[Any]] = []
        self.dropped = 0


class Recorder:
    """The worker's traced processes and their buffers (flushed every ``FLUSH_EVERY`` s), and
    the swaps that start and end a trace. ``rt`` is the worker's ``Runtime``."""

    def __init__(self, rt: Any) -> None:
        self.rt = rt
        self.conn = rt.conn
        self.loop: asyncio.AbstractEventLoop = rt.loop
        self.buffers: dict[str, _Buffer] = {}  # pid -> buffer: exactly the traced processes
        self._due = False
        self.proc_class = type("TracedProc", (TracedProc,), {"__slots__": (), "recorder": self})
        self.kernel = TracingKernel(rt, self)

    def trace(self, proc: Proc) -> None:
        """Start recording ``proc`` (no-op if it is already)."""
        if proc.pid in self.buffers:
            return
        self.buffers[proc.pid] = _Buffer()
        proc.__class__ = self.proc_class
        if len(self.buffers) == 1:
            kernel.install(self.kernel)

    def untrace(self, proc: Proc, flush: bool) -> None:
        """Stop recording ``proc`` (what it recorded sent first if ``flush``); after the last
        one, the process API calls the runtime itself again."""
        buf = self.buffers.pop(proc.pid, None)
        if buf is None:
            return
        if flush and (buf.records or buf.dropped):
            self.send(proc.pid, buf)
        proc.__class__ = Proc
        if not self.buffers:
            kernel.install(self.rt)

    def room(self, pid: str) -> list[list[Any]] | None:
        """Where to append one record of ``pid``: its buffer's list (its flush is then due),
        or None when ``pid`` is not traced or its buffer is full (counted: so a record that
        would be dropped is not even made)."""
        buf = self.buffers.get(pid)
        if buf is None:
            return None
        if len(buf.records) >= MAX_BATCH:
            buf.dropped += 1
            return None
        if not self._due:
            self._due = True
            self.loop.call_later(FLUSH_EVERY, self.flush)
        return buf.records

    def flush(self) -> None:
        """Send what every traced process recorded since the last flush."""
        self._due = False
        for pid, buf in self.buffers.items():
            if buf.records or buf.dropped:
                self.send(pid, buf)

    def send(self, pid: str, buf: _Buffer) -> None:
        try:
            self.conn.send([wire.TRACE, pid, buf.records, buf.dropped])
        except ValueError:  # a topic msgpack refuses (a lone surrogate, sent in the worker)
            self.conn.send([wire.TRACE, pid, [[_printable(x) for x in r] for r in buf.records],
                            buf.dropped])
        buf.records = []
        buf.dropped = 0

    def call_done(self, pid: str, op: str, args: Any, fut: asyncio.Future[Any]) -> None:
        """A traced process's call was answered: a record if it succeeded."""
        if fut.cancelled() or fut.exception() is not None:
            return
        records = self.room(pid)
        if records is None:
            return
        if op == "spawn":  # args: the spawn request's fields, by position
            records.append([_time(), op, fut.result(), args[0], args[1], args[3]])
        else:
            records.append([_time(), op, args["dest"]])


def _printable(x: Any) -> Any:
    """``x``, or a str msgpack refuses with its unencodable characters escaped."""
    return x.encode("utf-8", "backslashreplace").decode() if type(x) is str else x


class TracedProc(Proc):
    """A traced process: what arrives is recorded, then routed as by ``Proc``; its end
    ends its trace. No slots of its own, so an object's class can be swapped either way."""

    __slots__ = ()
    recorder: ClassVar[Recorder]  # set on the subclass each Recorder makes

    def deliver(self, msg: Message) -> None:
        Proc.deliver(self, msg)
        records = self.recorder.room(self.pid)
        if records is not None:
            records.append([_time(), "receive", msg.from_, clip(msg.topic, MAX_TOPIC),
                            len(_encode_value(msg.payload))])

    def deliver_event(self, event: Event) -> None:
        Proc.deliver_event(self, event)
        records = self.recorder.room(self.pid)
        if records is not None:
            result = event.result
            error = result.get("error") if isinstance(result, dict) else None
            records.append([_time(), "event", event.kind, event.from_, clip(error, MAX_ERROR),
                            clip(event.reason, MAX_ERROR)])

    @property
    def alive(self) -> bool:
        alive: bool = _alive.__get__(self)
        return alive

    @alive.setter
    def alive(self, value: bool) -> None:
        if not value:  # its end: its records reach the router before its EXITED
            self.recorder.untrace(self, flush=True)
        _alive.__set__(self, value)


class TracingKernel:
    """The kernel the process API calls while a process of this worker is traced: the
    runtime's (``rt``) calls, then a record when the caller is traced."""

    __slots__ = ("max_frame", "rec", "rt")

    def __init__(self, rt: Any, rec: Recorder) -> None:
        self.rt = rt
        self.rec = rec
        self.max_frame: int = rt.max_frame

    def resolve(self, dest: object) -> str:
        pid: str = self.rt.resolve(dest)
        return pid

    def permit(self, proc: Proc, action: str, resource: str) -> None:
        self.rt.permit(proc, action, resource)

    def check_escalation(self, proc: Proc, actor: dict[str, Any]) -> None:
        self.rt.check_escalation(proc, actor)

    def _abandon_exec(self, proc: Proc, child: str, reason: str) -> None:  # for Calls.exec
        self.rt._abandon_exec(proc, child, reason)

    def send(self, proc: Proc, dest: str, topic: str, payload: Any) -> None:
        self.rt.send(proc, dest, topic, payload)
        records = self.rec.room(proc.pid)
        if records is not None:
            records.append([_time(), "send", dest, clip(topic, MAX_TOPIC),
                            len(_encode_value(payload))])

    def request(self, proc: Proc, op: str, args: Any, exec_caller: bool = False
                ) -> asyncio.Future[Any]:
        fut: asyncio.Future[Any] = self.rt.request(proc, op, args, exec_caller)
        if op in CALLS and proc.pid in self.rec.buffers:
            fut.add_done_callback(functools.partial(self.rec.call_done, proc.pid, op, args))
        return fut

    async def exec(self, proc: Proc, args: Any, timeout: float | None) -> Any:
        # the runtime's exec, run on this kernel: its spawn goes through request above
        return await Calls.exec(self, proc, args, timeout)  # type: ignore[arg-type]


class TraceFrames(WorkerState):
    """TRACE_ON / TRACE_OFF (a ``Runtime`` mixin)."""

    # made by the worker's first trace; set to None when the runtime is made, with its other
    # attributes (a new attribute later could cost their reads the speed of a real dict)
    _recorder: Recorder | None

    def _on_trace_on(self, frame: list[Any]) -> None:
        proc = self.procs.get(frame[1])
        if proc is None:  # ended already: the router hears of it by its EXITED
            return
        if self._recorder is None:
            self._recorder = Recorder(self)
        self._recorder.trace(proc)

    def _on_trace_off(self, frame: list[Any]) -> None:
        proc = self.procs.get(frame[1])
        if proc is not None and self._recorder is not None:
            self._recorder.untrace(proc, flush=False)
