"""Calls and frames across nodes (SPEC 11): a call on another node's process, and every
frame another node sends us.

A call whose target is on another node (a PID ``{n2@...}``, a host ``n2@app:main``) is
checked by the caller's node as a local one is (gate.py), then sent to that node as a CALL
(core/batches.py); its REPLY settles a future. The target's node acts first: it installs its
side of a monitor or link, or starts the child with its edges to the remote caller already in
place, and only then replies; the caller's node installs its own side when the reply comes
(if the caller still lives). So a cross-node edge is held by both topologies, and each node
fans an end out to its own processes only: an end of ours goes to every node with an edge to
it (or a call pending from it) as one EXITED frame (exits.py), in the order of the messages
the process sent before it.

A break of the pair with a node (node down, gap, reconnect; see core/batches.py) ends every
call pending there with NOT_FOUND ``"node down: <node>"`` and runs the fallout of every
process of that node we had an edge with (exits.py: ``node_fallout``).

Invariant: every pending call gets exactly one answer (its reply, or the break that makes it
unanswerable); frames from another node were checked at the boundary (core/batches.py), and a
CALL's arguments are checked here as a worker's are, so a peer's bytes never raise out of
:meth:`Remote.deliver_remote`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from actord import ids
from actord.core import wire
from actord.core.direct import INSTANCE_MASK
from actord.errors import AlreadyExistsError, InvalidError, NotFoundError, ProcessError, from_kind
from actord.router.gate import check_spawn_request
from actord.router.slots import WorkerLink
from actord.router.spawns import SPAWN_WAIT, Spawns, WorkerStarting

log = logging.getLogger("actord.router")


class PendingCall:
    """A call sent to another node, awaiting its REPLY: answered to a worker (``link``,
    ``req``) at once when it comes, in order with the frames after it, or else (the
    control socket) through ``future``."""

    __slots__ = ("args", "caller", "future", "link", "node", "op", "req", "then")

    def __init__(self, node: str, caller: str, op: str, args: Any,
                 future: asyncio.Future[Any] | None, link: WorkerLink | None = None,
                 req: int = 0, then: Callable[[Any], None] | None = None) -> None:
        self.node = node
        self.caller = caller
        self.op = op
        self.args = args
        self.future = future
        self.link = link
        self.req = req
        self.then = then  # run with the value as the REPLY is handled, before any later frame

    def answer(self, kind: str | None, value: Any) -> None:
        """The call's answer: ``kind`` None with its value, or an error kind and message."""
        if self.link is not None:
            # sent now, not from a future's callback: a frame after the REPLY (an exec
            # child's EV_EXEC in the same batch) must not reach the worker before it
            self.link.conn.send([wire.REPLY, self.req, kind,
                                 value if kind is None else wire.clip_text(str(value))])
        elif self.future is not None and not self.future.done():
            if kind is None:
                self.future.set_result(value)
            else:
                self.future.set_exception(from_kind(kind, str(value)))


class Remote(Spawns):
    """Calls on other nodes' processes and frames from other nodes (a Router mixin)."""

    _pending: dict[int, PendingCall]
    _next_call: int
    # local caller -> the nodes it has called: they get its EXITED (exits.py)
    _calling: dict[str, set[str]]
    _claims: set[asyncio.Task[None]]  # global: name claims in flight
    # target operations (calls.py)
    terminate: Callable[[str], None]
    cancel: Callable[[str, str, float | None, str | None], None]

    # -- which node --------------------------------------------------------------------------
    def remote_node(self, pid: Any) -> str | None:
        """The other node a PID names (None: ours, or no cluster)."""
        cluster = self.cluster
        if cluster is None or type(pid) is not str:
            return None
        node = ids.node_of(pid)
        return None if node is None or node == cluster.node else node

    def split_remote_host(self, host: str) -> tuple[str | None, str]:
        """``(other node, host)`` of a spawn's host: ``n2@app:main`` on n1 is
        ``("n2", "app:main")``; our own node's prefix is dropped (``(None, "app:main")``)."""
        node, plain = ids.split_host(host)
        cluster = self.cluster
        if node is None or cluster is None or node == cluster.node:
            return None, plain if cluster is not None else host
        return node, plain

    @property
    def control_pid(self) -> str:
        """The watcher this node's control socket is to other nodes (a kill or exec of their
        process waits for its end through a monitor it holds); ``""`` without a cluster."""
        cluster = self.cluster
        return "" if cluster is None else f"{{{cluster.node}@control|0x00000}}"

    def on_remote_exit(self, pid: str, callback: Callable[[wire.ExitResult], None]) -> None:
        """Call ``callback(result)`` once when another node's ``pid`` ends for us (its
        EXITED, or its pair broken): the control socket's waits, after it monitored ``pid``
        as :attr:`control_pid`."""
        self._exit_callbacks.setdefault(pid, []).append(callback)

    def cancel_soon(self, pid: str, reason: str) -> None:
        """CANCEL ``pid`` without waiting for an answer, local or remote (NOT_FOUND if a
        local one is not alive)."""
        node = self.remote_node(pid)
        if node is None:
            self.cancel("", pid, None, reason)
        else:
            self.tell_remote(node, "", "cancel", {"dest": pid, "reason": reason})

    # -- global: names (SPEC 11) -------------------------------------------------------------
    def _global_changed(self, name: str, pid: str | None) -> None:
        """The global names' replica changed (global_names.py): every worker hears it."""
        self._broadcast([wire.NAME, name, pid])

    def lookup_name(self, name: str) -> str | None:
        """The PID holding registry name ``name``: a ``global:`` one from the cluster's
        bucket (its replica here), any other from this node's registry."""
        names = self.global_names
        if names is not None and name.startswith(ids.GLOBAL):
            return names.lookup(name)
        return self.registry.lookup(name)

    def names_snapshot(self) -> dict[str, str]:
        """Every name this node resolves: its registry's and the cluster's ``global:`` ones."""
        snapshot = self.registry.snapshot()
        if self.global_names is not None:
            snapshot.update(self.global_names.snapshot())
        return snapshot

    def global_call(self, link: WorkerLink, req: int, op: str, args: Any) -> None:
        """``register`` / ``unregister`` of a ``global:`` name (checked by the gate): a
        compare-and-set claim in the bucket, answered when it is done (ALREADY_EXISTS when
        another process holds the name, on any node)."""
        names = self.global_names
        assert names is not None
        name = args.get("name")
        if not ids.is_name(name):
            raise InvalidError(f"bad name {name!r}")
        if op == "unregister":
            holder = names.lookup(name)
            done = holder is not None and names.unregister(name, holder)
            link.conn.send([wire.REPLY, req, None, done])
            return
        pid = args.get("pid")
        if type(pid) is not str:
            raise InvalidError(f"bad pid {pid!r}")
        self._alive(pid)

        async def claim() -> None:
            try:
                if not await names.claim(name, pid):
                    raise AlreadyExistsError(
                        f"name {name!r} is already registered to {names.lookup(name)}")
            except ProcessError as e:
                link.conn.send([wire.REPLY, req, e.kind, wire.clip_text(str(e))])
            except ConnectionError as e:  # NamesUnavailable: no bucket to ask now
                link.conn.send([wire.REPLY, req, ProcessError.kind,
                                f"global names unavailable: {e}"])
            else:
                link.conn.send([wire.REPLY, req, None, None])

        task = asyncio.get_running_loop().create_task(claim())
        self._claims.add(task)
        task.add_done_callback(self._claims.discard)

    # -- calls we make -----------------------------------------------------------------------
    def call_remote(self, node: str, caller: str, op: str, args: Any,
                    then: Callable[[Any], None] | None = None) -> asyncio.Future[Any]:
        """Send call ``op`` to ``node``: the future gets its value or its error (a
        ProcessError). NOT_FOUND at once when ``node`` is unknown or down. ``then(value)``
        runs as the REPLY is handled: before a frame that came after it (a spawned child's
        EXITED in the same batch) and before the future's waiter wakes."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._send_call(PendingCall(node, caller, op, args, future, then=then))
        return future

    def _send_call(self, call: PendingCall) -> None:
        """Send ``call`` and keep it pending until its REPLY (or a break) answers it."""
        cluster, node = self.cluster, call.node
        if cluster is None:
            raise NotFoundError(f"unknown node {node!r} (not in a cluster)")
        self._next_call += 1
        req = self._next_call
        if not cluster.send_to(node, [wire.CALL, req, call.caller, call.op, call.args]):
            known = node in cluster.members.members
            raise NotFoundError(f"node down: {node}" if known else f"unknown node {node!r}")
        self._pending[req] = call
        if call.caller:
            nodes = self._calling.get(call.caller)
            if nodes is None:
                self._calling[call.caller] = {node}
            else:
                nodes.add(node)

    def tell_remote(self, node: str, caller: str, op: str, args: Any) -> None:
        """A call nobody waits for (unmonitor, unlink): sent if ``node`` is up, else moot
        (its edges are gone already)."""
        cluster = self.cluster
        if cluster is not None:
            cluster.send_to(node, [wire.CALL, wire.NO_REPLY, caller, op, args])

    def remote_call_from_worker(self, link: WorkerLink, req: int, caller: str, node: str,
                                op: str, args: Any) -> None:
        """A worker's call that targets ``node``: its REPLY is sent when the answer comes."""
        if op in ("unmonitor", "unlink"):
            # ours removed now: no EXIT or LINK_DOWN of that PID reaches the caller after
            # this call returns; the other node forgets its side when the CALL arrives
            dest = args["dest"]
            (self.topology.unmonitor if op == "unmonitor" else self.topology.unlink)(caller, dest)
            self.tell_remote(node, caller, op, args)
            link.conn.send([wire.REPLY, req, None, None])
            return
        self._send_call(PendingCall(node, caller, op, args, None, link, req))

    async def request(self, caller: str, op: str, args: Any,
                      then: Callable[[Any], None] | None = None) -> Any:
        """Call ``op`` (spawn, terminate, cancel, monitor) for the control socket or the
        services (caller ``""`` or :attr:`control_pid`), local or remote; a spawn's ``args``
        is a SpawnRequest. ``then``: see :meth:`call_remote` (remote calls only)."""
        if op == "spawn":
            req = check_spawn_request(args)
            node, host = self.split_remote_host(req[1])
            if node is not None:
                return await self.call_remote(node, caller, "spawn",
                                              [req[0], host, *list(req)[2:]], then)
            return await self._spawn_waiting(caller, [req[0], host, *list(req)[2:]])
        node = self.remote_node(args.get("dest"))
        if node is not None:
            return await self.call_remote(node, caller, op, args, then)
        if op == "terminate":
            return self.terminate(args["dest"])
        if op == "cancel":
            return self.cancel(caller, args["dest"], args.get("deadline"), args.get("reason"))
        raise InvalidError(f"unknown call {op!r}")

    async def _spawn_waiting(self, caller: str, req: list[Any]) -> str:
        """``_spawn``, waiting (at most SPAWN_WAIT) for a worker of the host to be ready."""
        deadline = time.monotonic() + SPAWN_WAIT
        while True:
            try:
                return self._spawn(caller, req)
            except WorkerStarting:
                if time.monotonic() >= deadline:
                    raise
                ready = asyncio.Event()
                self.park(_setter(ready), deadline)
                await ready.wait()

    def _replied(self, frame: list[Any]) -> None:
        """A REPLY from another node: the pending call's side effects here, then its answer."""
        _, req, kind, value = frame
        call = self._pending.pop(req, None)
        if call is None:
            return  # its call was ended by a break: the answer has been given
        if kind is not None:
            call.answer(kind, value)
            return
        caller = call.caller
        if caller in self.procs:  # a caller that ended meanwhile: its EXITED went there
            if call.op == "monitor":
                self.topology.monitor(caller, call.args["dest"])
            elif call.op == "link":
                self.topology.link(caller, call.args["dest"])
            elif call.op == "spawn" and type(value) is str:
                flags = call.args[3]
                if flags & wire.SPAWN_MONITOR:
                    self.topology.monitor(caller, value)
                if flags & wire.SPAWN_LINK:
                    self.topology.link(caller, value)
                if flags & wire.SPAWN_EXEC:
                    self._exec_children.setdefault(caller, set()).add(value)
        if call.then is not None:
            call.then(value)
        call.answer(None, value)

    def _fail_pending(self, node: str) -> None:
        """A break with ``node``: every call pending there ends NOT_FOUND."""
        ended = [req for req, call in self._pending.items() if call.node == node]
        for req in ended:
            self._pending.pop(req).answer(NotFoundError.kind, f"node down: {node}")

    def pair_broken(self, node: str, down: bool) -> None:
        """The pair with ``node`` broke (NodeLink's ``broken``): calls pending there fail,
        and every process of ours that watched or was linked to one of its processes, or
        waits for an exec child there, hears of it once (``"node down: <node>"``)."""
        self._fail_pending(node)
        if down and self.global_names is not None:
            self.global_names.drop_node(node)  # released before the EXITs (SPEC 4 rule 4)
        self.node_fallout(node)
        for nodes in self._calling.values():
            nodes.discard(node)

    # -- the workers' direct path (core/direct.py) -------------------------------------------
    def fence_from_worker(self, link: WorkerLink, fences: Any) -> None:
        """A worker's FENCE (``{node: [session, {instance: batches}]}``): to each node, in
        order with what the worker sends after it, for that node's workers."""
        cluster = self.cluster
        if cluster is None or type(fences) is not dict:
            raise ValueError("FENCE without a cluster, or not a map")
        for node, fence in fences.items():
            session, counts = fence
            if type(session) is not int or type(counts) is not dict:
                raise ValueError("malformed FENCE")
            cluster.send_to(node, [wire.FENCE, link.instance & INSTANCE_MASK, session, counts])

    def break_from_worker(self, link: WorkerLink, node: Any, session: Any, why: Any) -> None:
        """A worker's PAIR_BREAK: a gap, a malformed batch, a fence not met, its NATS
        connection lost (``node`` "": every pair); ignored when the pair has moved on from
        ``session`` since (it broke already)."""
        cluster = self.cluster
        if cluster is None or type(node) is not str or type(why) is not str:
            raise ValueError("malformed PAIR_BREAK")
        why = f"worker {link.tag}: {wire.clip_text(why, 200)}"
        if not node:
            for other in cluster.members.up():
                cluster.break_pair(other, why)
        elif cluster.is_up(node) and cluster.pairs.session(node) == session:
            cluster.break_pair(node, why)

    def _links_by_instance(self, counts: dict[int, int]) -> list[WorkerLink]:
        """The live workers whose instances ``counts`` names."""
        return [link for slots in self.hosts.values() for link in slots
                if link.up and link.instance & INSTANCE_MASK in counts]

    # -- frames from other nodes -----------------------------------------------------------------
    def deliver_remote(self, node: str, frames: list[list[Any]]) -> None:
        """The checked frames of one batch from ``node`` (core/batches.py), in order."""
        procs = self.procs
        for frame in frames:
            op = frame[0]
            if op == wire.SEND:
                entry = procs.get(frame[1])
                if entry is None:
                    self.dead_letters += 1
                    continue
                self.routed += 1
                frame[0] = wire.DELIVER
                entry.worker.conn.send(frame)
            elif op == wire.EXITED:
                self.remote_exited(frame[1], frame[2])
            elif op == wire.EVENT:
                _, dest, kind, from_, result, deadline, reason = frame
                if kind == wire.EV_EXEC:
                    children = self._exec_children.get(dest)
                    if children is None or from_ not in children:
                        continue  # the caller ended, or the pair broke (it was told then)
                    children.discard(from_)
                    if not children:
                        del self._exec_children[dest]
                self.event(dest, kind, from_, result, deadline, reason)
            elif op == wire.CALL:
                self._called(node, frame)
            elif op == wire.FENCE:
                _, instance, session, counts = frame
                for link in self._links_by_instance(counts):
                    count = counts[link.instance & INSTANCE_MASK]
                    link.conn.send([wire.FENCE, node, instance, session, count])
            elif op == wire.GONE:
                self._broadcast([wire.GONE, node, frame[1]])
            else:  # REPLY (the boundary lets nothing else through)
                self._replied(frame)

    def _called(self, node: str, frame: list[Any], deadline: float | None = None) -> None:
        """A CALL from a process of ``node`` (or its control socket) on one of ours: acted
        on, then answered (unless NO_REPLY). The caller's node checked its permissions. A
        spawn on a host whose workers still start waits for one (see ``_on_call``)."""
        _, req, caller, op, args = frame
        try:
            value: Any = None
            if op == "spawn":
                try:
                    value = self._spawn_for(node, caller, args)
                except WorkerStarting:
                    if deadline == 0.0:
                        raise
                    self.park(lambda d: self._called(node, frame, d), deadline)
                    return
                if args[3] & wire.SPAWN_ACK and req != wire.NO_REPLY:
                    self._reply_when_started(node, req, value)
                    return
            else:
                if type(args) is not dict:
                    raise InvalidError("malformed call")
                dest = args.get("dest")
                handler = _CALLED.get(op)
                if handler is None or type(dest) is not str:
                    raise InvalidError("malformed call")
                handler(self, caller, dest, args)
        except ProcessError as e:
            if req != wire.NO_REPLY:
                self.cluster.send_to(  # type: ignore[union-attr]
                    node, [wire.REPLY, req, e.kind, wire.clip_text(str(e))])
            return
        if req != wire.NO_REPLY:
            self.cluster.send_to(node, [wire.REPLY, req, None, value])  # type: ignore[union-attr]

    def _spawn_for(self, node: str, caller: str, raw: Any) -> str:
        """A spawn asked by ``node``: its caller's edges to the child are installed before
        the child's START (the request's flags), as for a local caller. A SPAWN_ACK spawn
        (another node's service) whose name is held is ALREADY_EXISTS, as a local service's
        start: it never takes the holder for its own child."""
        req = check_spawn_request(raw)
        if ids.split_host(req[1])[0] is not None:
            raise NotFoundError(f"unknown host {req[1]!r}")
        name = req[7]
        if name and req[3] & wire.SPAWN_ACK:
            holder = self.registry.lookup(name)
            if holder is not None:
                raise AlreadyExistsError(f"name {name!r} is held by {holder}")
        return self._spawn(caller, req)

    def _reply_when_started(self, node: str, req: int, pid: str) -> None:
        """The REPLY to ``node``'s SPAWN_ACK spawn of ``pid``: its PID once the child's entry
        is loaded and its task runs (STARTED), or its error (kind ERROR) if it ends first
        (the entry could not load): what a local service's start waits for (services.py)."""
        cluster = self.cluster
        assert cluster is not None
        answered = False

        def started() -> None:
            nonlocal answered
            answered = True
            cluster.send_to(node, [wire.REPLY, req, None, pid])

        def ended(result: wire.ExitResult) -> None:
            nonlocal answered
            if not answered:
                answered = True
                error = wire.error_of(result) if wire.is_abnormal(result) else (
                    "ended before it started")
                cluster.send_to(node, [wire.REPLY, req, ProcessError.kind,
                                       wire.clip_text(error)])

        self.on_started(pid, started)
        self.on_exit(pid, ended)


def _setter(event: asyncio.Event) -> Callable[[float], None]:
    """A parked spawn's retry that wakes the coroutine waiting on ``event``."""
    return lambda _: event.set()


def _monitor(r: Remote, caller: str, dest: str, args: dict[str, Any]) -> None:
    r._alive(dest)
    if not r.topology.monitor(caller, dest):
        raise AlreadyExistsError(f"already monitoring {dest}")


def _link(r: Remote, caller: str, dest: str, args: dict[str, Any]) -> None:
    r._alive(dest)
    r.topology.link(caller, dest)


#: the calls another node may make on our processes, besides spawn
_CALLED: dict[str, Callable[[Remote, str, str, dict[str, Any]], object]] = {
    "monitor": _monitor,
    "link": _link,
    "unmonitor": lambda r, caller, dest, a: r.topology.unmonitor(caller, dest),
    "unlink": lambda r, caller, dest, a: r.topology.unlink(caller, dest),
    "terminate": lambda r, caller, dest, a: r.terminate(dest),
    "cancel": lambda r, caller, dest, a: r.cancel(caller, dest, a.get("deadline"),
                                                  a.get("reason")),
}
