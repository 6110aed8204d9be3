"""The call table: a worker's CALL frame answered with one REPLY, and the target operations
it names (also the control socket's, with the empty caller ``""``).

A CALL is ``[CALL, req, caller, op, args]``; its REPLY is ``[REPLY, req, error_kind, value]``
(``error_kind`` None on success). ``spawn`` takes a :class:`~actord.core.wire.SpawnRequest`;
every other call a map, dispatched through :data:`CALLS`. A CALL with request id
``wire.NO_REPLY`` is answered all the same: its worker drops the reply.

Invariant: every CALL gets exactly one REPLY (the worker keeps a future per call until it
comes), and a call is checked by the gate before it acts (SPEC 7).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from actord import ids
from actord.core import wire
from actord.core.wire import SpawnFields
from actord.errors import AlreadyExistsError, InvalidError, NotFoundError, ProcessError
from actord.router.remote import Remote
from actord.router.slots import ProcEntry, WorkerLink
from actord.router.spawns import WorkerStarting


class Calls(Remote):
    """Answering calls, and the operations on a target process (a Router mixin)."""

    def _on_call(self, link: WorkerLink, frame: list[Any], deadline: float | None = None
                 ) -> None:
        """Answer one CALL; a spawn on a host whose workers still start waits for one
        (``deadline``: of such a wait, 0 for the last try)."""
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
                spawn = self._check_spawn(entry, args)
                if self.cluster is not None and "@" in spawn[1]:
                    local = self._spawn_elsewhere(link, req, entry, spawn)
                    if local is None:
                        return
                    spawn = local
                try:
                    value: Any = self._spawn(caller, spawn)
                except WorkerStarting:
                    if deadline == 0.0:
                        raise
                    self.park(lambda d: self._on_call(link, frame, d), deadline)
                    return
            else:
                handler = CALLS.get(op)
                if handler is None:
                    raise InvalidError(f"unknown call {op!r}")
                self._check_call(entry, op, args)
                if self.cluster is not None:
                    node = self.remote_node(args.get("dest"))
                    if node is not None:
                        self.remote_call_from_worker(link, req, caller, node, op, args)
                        return
                    if op in _NAME_CALLS and str(args.get("name")).startswith(ids.GLOBAL):
                        self.global_call(link, req, op, args)
                        return
                value = handler(self, caller, args)
        except ProcessError as e:  # clipped: a message may quote a (huge) argument
            link.conn.send([wire.REPLY, req, e.kind, wire.clip_text(str(e))])
            return
        link.conn.send([wire.REPLY, req, None, value])

    def _spawn_elsewhere(self, link: WorkerLink, req_id: int, entry: ProcEntry,
                         req: SpawnFields) -> SpawnFields | None:
        """A spawn on ``node@host`` (SPEC 11): sent to that node with the caller's actor and
        scope filled in (the child inherits them there); None then, else (our own node
        named) the request for a local spawn."""
        id, host, args, flags, ctx, actor, scope, name, messages = req
        node, plain = self.split_remote_host(host)
        if node is None:
            return [id, plain, args, flags, ctx, actor, scope, name, messages]
        remote = [id, plain, args, flags, ctx, entry.actor if actor is None else actor,
                  entry.scope if scope is None else scope, name, messages]
        encoded = len(wire.encode(remote))
        if encoded > self.max_frame + wire.FRAME_ENVELOPE:
            raise InvalidError(wire.too_large(encoded, self.max_frame))
        self.remote_call_from_worker(link, req_id, entry.pid, node, "spawn", remote)
        return None

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

    def cancel_all(self, deadline: float, reason: str) -> None:
        """CANCEL every live process (shutdown)."""
        for pid in list(self.procs):
            self.event(pid, wire.EV_CANCEL, "", None, deadline, reason)

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


_NAME_CALLS = ("register", "unregister")

#: the calls other than spawn: op -> handler(router, caller, args); the gate has checked them
CALLS: dict[str, Callable[[Calls, str, dict[str, Any]], Any]] = {
    "terminate": lambda r, caller, a: r.terminate(a["dest"]),
    "cancel": lambda r, caller, a: r.cancel(caller, a["dest"], a.get("deadline"),
                                            a.get("reason")),
    "monitor": lambda r, caller, a: r.monitor(caller, a["dest"]),
    "unmonitor": lambda r, caller, a: r.unmonitor(caller, a["dest"]),
    "link": lambda r, caller, a: r.link(caller, a["dest"]),
    "unlink": lambda r, caller, a: r.unlink(caller, a["dest"]),
    "register": lambda r, caller, a: r.register(a["name"], a["pid"]),
    "unregister": lambda r, caller, a: r.unregister(a["name"]),
}
