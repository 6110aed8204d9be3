"""Spawns: a checked request becomes a PID, a table entry, its edges and name, then START.

See the package docstring for the handshake. ``with_name`` on a name already held starts
nothing: the holder gets the request's messages, monitor and link instead.

Invariants: nothing changes before everything that can refuse the spawn has (unknown id or
host, no running worker, a START over the frame limit); the child's monitor, link, exec watch
and name exist before its START is sent, and the NAME broadcast goes out before START.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from actord import ids
from actord.core import wire
from actord.core.config import Config
from actord.core.direct import INSTANCE_BITS, INSTANCE_MASK
from actord.core.wire import SpawnFields, SpawnRequest
from actord.errors import InvalidError, NotFoundError
from actord.router.exits import Exits
from actord.router.gate import Gate, check_spawn_request
from actord.router.slots import ProcEntry, worker_load


class WorkerStarting(NotFoundError):
    """A spawn on a host whose workers all still connect to NATS: the callers that can wait
    park it until one is ready (:meth:`Spawns.park`), the others answer NOT_FOUND."""


#: seconds a parked spawn waits for a worker of its host to be ready
SPAWN_WAIT = 5.0


class Spawns(Exits, Gate):
    """Starting processes (a Router mixin)."""

    config: Config
    serial: int
    pid_prefix: str  # "node@" on a clustered node (SPEC 11), else ""
    # spawns waiting for a worker to be ready: (deadline, retry), see park
    parked: list[tuple[float, Callable[[float], None]]]
    _park_timer: asyncio.TimerHandle | None

    def spawn(self, caller: str, req: SpawnRequest) -> str:
        """Start a process (see the handshake in the package docstring); returns its PID.

        ``req`` is checked here (INVALID if malformed). An actor or scope not given is the
        caller's.
        """
        return self._spawn(caller, check_spawn_request(req))

    def _spawn(self, caller: str, req: SpawnFields) -> str:
        """:meth:`spawn` of a request already checked by :func:`check_spawn_request`."""
        # by position, not by field name: one unpack instead of nine attribute reads
        id, host, args, flags, ctx, actor, scope, name, messages = req
        proc_cfg = self.config.processes.get(id)
        if proc_cfg is None:
            raise NotFoundError(f"unknown process id {id!r}")
        slots = self.hosts.get(host)
        if not slots:
            raise NotFoundError(f"unknown host {host!r}")
        if name:
            if self.cluster is not None and name.startswith(ids.GLOBAL):
                raise InvalidError("with_name takes a node's own name, not a global: one "
                                   "(register it from the child)")
            existing = self.registry.lookup(name)
            if existing is not None:
                return self._signal_existing(caller, existing, flags, messages)
        # the least loaded live worker; a one-worker host needs no comparison
        worker = slots[0] if len(slots) == 1 else min(slots, key=worker_load)
        if not worker.up or worker.retiring:
            raise NotFoundError(f"host {host!r} has no running worker (restarting)")
        # a clustered node's worker (an instance, direct.py): takes processes once it
        # listens, and its PIDs' serials name it in their low bits
        instance = worker.instance
        if not instance:
            serial = self.serial + 1
        elif worker.ready:
            serial = ((self.serial >> INSTANCE_BITS) + 1) << INSTANCE_BITS | (
                instance & INSTANCE_MASK)
        else:
            raise WorkerStarting(f"host {host!r} has no running worker (restarting)")
        procs = self.procs
        parent = procs.get(caller) if caller else None
        if parent is not None:
            if actor is None:
                actor = parent.actor
            if scope is None:
                scope = parent.scope
        pid = ids.format_pid(self.pid_prefix + host, serial)
        # a wire.Start, built as the list it packs to (a NamedTuple would cost a Python call
        # and a slower pack on every spawn); positional: no option map to build here and
        # decode there. Encoded now so a START the worker would refuse (args plus an
        # inherited actor, say) is refused before anything changes.
        frame = [wire.START, pid, id, proc_cfg.entry, args, ctx, actor, scope, messages]
        if flags & wire.SPAWN_ACK:
            frame += wire.START_ACK
        start = wire.encode(frame)
        if len(start) > self.max_frame + wire.FRAME_ENVELOPE:
            raise InvalidError(wire.too_large(len(start), self.max_frame))
        self.serial = serial
        if not procs:
            self.empty.clear()
        procs[pid] = ProcEntry(pid, id, worker, actor, scope, ctx or None, caller or None)
        worker.pids.add(pid)
        if flags and (parent is not None or (caller and self.cluster is not None)):
            # (a caller of another node: its node installs its side on our reply, SPEC 11)
            self._install_edges(caller, pid, flags)
            if flags & wire.SPAWN_EXEC:
                self._exec_children.setdefault(caller, set()).add(pid)
        if name:  # claimed before the child runs: its worker learns the name before START
            self.registry.register(name, pid)
            self._broadcast([wire.NAME, name, pid])
        worker.conn.send_encoded(start)
        return pid

    def park(self, retry: Callable[[float], None], deadline: float | None = None) -> None:
        """A spawn met WorkerStarting: ``retry(deadline)`` runs again when a worker is
        ready, or once more (then answering NOT_FOUND) when ``deadline`` (default: now +
        SPAWN_WAIT) passed."""
        if deadline is None:
            deadline = time.monotonic() + SPAWN_WAIT
        self.parked.append((deadline, retry))
        if self._park_timer is None:  # one timer while anything is parked
            self._park_timer = asyncio.get_running_loop().call_later(0.5, self._park_tick)

    def _park_tick(self) -> None:
        self._park_timer = None
        self._unpark()

    def _unpark(self) -> None:
        """Retry every parked spawn (a worker is ready, or the timer: those past their
        deadline for the last time); those still waiting park again."""
        now = time.monotonic()
        parked, self.parked = self.parked, []
        for deadline, retry in parked:
            retry(deadline if deadline > now else 0.0)

    def _install_edges(self, caller: str, pid: str, flags: int) -> None:
        """The spawn flags' monitor, link and exec watch of ``caller`` on ``pid``."""
        if flags & wire.SPAWN_MONITOR:
            self.topology.monitor(caller, pid)
        if flags & wire.SPAWN_LINK:
            self.topology.link(caller, pid)
        if flags & wire.SPAWN_EXEC:
            self.on_exit(pid, self._exec_notifier(caller, pid))

    def _signal_existing(
        self, caller: str, pid: str, flags: int, messages: list[list[Any]] | None
    ) -> str:
        """``with_name`` found the name taken: message, monitor or link the holder instead."""
        for topic, payload in messages or ():
            self.send("", pid, topic, wire.encode_value(payload))
        if caller and flags and (caller in self.procs or self.cluster is not None):
            self._install_edges(caller, pid, flags)
        return pid
