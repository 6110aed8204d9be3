"""Process ends: every end a worker reports (or a dead worker implies) fanned out once.

A process end is, in this order (SPEC 4.4): its names released (NAME broadcast), one EXIT per
monitor, then (abnormal ends only) one LINK_DOWN per link, then the exec children of an exec
caller asked to stop (CANCEL ``"exec cancelled"``), then the router's own watchers: the exit
callbacks (control commands, services, an exec caller's EXEC event) and a pending STARTED
callback dropped. Exec bookkeeping lives here too: which exec children each caller still
waits for, and the EXEC event that tells the caller one of them ended.

On a cluster (SPEC 11) an end also goes, as one EXITED frame, to every other node with an
edge to the process; those nodes fan it out to their own processes (:meth:`remote_exited`),
and a node that goes down (or whose pair breaks) is the end of all its processes for us
(:meth:`node_fallout`, ``"node down: <node>"``).

Invariant: an end is fanned out at most once per node (the entry leaves ``procs`` first; a
remote PID's edges leave the topology with its first end), only to that node's own
processes, and a name it held is released before anyone hears that it ended.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from actord import ids
from actord.core import wire
from actord.core.registry import Registry
from actord.core.topology import Topology
from actord.core.wire import ExitResult, is_abnormal
from actord.errors import NotFoundError
from actord.router.global_names import GlobalNames
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
    # exec caller -> its exec children still running (CANCELled if the caller ends first);
    # on a cluster either may be another node's (SPEC 11)
    _exec_children: dict[str, set[str]]
    # local caller -> the other nodes it has called (remote.py): they get its EXITED
    _calling: dict[str, set[str]]
    global_names: GlobalNames | None  # global: names (SPEC 11), None for a single node

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
        if self.cluster is not None:
            self._tell_nodes(pid, result)
        self._fan_out(pid, result, abnormal)
        procs = self.procs
        if self._exec_children:
            # an exec caller that ended waits no more: its children are asked to stop
            # (a child on another node is cancelled there, on our EXITED)
            for child in self._exec_children.pop(pid, ()):
                if child in procs:
                    self.event(child, wire.EV_CANCEL, pid, None, None, "exec cancelled")
        if self._start_callbacks:
            self._start_callbacks.pop(pid, None)
        if self._exit_callbacks:
            for callback in self._exit_callbacks.pop(pid, ()):
                callback(result)
        if not procs:
            self.empty.set()

    def _fan_out(self, pid: str, result: ExitResult, abnormal: bool) -> None:
        """EXIT to every local watcher of ``pid``, then LINK_DOWN to every local link partner
        if ``abnormal``; its edges are gone after (remote ends hear through EXITED)."""
        fallout = self.topology.exit(pid, abnormal)
        procs = self.procs
        for watcher in fallout.monitors:
            target = procs.get(watcher)  # self.event inlined: this runs once per EXIT
            if target is not None:
                target.worker.conn.send(
                    [wire.EVENT, watcher, wire.EV_EXIT, pid, result, None, None]
                )
        for partner in fallout.links:
            target = procs.get(partner)
            if target is not None:
                target.worker.conn.send(
                    [wire.EVENT, partner, wire.EV_LINK_DOWN, pid, result, None, None]
                )

    # -- several nodes (SPEC 11) -----------------------------------------------------------------
    def _tell_nodes(self, pid: str, result: ExitResult) -> None:
        """Our ``pid`` ended: one EXITED to every other node with an edge to it or a call
        pending from it (they fan it out to their processes), after its messages."""
        cluster = self.cluster
        assert cluster is not None
        if self.global_names is not None:
            self.global_names.release(pid)  # before any EXIT (SPEC 4 rule 4)
        nodes = self._calling.pop(pid, set())
        for other in self.topology.neighbours(pid):
            node = ids.node_of(other)
            if node is not None and node != cluster.node:
                nodes.add(node)
        for node in nodes:
            cluster.send_to(node, [wire.EXITED, pid, result])

    def remote_exited(self, pid: str, result: ExitResult) -> None:
        """A process of another node ended (its EXITED, or its node down): EXIT and
        LINK_DOWN to our processes with edges to it, its exec children here cancelled."""
        if self.global_names is not None:
            self.global_names.release(pid)  # as its node does: before the EXITs
        self._fan_out(pid, result, is_abnormal(result))
        if self._exec_children:
            for child in self._exec_children.pop(pid, ()):
                self.event(child, wire.EV_CANCEL, pid, None, None, "exec cancelled")
        if self._exit_callbacks:  # the control socket's waits (remote.py: on_remote_exit)
            for callback in self._exit_callbacks.pop(pid, ()):
                callback(result)

    def node_fallout(self, node: str) -> None:
        """The pair with ``node`` broke: every process of it we have an edge with ends
        for us with ``"node down: <node>"`` (EXIT, LINK_DOWN, exec children cancelled), and
        every exec caller of ours waiting on a child there gets that as the child's end."""
        result = wire.exit_error(f"node down: {node}")
        prefix = "{" + node + "@"
        gone = set(self.topology.pids_with_prefix(prefix))
        gone.update(c for c in self._exec_children if c.startswith(prefix))
        gone.update(p for p in self._exit_callbacks if p.startswith(prefix))
        for pid in sorted(gone):
            self.remote_exited(pid, result)
        waiting = [(caller, child) for caller, children in self._exec_children.items()
                   for child in children if child.startswith(prefix)]
        for caller, child in waiting:
            children = self._exec_children[caller]
            children.discard(child)
            if not children:
                del self._exec_children[caller]
            self.event(caller, wire.EV_EXEC, child, result)

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
