"""Calls a process makes of its worker: permission checks, name resolution, router calls, exec.

Responsibility: the ``Kernel`` calls other than send (``actord.kernel``): check a permission
with the process's cached policy evaluator, resolve a destination, send a CALL to the router
and hand its REPLY to the waiting future, and run an exec (spawn, wait for the child's
result, CANCEL a child nobody waits for any more). Invariant: the router answers every CALL it
reads, so ``pending`` holds a future only until its reply; no CALL frame breaks ``wire``'s
size rule (INVALID "message too large" and nothing is sent).
"""

from __future__ import annotations

import asyncio
from typing import Any

from actord import ids, security
from actord.core import wire
from actord.core.wire import ExitResult, SpawnFields, error_of, is_abnormal, value_of
from actord.errors import InvalidError, ProcessFailedError, from_kind
from actord.worker.proc import Proc
from actord.worker.state import WorkerState

_encode = wire.encode


class Calls(WorkerState):
    """The call methods of ``Runtime`` and the REPLY handler."""

    def permit(self, proc: Proc, action: str, resource: str) -> None:
        """PERMISSION_DENIED unless ``proc`` may do ``action`` on ``resource`` (SPEC 7)."""
        cached = proc.evaluator
        if cached is None or cached[0] is not self.guard:
            evaluator = self.guard.evaluator(proc.actor, proc.scope)
            cached = proc.evaluator = (self.guard, evaluator, evaluator.fixed is True)
        if not cached[1].check(action, resource, proc.meta):
            self.guard.require(cached[1], [(action, resource)], proc.meta)

    def check_escalation(self, proc: Proc, actor: dict[str, Any]) -> None:
        """PERMISSION_DENIED unless ``proc`` may start a process running as ``actor``."""
        security.check_escalation(proc.actor, actor)

    def resolve(self, dest: object) -> str:
        """A canonical PID from a PID (INVALID if malformed) or a registered name
        (NOT_FOUND for an unknown name)."""
        if type(dest) is str and dest in self.procs:  # a live local PID: already canonical
            return dest
        return ids.resolve(dest, self.names.get)  # the one rule, as the control socket's

    def request(self, proc: Proc, op: str, args: Any, exec_caller: bool = False
                ) -> asyncio.Future[Any]:
        """Send a call to the router; the returned future gets its reply (its value, or
        the ``ProcessError`` the router answers with).

        The router answers every call it reads (a caller that ended meanwhile gets an
        error), so ``pending`` holds a future only until its reply, even when the awaiting
        task was cancelled. ``exec_caller``: the reply is an exec child's PID (``_on_reply``).
        The whole frame (a spawn's args, context and messages with their small envelope)
        must fit in ``max_frame``, else INVALID "message too large" and nothing is sent.
        """
        self.next_req += 1
        req = self.next_req
        try:
            data = _encode([wire.CALL, req, proc.pid, op, args])
        except (TypeError, ValueError, OverflowError) as e:
            raise InvalidError(f"argument is not a msgpack value: {e}") from None
        if len(data) > self.max_frame:
            raise InvalidError(wire.too_large(len(data), self.max_frame))
        if self.direct is not None:  # a cancel of another node's process after our messages
            self.direct.fence()
        self.conn.send_encoded(data)
        fut: asyncio.Future[Any] = self.loop.create_future()
        self.pending[req] = fut
        if exec_caller:
            self.exec_spawns[req] = proc
        return fut

    def _on_reply(self, frame: list[Any]) -> None:
        # the reply to a wire.NO_REPLY call finds no future (none is kept for it): dropped
        fut = self.pending.pop(frame[1], None)
        caller = self.exec_spawns.pop(frame[1], None) if self.exec_spawns else None
        if caller is not None and frame[2] is None:
            if fut is None or fut.done():  # the exec was cancelled before its child's PID came
                self._abandon_exec(caller, frame[3], "exec cancelled")
            else:
                # The wait for an exec child's result exists from the moment its PID is
                # known: its EV_EXEC can arrive before the caller's coroutine resumes.
                if caller.execs is None:
                    caller.execs = {}
                caller.execs[frame[3]] = self.loop.create_future()
        if fut is None or fut.done():
            return
        if frame[2] is None:
            fut.set_result(frame[3])
        else:
            fut.set_exception(from_kind(frame[2], frame[3]))

    async def exec(self, proc: Proc, args: SpawnFields, timeout: float | None) -> Any:
        """Spawn an exec child and wait for its result (SPEC: ``exec``).

        A caller that stops waiting (timeout, its task cancelled, its process ended) leaves
        the child a CANCEL, so an abandoned child is asked to stop rather than forgotten.
        """
        child = await self.request(proc, "spawn", args, exec_caller=True)
        assert proc.execs is not None  # for the type checker: _on_reply made it
        fut = proc.execs[child]  # registered by _on_reply
        try:
            async with asyncio.timeout(timeout):
                result: ExitResult = await fut
        except TimeoutError:
            self._abandon_exec(proc, child, "exec timeout")
            raise
        except BaseException:
            self._abandon_exec(proc, child, "exec cancelled")
            raise
        finally:
            if proc.execs:
                proc.execs.pop(child, None)
        if is_abnormal(result):
            error = error_of(result)
            raise ProcessFailedError(f"{child} failed: {error}", pid=child, error=error)
        return value_of(result)

    def _abandon_exec(self, proc: Proc, child: str, reason: str) -> None:
        """CANCEL an exec child nobody waits for any more (no-op once ``proc`` is dead)."""
        if proc.alive:  # nobody waits for this call's reply: NO_REPLY, and no future kept
            if self.direct is not None:
                self.direct.fence()
            self.conn.send([wire.CALL, wire.NO_REPLY, proc.pid, "cancel",
                            {"dest": child, "reason": reason}])
