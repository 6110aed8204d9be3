"""OTP-style supervisors for actord processes, built on the public ``process`` API only.

Responsibility: keep an ordered list of child processes running, restarting them after
they end according to a strategy and their restart type, and giving up (ending abnormally,
so that whatever supervises the supervisor restarts it) when they end too often.

Specification (the model is OTP's ``supervisor.erl``)::

    await supervisor.run(children, strategy="one_for_one", intensity=3, period="5s",
                         backoff=None)

- ``run`` is called by the process that is the supervisor, as the last thing it does; it
  takes over that process's inbox and events. Its signature fits a config entry too:
  ``entry = "actord.supervisor:run"`` with ``args = [[{child spec}, ...], "one_for_all"]``.
- Children are :class:`ChildSpec` values or dicts with the same keys, validated when ``run``
  starts (a bad one: ``InvalidError``). ``id`` names the child in the supervisor; ``process``,
  ``host`` and ``args`` are what is spawned; ``name`` is registered for the child
  (``with_name``); ``restart`` is ``permanent`` (always restarted), ``transient`` (only after
  an abnormal end) or ``temporary`` (never; forgotten once it ends); ``shutdown`` is the
  cancel deadline when the supervisor stops the child (a duration, or ``"brutal_kill"``:
  terminate at once).
- Start: ``trap_links`` is set, then each child is spawned in list order with
  ``spawn_linked_monitored``. The monitor reports every end (EXIT); the link takes the
  children down with the supervisor ("linked process failed") if it dies abnormally. A spawn
  that fails stops the children already started and ends the supervisor abnormally.
- A child ends (its EXIT): if its restart type says so, the restart is counted (below) and
  the strategy picks what restarts, in list order:

      one_for_one    the child alone
      one_for_all    every child: the others are stopped first, last to first
      rest_for_one   the child and those after it: those are stopped first, last to first

  A temporary child stopped by such a group restart is forgotten, not restarted; every
  other child in the group is started again (also a transient one that had ended normally).
- Intensity: a restart at ``t`` counts while ``now - t < period``; one more than
  ``intensity`` restarts within ``period`` stops every child (last to first) and ends the
  supervisor with ``SupervisorError: restart intensity exceeded (...)``. A failed spawn of a
  restart counts as a restart too and is retried. With ``backoff`` (a dict with ``initial``,
  ``max``, ``factor``, ``jitter``, as a service's) restart n of the current window waits
  ``backoff_delay(backoff, n)``; without it restarts are immediate, as in OTP.
- CANCEL (from anyone): every child is stopped, last to first, and ``run`` returns None: a
  normal end. A LINK_DOWN from a process that is not one of its children (e.g. a linked
  parent failed) stops every child and ends the supervisor with
  ``SupervisorError: linked process failed (...)``, as if it did not trap links.
- Queries: a message of topic ``"which_children"`` is answered to its sender with the same
  topic and the payload ``[[id, pid or None], ...]`` in list order (None: ended and not
  restarted, or waiting out a backoff). :func:`which_children` is the caller's side. Other
  inbox messages are logged and dropped.
- Children see the CANCEL reasons ``"supervisor restart"`` (stopped for a group restart) and
  ``"supervisor shutdown"`` (everything else). "Started" means spawned (the runtime's spawn
  handshake), not initialised: a child that fails right away is an ordinary end. A child
  ``name`` held by another process makes that process the child (``with_name``, SPEC 6).

A restart, e.g. ``rest_for_one`` over children a b c d when b ends abnormally::

    EXIT of b --> should_restart(b.restart, abnormal)? --no--> forget b if temporary; done
                    | yes
                  add_restart(now) within intensity? --no--> stop d c a; SupervisorError
                    | yes
                  stop d, then c (each as below; a stays)
                    | wait backoff_delay(n) if a backoff is set
                  spawn b, c, d in order (a spawn that fails counts as a restart, retried)

Stopping one child (a group restart, CANCEL, giving up) is "signal, wait, then kill"
(the steps of :mod:`actord.core.stop`, ``shutdown`` the cancel deadline), confirmed by the
monitor, and children are stopped one at a time, last to first::

    supervisor                       child (shutdown = "5s")           runtime
      cancel(pid, 5s, reason) ---->  CANCEL event
      wait for its EXIT, 5s + 1s     cleans up, returns
                                     (or still running at 5s) <------  terminates it:
                                                                       "cancel deadline exceeded"
      <------------------------------ EXIT (monitor), then LINK_DOWN if abnormal (ignored)
      no EXIT by then: terminate(pid), wait 5s more; still none: log it, go on
      next child (the one before it in the list)

Invariant: between two events the supervisor is in a consistent state: each child is
running (``pid`` set, linked and monitored), pending (due to start at a time), or ended and
not to be restarted; only the supervisor's own task changes that state.

Layout: this module is the API (:func:`run`, :func:`which_children`) and re-exports the
public names; :mod:`actord.supervisor_spec` is the boundary (child specs, option checks,
defaults); :mod:`actord.supervisor_loop` is the running supervisor and :func:`restart_plan`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from actord import channel, ids, process
from actord.core.config import Intensity
from actord.durations import parse_duration
from actord.errors import InvalidError
from actord.messages import Message
from actord.supervisor_loop import Supervisor, restart_plan
from actord.supervisor_spec import (
    BRUTAL_KILL,
    DEFAULT_INTENSITY,
    DEFAULT_PERIOD,
    REASON_RESTART,
    REASON_SHUTDOWN,
    STRATEGIES,
    WHICH_CHILDREN,
    ChildSpec,
    Strategy,
    SupervisorError,
    check_backoff,
    check_children,
    child_spec,
)

# -- API -------------------------------------------------------------------------------------


async def run(
    children: Sequence[ChildSpec | dict[str, Any]],
    strategy: Strategy = "one_for_one",
    intensity: int = DEFAULT_INTENSITY,
    period: str | float = DEFAULT_PERIOD,
    backoff: dict[str, Any] | None = None,
) -> None:
    """Supervise ``children`` until CANCEL (returns None) or giving up (SupervisorError)."""
    specs = check_children(children)
    if strategy not in STRATEGIES:
        raise InvalidError(f"bad strategy {strategy!r}: one of {STRATEGIES}")
    if isinstance(intensity, bool) or not isinstance(intensity, int) or intensity < 0:
        raise InvalidError(f"bad intensity {intensity!r}: an int >= 0")
    try:
        seconds = parse_duration(period)
    except ValueError as e:
        raise InvalidError(f"period: {e}") from None
    if seconds <= 0:
        raise InvalidError(f"bad period {period!r}: must be positive")
    limit = Intensity(max_restarts=intensity, period=seconds)
    sup = Supervisor(specs, strategy, limit, check_backoff(backoff))
    await sup.serve()


async def which_children(dest: str, timeout: float = 5.0) -> list[list[Any]]:
    """Ask the supervisor ``dest`` (PID or name) for ``[[id, pid or None], ...]``.

    The answer is taken on a ``listen("which_children")`` channel held for the call, so the
    caller must not listen on that topic itself. ``TimeoutError`` if no answer comes.
    """
    target = ids.canonical_pid(dest) if ids.is_pid(dest) else process.registry.lookup(dest)
    ch = process.listen(WHICH_CHILDREN, message=True)
    try:
        process.send(target, WHICH_CHILDREN)
        deadline = time.monotonic() + timeout
        while True:
            _, msg = await channel.select(ch, timeout=max(0.0, deadline - time.monotonic()))
            assert isinstance(msg, Message)
            if msg.from_ == target and isinstance(msg.payload, list):
                return msg.payload
    finally:
        process.unlisten(ch)


__all__ = [
    "BRUTAL_KILL",
    "REASON_RESTART",
    "REASON_SHUTDOWN",
    "STRATEGIES",
    "WHICH_CHILDREN",
    "ChildSpec",
    "SupervisorError",
    "child_spec",
    "restart_plan",
    "run",
    "which_children",
]
