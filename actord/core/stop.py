"""The stop sequence of a supervised process, written once: signal, wait, then kill.

Services (:mod:`actord.services`, in the daemon) and supervisors (:mod:`actord.supervisor`,
in a worker) stop a process the same way, OTP's "signal, wait, then kill" confirmed by the
process's end; each does its own I/O and follows the steps this module decides::

    cancel, deadline now + timeout    (the worker terminates the process at the deadline)
    wait for the end, up to timeout + STOP_GRACE
    terminate, wait up to TERMINATE_WAIT   (only if the worker did not act: it is hung)
    still no end: give up on it       (the caller reports it)

With no timeout (a supervisor child's ``shutdown = "brutal_kill"``) the first signal is the
terminate itself, waited on ``TERMINATE_WAIT``, and the sequence goes on as above.

Invariant: pure (values in, steps out); every step has a finite wait, so a stop always ends.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

#: seconds beyond the cancel deadline to wait for the end of the worker's deadline kill
STOP_GRACE = 1.0
#: seconds to wait for the end after a terminate
TERMINATE_WAIT = 5.0


class StopStep(NamedTuple):
    """Send ``signal``, then wait up to ``wait`` seconds for the end."""

    signal: Literal["cancel", "terminate"]
    wait: float


def stop_steps(timeout: float | None) -> tuple[StopStep, StopStep]:
    """The steps to stop a process given ``timeout`` seconds to end (None: kill at once)."""
    first = (StopStep("terminate", TERMINATE_WAIT) if timeout is None
             else StopStep("cancel", timeout + STOP_GRACE))
    return first, StopStep("terminate", TERMINATE_WAIT)


def stop_bound(timeout: float | None) -> float:
    """The longest :func:`stop_steps` can take: the sum of their waits."""
    return sum(step.wait for step in stop_steps(timeout))


__all__ = ["STOP_GRACE", "TERMINATE_WAIT", "StopStep", "stop_bound", "stop_steps"]
