"""Process ends: every end a worker reports (or a dead worker implies) fanned out once.

A process end is, in this order (SPEC 4.4): its names released (NAME broadcast), one EXIT per
monitor, then (abnormal ends only) one LINK_DOWN per link, then the exec children of an exec
caller asked to stop (CANCEL ``"exec cancelled"``), then the router's own watchers: the exit
callbacks (control commands, services, an exec caller's EXEC event) and a pending STARTED
callback dropped. Exec bookkeeping lives here too: which exec children each caller still
waits for, and the EXEC event that tells the caller one of them ended.

Invariant: an end is fanned out at most once (the entry leaves ``procs`` first), and a name it
held is released before anyone hears that it ended.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from actord.core import wire
from actord.core.registry import Registry
from actord.core.topology import Topology
from actord.core.wire import ExitResult, is_abnormal
from actord.errors import NotFoundError
from actord.router.slots import Slots

ExitCallback = Callable[[ExitResult], None]


class Exits(Slots):
    """Process-end fan-out, exit and start callbacks, exec children (a Router mixin)."""

    registry: Registry
    topology: Topology
    exits: dict[str, int]
    empty: asyncio.Event
    _exit_callbacks: dict[str, list[ExitCallback]]
    # SPAWN_ACK processes whose STARTED is awaited (dropped when they end first)
    _start_callbacks: dict[str, Callable[[], None]]
    # exec caller -> its exec children still running (CANCELled if the caller ends first)
    _exec_children: dict[str, set[str]]

    def process_exited(self, pid: str, result: ExitResult) -> None:
        """Release names, EXIT every monitor, LINK_DOWN every link if abnormal (SPEC 4.4)."""
        entry = self.procs.pop(pid, None)
        if entry is None:
            return
        entry.worker.pids.discard(pid)
        for name in self.registry.release(pid):
            self._broadcast([wire.NAME, name, None])
        abnormal = is_abnormal(result)
        self.exits["abnormal" if abnormal else "normal"] += 1
        fallout = self.topology.exit(pid, abnormal)
        procs = self.procs
        for watcher in fallout.monitors:
            target = procs.get(watcher)  # self.event inlined: this runs once per EXIT
            if target is not None:
                target.worker.conn.send(
                    [wire.EVENT, watcher, wire.EV_EXIT, pid, result, None, None]
                )
        for partner in fallout.links:
            self.event(partner, wire.EV_LINK_DOWN, pid, result)
        if self._exec_children:
            # an exec caller that ended waits no more: its children are asked to stop
            for child in self._exec_children.pop(pid, ()):
                self.event(child, wire.EV_CANCEL, pid, None, None, "exec cancelled")
        if self._start_callbacks:
            self._start_callbacks.pop(pid, None)
        if self._exit_callbacks:
            for callback in self._exit_callbacks.pop(pid, ()):
                callback(result)
        if not procs:
            self.empty.set()

    def on_exit(self, pid: str, callback: ExitCallback) -> None:
        """Call ``callback(result)`` once when ``pid`` ends (NOT_FOUND if it is not alive)."""
        if pid not in self.procs:
            raise NotFoundError(f"process {pid} is not alive")
        self._exit_callbacks.setdefault(pid, []).append(callback)

    def on_started(self, pid: str, callback: Callable[[], None]) -> None:
        """Call ``callback()`` when the SPAWN_ACK process ``pid`` reports STARTED (never if it
        ends first: its exit callbacks say so)."""
        if pid not in self.procs:
            raise NotFoundError(f"process {pid} is not alive")
        self._start_callbacks[pid] = callback

    def _started(self, pid: str) -> None:
        """The STARTED frame of ``pid`` (from the worker that runs it): its callback, once."""
        callback = self._start_callbacks.pop(pid, None)
        if callback is not None:
            callback()

    def _exec_notifier(self, watcher: str, child: str) -> ExitCallback:
        """The exit callback of exec ``child``: ``watcher`` waits for it no more and gets
        one EXEC event."""

        def notify(result: ExitResult) -> None:
            children = self._exec_children.get(watcher)
            if children is not None:
                children.discard(child)
                if not children:
                    del self._exec_children[watcher]
            self.event(watcher, wire.EV_EXEC, child, result)

        return notify
