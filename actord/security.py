"""Who may do what: the permission table of SPEC section 7 applied to calls and CLI commands.

Responsibility: turn a call (an actor API call in a worker or the router, or a control-socket
command) into the ``(action, resource)`` pairs the table names, check each with the caller's
:class:`~actord.core.policy.Evaluator`, and raise ``PermissionDeniedError`` naming the action
and resource before the call has any effect. Also maps control-socket peers (uid/gid from
SO_PEERCRED) to an actor and scope through ``[[security.clients]]``.

Invariant: every path that acts on behalf of a caller goes through :meth:`Guard.require`
first; the policies it uses are swapped as a whole on reload (no half-applied policy set).

Actions beyond SPEC section 7's table, for CLI commands that are not actor calls:
``daemon.status`` (status, ps, info, registry, services; resource ``"daemon"``),
``daemon.reload`` and ``daemon.shutdown`` (resource ``"daemon"``), ``service.start``,
``service.stop``, ``service.restart`` (resource: the service name), and ``daemon.worker``
(restart-worker; resource: the host name). ``ping`` (the CLI's liveness probe, answering the
daemon's ``max_frame``) needs no permission.
"""

from __future__ import annotations

import grp
import os
import pwd
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec

from actord.core import wire
from actord.core.config import SecurityConfig
from actord.core.policy import ADMIN, Evaluator, PolicySet
from actord.errors import PermissionDeniedError

Permission = tuple[str, str]


class Guard:
    """The compiled policies of a node, and the checks made with them."""

    __slots__ = ("generation", "policies", "security")

    def __init__(self, security: SecurityConfig) -> None:
        self.security = security
        self.policies = PolicySet.compile(security)
        self.generation = 0  # bumped on reload: cached evaluators of older generations are stale

    @classmethod
    def from_builtins(cls, data: Mapping[str, Any]) -> Guard:
        """A guard from :meth:`to_builtins` output (what a worker receives in INIT)."""
        return cls(msgspec.convert(data, SecurityConfig))

    def to_builtins(self) -> dict[str, Any]:
        """The security config as plain msgpack-able values."""
        return msgspec.to_builtins(self.security)

    def replace(self, security: SecurityConfig) -> None:
        """Reload: the new policies apply to every caller from the next check on."""
        self.security = security
        self.policies = PolicySet.compile(security)
        self.generation += 1

    def evaluator(self, actor: Mapping[str, Any] | None, scope: Sequence[str] | None) -> Evaluator:
        """The evaluator of a caller (cached by the policy set)."""
        return self.policies.evaluator(actor, scope)

    @staticmethod
    def require(
        evaluator: Evaluator,
        permissions: Sequence[Permission],
        meta: Mapping[str, Any] | None = None,
    ) -> None:
        """Raise PERMISSION_DENIED for the first pair the caller may not do."""
        for action, resource in permissions:
            if not evaluator.check(action, resource, meta):
                why = evaluator.explain(action, resource, meta)
                if action not in why:  # "no policy allows <action> on <resource>" names both
                    why = f"{action} on {resource}: {why}"
                raise PermissionDeniedError(why)


# -- the permission table ------------------------------------------------------------------------


def spawn_permissions(req: wire.SpawnFields) -> tuple[Permission, ...]:
    """``spawn*`` / ``exec`` (and a ``with_name`` registration) as SPEC 7 names them, for a
    spawn request."""
    # by position: one unpack is cheaper than four attribute reads (every spawn comes here)
    id, host, _, flags, _, _, _, name, _ = req
    key = (id, host, flags)
    perms = _spawn_cache.get(key)
    if perms is None:
        if len(_spawn_cache) >= 4096:  # a bound, not an LRU: ids and hosts come from config
            _spawn_cache.clear()
        pid_id = str(key[0])
        perms = (
            *((action, pid_id) for action in _SPAWN_ACTIONS[flags & _VARIANT_BITS]),
            ("process.host", str(key[1])),
        )
        if flags & wire.SPAWN_CONTEXT:  # checked by with_context in the worker; again here
            perms += (("process.context", "context"),)
        if flags & wire.SPAWN_SECURITY:  # likewise with_actor / with_scope
            perms += (("process.security", "security"),)
        _spawn_cache[key] = perms
    if name:  # not part of the key: names are mostly unique, each would hold an entry
        perms += (("process.registry.register", str(name)),)
    return perms


_VARIANT_BITS = wire.SPAWN_MONITOR | wire.SPAWN_LINK | wire.SPAWN_EXEC
#: the spawn action(s) of each combination of the monitor/link/exec flags (exec wins)
_SPAWN_ACTIONS: dict[int, tuple[str, ...]] = {
    bits: ("process.exec",) if bits & wire.SPAWN_EXEC else (
        tuple(action for bit, action in ((wire.SPAWN_MONITOR, "process.spawn.monitored"),
                                         (wire.SPAWN_LINK, "process.spawn.linked"))
              if bits & bit) or ("process.spawn",)
    )
    for bits in range(_VARIANT_BITS + 1)
}
#: (id, host, flags) -> the permissions of a spawn without a name; most spawns repeat one
_spawn_cache: dict[tuple[Any, Any, int], tuple[Permission, ...]] = {}


#: router calls whose resource is the target PID (``args["dest"]``)
TARGET_ACTIONS = {
    "terminate": "process.terminate",
    "cancel": "process.cancel",
    "monitor": "process.monitor",
    "unmonitor": "process.unmonitor",
    "link": "process.link",
    "unlink": "process.unlink",
}


def check_escalation(caller_actor: Mapping[str, Any] | None, actor: Any) -> None:
    """Only ``system:admin`` may start a process as ``system:admin`` (``with_actor`` would
    otherwise be a full privilege escalation guarded by ``process.security`` alone)."""
    if (
        isinstance(actor, Mapping)
        and actor.get("id") == ADMIN["id"]
        and (caller_actor or {}).get("id") != ADMIN["id"]
    ):
        raise PermissionDeniedError("only system:admin may run a process as system:admin")


def call_permissions(op: str, args: Mapping[str, Any]) -> Sequence[Permission]:
    """The permissions a router call other than spawn needs (an unknown op needs none: it is
    refused anyway)."""
    action = TARGET_ACTIONS.get(op)
    if action is not None:
        return [(action, str(args.get("dest")))]
    if op in ("register", "unregister"):
        return [(f"process.registry.{op}", str(args.get("name")))]
    return []


def command_permissions(
    command: str, args: Mapping[str, Any], dest: str = ""
) -> Sequence[Permission]:
    """The permissions a control-socket command needs; ``dest`` is its resolved target PID."""
    if command in ("status", "nodes", "ps", "info", "registry", "services"):
        return [("daemon.status", "daemon")]
    if command in ("reload", "shutdown"):
        return [(f"daemon.{command}", "daemon")]
    if command in ("start", "stop", "restart"):
        return [(f"service.{command}", str(args.get("service")))]
    if command == "logs":
        return [("daemon.logs", "daemon")]
    if command == "top":
        return [("daemon.status", "daemon")]
    if command == "restart-worker":
        return [("daemon.worker", str(args.get("host")))]
    if command in ("spawn", "exec"):
        flags = wire.SPAWN_EXEC if command == "exec" else 0
        return spawn_permissions(wire.spawn_request(
            str(args.get("id")), str(args.get("host")), flags=flags, name=args.get("name") or None
        ))
    if command == "send":
        return [("process.send", dest)]
    if command == "kill":
        return [("process.terminate", dest)]
    if command == "cancel":
        return [("process.cancel", dest)]
    if command == "trace":
        return [("process.trace", dest)]
    return []


# -- control-socket clients ----------------------------------------------------------------------


def client_identity(
    security: SecurityConfig, uid: int, gid: int
) -> tuple[dict[str, Any] | None, list[str] | None]:
    """The actor and scope of a control-socket peer.

    Root and the daemon's own user are ``system:admin``. Otherwise the first
    ``[[security.clients]]`` entry matching the peer's uid, user name, gid or group (primary
    or supplementary) applies, with ``{user}`` in the actor id replaced by the user name.
    No match: no actor (denied in strict mode, allowed in permissive mode).
    """
    if uid in (0, os.geteuid()):
        return dict(ADMIN), None
    user = _user_name(uid)
    groups = _group_ids(user, gid)
    for client in security.clients:
        if (
            (client.uid is not None and client.uid == uid)
            or (client.user is not None and client.user == user)
            or (client.gid is not None and client.gid in groups)
            or (client.group is not None and _gid_of(client.group) in groups)
        ):
            ident = client.actor.id.replace("{user}", user)
            return {"id": ident, "meta": dict(client.actor.meta)}, list(client.scope)
    return None, None


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _gid_of(group: str) -> int | None:
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        return None


def _group_ids(user: str, gid: int) -> set[int]:
    try:
        return set(os.getgrouplist(user, gid))
    except OSError:
        return {gid}
