"""systemd's notification protocol (``Type=notify``): readiness, status and the watchdog.

``sd_notify`` is one ``AF_UNIX``/``SOCK_DGRAM`` datagram of ``KEY=value`` lines to
``$NOTIFY_SOCKET`` (a path, or an abstract name when it starts with ``@``). What the daemon
says and when (systemd 252, so ``Type=notify`` with reload on SIGHUP)::

    start:   STATUS=starting ...     (while workers and services come up)
             READY=1 + STATUS=       (every auto_start service is running)
    running: WATCHDOG=1              every WATCHDOG_USEC/2, from a timer on the daemon's loop
             STATUS=                 when the summary line changed (checked every tick)
    reload:  RELOADING=1 + MONOTONIC_USEC=, then READY=1 + STATUS= (also when refused)
    stop:    STOPPING=1 + STATUS=    (then no more WATCHDOG=1)

The heartbeat is a timer on the event loop that runs the router, so a blocked loop stops the
pings and systemd's ``WatchdogSec=`` restarts the daemon: that is the health check.

Invariant: nothing here blocks or raises: without ``$NOTIFY_SOCKET`` every call is a no-op,
and a datagram that cannot be sent (no listener, full queue) is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable, MutableMapping

log = logging.getLogger("actord.notify")

#: the variables systemd sets for us; ``from_environ(unset=True)`` hides them from workers
ENV_KEYS = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")
#: seconds between two heartbeat ticks when the watchdog is off or slower (STATUS= refresh)
STATUS_INTERVAL = 2.0


def notify_address(value: str | None) -> str | None:
    """The ``sendto`` address for a ``$NOTIFY_SOCKET`` value, None if unset or unsupported."""
    if not value:
        return None
    if value.startswith("@"):
        return "\0" + value[1:]  # abstract namespace
    if value.startswith("/"):
        return value
    return None  # e.g. "vsock:..." (systemd 254+): not used by a service manager on this host


def watchdog_interval(environ: MutableMapping[str, str], pid: int) -> float | None:
    """Seconds between ``WATCHDOG=1`` pings (half of ``WATCHDOG_USEC``), None when off for us."""
    usec = environ.get("WATCHDOG_USEC")
    if not usec:
        return None
    owner = environ.get("WATCHDOG_PID")
    if owner and owner != str(pid):
        return None  # the watchdog is meant for another process (e.g. a wrapper exec'd us)
    try:
        value = int(usec)
    except ValueError:
        log.warning("ignoring WATCHDOG_USEC=%r: not an integer", usec)
        return None
    return value / 2e6 if value > 0 else None


class Notifier:
    """One daemon's channel to systemd, with the heartbeat timer."""

    def __init__(self, address: str | None, watchdog: float | None = None) -> None:
        self.address = address
        self.watchdog = watchdog if address is not None else None
        self._sock: socket.socket | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._status_of: Callable[[], str] | None = None
        self._last_status: str | None = None
        self._due = 0.0
        self._stopping = False

    @classmethod
    def from_environ(
        cls, environ: MutableMapping[str, str] | None = None, unset: bool = False
    ) -> Notifier:
        """Read ``$NOTIFY_SOCKET`` and the watchdog settings; ``unset`` removes them.

        Unsetting keeps them from the workers (and whatever actor code runs): only the
        daemon talks to systemd (``NotifyAccess=main``).
        """
        env = os.environ if environ is None else environ
        notifier = cls(notify_address(env.get("NOTIFY_SOCKET")),
                       watchdog_interval(env, os.getpid()))
        if unset:
            for key in ENV_KEYS:
                env.pop(key, None)
        return notifier

    # -- messages ------------------------------------------------------------------------------
    def send(self, *fields: str) -> bool:
        """Send ``KEY=value`` fields as one datagram; False if not sent (never raises)."""
        if self.address is None or not fields:
            return False
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.setblocking(False)  # a full queue drops the datagram, never blocks
            self._sock.sendto("\n".join(fields).encode(), self.address)
        except OSError as e:
            log.debug("sd_notify %s: %s", fields, e)
            return False
        return True

    def status(self, text: str) -> None:
        """``STATUS=text`` (shown by ``systemctl status``), unless it is unchanged."""
        text = _one_line(text)
        if text != self._last_status:
            self._last_status = text
            self.send(f"STATUS={text}")

    def ready(self, status: str) -> None:
        """``READY=1``: start-up or a reload is over."""
        self._last_status = _one_line(status)
        self.send("READY=1", f"STATUS={self._last_status}")

    def reloading(self) -> None:
        """``RELOADING=1``: a reload began (``READY=1`` must follow)."""
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self.send("RELOADING=1", f"MONOTONIC_USEC={usec}", "STATUS=reloading")

    def stopping(self, status: str = "stopping") -> None:
        """``STOPPING=1``; the heartbeat stops for good."""
        self._stopping = True
        self._cancel_timer()
        self._last_status = _one_line(status)
        self.send("STOPPING=1", f"STATUS={self._last_status}")

    # -- heartbeat -----------------------------------------------------------------------------
    def start_heartbeat(self, status: Callable[[], str]) -> None:
        """Ping the watchdog (if on) and refresh ``STATUS=`` from ``status()`` on a loop timer."""
        if self.address is None or self._stopping:
            return
        self._status_of = status
        self._cancel_timer()
        self._schedule(asyncio.get_running_loop())

    @property
    def interval(self) -> float:
        """Seconds between heartbeat ticks."""
        return STATUS_INTERVAL if self.watchdog is None else min(self.watchdog, STATUS_INTERVAL)

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        self._due = loop.time() + self.interval
        self._timer = loop.call_at(self._due, self._tick, loop)

    def _tick(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = None
        if self._stopping:
            return
        late = loop.time() - self._due
        if late > self.interval:  # the loop did not run this timer for a whole tick
            log.warning("event loop was blocked for %.1fs", late)
        fields = ["WATCHDOG=1"] if self.watchdog is not None else []
        if self._status_of is not None:
            text = _one_line(self._status_of())
            if text != self._last_status:
                self._last_status = text
                fields.append(f"STATUS={text}")
        self.send(*fields)
        self._schedule(loop)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def close(self) -> None:
        """Stop the heartbeat and close the socket."""
        self._stopping = True
        self._cancel_timer()
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
            self._sock = None


def _one_line(text: str) -> str:
    return " ".join(text.splitlines())
