"""Frames over a stream socket: one asyncio ``Protocol`` used by router, worker and control.

Writes are batched: ``send`` packs the frame at once (so a bad value fails at the caller)
and queues the bytes; one ``transport.write`` per loop iteration flushes everything queued.
Invariant: frames leave in the order ``send`` was called; a malformed or oversized inbound
frame closes the connection after ``on_bad_frame`` was told why, and nothing after it is
handled.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from actord.core import wire

FrameHandler = Callable[[list[Any]], None]


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
        self._flush_scheduled = False
        self._transport: asyncio.Transport | None = None
        self._loop = asyncio.get_running_loop()
        self.closed = False
        self.connected = asyncio.Event()
        self.lost = asyncio.Event()

    # -- asyncio callbacks -------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]  # uvloop's is no subclass
        self.connected.set()
        if self._out:
            self._flush()

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        try:
            frames = self._decoder.feed(data)
        except wire.FrameError as e:
            self._bad(str(e))
            return
        handle = self._on_frame
        for frame in frames:
            if self.closed:
                return
            handle(frame)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.lost.set()
        self._out.clear()
        if self._on_close is not None:
            cb, self._on_close = self._on_close, None
            cb(exc)

    # -- sending -----------------------------------------------------------------------------
    def send(self, frame: list[Any]) -> None:
        """Queue one frame; raises ``TypeError`` if it holds a non-msgpack value."""
        data = self._pack(frame)
        if self.closed:
            return
        self._out.append(data)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
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
