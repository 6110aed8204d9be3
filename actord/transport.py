"""Frames over a stream socket: one asyncio ``Protocol`` used by router, worker and control.

``send`` packs the frame at once (so a bad value fails at the caller). When it is written
is the latency/throughput trade-off of the whole node (every hop is a socket write, and a
write is what wakes the peer):

- **inside a read** (frames sent while ``data_received`` handles a batch, e.g. everything
  the router forwards): queued, and each connection written once when the whole read has
  been handled. One write per destination per read, and no loop pass of delay.
- **anywhere else** (process code in a worker): the first frame sent after a read, when
  nothing is queued, is written at once (a reply or a ping-pong leaves now, not one loop
  pass later, and needs no callback); frames after it are queued and written together by a
  callback on the next loop pass. So a burst costs at most two writes per pass, and a
  stream that reads nothing costs one.

Flow control: the transport's write buffer has a high and a low water mark. Above the high
one the connection is *write-paused*; a peer that keeps feeding it can be parked with
``block_reading_on(conn)``: its reading pauses until ``conn`` drains below the low water mark.
The router does this for a worker that floods a slow one, so the router's buffers stay
bounded and only the flooding worker waits.

Invariant: frames leave in the order ``send`` was called (a frame is written at once only
when nothing is queued); a malformed or oversized inbound frame closes the connection after
``on_bad_frame`` was told why, and nothing after it is handled.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

from actord.core import wire

FrameHandler = Callable[[list[Any]], None]

#: write-buffer water marks (bytes the kernel has not taken yet) for flow control
HIGH_WATER = 4 * 1024 * 1024
LOW_WATER = 1024 * 1024


class _ReadScope:
    """Per thread (so per event loop): is a read being handled, and who queued frames in it."""

    __slots__ = ("active", "dirty")

    def __init__(self) -> None:
        self.active = False
        self.dirty: list[FrameProtocol] = []


_scopes = threading.local()


def _read_scope() -> _ReadScope:
    scope: _ReadScope | None = getattr(_scopes, "scope", None)
    if scope is None:
        scope = _scopes.scope = _ReadScope()
    return scope


class FrameProtocol(asyncio.Protocol):
    """A framed, batched, ordered duplex connection."""

    def __init__(
        self,
        on_frame: FrameHandler,
        *,
        on_close: Callable[[Exception | None], None] | None = None,
        on_bad_frame: Callable[[str], None] | None = None,
        max_frame: int = wire.DEFAULT_MAX_FRAME,
    ) -> None:
        self._on_frame = on_frame
        self._on_close = on_close
        self._on_bad_frame = on_bad_frame
        self._decoder = wire.FrameDecoder(max_frame)
        self._pack = wire.new_packer().pack
        self._out: list[bytes] = []
        self._flush_scheduled = False  # a _flush callback is pending: queue, do not write
        self._eager = True  # the next send may be written at once (reset by each read)
        self._dirty = False  # queued frames in the current read scope (in _scope.dirty)
        self._scope = _read_scope()
        self._transport: asyncio.Transport | None = None
        self._loop = asyncio.get_running_loop()
        self.closed = False
        self.connected = asyncio.Event()
        self.lost = asyncio.Event()
        self.write_paused = False  # our peer is not keeping up (above HIGH_WATER)
        self._on_writable: list[Callable[[], None]] = []
        self._blocked_by: set[FrameProtocol] = set()  # our reading waits for these to drain

    # -- asyncio callbacks -------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        stream: asyncio.Transport = transport  # type: ignore[assignment]  # uvloop's is no subclass
        stream.set_write_buffer_limits(high=HIGH_WATER, low=LOW_WATER)
        self._transport = stream
        self.connected.set()
        if self._out:
            self._flush()

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        self._eager = True
        try:
            frames = self._decoder.feed(data)
        except wire.FrameError as e:
            self._bad(str(e))
            return
        handle = self._on_frame
        scope = self._scope
        if scope.active:  # reads do not nest; if one ever did, the outer read flushes
            for frame in frames:
                if self.closed:
                    return
                handle(frame)
            return
        scope.active = True
        try:
            for frame in frames:
                if self.closed:
                    return
                handle(frame)
        finally:
            scope.active = False
            if scope.dirty:
                dirty, scope.dirty = scope.dirty, []
                for proto in dirty:
                    proto._dirty = False
                    proto._flush()

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        callbacks, self._on_writable = self._on_writable, []
        for callback in callbacks:
            callback()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.lost.set()
        self._out.clear()
        self.resume_writing()  # nobody stays parked on a connection that is gone
        if self._on_close is not None:
            cb, self._on_close = self._on_close, None
            cb(exc)

    # -- flow control ------------------------------------------------------------------------
    def block_reading_on(self, slow: FrameProtocol) -> None:
        """Stop reading from our peer until ``slow`` drains (see the module docstring)."""
        if slow in self._blocked_by or slow is self or self._transport is None:
            return
        if not self._blocked_by:
            self._transport.pause_reading()
        self._blocked_by.add(slow)
        slow._on_writable.append(lambda: self._unblock(slow))

    def _unblock(self, slow: FrameProtocol) -> None:
        self._blocked_by.discard(slow)
        if not self._blocked_by and not self.closed and self._transport is not None:
            self._transport.resume_reading()

    @property
    def reading_paused(self) -> bool:
        """True while our reading waits for a slow connection to drain."""
        return bool(self._blocked_by)

    # -- sending -----------------------------------------------------------------------------
    def send(self, frame: list[Any]) -> None:
        """Queue one frame; raises ``TypeError`` if it holds a non-msgpack value.

        The body is ``send_encoded``'s, inlined: this is the per-message path.
        """
        data = self._pack(frame)
        if self.closed:
            return
        if self._scope.active:
            # inside a read: written with everything else this read sends, at its end
            self._out.append(data)
            if not self._dirty:
                self._dirty = True
                self._scope.dirty.append(self)
            return
        if self._eager and not self._out and self._transport is not None:
            # the first frame since a read: write now (the latency path); what follows it
            # is batched
            self._eager = False
            self._transport.write(data)
            return
        self._out.append(data)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._end_batch)

    def send_encoded(self, data: bytes) -> None:
        """Queue one frame already encoded by ``wire.encode`` (its size was checked)."""
        if self.closed:
            return
        if self._scope.active:
            self._out.append(data)
            if not self._dirty:
                self._dirty = True
                self._scope.dirty.append(self)
            return
        if self._eager and not self._out and self._transport is not None:
            self._eager = False
            self._transport.write(data)
            return
        self._out.append(data)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._end_batch)

    def _end_batch(self) -> None:
        self._flush_scheduled = False
        self._flush()

    def _flush(self) -> None:
        if self._transport is None or not self._out:
            return
        out, self._out = self._out, []
        if not self.closed:
            self._transport.write(b"".join(out) if len(out) > 1 else out[0])

    def flush_now(self) -> None:
        """Write everything queued immediately (before exiting a process)."""
        self._flush()

    def close(self) -> None:
        """Flush what is queued, then close."""
        self._flush()
        if self._transport is not None:
            self._transport.close()

    def abort(self, reason: str) -> None:
        """Drop the peer now, telling ``on_bad_frame`` why."""
        self._bad(reason)

    def _bad(self, reason: str) -> None:
        if self._on_bad_frame is not None:
            self._on_bad_frame(reason)
        self.closed = True
        self._out.clear()
        if self._transport is not None:
            self._transport.abort()
