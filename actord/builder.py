"""``SpawnBuilder``: immutable spawn settings (context, actor, scope, name, queued messages).

Each ``with_*`` returns a new builder; nothing is sent until a ``spawn*``/``exec`` coroutine
runs. Context, actor and scope are inherited from the spawning process and overridden here.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from actord import ids
from actord import kernel as _kernel
from actord.core import wire
from actord.core.wire import SpawnFields
from actord.errors import InvalidError
from actord.kernel import ProcessState, require_process
from actord.values import check_topic, payload


@dataclass(frozen=True)
class SpawnBuilder:
    """Settings for the next spawn; immutable."""

    context: tuple[tuple[str, Any], ...] = ()
    actor: dict[str, Any] | None = None
    scope: tuple[str, ...] | None = None
    name: str | None = None
    messages: tuple[tuple[str, Any], ...] = field(default=())

    def with_context(self, values: dict[str, Any]) -> SpawnBuilder:
        """Add context values (checked to be msgpack values now)."""
        if not isinstance(values, dict) or not all(isinstance(k, str) for k in values):
            raise InvalidError("context must be a dict with string keys")
        _check_values(values)
        _permit("process.context", "context")
        return replace(self, context=self.context + tuple(values.items()))

    def with_actor(self, actor: dict[str, Any]) -> SpawnBuilder:
        """Run the child as ``actor`` (``{"id": str, "meta": dict}``)."""
        if not isinstance(actor, dict) or not isinstance(actor.get("id"), str):
            raise InvalidError('actor must be {"id": str, "meta": dict}')
        meta = actor.get("meta", {})
        if not isinstance(meta, dict):
            raise InvalidError("actor meta must be a dict")
        _check_values(meta)
        _permit("process.security", "security")
        rt, proc = require_process()
        rt.check_escalation(proc, actor)
        return replace(self, actor={"id": actor["id"], "meta": dict(meta)})

    def with_scope(self, scope: list[str]) -> SpawnBuilder:
        """Run the child under these scopes (names from config)."""
        if not isinstance(scope, list | tuple) or not all(isinstance(s, str) for s in scope):
            raise InvalidError("scope must be a list of scope names")
        _permit("process.security", "security")
        return replace(self, scope=tuple(scope))

    def with_name(self, name: str) -> SpawnBuilder:
        """Register ``name`` for the child before it runs (spawn-or-signal)."""
        return replace(self, name=ids.check_name(name))

    def with_message(self, topic: str, *values: Any) -> SpawnBuilder:
        """Queue a message in the child's mailbox before it runs (``from_`` is ``""``)."""
        check_topic(topic)
        value = payload(values)
        _check_values(value)
        return replace(self, messages=(*self.messages, (topic, value)))

    # -- spawning --------------------------------------------------------------------------------
    def _request(self, proc: ProcessState, id: str, host: str, args: tuple[Any, ...], flags: int
                 ) -> SpawnFields:
        """The spawn request; values are checked when it is sent."""
        if type(id) is not str or type(host) is not str:
            raise InvalidError("process id and host must be strings")
        ctx = proc.context
        if self.context:
            ctx = {**ctx, **dict(self.context)}
            flags |= wire.SPAWN_CONTEXT
        if self.actor is not None or self.scope is not None:
            flags |= wire.SPAWN_SECURITY
        # actor and scope left None are the caller's: the router fills them in. A
        # wire.SpawnRequest's fields, as the list it packs to (every spawn makes one: a
        # NamedTuple would cost a Python call and a slower pack).
        return [id, host, list(args), flags, ctx or None, self.actor,
                None if self.scope is None else list(self.scope), self.name,
                [list(m) for m in self.messages] if self.messages else None]

    # Each spawn variant awaits the router's reply directly (no shared inner coroutine: a
    # coroutine level per spawn is measurable in a spawn burst).
    async def spawn(self, id: str, host: str, *args: Any) -> str:
        """Start a child; its PID."""
        rt, proc = require_process()
        pid: str = await rt.request(proc, "spawn", self._request(proc, id, host, args, 0))
        return pid

    async def spawn_monitored(self, id: str, host: str, *args: Any) -> str:
        """Start a child, monitored from before it runs."""
        rt, proc = require_process()
        pid: str = await rt.request(proc, "spawn", self._request(proc, id, host, args, _MONITOR))
        return pid

    async def spawn_linked(self, id: str, host: str, *args: Any) -> str:
        """Start a child, linked from before it runs."""
        rt, proc = require_process()
        pid: str = await rt.request(proc, "spawn", self._request(proc, id, host, args, _LINK))
        return pid

    async def spawn_linked_monitored(self, id: str, host: str, *args: Any) -> str:
        """Start a child, linked and monitored from before it runs."""
        rt, proc = require_process()
        pid: str = await rt.request(
            proc, "spawn", self._request(proc, id, host, args, _LINK | _MONITOR)
        )
        return pid

    async def exec(
        self, id: str, host: str, *args: Any, timeout: float | None = None
    ) -> Any:
        """Spawn, wait for the end, return the value (SPEC ``exec``)."""
        rt, proc = require_process()
        if timeout is not None and (not isinstance(timeout, int | float) or timeout < 0):
            raise InvalidError(f"bad timeout {timeout!r}")
        return await rt.exec(proc, self._request(proc, id, host, args, wire.SPAWN_EXEC), timeout)


_MONITOR, _LINK = wire.SPAWN_MONITOR, wire.SPAWN_LINK
#: a builder with nothing set: what the module-level ``spawn*`` functions use
DEFAULT = SpawnBuilder()


def _permit(action: str, resource: str) -> None:
    """PERMISSION_DENIED unless the calling process may do this (SPEC 7)."""
    rt, proc = require_process()
    rt.permit(proc, action, resource)


def _check_values(value: Any) -> None:
    """INVALID unless ``value`` is a msgpack value within ``max_frame`` (wire's size rule;
    the spawn's frame as a whole is checked again when it is sent)."""
    rt = _kernel.installed
    try:
        wire.check_size(wire.encode_value(value),
                        rt.max_frame if rt is not None else wire.DEFAULT_MAX_FRAME)
    except wire.ValueTooLarge as e:
        raise InvalidError(str(e)) from None
    except (TypeError, ValueError, OverflowError) as e:
        raise InvalidError(f"not a msgpack value: {e}") from None
