"""Where every process runs: the host -> worker slot table, the PID table's entries, and the
ways to reach a process or every worker.

A host has a fixed number of worker slots; ``hosts[host][index]`` is the :class:`WorkerLink`
of the worker OS process filling that slot now (a restarted worker takes its slot again).
Every live process has one :class:`ProcEntry` in ``procs``, whose ``worker`` lists its PID in
``pids``. Node links (SPEC 11) are not worker slots: they have a module of their own beside
this one (``nodes.py``).

Invariant: a PID is in ``procs`` exactly while it is in its worker's ``pids``; a frame for a
process goes to the connection of the worker in its entry, nowhere else.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from actord.core import wire
from actord.core.policy import Evaluator
from actord.errors import InvalidError, NotFoundError
from actord.transport import FrameProtocol

if TYPE_CHECKING:
    from actord.router.nodes import NodeLink


class WorkerLink:
    """The router's view of one worker OS process."""

    __slots__ = (
        "conn", "host", "index", "instance", "os_pid", "pids", "ready", "restarts",
        "retiring", "stalled", "started_at", "up",
    )

    def __init__(self, host: str, index: int, conn: FrameProtocol, os_pid: int) -> None:
        self.host = host
        self.index = index
        self.conn = conn
        self.os_pid = os_pid
        self.pids: set[str] = set()
        self.restarts = 0
        self.started_at = time.time()
        self.up = True
        self.retiring = False  # being removed by a reload: takes no new processes
        self.stalled = False  # its event loop is blocked (set by StallWatch, router/stall.py)
        # a clustered node's count of worker starts when this one attached (its PIDs' low
        # serial bits and its NATS subject, core/direct.py); 0 on a single node
        self.instance = 0
        # takes processes: a clustered node's worker once it listens for other nodes'
        # messages (DIRECT_READY; a PID handed out before would lose them), else at once
        self.ready = True

    @property
    def tag(self) -> str:
        return f"{self.host}/{self.index}"


class ProcEntry:
    """One live process as the router knows it."""

    __slots__ = (
        "actor", "context", "evaluator", "generation", "id", "meta", "parent", "pid", "scope",
        "worker",
    )

    def __init__(
        self, pid: str, id: str, worker: WorkerLink, actor: Any, scope: Any,
        context: dict[str, Any] | None = None, parent: str | None = None,
    ) -> None:
        self.pid = pid
        self.parent = parent  # the PID that spawned it (None: a CLI command or config)
        self.id = id
        self.worker = worker
        self.actor = actor
        self.scope = scope
        self.context = context  # what it was started with (None: empty); processes cannot
        # change their own context, so a child inheriting it sends exactly this
        self.meta = {"pid": pid}  # call metadata for policy conditions (``meta.pid``)
        self.evaluator: Evaluator | None = None  # cached; stale when generation differs
        self.generation = -1


def worker_load(worker: WorkerLink) -> tuple[bool, bool, int]:
    """Sort key of a spawn's worker choice (applied inline by ``Spawns._spawn``): live, not
    retiring, not stalled, fewest processes first (a stalled worker only when the host has
    nothing better: the child starts when its loop runs again)."""
    return (not worker.up or worker.retiring or not worker.ready, worker.stalled,
            len(worker.pids))


class Slots:
    """The slot table and the PID table, and sending to what they hold (a Router mixin: the
    tables are created in ``Router.__init__``)."""

    max_frame: int
    procs: dict[str, ProcEntry]
    hosts: dict[str, list[WorkerLink]]
    routed: int
    dead_letters: int
    cluster: NodeLink | None

    def _remote(self, frame: list[Any]) -> bool:
        """A SEND to no local PID: forwarded when its PID names another node that is up
        (False: a dead letter). The slow path only: local PIDs never come here."""
        cluster = self.cluster
        return cluster is not None and cluster.forward(frame)

    def _take_slot(self, link: WorkerLink) -> None:
        """A (re)started worker fills its slot (growing the host's list up to it)."""
        slots = self.hosts.setdefault(link.host, [])
        while len(slots) <= link.index:
            slots.append(link)
        slots[link.index] = link

    def detach(self, link: WorkerLink) -> None:
        """Forget a retired worker's slot (a host removed or shrunk by reload)."""
        slots = self.hosts.get(link.host, [])
        if link in slots:
            slots.remove(link)
        if not slots:
            self.hosts.pop(link.host, None)

    def _broadcast(self, frame: list[Any]) -> None:
        for slots in self.hosts.values():
            for link in slots:
                if link.up:
                    link.conn.send(frame)

    def _alive(self, dest: str) -> ProcEntry:
        entry = self.procs.get(dest)
        if entry is None:
            raise NotFoundError(f"process {dest} is not alive")
        return entry

    def event(
        self,
        dest: str,
        kind: str,
        from_: str,
        result: dict[str, Any] | None = None,
        deadline: float | None = None,
        reason: str | None = None,
    ) -> None:
        """Send one event to a live process (dropped if ``dest`` is dead); on a cluster, to
        another node's process through its node (SPEC 11)."""
        entry = self.procs.get(dest)
        if entry is not None:
            entry.worker.conn.send([wire.EVENT, dest, kind, from_, result, deadline, reason])
        elif self.cluster is not None:
            self.cluster.forward([wire.EVENT, dest, kind, from_, result, deadline, reason])

    def send(self, from_: str, dest: str, topic: str, payload: bytes) -> None:
        """Route one message; a dead PID is a dead letter; INVALID for a payload over
        ``max_frame``. (Workers' SEND frames take the inlined path in ``on_frame``.)"""
        if len(payload) > self.max_frame:
            raise InvalidError(wire.too_large(len(payload), self.max_frame))
        if len(topic) + len(dest) > wire.MAX_ADDRESS:
            raise InvalidError(wire.address_too_large(topic, dest))
        entry = self.procs.get(dest)
        if entry is None:
            if not self._remote([wire.SEND, dest, from_, topic, payload]):
                self.dead_letters += 1
            return
        self.routed += 1
        entry.worker.conn.send([wire.DELIVER, dest, from_, topic, payload])
