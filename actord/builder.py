"""``SpawnBuilder``: immutable spawn settings (context, actor, scope, name, queued messages).

Each ``with_*`` returns a new builder; nothing is sent until a ``spawn*``/``exec`` coroutine
runs. Context, actor and scope are inherited from the spawning process and overridden here.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from actord import ids
from actord.core import wire
from actord.errors import InvalidError


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
        from actord.security import check_escalation
        from actord.worker.runtime import require_process

        check_escalation(require_process()[1].actor, actor)
        return replace(self, actor={"id": actor["id"], "meta": dict(meta)})

    def with_scope(self, scope: list[str]) -> SpawnBuilder:
        """Run the child under these scopes (names from config)."""
        if not isinstance(scope, list | tuple) or not all(isinstance(s, str) for s in scope):
            raise InvalidError("scope must be a list of scope names")
        _permit("process.security", "security")
        return replace(self, scope=tuple(scope))

    def with_name(self, name: str) -> SpawnBuilder:
        """Register ``name`` for the child before it runs (spawn-or-signal)."""
        if not ids.is_name(name):
            raise InvalidError(f"bad name {name!r}")
        return replace(self, name=name)

    def with_message(self, topic: str, *values: Any) -> SpawnBuilder:
        """Queue a message in the child's mailbox before it runs (``from_`` is ``""``)."""
        from actord.process import _payload, check_topic

        check_topic(topic)
        payload = _payload(values)
        _check_values(payload)
        return replace(self, messages=(*self.messages, (topic, payload)))

    # -- spawning --------------------------------------------------------------------------------
    def _request(self, id: str, host: str, args: tuple[Any, ...], **flags: bool) -> dict[str, Any]:
        from actord.worker.runtime import require_process

        _, proc = require_process()
        if not isinstance(id, str) or not isinstance(host, str):
            raise InvalidError("process id and host must be strings")
        _check_values(list(args))
        ctx = dict(proc.context)
        ctx.update(self.context)
        return {
            "id": id,
            "host": host,
            "args": list(args),
            "ctx": ctx,
            "actor": self.actor if self.actor is not None else proc.actor,
            "scope": list(self.scope) if self.scope is not None else proc.scope,
            "name": self.name,
            "messages": [list(m) for m in self.messages],
            "custom_actor": self.actor is not None or self.scope is not None,
            "custom_context": bool(self.context),
            **flags,
        }

    async def _spawn(self, id: str, host: str, args: tuple[Any, ...], **flags: bool) -> str:
        from actord.worker.runtime import require_process

        rt, proc = require_process()
        return str(await rt.call(proc, "spawn", self._request(id, host, args, **flags)))

    async def spawn(self, id: str, host: str, *args: Any) -> str:
        """Start a child; its PID."""
        return await self._spawn(id, host, args)

    async def spawn_monitored(self, id: str, host: str, *args: Any) -> str:
        """Start a child, monitored from before it runs."""
        return await self._spawn(id, host, args, monitor=True)

    async def spawn_linked(self, id: str, host: str, *args: Any) -> str:
        """Start a child, linked from before it runs."""
        return await self._spawn(id, host, args, link=True)

    async def spawn_linked_monitored(self, id: str, host: str, *args: Any) -> str:
        """Start a child, linked and monitored from before it runs."""
        return await self._spawn(id, host, args, link=True, monitor=True)

    async def exec(
        self, id: str, host: str, *args: Any, timeout: float | None = None
    ) -> Any:
        """Spawn, wait for the end, return the value (SPEC ``exec``)."""
        from actord.worker.runtime import require_process

        rt, proc = require_process()
        if timeout is not None and (not isinstance(timeout, int | float) or timeout < 0):
            raise InvalidError(f"bad timeout {timeout!r}")
        return await rt.exec(proc, self._request(id, host, args, exec=True), timeout)


def _permit(action: str, resource: str) -> None:
    """PERMISSION_DENIED unless the calling process may do this (SPEC 7)."""
    from actord.worker.runtime import require_process

    rt, proc = require_process()
    rt.permit(proc, action, resource)


def _check_values(value: Any) -> None:
    try:
        wire.encode_value(value)
    except (TypeError, ValueError, OverflowError) as e:
        raise InvalidError(f"not a msgpack value: {e}") from None
