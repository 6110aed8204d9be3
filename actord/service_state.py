"""The state machine of a supervised service (SPEC section 8): its states and legal moves.

A service's state changes only through :func:`transition`, which refuses a move the diagram
does not show (a bug in the caller); :class:`actord.services.ServiceManager` makes the moves
and logs each one::

    STOPPED --start--> STARTING --STARTED--> RUNNING --end, restart--> STARTING (backoff)
                          |  ^                   |---end, not restarted--> EXITED | FAILED
                          |  '--spawn or load    |---intensity exceeded--> FAILED
                          |     failed, restart  '---stop--> STOPPING --EXIT--> STOPPED
                          |---stop--> STOPPED (no process yet) | STOPPING (spawned)
                          '---first launch failed, or given up--> FAILED
    FAILED | EXITED --start--> STARTING

Invariant: :data:`_MOVES` is the whole diagram; the states' values are what ``services
--json`` shows.
"""

from __future__ import annotations

import enum


class ServiceState(enum.Enum):
    """A service's state, as ``services --json`` shows it."""

    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"
    FAILED = "failed"
    EXITED = "exited"


_S = ServiceState
_MOVES: dict[ServiceState, frozenset[ServiceState]] = {
    _S.STOPPED: frozenset({_S.STARTING}),
    # STARTING -> STARTING: a spawn that failed waits (backoff) for another attempt
    _S.STARTING: frozenset({_S.STARTING, _S.RUNNING, _S.STOPPING, _S.STOPPED, _S.FAILED}),
    _S.RUNNING: frozenset({_S.STARTING, _S.STOPPING, _S.FAILED, _S.EXITED}),
    _S.STOPPING: frozenset({_S.STOPPED}),
    _S.FAILED: frozenset({_S.STARTING}),
    _S.EXITED: frozenset({_S.STARTING}),
}


class IllegalTransitionError(RuntimeError):
    """A move the service state machine does not allow (a bug in the caller)."""


def transition(current: ServiceState, new: ServiceState) -> ServiceState:
    """``new`` if moving there from ``current`` is allowed, else ``IllegalTransitionError``."""
    if new not in _MOVES[current]:
        raise IllegalTransitionError(f"service state {current.value} -> {new.value}")
    return new


__all__ = ["IllegalTransitionError", "ServiceState", "transition"]
