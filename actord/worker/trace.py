"""Tracing processes in the worker (SPEC 12, ``actord trace``).

Responsibility: while the router has a trace on for a process (``[TRACE_ON, pid]`` until
``[TRACE_OFF, pid]`` or its end), record what it does (see :mod:`actord.core.trace`): the
messages it sends and receives, the spawn/link/unlink/monitor/unmonitor calls it makes
(when their reply comes, if they succeeded) and the events it is given; batch them into one
``[TRACE, pid, records, dropped]`` frame per process every
:data:`~actord.core.trace.FLUSH_EVERY` seconds.

No extra work on the message path when no trace is on: nothing here is tested per message.
A trace swaps in tracing variants instead. The traced process's object becomes a
:class:`TracedProc` (its ``deliver``/``deliver_event`` record, then do what ``Proc``'s do),
and while any process of the worker is traced the runtime's class gets :class:`Tracing` in
front (its ``send`` and ``request`` record for traced callers: one dict lookup per call of
this worker's processes, only then; its ``_mark_dead``, which every end goes through before
its EXITED, ends a trace with its process). Both classes are swapped back when the last trace ends.

Bounds: at most :data:`~actord.core.trace.MAX_BATCH` records per process per frame; beyond,
they are only counted (``dropped``, sent with the next frame), so tracing never holds a
process up and a frame stays small. The router, not the worker, keeps what a slow client has
not read yet. A process's records are flushed before its EXITED (the router then adds the
``exit`` record with its result).
"""

from __future__ import annotations

import asyncio
import functools
import time
from typing import Any, ClassVar

from actord.core import wire
from actord.core.trace import CALLS, FLUSH_EVERY, MAX_BATCH, MAX_ERROR, MAX_TOPIC, clip
from actord.messages import Event, Message
from actord.transport import FrameProtocol
from actord.worker.frames import RouterFrames
from actord.worker.proc import Proc
from actord.worker.send import SendPath
from actord.worker.state import WorkerState

_time = time.time
_encode_value = wire.encode_value


class _Buffer:
    """One traced process's records not sent yet, and how many were dropped."""

    __slots__ = ("dropped", "records")

    def __init__(self) -> None:
        self.records: list[list[Any]] = []
        self.dropped = 0


class Recorder:
    """The worker's traced processes and their buffers, flushed every ``FLUSH_EVERY`` s."""

    def __init__(self, conn: FrameProtocol, loop: asyncio.AbstractEventLoop) -> None:
        self.conn = conn
        self.loop = loop
        self.buffers: dict[str, _Buffer] = {}  # pid -> buffer: exactly the traced processes
        self._due = False

    def add(self, pid: str, record: list[Any]) -> None:
        """Keep one record of ``pid`` (if it is still traced) for its next frame."""
        buf = self.buffers.get(pid)
        if buf is None:
            return
        if len(buf.records) >= MAX_BATCH:
            buf.dropped += 1
            return
        buf.records.append(record)
        if not self._due:
            self._due = True
            self.loop.call_later(FLUSH_EVERY, self.flush)

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

    def call_done(self, pid: str, op: str, args: Any, fut: Any) -> None:
        """A traced process's call was answered: a record if it succeeded."""
        if fut.cancelled() or fut.exception() is not None:
            return
        if op == "spawn":  # args: the spawn request's fields, by position
            self.add(pid, [_time(), op, fut.result(), args[0], args[1], args[3]])
        else:
            self.add(pid, [_time(), op, args["dest"]])


def _printable(x: Any) -> Any:
    """``x``, or a str msgpack refuses with its unencodable characters escaped."""
    return x.encode("utf-8", "backslashreplace").decode() if type(x) is str else x


class TracedProc(Proc):
    """A traced process: what arrives is recorded, then routed as by ``Proc``. Same layout
    as ``Proc`` (no slots of its own), so an object's class can be swapped either way."""

    __slots__ = ()
    recorder: ClassVar[Recorder]  # set on the subclass made per worker (TraceFrames)

    def deliver(self, msg: Message) -> None:
        Proc.deliver(self, msg)
        self.recorder.add(self.pid, [_time(), "receive", msg.from_, clip(msg.topic, MAX_TOPIC),
                                     len(_encode_value(msg.payload))])

    def deliver_event(self, event: Event) -> None:
        Proc.deliver_event(self, event)
        result = event.result
        error = result.get("error") if isinstance(result, dict) else None
        self.recorder.add(self.pid, [_time(), "event", event.kind, event.from_,
                                     clip(error, MAX_ERROR), clip(event.reason, MAX_ERROR)])


class TraceFrames(WorkerState):
    """TRACE_ON / TRACE_OFF (a ``Runtime`` mixin): swap the tracing variants in and out."""

    _recorder: Recorder | None = None
    _traced_proc: type[TracedProc]
    _plain: type[Any]  # the runtime's own class, while Tracing is in front of it

    def _on_trace_on(self, frame: list[Any]) -> None:
        proc = self.procs.get(frame[1])
        if proc is None:  # ended already: the router hears of it by its EXITED
            return
        rec = self._recorder
        if rec is None:
            rec = self._recorder = Recorder(self.conn, self.loop)
            self._traced_proc = type("TracedProc", (TracedProc,), {"__slots__": (),
                                                                   "recorder": rec})
        if proc.pid in rec.buffers:
            return
        rec.buffers[proc.pid] = _Buffer()
        proc.__class__ = self._traced_proc
        if not isinstance(self, Tracing):
            self._plain = type(self)
            self.__class__ = _tracing_class(type(self))

    def _on_trace_off(self, frame: list[Any]) -> None:
        proc = self.procs.get(frame[1])
        if proc is not None:
            self._untrace(proc, flush=False)

    def _untrace(self, proc: Proc, flush: bool) -> None:
        """Stop tracing ``proc`` (its buffered records sent first if ``flush``); the last
        trace of the worker takes ``Tracing`` out of the runtime's class."""
        rec = self._recorder
        buf = None if rec is None else rec.buffers.pop(proc.pid, None)
        if rec is None or buf is None:
            return
        if flush and (buf.records or buf.dropped):
            rec.send(proc.pid, buf)
        proc.__class__ = Proc
        if not rec.buffers:
            self.__class__ = self._plain


class Tracing(RouterFrames, SendPath, TraceFrames):
    """Put in front of the runtime's class while any of its processes is traced."""

    def send(self, proc: Proc, dest: str, topic: str, payload: Any) -> None:
        super().send(proc, dest, topic, payload)
        rec = self._recorder
        if rec is not None and proc.pid in rec.buffers:
            rec.add(proc.pid, [_time(), "send", dest, clip(topic, MAX_TOPIC),
                               len(_encode_value(payload))])

    def request(self, proc: Proc, op: str, args: Any, exec_caller: bool = False) -> Any:
        fut = super().request(proc, op, args, exec_caller)
        rec = self._recorder
        if rec is not None and op in CALLS and proc.pid in rec.buffers:
            fut.add_done_callback(functools.partial(rec.call_done, proc.pid, op, args))
        return fut

    def _mark_dead(self, proc: Proc) -> None:
        mark_dead = super()._mark_dead  # bound now: _untrace may take Tracing out of self's class
        self._untrace(proc, flush=True)  # its records reach the router before its EXITED
        mark_dead(proc)


#: runtime class -> that class with Tracing in front (made once per class)
_tracing_classes: dict[type[Any], type[Any]] = {}


def _tracing_class(cls: type[Any]) -> type[Any]:
    made = _tracing_classes.get(cls)
    if made is None:
        made = _tracing_classes[cls] = type(f"Tracing{cls.__name__}", (Tracing, cls), {})
    return made
