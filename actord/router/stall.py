"""Stalled workers: a worker whose event loop is blocked, found by its missing heartbeats.

Each worker sends ``[HEARTBEAT]`` from a timer of its own event loop every ``interval``
seconds (told in INIT), so the frame cannot go out while that loop is blocked (an actor in
``time.sleep``, CPU-bound code that never awaits, a SIGSTOP). The router notes when each
heartbeat arrives; only that frame does, so no other frame costs anything more. A timer of
the router's loop checks every watched worker at the same interval::

    worker loop --[HEARTBEAT] every interval--> router: heard[worker] = now
    router timer, every interval:  now - heard[worker] > stall_timeout  ->  stalled

A worker has two states here, ``running`` and ``stalled`` (``WorkerLink.stalled``); each move
is logged once at WARNING (``worker H/I stalled: ...``, ``worker H/I recovered: ...``). Its
next heartbeat makes a stalled worker ``running`` again. Spawns avoid a stalled worker while
its host has another. A worker blocked from time t is marked stalled by
``t + stall_timeout + interval`` (the interval is at most 1 s).

Invariants: silence the router caused never counts: while the router does not read a worker
(flow control parks it) or when the router's own loop was late to check, the missing
heartbeats are not the worker's fault. A worker is watched from the moment it is attached, so
one whose loop never gets going is found too (its start counts as silence: keep
``stall_timeout`` above a worker's start-up time); a worker that is down is forgotten.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from actord.router.slots import WorkerLink

log = logging.getLogger("actord.stall")


def heartbeat_interval(stall_timeout: float) -> float:
    """Seconds between two heartbeats (and two checks): four per timeout, at most 1 s."""
    return min(1.0, stall_timeout / 4)


class StallWatch:
    """Heartbeat times of the workers, which of them are stalled, and who waits for that."""

    def __init__(self, stall_timeout: float) -> None:
        self.timeout = stall_timeout
        self.interval = heartbeat_interval(stall_timeout)
        self._heard: dict[WorkerLink, float] = {}  # monotonic time of the last heartbeat
        self._waiters: dict[WorkerLink, list[asyncio.Future[None]]] = {}  # when_stalled
        self._beaten: set[WorkerLink] = set()  # sent at least one heartbeat
        self._beat_waiters: dict[WorkerLink, list[asyncio.Future[None]]] = {}  # when_running
        #: last known mailbox depth of each worker (summed over its processes), from its
        #: last STATS answer: what metrics report while it cannot answer
        self.mailbox: dict[WorkerLink, int] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._due = 0.0

    # -- events ----------------------------------------------------------------------------------
    def watch(self, link: WorkerLink) -> None:
        """A worker just attached: its silence counts from now."""
        now = time.monotonic()
        self._heard[link] = now
        if self._timer is None:
            self._due = now + self.interval
            self._timer = asyncio.get_running_loop().call_later(self.interval, self._check)

    def heard(self, link: WorkerLink) -> None:
        """A heartbeat from ``link``; a stalled worker is running again (logged)."""
        if link.stalled:
            link.stalled = False
            log.warning("worker %s recovered: heartbeat again after %.1fs without one "
                        "(its event loop runs again); %d processes on it",
                        link.tag, time.monotonic() - self._heard[link], len(link.pids))
        self._beaten.add(link)
        if link in self._beat_waiters:
            for fut in self._beat_waiters.pop(link):
                if not fut.done():
                    fut.set_result(None)
        if link not in self._heard:
            self.watch(link)
        self._heard[link] = time.monotonic()

    def forget(self, link: WorkerLink) -> None:
        """``link`` is down: stop watching it (its processes ended with it)."""
        self._heard.pop(link, None)
        link.stalled = False
        self._beaten.discard(link)
        self.mailbox.pop(link, None)
        for fut in (*self._waiters.pop(link, ()), *self._beat_waiters.pop(link, ())):
            fut.cancel()

    # -- queries ---------------------------------------------------------------------------------
    def is_stalled(self, link: WorkerLink) -> bool:
        """True while ``link`` is marked stalled."""
        return link.stalled

    def stalled_for(self, link: WorkerLink) -> float | None:
        """Seconds since a stalled worker's last heartbeat; None if it is not stalled."""
        if not link.stalled:
            return None
        return time.monotonic() - self._heard[link]

    def row(self, link: WorkerLink) -> dict[str, Any]:
        """``state`` (running, stalled or down) and ``stalled_for`` of a worker, for status."""
        since = self.stalled_for(link)
        state = "down" if not link.up else "stalled" if since is not None else "running"
        return {"state": state, "stalled_for": None if since is None else round(since, 3)}

    def when_stalled(self, link: WorkerLink) -> asyncio.Future[None]:
        """A future done when ``link`` is marked stalled (at once if it is); cancelled if it
        goes down first. The caller cancels it when it stops waiting."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if link.stalled:
            fut.set_result(None)
        else:
            waiters = self._waiters.setdefault(link, [])
            waiters[:] = [w for w in waiters if not w.done()]
            waiters.append(fut)
        return fut

    def when_running(self, link: WorkerLink) -> asyncio.Future[None]:
        """A future done once ``link`` has sent a heartbeat and is not stalled (at once if
        so); cancelled if it goes down first."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if link in self._beaten and not link.stalled:
            fut.set_result(None)
        else:
            self._beat_waiters.setdefault(link, []).append(fut)
        return fut

    # -- the check -------------------------------------------------------------------------------
    def _check(self) -> None:
        now = time.monotonic()
        late = now - self._due  # > 0: our own loop was busy; the workers' frames wait unread
        for link, heard in self._heard.items():
            if link.stalled:
                continue
            if link.conn.reading_paused:  # parked by flow control: we do not read it
                heard = now
            elif late > self.interval:
                heard += late
            self._heard[link] = heard
            if now - heard > self.timeout and link.up:
                self._stall(link, now - heard)
        self._due = now + self.interval
        self._timer = asyncio.get_running_loop().call_later(self.interval, self._check)

    def _stall(self, link: WorkerLink, silent: float) -> None:
        link.stalled = True
        log.warning("worker %s stalled: no heartbeat for %.1fs (its event loop is blocked); "
                    "%d processes on it", link.tag, silent, len(link.pids))
        for fut in self._waiters.pop(link, ()):
            if not fut.done():
                fut.set_result(None)
