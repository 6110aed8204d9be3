"""The router: the node's single owner of the PID table, name registry and link/monitor graph.

It runs in the daemon process. Workers send it frames; it routes messages and events between
workers, answers calls (spawn, terminate, cancel, monitor, link, registry), and turns every
process end into names released, then one EXIT per monitor, then (abnormal ends only) one
LINK_DOWN per link, in that order (SPEC 4.4). Control-socket commands use the same methods
with the empty caller ``""``.

Spawn handshake (the child's edges exist before its first instruction runs)::

    caller worker            router                        target worker
      CALL spawn  ------->   check id/host, allocate PID
                             install monitor/link, claim name
                             NAME (broadcast to all workers)
                             START  ------------------------>  create task
      <-------- REPLY pid
                             (SPAWN_ACK: the entry is loaded first, then)  <--  STARTED

Invariant: order per sender/receiver pair is kept because each worker pipe is FIFO and the
router forwards frames in the order it reads them; a name update is broadcast before the
reply that lets anyone learn of it; no frame the router makes breaks ``wire``'s size rule (a
START too large is refused before any state changes, error texts are clipped).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from actord import ids
from actord.core import wire
from actord.core.config import Config
from actord.core.policy import Evaluator
from actord.core.registry import Registry
from actord.core.topology import Topology
from actord.errors import AlreadyExistsError, InvalidError, NotFoundError, ProcessError
from actord.security import Guard, call_permissions, check_escalation, spawn_permissions
from actord.stall import StallWatch
from actord.transport import FrameProtocol

log = logging.getLogger("actord.router")
worker_log = logging.getLogger("actord.worker")

ExitCallback = Callable[[dict[str, Any]], None]


class WorkerLink:
    """The router's view of one worker OS process."""

    __slots__ = (
        "conn", "host", "index", "os_pid", "pids", "restarts", "retiring", "stalled",
        "started_at", "up",
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
        self.stalled = False  # its event loop is blocked (set by StallWatch, actord/stall.py)

    @property
    def tag(self) -> str:
        return f"{self.host}/{self.index}"


class ProcEntry:
    """One live process as the router knows it."""

    __slots__ = (
        "actor", "context", "evaluator", "generation", "id", "meta", "pid", "scope", "worker",
    )

    def __init__(
        self, pid: str, id: str, worker: WorkerLink, actor: Any, scope: Any,
        context: dict[str, Any] | None = None,
    ) -> None:
        self.pid = pid
        self.id = id
        self.worker = worker
        self.actor = actor
        self.scope = scope
        self.context = context  # what it was started with (None: empty); processes cannot
        # change their own context, so a child inheriting it sends exactly this
        self.meta = {"pid": pid}  # call metadata for policy conditions (``meta.pid``)
        self.evaluator: Evaluator | None = None  # cached; stale when generation differs
        self.generation = -1


def _load(worker: WorkerLink) -> tuple[bool, bool, int]:
    """Sort key of a spawn's worker choice: live, not retiring, not stalled, fewest processes
    first (a stalled worker only when the host has nothing better: the child starts when its
    loop runs again)."""
    return (not worker.up or worker.retiring, worker.stalled, len(worker.pids))


class Router:
    """PID table, registry, topology, and the frame handlers that use them."""

    def __init__(self, config: Config) -> None:
        self.config = config
        # fixed for the daemon's life: the workers were started with it (reload cannot change it)
        self.max_frame = config.daemon.max_frame
        self.procs: dict[str, ProcEntry] = {}
        self.guard = Guard(config.security)
        self.registry = Registry()
        self.topology = Topology()
        self.hosts: dict[str, list[WorkerLink]] = {}
        self.serial = 0
        self.routed = 0
        self.dead_letters = 0
        self.exits = {"normal": 0, "abnormal": 0}
        self._exit_callbacks: dict[str, list[ExitCallback]] = {}
        # SPAWN_ACK processes whose STARTED is awaited (dropped when they end first)
        self._start_callbacks: dict[str, Callable[[], None]] = {}
        # exec caller -> its exec children still running (CANCELled if the caller ends first)
        self._exec_children: dict[str, set[str]] = {}
        self._stats_waits: dict[int, tuple[WorkerLink, asyncio.Future[dict[str, Any]]]] = {}
        self._next_req = 0
        self.empty = asyncio.Event()
        self.empty.set()
        self.stalls = StallWatch(config.daemon.stall_timeout)  # heartbeats: actord/stall.py
        self._calls: dict[str, Callable[[str, dict[str, Any]], Any]] = {
            "terminate": lambda caller, a: self.terminate(a["dest"]),
            "cancel": lambda caller, a: self.cancel(caller, a["dest"], a.get("deadline"),
                                                    a.get("reason")),
            "monitor": lambda caller, a: self.monitor(caller, a["dest"]),
            "unmonitor": lambda caller, a: self.unmonitor(caller, a["dest"]),
            "link": lambda caller, a: self.link(caller, a["dest"]),
            "unlink": lambda caller, a: self.unlink(caller, a["dest"]),
            "register": lambda caller, a: self.register(a["name"], a["pid"]),
            "unregister": lambda caller, a: self.unregister(a["name"]),
        }

    # -- workers ---------------------------------------------------------------------------------
    def attach(self, link: WorkerLink) -> None:
        """A (re)started worker: take its slot and send it what it needs to know."""
        slots = self.hosts.setdefault(link.host, [])
        while len(slots) <= link.index:
            slots.append(link)
        slots[link.index] = link
        self.stalls.watch(link)
        init = {
            "host": link.host,
            "index": link.index,
            "log_level": self.config.daemon.log_level,
            "python_path": list(self.config.daemon.python_path),
            "processes": {pid: p.entry for pid, p in self.config.processes.items()},
            "names": self.registry.snapshot(),
            "security": self.guard.to_builtins(),
            "heartbeat": self.stalls.interval,
        }
        link.conn.send([wire.INIT, init])

    def detach(self, link: WorkerLink) -> None:
        """Forget a retired worker's slot (a host removed or shrunk by reload)."""
        slots = self.hosts.get(link.host, [])
        if link in slots:
            slots.remove(link)
        if not slots:
            self.hosts.pop(link.host, None)

    def apply_config(self, config: Config) -> None:
        """Reload: new process table and policies for the router and every worker."""
        old, self.config = self.config, config
        self._broadcast(
            [wire.PROCESSES, {pid: p.entry for pid, p in config.processes.items()}]
        )
        if config.security != old.security:
            self.guard.replace(config.security)
            self._broadcast([wire.SECURITY, self.guard.to_builtins()])

    def evaluator(self, entry: ProcEntry) -> Evaluator:
        """The policy evaluator of a live process (cached on its entry until a reload)."""
        if entry.generation != self.guard.generation or entry.evaluator is None:
            entry.evaluator = self.guard.evaluator(entry.actor, entry.scope)
            entry.generation = self.guard.generation
        return entry.evaluator

    def on_frame(self, link: WorkerLink, frame: list[Any]) -> None:
        """Handle one frame from a worker; a malformed one drops the worker."""
        op = frame[0]
        try:
            if op == wire.SEND:
                # hot path: reuse the frame as the DELIVER frame (no re-encoding of the payload)
                entry = self.procs.get(frame[1])
                if entry is None:
                    self.dead_letters += 1
                    return
                self.routed += 1
                frame[0] = wire.DELIVER
                dest = entry.worker.conn
                dest.send(frame)
                if dest.write_paused:
                    # flow control: the destination worker is not keeping up; park the
                    # sender's worker until it drains, so router buffers stay bounded
                    link.conn.block_reading_on(dest)
            elif op == wire.CALL:
                self._on_call(link, frame)
            elif op == wire.EXITED:
                if frame[1] in link.pids:
                    self.process_exited(frame[1], frame[2])
            elif op == wire.LOG:
                _, level, name, message, pid, *tb = frame
                if len(tb) > 1 or (tb and type(tb[0]) is not str):
                    raise ValueError("bad LOG traceback")
                worker_log.log(int(level), "[%s] %s %s: %s", link.tag, pid, name, message,
                               extra={"actord_traceback": tb[0]} if tb else None)
            elif op == wire.UPGRADED:
                entry = self.procs.get(frame[1])
                if entry is not None and entry.worker is link:
                    entry.id = str(frame[2])
            elif op == wire.STATS:
                wait = self._stats_waits.pop(frame[1], None)
                if wait is not None and not wait[1].done():
                    wait[1].set_result(frame[2])
            elif op == wire.HEARTBEAT:
                self.stalls.heard(link)
            elif op == wire.HELLO:
                pass
            elif op == wire.STARTED:
                if frame[1] in link.pids:  # only the worker that runs it may say so
                    callback = self._start_callbacks.pop(frame[1], None)
                    if callback is not None:
                        callback()
            else:
                raise ValueError(f"unknown op {op}")
        except (ValueError, TypeError, LookupError, AttributeError, ArithmeticError) as e:
            log.error("worker %s sent a malformed frame (%s: %s); replacing it",
                      link.tag, type(e).__name__, e)
            link.conn.abort("malformed frame")

    def _on_call(self, link: WorkerLink, frame: list[Any]) -> None:
        _, req, caller, op, args = frame
        if caller not in link.pids:
            # not a live process of this worker (a worker sends a process's calls before its
            # EXITED, so only a confused worker gets here): answered all the same, since the
            # worker keeps a future per call until its reply
            link.conn.send([wire.REPLY, req, NotFoundError.kind, f"no live caller {caller}"])
            return
        try:
            entry = self.procs[caller]
            if op == "spawn":
                _check_spawn_request(args)
                # A new identity needs process.security, and a context other than the
                # caller's own process.context, whatever the flags claim: a worker's frames
                # are only as honest as the actor code it runs.
                if args[wire.SPAWN_ACTOR] is not None or args[wire.SPAWN_SCOPE] is not None:
                    args[wire.SPAWN_FLAGS] |= wire.SPAWN_SECURITY
                if args[wire.SPAWN_CTX] is not None and args[wire.SPAWN_CTX] != entry.context:
                    args[wire.SPAWN_FLAGS] |= wire.SPAWN_CONTEXT
                evaluator = self.evaluator(entry)
                # SPEC 7: every call is checked before it acts (the common case: one cached
                # permission tuple, each pair a cached policy decision)
                perms = spawn_permissions(args)
                for action, resource in perms:
                    if not evaluator.check(action, resource, entry.meta):
                        self.guard.require(evaluator, perms, entry.meta)
                if args[wire.SPAWN_ACTOR] is not None:
                    check_escalation(entry.actor, args[wire.SPAWN_ACTOR])
                value: Any = self._spawn(caller, args)
            else:
                handler = self._calls.get(op)
                if handler is None:
                    raise InvalidError(f"unknown call {op!r}")
                self.guard.require(self.evaluator(entry), call_permissions(op, args), entry.meta)
                value = handler(caller, args)
        except ProcessError as e:  # clipped: a message may quote a (huge) argument
            link.conn.send([wire.REPLY, req, e.kind, wire.clip_text(str(e))])
            return
        link.conn.send([wire.REPLY, req, None, value])

    def worker_down(self, link: WorkerLink) -> None:
        """A worker died: every process on it ends with ``"worker crashed"`` (SPEC 4.6)."""
        if not link.up:
            return
        link.up = False
        self.stalls.forget(link)
        pids = list(link.pids)
        if pids:
            log.warning("worker %s died with %d processes", link.tag, len(pids))
        for pid in pids:
            self.process_exited(pid, {"error": "worker crashed"})
        for req, (waiting_on, fut) in list(self._stats_waits.items()):
            if waiting_on is link:
                del self._stats_waits[req]
                if not fut.done():
                    fut.set_result({"processes": []})

    # -- process ends ----------------------------------------------------------------------------
    def process_exited(self, pid: str, result: dict[str, Any]) -> None:
        """Release names, EXIT every monitor, LINK_DOWN every link if abnormal (SPEC 4.4)."""
        entry = self.procs.pop(pid, None)
        if entry is None:
            return
        entry.worker.pids.discard(pid)
        for name in self.registry.release(pid):
            self._broadcast([wire.NAME, name, None])
        abnormal = "error" in result
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

    def event(
        self,
        dest: str,
        kind: str,
        from_: str,
        result: dict[str, Any] | None = None,
        deadline: float | None = None,
        reason: str | None = None,
    ) -> None:
        """Send one event to a live process (dropped if ``dest`` is dead)."""
        entry = self.procs.get(dest)
        if entry is not None:
            entry.worker.conn.send([wire.EVENT, dest, kind, from_, result, deadline, reason])

    def _broadcast(self, frame: list[Any]) -> None:
        for slots in self.hosts.values():
            for link in slots:
                if link.up:
                    link.conn.send(frame)

    # -- operations (worker calls and control commands) ------------------------------------------
    def send(self, from_: str, dest: str, topic: str, payload: bytes) -> None:
        """Route one message; a dead PID is a dead letter; INVALID for a payload over
        ``max_frame``. (Workers' SEND frames take the inlined path in ``on_frame``.)"""
        if len(payload) > self.max_frame:
            raise InvalidError(wire.too_large(len(payload), self.max_frame))
        if len(topic) + len(dest) > wire.MAX_ADDRESS:
            raise InvalidError(wire.address_too_large(topic, dest))
        entry = self.procs.get(dest)
        if entry is None:
            self.dead_letters += 1
            return
        self.routed += 1
        entry.worker.conn.send([wire.DELIVER, dest, from_, topic, payload])

    def spawn(self, caller: str, req: list[Any]) -> str:
        """Start a process (see the handshake above); returns its PID.

        ``req`` is laid out as :func:`wire.spawn_request` builds it; INVALID if malformed.
        An actor or scope not given is the caller's.
        """
        _check_spawn_request(req)
        return self._spawn(caller, req)

    def _spawn(self, caller: str, req: list[Any]) -> str:
        """:meth:`spawn` of a request already checked by :func:`_check_spawn_request`."""
        id, host, args, flags, ctx, actor, scope, name, messages = req
        proc_cfg = self.config.processes.get(id)
        if proc_cfg is None:
            raise NotFoundError(f"unknown process id {id!r}")
        slots = self.hosts.get(host)
        if not slots:
            raise NotFoundError(f"unknown host {host!r}")
        if name:
            existing = self.registry.lookup(name)
            if existing is not None:
                return self._signal_existing(caller, existing, flags, messages)
        # the least loaded live worker; a one-worker host needs no comparison
        worker = slots[0] if len(slots) == 1 else min(slots, key=_load)
        if not worker.up or worker.retiring:
            raise NotFoundError(f"host {host!r} has no running worker (restarting)")
        procs = self.procs
        parent = procs.get(caller) if caller else None
        if parent is not None:
            if actor is None:
                actor = parent.actor
            if scope is None:
                scope = parent.scope
        pid = ids.format_pid(host, self.serial + 1)
        # positional (see wire.START): no option map to build here and decode there; encoded
        # now so a START the worker would refuse (args plus an inherited actor, say) is
        # refused before anything changes
        frame = [wire.START, pid, id, proc_cfg.entry, args, ctx, actor, scope, messages]
        if flags & wire.SPAWN_ACK:
            frame.append(True)
        start = wire.encode(frame)
        if len(start) > self.max_frame + wire.FRAME_ENVELOPE:
            raise InvalidError(wire.too_large(len(start), self.max_frame))
        self.serial += 1
        if not procs:
            self.empty.clear()
        procs[pid] = ProcEntry(pid, id, worker, actor, scope, ctx or None)
        worker.pids.add(pid)
        if parent is not None and flags:
            self._install_edges(caller, pid, flags)
            if flags & wire.SPAWN_EXEC:
                self._exec_children.setdefault(caller, set()).add(pid)
        if name:  # claimed before the child runs: its worker learns the name before START
            self.registry.register(name, pid)
            self._broadcast([wire.NAME, name, pid])
        worker.conn.send_encoded(start)
        return pid

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
        if caller and caller in self.procs and flags:
            self._install_edges(caller, pid, flags)
        return pid

    def _exec_notifier(self, watcher: str, child: str) -> ExitCallback:
        def notify(result: dict[str, Any]) -> None:
            children = self._exec_children.get(watcher)
            if children is not None:
                children.discard(child)
                if not children:
                    del self._exec_children[watcher]
            self.event(watcher, wire.EV_EXEC, child, result)

        return notify

    def _alive(self, dest: str) -> ProcEntry:
        entry = self.procs.get(dest)
        if entry is None:
            raise NotFoundError(f"process {dest} is not alive")
        return entry

    def terminate(self, dest: str) -> None:
        """Hard stop ``dest``: it ends with ``"process terminated"``."""
        entry = self._alive(dest)
        entry.worker.conn.send([wire.KILL, dest, "process terminated"])

    def cancel(self, caller: str, dest: str, deadline: float | None, reason: str | None) -> None:
        """Deliver CANCEL; the target's worker enforces the deadline."""
        if deadline is not None and (
            isinstance(deadline, bool) or not isinstance(deadline, int | float)
        ):
            raise InvalidError(f"bad cancel deadline {deadline!r}")
        if reason is not None:
            if not isinstance(reason, str):
                raise InvalidError(f"bad cancel reason {reason!r}")
            reason = wire.clip_text(reason)  # it travels in the EVENT frame's envelope
        self._alive(dest)
        self.event(dest, wire.EV_CANCEL, caller, None, deadline, reason)

    def monitor(self, watcher: str, dest: str) -> None:
        """Install a monitor (ALREADY_EXISTS when there is one)."""
        self._alive(dest)
        if not self.topology.monitor(watcher, dest):
            raise AlreadyExistsError(f"already monitoring {dest}")

    def unmonitor(self, watcher: str, dest: str) -> None:
        """Remove a monitor (idempotent)."""
        self.topology.unmonitor(watcher, dest)

    def link(self, caller: str, dest: str) -> None:
        """Link caller and dest (idempotent)."""
        self._alive(dest)
        self.topology.link(caller, dest)

    def unlink(self, caller: str, dest: str) -> None:
        """Remove a link (idempotent)."""
        self.topology.unlink(caller, dest)

    def register(self, name: str, pid: str) -> None:
        """Register ``name`` for ``pid``; broadcast before the caller hears it is done."""
        if not ids.is_name(name):
            raise InvalidError(f"bad name {name!r}")
        self._alive(pid)
        if self.registry.register(name, pid):
            self._broadcast([wire.NAME, name, pid])

    def unregister(self, name: str) -> bool:
        """Remove ``name``; True if it was registered."""
        if self.registry.unregister(name):
            self._broadcast([wire.NAME, name, None])
            return True
        return False

    # -- introspection ---------------------------------------------------------------------------
    async def ps(self, host: str | None = None, timeout: float = 3.0) -> list[dict[str, Any]]:
        """Every live process with its mailbox depth, asked from the workers.

        A worker that is stalled, is marked stalled while we wait, or does not answer within
        ``timeout`` has its processes listed from the router's own table, with state
        ``"stalled"`` (or ``"unresponsive"``: silent, not yet past ``stall_timeout``) and
        mailbox None (unknown). A worker known to be stalled is not asked at all.
        """
        waits: list[tuple[WorkerLink, asyncio.Future[dict[str, Any]] | None]] = []
        loop = asyncio.get_running_loop()
        for slots in self.hosts.values():
            for link in slots:
                if link.up and (host is None or link.host == host):
                    if self.stalls.is_stalled(link):
                        waits.append((link, None))
                        continue
                    self._next_req += 1
                    fut: asyncio.Future[dict[str, Any]] = loop.create_future()
                    self._stats_waits[self._next_req] = (link, fut)
                    link.conn.send([wire.STATS_REQ, self._next_req])
                    waits.append((link, fut))
        rows: list[dict[str, Any]] = []
        names: dict[str, list[str]] = {}
        for name, pid in self.registry.snapshot().items():
            names.setdefault(pid, []).append(name)
        deadline = loop.time() + timeout
        for link, fut in waits:
            stats = None if fut is None else await self._stats_answer(link, fut, deadline)
            if stats is None:
                state = "stalled" if self.stalls.is_stalled(link) else "unresponsive"
                rows.extend({
                    "pid": pid, "id": self.procs[pid].id, "host": link.host,
                    "worker": link.index, "state": state, "names": names.get(pid, []),
                    "mailbox": None,
                } for pid in link.pids if pid in self.procs)
                continue
            for p in stats.get("processes", []):
                if p["pid"] not in self.procs:
                    continue
                rows.append({
                    "pid": p["pid"],
                    "id": p["id"],
                    "host": link.host,
                    "worker": link.index,
                    "state": p.get("state", "running"),
                    "names": names.get(p["pid"], []),
                    "mailbox": p["mailbox"],
                })
        rows.sort(key=lambda r: ids.parse_pid(r["pid"]) or ("", 0))
        return rows

    async def _stats_answer(
        self, link: WorkerLink, fut: asyncio.Future[dict[str, Any]], deadline: float
    ) -> dict[str, Any] | None:
        """``link``'s STATS answer, or None if it is marked stalled or ``deadline`` (loop
        time) passes first (the request is then forgotten)."""
        stalled = self.stalls.when_stalled(link)
        left = max(0.0, deadline - asyncio.get_running_loop().time())
        try:
            await asyncio.wait((fut, stalled), timeout=left, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stalled.cancel()
        if fut.done():
            return fut.result()
        for req, (_, waiting) in list(self._stats_waits.items()):
            if waiting is fut:
                del self._stats_waits[req]
        return None

    async def worker_stats(
        self, timeout: float = 1.0
    ) -> tuple[list[tuple[WorkerLink, dict[str, Any]]], int]:
        """Every live worker's STATS answer within one ``timeout`` (metrics), and how many
        workers did not answer in time (their requests are forgotten). A stalled worker is
        not asked."""
        loop = asyncio.get_running_loop()
        asked: dict[asyncio.Future[dict[str, Any]], tuple[WorkerLink, int]] = {}
        for slots in self.hosts.values():
            for link in slots:
                if link.up and not self.stalls.is_stalled(link):  # it would not answer
                    self._next_req += 1
                    fut: asyncio.Future[dict[str, Any]] = loop.create_future()
                    self._stats_waits[self._next_req] = (link, fut)
                    link.conn.send([wire.STATS_REQ, self._next_req])
                    asked[fut] = (link, self._next_req)
        if not asked:
            return [], 0
        done, pending = await asyncio.wait(asked, timeout=timeout)
        for fut in pending:
            self._stats_waits.pop(asked[fut][1], None)
        return [(asked[fut][0], fut.result()) for fut in done], len(pending)

    def cancel_all(self, deadline: float, reason: str) -> None:
        """CANCEL every live process (shutdown)."""
        for pid in list(self.procs):
            self.event(pid, wire.EV_CANCEL, "", None, deadline, reason)


def _check_spawn_request(req: Any) -> None:
    """Validate a spawn request from a peer at the boundary, so that nothing malformed reaches
    the target worker's START handler (which trusts the router)."""
    if type(req) is not list or len(req) != wire.SPAWN_FIELDS:
        raise InvalidError("malformed spawn request")
    id, host, args, flags, ctx, actor, scope, name, messages = req
    ok = (
        type(id) is str
        and type(host) is str
        and type(args) is list
        and type(flags) is int
        and (ctx is None or type(ctx) is dict)
        and (actor is None or _is_actor(actor))
        and (scope is None or _is_str_list(scope))
        and (name is None or ids.is_name(name))
        and (messages is None or (type(messages) is list and all(
            type(m) is list and len(m) == 2 and type(m[0]) is str for m in messages
        )))
    )
    if not ok:
        raise InvalidError("malformed spawn request")


def _is_actor(actor: Any) -> bool:
    return actor is None or (
        isinstance(actor, dict)
        and isinstance(actor.get("id"), str)
        and isinstance(actor.get("meta", {}), dict)
    )


def _is_str_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)
