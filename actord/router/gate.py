"""The security gate: every call and spawn a process asks for is checked here before it acts.

SPEC 7: a call needs the permissions :func:`~actord.security.call_permissions` names for it, a
spawn those :func:`~actord.security.spawn_permissions` names for its request, checked with the
caller's actor and scope through its policy evaluator (cached on its :class:`ProcEntry` until a
reload changes the policies). A spawn request from a worker is validated here, at the boundary,
so that nothing malformed reaches the target worker's START handler (which trusts the router).

Invariant: a worker's frames are only as honest as the actor code it runs, so what a spawn
request claims about itself (its flags) never lowers the permissions it needs.
"""

from __future__ import annotations

from typing import Any

from actord import ids
from actord.core import wire
from actord.core.policy import Evaluator
from actord.core.wire import SpawnFields, SpawnRequest
from actord.errors import InvalidError
from actord.router.slots import ProcEntry
from actord.security import Guard, call_permissions, check_escalation, spawn_permissions


class Gate:
    """Permission checks of calls and spawns (a Router mixin)."""

    guard: Guard

    def evaluator(self, entry: ProcEntry) -> Evaluator:
        """The policy evaluator of a live process (cached on its entry until a reload)."""
        if entry.generation != self.guard.generation or entry.evaluator is None:
            entry.evaluator = self.guard.evaluator(entry.actor, entry.scope)
            entry.generation = self.guard.generation
        return entry.evaluator

    def _check_call(self, entry: ProcEntry, op: str, args: Any) -> None:
        """PERMISSION_DENIED unless ``entry`` may make call ``op`` with ``args``."""
        self.guard.require(self.evaluator(entry), call_permissions(op, args), entry.meta)

    def _check_spawn(self, entry: ProcEntry, raw: Any) -> SpawnFields:
        """The spawn request ``raw`` from ``entry``'s worker, checked: INVALID if malformed,
        PERMISSION_DENIED unless ``entry`` may make it; its flags mark what it needs (a new
        identity, a new context)."""
        req = check_spawn_request(raw)
        # A new identity needs process.security, and a context other than the
        # caller's own process.context, whatever the flags claim: a worker's frames
        # are only as honest as the actor code it runs. (By position: one unpack is
        # cheaper than the attribute reads.)
        _, _, _, claimed, ctx, actor, scope, _, _ = req
        flags = claimed
        if actor is not None or scope is not None:
            flags |= wire.SPAWN_SECURITY
        if ctx is not None and ctx != entry.context:
            flags |= wire.SPAWN_CONTEXT
        if flags != claimed:  # rare: a with_actor/with_scope/with_context spawn
            req = SpawnRequest._make(req)._replace(flags=flags)
        # self.evaluator inlined (the spawn path): the cached one unless a reload changed
        # the policies
        evaluator = entry.evaluator
        if entry.generation != self.guard.generation or evaluator is None:
            evaluator = self.evaluator(entry)
        # SPEC 7: every call is checked before it acts (the common case: one cached
        # permission tuple, each pair a cached policy decision)
        perms = spawn_permissions(req)
        for action, resource in perms:
            if not evaluator.check(action, resource, entry.meta):
                self.guard.require(evaluator, perms, entry.meta)
        if actor is not None:
            check_escalation(entry.actor, actor)
        return req


def check_spawn_request(req: Any) -> SpawnFields:
    """The one door for a spawn request into the router (a worker's spawn CALL, the control
    socket, services): a :class:`~actord.core.wire.SpawnRequest` or its decoded list,
    validated at the boundary, so that nothing malformed reaches the target worker's START
    handler (which trusts the router); INVALID if malformed. Returned as it came (see
    :data:`~actord.core.wire.SpawnFields`)."""
    t = type(req)
    if (t is not list and t is not SpawnRequest) or len(req) != _SPAWN_FIELDS:
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
    checked: SpawnFields = req
    return checked


_SPAWN_FIELDS = len(SpawnRequest._fields)


def _is_actor(actor: Any) -> bool:
    return actor is None or (
        isinstance(actor, dict)
        and isinstance(actor.get("id"), str)
        and isinstance(actor.get("meta", {}), dict)
    )


def _is_str_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)
