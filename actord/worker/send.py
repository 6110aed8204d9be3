"""The send path: one message from a process in this worker, to a local or remote PID.

Responsibility: ``Kernel.send`` for this worker (see ``actord.kernel``): check the
destination PID, the send permission and the size rule, then deliver to a local process at
once, hand the encoded payload to the router in one SEND frame, or (another node's process,
on a clustered node) to this worker's own NATS connection (``worker.direct``).
Invariants: same-worker messages skip the router but keep per-pair order because delivery
to a local process is immediate; a value over ``max_frame`` fails the send (INVALID) and
nothing is sent. This is the hot path of every message: each lookup here is paid per
message.
"""

from __future__ import annotations

from typing import Any

from actord import ids
from actord.core import wire
from actord.errors import InvalidError
from actord.messages import Message
from actord.worker.calls import Calls
from actord.worker.proc import Proc

_copy_value = wire.copy_value
_encode_value = wire.encode_value
_ValueTooLarge = wire.ValueTooLarge
_MAX_ADDRESS = wire.MAX_ADDRESS
_MIN_INT, _MAX_INT = wire.MIN_INT, wire.MAX_INT


class SendPath(Calls):
    """The send method of ``Runtime`` (on ``Calls``: it checks ``permit``)."""

    def send(self, proc: Proc, dest: str, topic: str, payload: Any) -> None:
        """Send one message; local destinations skip the router.

        ``dest`` is a PID string; one that is not a live local PID is parsed once (INVALID
        when malformed, a non-canonical spelling rewritten) and then remembered as checked.
        """
        target = self.procs.get(dest)
        if target is None and dest not in self._checked_pids:
            dest = self._check_pid(dest)
            target = self.procs.get(dest)
        cached = proc.evaluator  # permit's fast path inlined: this runs for every message
        if cached is None or cached[0] is not self.guard or (
            not cached[2] and not cached[1].check("process.send", dest, proc.meta)
        ):
            self.permit(proc, "process.send", dest)
        if len(topic) + len(dest) > _MAX_ADDRESS:
            raise InvalidError(wire.address_too_large(topic, dest))
        max_frame = self.max_frame
        try:
            # Same worker: a copy (copy_value skips the msgpack round trip for immutable
            # scalars, and checks the size rule; an int in msgpack's range, a float or None
            # is its own copy there, so the commonest payloads skip even the call); else the
            # encoded payload the router forwards without decoding it.
            if target is not None:
                t = type(payload)
                value = (payload if (t is int and _MIN_INT <= payload <= _MAX_INT)
                         or t is float or payload is None else _copy_value(payload, max_frame))
            else:
                value = _encode_value(payload)
        except _ValueTooLarge as e:
            raise InvalidError(str(e)) from None
        except (TypeError, ValueError, OverflowError) as e:
            raise InvalidError(f"payload is not a msgpack value: {e}") from None
        if target is not None:
            # delivered now, before this call returns: that keeps per-pair order locally
            target.deliver(Message(topic, proc.pid, value))
            proc.sent += 1  # for ps, info and top, and the STATS totals (see _on_stats)
        else:
            if len(value) > max_frame:
                raise InvalidError(wire.too_large(len(value), max_frame))
            direct = self.direct  # a clustered node's: another node's PID goes straight there
            if direct is None or not direct.send(dest, proc.pid, topic, value):
                self.conn.send([wire.SEND, dest, proc.pid, topic, value])
            proc.sent += 1

    def _check_pid(self, dest: str) -> str:
        """The canonical spelling of ``dest`` (INVALID if malformed), remembered when it
        was already canonical; the memory is bounded by forgetting everything at 64k."""
        pid = ids.canonical_pid(dest)
        if pid == dest:
            if len(self._checked_pids) >= 65536:
                self._checked_pids.clear()
            self._checked_pids.add(pid)
        return pid
