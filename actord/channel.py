"""Channels: the unbounded FIFO queues a process receives from, and ``select`` over several.

Responsibility: hand each item the runtime delivers (``Channel._put``) to exactly one receiver,
in the order delivered, and let a process wait on one channel (``receive``) or on the first
ready of several (``select``).

Invariant: an item leaves a channel only when a receiver pops it itself, in its own task.
``_put`` never hands an item to a waiter; it appends it and wakes a waiter, which then pops.
So a receive or select that is cancelled (or times out) after being woken loses nothing: the
item stays queued, and the wake-up is passed on to the next waiter. Every future a waiter
registers is removed from every channel's waiter list however the wait ends.

The wake-up protocol, for one channel::

    _put(x)      items.append(x); if waiters: pop the first live waiter, set its result
    receiver     items? pop and return : register a future, await it, loop
    woken        pop an item if one is there; if items remain and others wait, wake one more
    cancelled    unregister; if items remain and others wait, wake one more (pass it on)
    close()      wake every waiter; each takes a queued item or raises Closed

Not thread-safe: everything runs on the worker's event loop thread.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Final

from actord.errors import InvalidError


class Empty(Exception):
    """``receive_nowait`` found no queued item on an open channel."""


class Closed(Exception):
    """The channel is closed and every queued item has been received."""


# The result a select's timer sets on the future; a channel's wake-up sets None.
_TIMED_OUT: Final = object()


class Channel:
    """An unbounded FIFO queue of items with any number of receivers.

    Items are delivered by the runtime (``_put``); each is received exactly once, in order.
    A channel is always truthy (``len(ch)`` is the number of queued items).
    """

    __slots__ = ("__weakref__", "_closed", "_items", "_loop", "_name", "_waiters")

    def __init__(self, name: str = "") -> None:
        self._name = name
        self._items: deque[object] = deque()
        # Futures of suspended receivers and selects, oldest first. A select's one future
        # sits in the list of every channel it waits on.
        self._waiters: list[asyncio.Future[object]] = []
        self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None  # see _running_loop

    # -- public API -------------------------------------------------------------------------

    @property
    def name(self) -> str:
        """The name given at creation, for ``repr`` and diagnostics."""
        return self._name

    @property
    def closed(self) -> bool:
        """True once ``close`` has been called (items may still be queued)."""
        return self._closed

    async def receive(self) -> object:
        """Return the next item, waiting for one; raise ``Closed`` when closed and empty."""
        items = self._items
        if items:  # fast path: no future, no suspension
            return items.popleft()
        if self._closed:
            raise Closed(f"{self!r} is closed")
        loop = _running_loop(self)
        while True:
            fut: asyncio.Future[object] = loop.create_future()
            self._waiters.append(fut)
            try:
                await fut
            except BaseException:  # cancelled: unregister and pass the wake-up on, then re-raise
                _unregister(self, fut)
                self._pass_on()
                raise
            if items:
                item = items.popleft()
                self._pass_on()
                return item
            if self._closed:
                raise Closed(f"{self!r} is closed")
            # Woken, but another receiver took the item first: wait again.

    def receive_nowait(self) -> object:
        """Return the next item; raise ``Empty`` if none is queued (``Closed`` if closed)."""
        if self._items:
            return self._items.popleft()
        if self._closed:
            raise Closed(f"{self!r} is closed")
        raise Empty(f"{self!r} is empty")

    def close(self) -> None:
        """Stop accepting items; queued ones can still be received. Idempotent.

        Every suspended receiver is woken: it takes a queued item if one is left, else it
        raises ``Closed`` (a select skips this channel instead).
        """
        if self._closed:
            return
        self._closed = True
        waiters, self._waiters = self._waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    def __len__(self) -> int:
        return len(self._items)

    def __bool__(self) -> bool:
        # Without this an empty channel would be falsy through __len__, a trap in
        # `ch = ch or default` and `if ch:`; a channel is an object, not a collection.
        return True

    def __aiter__(self) -> Channel:
        return self

    async def __anext__(self) -> object:
        if self._items:
            return self._items.popleft()
        try:
            return await self.receive()
        except Closed:
            raise StopAsyncIteration from None

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<Channel {self._name!r} {state} queued={len(self._items)}>"

    # -- runtime-internal -------------------------------------------------------------------

    def _put(self, item: object) -> bool:
        """Queue ``item`` and wake one waiter; return False (item dropped) if closed.

        O(1), never blocks, allocates nothing beyond the deque slot when nobody waits.
        """
        if self._closed:
            return False
        self._items.append(item)
        if self._waiters:
            self._wake_one()
        return True

    def _drain(self) -> list[object]:
        """Take every queued item, oldest first (an upgrade moves them to a new channel)."""
        items = list(self._items)
        self._items.clear()
        return items

    # -- internals --------------------------------------------------------------------------

    def _wake_one(self) -> None:
        # Pop waiters until a live one is found. Done futures are stale entries: a select
        # already woken through another channel, or a timed-out or cancelled waiter that has
        # not run its cleanup yet; skipping them keeps the wake-up for someone who can use it.
        waiters = self._waiters
        while waiters:
            fut = waiters.pop(0)
            if not fut.done():
                fut.set_result(None)
                return

    def _pass_on(self) -> None:
        # A waiter that was woken for this channel and did not take its item (it was
        # cancelled, or a select took from another channel) must not swallow the wake-up.
        # Waking one too many costs a spurious re-check, never an item.
        if self._items and self._waiters:
            self._wake_one()


def _running_loop(channel: Channel) -> asyncio.AbstractEventLoop:
    """The running loop, remembered by the channel.

    ``asyncio.get_running_loop()`` makes a ``getpid()`` system call on Python 3.11 (a fork
    check), once per suspension of a receiver. A channel is used on one loop at a time
    (it is not thread-safe), so the loop it last saw is still the running one while that
    loop runs; a loop that stopped (a test's ``asyncio.run`` ended) is looked up again.
    """
    loop = channel._loop
    if loop is None or not loop.is_running():
        loop = channel._loop = asyncio.get_running_loop()
    return loop


def _unregister(channel: Channel, fut: asyncio.Future[object]) -> None:
    """Remove one registration of ``fut`` from ``channel``, if it is still there."""
    waiters = channel._waiters
    if fut in waiters:  # else already popped by a wake-up or cleared by close()
        waiters.remove(fut)


def _poll(channels: tuple[Channel, ...]) -> tuple[Channel, object] | None:
    """Take from the first channel with a queued item, in argument order.

    Return None if every open channel is empty; raise ``Closed`` if none is open and none has
    an item left.
    """
    all_closed = True
    for ch in channels:
        if ch._items:
            return ch, ch._items.popleft()
        if not ch._closed:
            all_closed = False
    if all_closed:
        raise Closed("every channel given to select is closed and drained")
    return None


def _expire(fut: asyncio.Future[object]) -> None:
    if not fut.done():
        fut.set_result(_TIMED_OUT)


async def select(*channels: Channel, timeout: float | None = None) -> tuple[Channel, object]:
    """Return ``(channel, item)`` from the first ready channel, in argument order.

    Waits until one is ready, at most ``timeout`` seconds (``None``: forever; ``0`` or less:
    poll once) and then raises ``TimeoutError``. A closed channel with nothing left is
    skipped; if every channel is, raises ``Closed``. No channels, a non-``Channel`` argument
    or a non-numeric timeout raise ``InvalidError``.
    """
    if not channels:
        raise InvalidError("select needs at least one channel")
    for ch in channels:
        if not isinstance(ch, Channel):
            raise InvalidError(f"select takes channels, got {type(ch).__name__}")
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout != timeout
    ):
        raise InvalidError(f"select timeout must be a number of seconds or None, got {timeout!r}")

    ready = _poll(channels)
    if ready is not None:
        return ready
    if timeout is not None and timeout <= 0:
        raise TimeoutError("select: no channel ready")

    loop = _running_loop(channels[0])
    deadline = None if timeout is None else loop.time() + timeout
    while True:
        # One future for all channels; a channel's wake-up or the timer resolves it.
        fut: asyncio.Future[object] = loop.create_future()
        for ch in channels:
            if not ch._closed:
                ch._waiters.append(fut)
        timer = None if deadline is None else loop.call_at(deadline, _expire, fut)
        try:
            await fut
        except BaseException:  # cancelled: nothing was taken, pass on any wake-up
            _unwait(channels, fut)
            raise
        finally:
            if timer is not None:
                timer.cancel()
        for ch in channels:
            _unregister(ch, fut)
        # An item that arrived with the timeout is still taken, rather than left behind.
        ready = _poll(channels)  # raises Closed if all closed: then nothing is left to pass on
        for ch in channels:
            ch._pass_on()
        if ready is not None:
            return ready
        if fut.result() is _TIMED_OUT:
            raise TimeoutError(f"select: no channel ready within {timeout}s")
        # Woken, but another receiver took the item first: wait again until the deadline.


def _unwait(channels: tuple[Channel, ...], fut: asyncio.Future[object]) -> None:
    """Remove a select's future from every channel and pass on wake-ups it did not use."""
    for ch in channels:
        _unregister(ch, fut)
    for ch in channels:
        ch._pass_on()


__all__ = ["Channel", "Closed", "Empty", "select"]
