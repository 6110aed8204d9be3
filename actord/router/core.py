"""The Router: the state every job of the package reads, created in one place, and the
steps that span jobs (a worker attached or down, a reload).

Each job is a mixin in its own module (see the package docstring); :class:`Router` only
composes them. Mixins, not objects, so that the SEND hot path and the spawn path read the
shared tables as ``self.procs`` (one attribute lookup), exactly as a single class would.

Invariant: the tables below are the node's only copy of who runs where; every other module
reads them through a Router.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import msgspec

from actord.core import wire
from actord.core.config import Config
from actord.core.direct import INSTANCE_MASK
from actord.core.nodes import serial_base
from actord.core.registry import Registry
from actord.core.topology import Topology
from actord.router.dispatch import Dispatch
from actord.router.exits import ExitCallback
from actord.router.global_names import GlobalNames
from actord.router.nodes import NodeLink
from actord.router.remote import PendingCall
from actord.router.slots import ProcEntry, WorkerLink
from actord.router.stall import StallWatch
from actord.router.traces import Traces
from actord.security import Guard

log = logging.getLogger("actord.router")


class Router(Dispatch):
    """PID table, registry, topology, and the frame handlers that use them."""

    def __init__(self, config: Config) -> None:
        self.config = config
        # fixed for the daemon's life: the workers were started with it (reload cannot change it)
        self.max_frame = config.daemon.max_frame
        # slots.py: where each process runs
        self.procs: dict[str, ProcEntry] = {}
        self.hosts: dict[str, list[WorkerLink]] = {}
        self.guard = Guard(config.security)  # gate.py
        self.registry = Registry()
        self.topology = Topology()
        self.serial = 0  # spawns.py: the last PID's serial
        self.instances = 0  # worker starts on a clustered node (WorkerLink.instance)
        self.workers_ready = asyncio.Event()  # set by each DIRECT_READY
        self.parked: list[tuple[float, Callable[[float], None]]] = []  # spawns.py: park
        self._park_timer: asyncio.TimerHandle | None = None
        # nodes.py: the cluster link (SPEC 11), None for a single node. A clustered node's
        # PIDs are {node@host|0x...} and its serials start at its incarnation's serial base,
        # above any serial an earlier run of the node could have reached (core/nodes.py).
        self.cluster: NodeLink | None = None
        self.global_names: GlobalNames | None = None  # remote.py: global: names (SPEC 11)
        self.pid_prefix = ""
        if config.cluster is not None:
            self.cluster = NodeLink(config.cluster, self.procs.__len__, config.path,
                                    self.deliver_remote, self.max_frame, self.pair_broken)
            self.pid_prefix = f"{config.cluster.node}@"
            self.global_names = GlobalNames(config.cluster.name, config.cluster.node,
                                            self._global_changed)
            self.cluster.on_connect.append(self.global_names.serve)
            self.cluster.on_peers = self._peers_changed
            self.serial = serial_base(self.cluster.incarnation)
        self.routed = 0
        self.dead_letters = 0
        # exits.py: counts, exit and start callbacks, exec children
        self.exits = {"normal": 0, "abnormal": 0}
        self._exit_callbacks: dict[str, list[ExitCallback]] = {}
        self._start_callbacks: dict[str, Callable[[], None]] = {}
        self._exec_children: dict[str, set[str]] = {}
        # remote.py: calls sent to other nodes awaiting their REPLY, and which nodes each
        # local caller has called (they get its EXITED)
        self._pending: dict[int, PendingCall] = {}
        self._next_call = 0
        self._calling: dict[str, set[str]] = {}
        self._claims: set[asyncio.Task[None]] = set()
        # stats.py: STATS requests awaiting their answer
        self._stats_waits: dict[int, tuple[WorkerLink, asyncio.Future[dict[str, Any]]]] = {}
        self._next_req = 0
        self.empty = asyncio.Event()
        self.empty.set()
        self.stalls = StallWatch(config.daemon.stall_timeout)  # heartbeats: router/stall.py
        self.traces = Traces(self.procs, self.on_exit)  # traces.py: ``actord trace`` sessions

    def attach(self, link: WorkerLink) -> None:
        """A (re)started worker: take its slot and send it what it needs to know."""
        self._take_slot(link)
        self.stalls.watch(link)
        init = {
            "host": link.host,
            "index": link.index,
            "log_level": self.config.daemon.log_level,
            "python_path": list(self.config.daemon.python_path),
            "processes": {pid: p.entry for pid, p in self.config.processes.items()},
            "names": self.names_snapshot(),
            "security": self.guard.to_builtins(),
            "heartbeat": self.stalls.interval,
        }
        if self.cluster is not None:
            self.instances += 1
            link.instance = self.instances
            link.ready = False  # until it listens on its subject (DIRECT_READY)
            init["cluster"] = self._worker_cluster(link)
        link.conn.send([wire.INIT, init])

    def _worker_cluster(self, link: WorkerLink) -> dict[str, Any]:
        """What a clustered node's worker needs for its own NATS connection (direct.py)."""
        cluster = self.cluster
        assert cluster is not None and self.config.cluster is not None
        return {"config": msgspec.to_builtins(self.config.cluster), "source": self.config.path,
                "incarnation": cluster.incarnation, "instance": link.instance,
                "peers": cluster.peers()}

    def direct_ready(self, link: WorkerLink) -> None:
        """DIRECT_READY: a clustered node's worker listens for other nodes' messages."""
        link.ready = True
        self.workers_ready.set()
        if self.parked:
            self._unpark()

    async def all_ready(self, timeout: float) -> None:
        """Wait (at most ``timeout``) until every worker takes processes."""
        async with asyncio.timeout(timeout):
            while not all(link.ready for slots in self.hosts.values() for link in slots):
                self.workers_ready.clear()
                await self.workers_ready.wait()

    def _peers_changed(self) -> None:
        """A node up, or a pair at a new session: every worker hears it before any fallout
        of it (NodeLink.on_peers)."""
        if self.cluster is not None:
            self._broadcast([wire.PEERS, self.cluster.peers()])

    def worker_down(self, link: WorkerLink) -> None:
        """A worker died: every process on it ends with ``"worker crashed"`` (SPEC 4.6)."""
        if not link.up:
            return
        link.up = False
        self.stalls.forget(link)
        cluster = self.cluster
        if cluster is not None:
            # before its processes' EXITEDs: batches of the dead worker that arrive on other
            # nodes after this are dropped there, never delivered after an EXIT (direct.py)
            for node in cluster.members.up():
                cluster.send_to(node, [wire.GONE, link.instance & INSTANCE_MASK])
        pids = list(link.pids)
        if pids:
            log.warning("worker %s died with %d processes", link.tag, len(pids))
        for pid in pids:
            self.process_exited(pid, wire.exit_error("worker crashed"))
        self._stats_dropped(link)

    def apply_config(self, config: Config) -> None:
        """Reload: new process table and policies for the router and every worker."""
        old, self.config = self.config, config
        self._broadcast(
            [wire.PROCESSES, {pid: p.entry for pid, p in config.processes.items()}]
        )
        if config.security != old.security:
            self.guard.replace(config.security)
            self._broadcast([wire.SECURITY, self.guard.to_builtins()])
