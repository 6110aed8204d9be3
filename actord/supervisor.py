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

Stopping one child (a group restart, CANCEL, giving up) is "signal, wait, then kill",
confirmed by the monitor, and children are stopped one at a time, last to first::

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
"""

from __future__ import annotations

import logging
import random
import time
from collections import deque
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from actord import channel, ids, process
from actord.core.config import Backoff, Intensity, Restart
from actord.core.restart import add_restart, backoff_delay, should_restart
from actord.durations import parse_duration
from actord.errors import InvalidError, NotFoundError, ProcessError
from actord.messages import Event, Message

Strategy = Literal["one_for_one", "one_for_all", "rest_for_one"]

STRATEGIES: Final[tuple[str, ...]] = ("one_for_one", "one_for_all", "rest_for_one")
RESTARTS: Final[tuple[str, ...]] = ("permanent", "transient", "temporary")
BRUTAL_KILL: Final = "brutal_kill"
#: the query topic, and the topic of its answer
WHICH_CHILDREN: Final = "which_children"
#: CANCEL reasons the children see
REASON_RESTART: Final = "supervisor restart"
REASON_SHUTDOWN: Final = "supervisor shutdown"

# Defaults live here, once (OTP's: permanent children, 5 s shutdown).
DEFAULT_RESTART: Final[Restart] = "permanent"
DEFAULT_SHUTDOWN: Final = "5s"
DEFAULT_INTENSITY: Final = 3
DEFAULT_PERIOD: Final = "5s"
#: after a cancel deadline, how long the runtime may take to report the terminated child
_DEADLINE_GRACE = 1.0
#: after our own terminate, how long to wait for the EXIT before giving the child up
_TERMINATE_WAIT = 5.0

_log = logging.getLogger(__name__)


class SupervisorError(Exception):
    """The supervisor gave up: a child failed to start, or the restart intensity was hit."""


# -- API -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChildSpec:
    """One child of a supervisor; checked when built (a bad value raises ``InvalidError``)."""

    id: str
    process: str
    host: str
    args: tuple[Any, ...] = ()
    restart: Restart = DEFAULT_RESTART
    shutdown: str | int = DEFAULT_SHUTDOWN
    name: str | None = None
    #: the cancel deadline in seconds, None for brutal_kill (derived from ``shutdown``)
    shutdown_seconds: float | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id:
            raise InvalidError(f"child spec: bad id {self.id!r}: must be a non-empty string")
        where = f"child {self.id!r}"
        if not ids.is_id(self.process):
            raise InvalidError(f"{where}: bad process id {self.process!r}")
        if not isinstance(self.host, str) or not self.host:
            raise InvalidError(f"{where}: bad host {self.host!r}")
        if not isinstance(self.args, list | tuple):
            raise InvalidError(f"{where}: args must be a list")
        object.__setattr__(self, "args", tuple(self.args))
        if self.restart not in RESTARTS:
            raise InvalidError(f"{where}: bad restart {self.restart!r}: one of {RESTARTS}")
        if self.name is not None and not ids.is_name(self.name):
            raise InvalidError(f"{where}: bad name {self.name!r}")
        seconds: float | None = None
        if self.shutdown != BRUTAL_KILL:
            try:
                seconds = parse_duration(self.shutdown)
            except ValueError as e:
                raise InvalidError(f"{where}: shutdown: {e} or {BRUTAL_KILL!r}") from None
        object.__setattr__(self, "shutdown_seconds", seconds)


def child_spec(value: ChildSpec | dict[str, Any]) -> ChildSpec:
    """A ChildSpec from a spec or a dict of its fields (unknown or missing keys: INVALID)."""
    if isinstance(value, ChildSpec):
        return value
    if not isinstance(value, dict):
        raise InvalidError(f"bad child spec {value!r}: a ChildSpec or a dict")
    unknown = set(value) - _SPEC_KEYS
    if unknown:
        raise InvalidError(f"child spec {value.get('id')!r}: unknown keys {sorted(unknown)}")
    missing = {"id", "process", "host"} - set(value)
    if missing:
        raise InvalidError(f"child spec {value.get('id')!r}: missing keys {sorted(missing)}")
    return ChildSpec(**value)


_SPEC_KEYS = frozenset({"id", "process", "host", "args", "restart", "shutdown", "name"})


def restart_plan(
    strategy: str, order: Sequence[str], ended: str
) -> tuple[list[str], list[str]]:
    """(children to stop, last first; children to start, in order) after ``ended`` ended."""
    if strategy == "one_for_one":
        return [], [ended]
    if strategy == "one_for_all":
        return [c for c in reversed(order) if c != ended], list(order)
    at = list(order).index(ended)  # rest_for_one
    return list(reversed(order[at + 1 :])), list(order[at:])


async def run(
    children: Sequence[ChildSpec | dict[str, Any]],
    strategy: Strategy = "one_for_one",
    intensity: int = DEFAULT_INTENSITY,
    period: str | float = DEFAULT_PERIOD,
    backoff: dict[str, Any] | None = None,
) -> None:
    """Supervise ``children`` until CANCEL (returns None) or giving up (SupervisorError)."""
    specs = _check_children(children)
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
    sup = _Supervisor(specs, strategy, limit, _check_backoff(backoff))
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


# -- boundary checks -------------------------------------------------------------------------


def _check_children(children: object) -> list[ChildSpec]:
    if not isinstance(children, list | tuple):
        raise InvalidError("children must be a list of child specs")
    specs = [child_spec(c) for c in children]
    for what, values in (("id", [s.id for s in specs]),
                         ("name", [s.name for s in specs if s.name is not None])):
        dupes = sorted({v for v in values if values.count(v) > 1})
        if dupes:
            raise InvalidError(f"children: duplicate {what} {dupes}")
    return specs


def _check_backoff(backoff: object) -> Backoff | None:
    if backoff is None:
        return None
    if not isinstance(backoff, dict) or set(backoff) - {"initial", "max", "factor", "jitter"}:
        raise InvalidError(f"bad backoff {backoff!r}: a dict of initial, max, factor, jitter")
    values: dict[str, float] = {}
    try:
        for key in ("initial", "max"):
            if key in backoff:
                values[key] = parse_duration(backoff[key])
    except ValueError as e:
        raise InvalidError(f"backoff: {e}") from None
    for key, low, high in (("factor", 1.0, float("inf")), ("jitter", 0.0, 1.0)):
        if key in backoff:
            v = backoff[key]
            if isinstance(v, bool) or not isinstance(v, int | float) or not low <= v <= high:
                raise InvalidError(f"bad backoff {key} {v!r}: a number in [{low}, {high}]")
            values[key] = float(v)
    return Backoff(**values)


def _outcome(result: dict[str, Any] | None) -> str:
    """How a child ended, for errors and logs."""
    if result and "error" in result:
        return str(result["error"])
    return "normal end"


# -- internals -------------------------------------------------------------------------------


class _Supervisor:
    """The state of one running supervisor; only its own task touches it."""

    def __init__(
        self, specs: list[ChildSpec], strategy: str, intensity: Intensity,
        backoff: Backoff | None,
    ) -> None:
        self.specs = specs  # list order = start order; a temporary child leaves when it ends
        self.strategy = strategy
        self.intensity = intensity
        self.backoff = backoff
        self.pids: dict[str, str | None] = {s.id: None for s in specs}
        self.pending: dict[str, float] = {}  # child id -> monotonic time its start is due
        self.restarts: tuple[float, ...] = ()  # times of the restarts within the period
        # Events read while waiting for one child's EXIT, handled afterwards in order.
        self.backlog: deque[Event] = deque()
        # Ended children whose LINK_DOWN (it follows an abnormal end's EXIT) is still due.
        self.stale_links: set[str] = set()
        self.rng = random.Random()
        self.me = process.pid()
        self.inbox, self.events = process.inbox(), process.events()

    def spec(self, child: str) -> ChildSpec:
        return next(s for s in self.specs if s.id == child)

    def child_of(self, pid: str) -> str | None:
        return next((c for c, p in self.pids.items() if p == pid), None)

    # -- the loop ------------------------------------------------------------------------------
    async def serve(self) -> None:
        process.set_options(trap_links=True)
        for spec in self.specs:
            try:
                await self.start(spec)
            except ProcessError as e:
                await self.stop_all()
                raise SupervisorError(
                    f"child {spec.id!r} failed to start: {e.kind}: {e}"
                ) from None
        while True:
            # Events first (a CANCEL must not wait behind queries), then due starts, then
            # whatever comes next; a busy inbox cannot hold up a restart.
            ev = self.ready_event()
            if ev is not None:
                if await self.on_event(ev):
                    return
                continue
            if self.due():
                await self.start_due()
                continue
            try:
                ch, item = await channel.select(self.events, self.inbox, timeout=self.timeout())
            except TimeoutError:
                continue
            if ch is self.events:
                assert isinstance(item, Event)
                if await self.on_event(item):
                    return
            else:
                assert isinstance(item, Message)
                self.answer(item)

    def ready_event(self) -> Event | None:
        if self.backlog:
            return self.backlog.popleft()
        try:
            ev = self.events.receive_nowait()
        except channel.Empty:
            return None
        assert isinstance(ev, Event)
        return ev

    def due(self) -> bool:
        now = time.monotonic()
        return any(t <= now for t in self.pending.values())

    def timeout(self) -> float | None:
        if not self.pending:
            return None
        return max(0.0, min(self.pending.values()) - time.monotonic())

    async def on_event(self, ev: Event) -> bool:
        """Handle one event; True when the supervisor is done (CANCEL)."""
        if ev.kind == process.event.CANCEL:
            _log.info("supervisor %s: CANCEL from %s (reason %r), stopping children",
                      self.me, ev.from_ or "the daemon", ev.reason)
            await self.stop_all()
            return True
        if ev.kind == process.event.EXIT:
            await self.on_exit(ev)
        elif ev.kind == process.event.LINK_DOWN:
            await self.on_link_down(ev)
        return False

    def answer(self, msg: Message) -> None:
        if msg.topic == WHICH_CHILDREN and msg.from_:
            process.send(msg.from_, WHICH_CHILDREN, [[s.id, self.pids[s.id]] for s in self.specs])
        else:
            _log.warning("supervisor %s: dropped message %r", self.me, msg)

    # -- ends and restarts ---------------------------------------------------------------------
    async def on_exit(self, ev: Event) -> None:
        child = self.child_of(ev.from_)
        if child is None:
            return  # a child given up on (see stop), reported late
        self.pids[child] = None
        abnormal = "error" in (ev.result or {})
        if abnormal:
            self.stale_links.add(ev.from_)
        spec, outcome = self.spec(child), _outcome(ev.result)
        if not should_restart(spec.restart, abnormal):
            _log.info("supervisor %s: %s child %r %s ended (%s), not restarted",
                      self.me, spec.restart, child, ev.from_, outcome)
            if spec.restart == "temporary":
                self.forget(child)
            return
        _log.info("supervisor %s: child %r %s ended (%s), %s restart",
                  self.me, child, ev.from_, outcome, self.strategy)
        await self.count_restart(f"child {child!r}: {outcome}")
        stop, start = restart_plan(self.strategy, [s.id for s in self.specs], child)
        for sibling in stop:
            await self.stop(sibling, REASON_RESTART)
        for sibling in start:
            if sibling != child and self.spec(sibling).restart == "temporary":
                self.forget(sibling)  # OTP: a temporary child is never restarted
        self.schedule([c for c in start if c in self.pids])

    async def on_link_down(self, ev: Event) -> None:
        if ev.from_ in self.stale_links:
            self.stale_links.discard(ev.from_)
            return
        if self.child_of(ev.from_) is not None:
            return  # the end of a running child is handled by its EXIT
        # A process linked to the supervisor itself failed: end as an untrapped link would.
        _log.warning("supervisor %s: linked process %s failed (%s), stopping children",
                     self.me, ev.from_, _outcome(ev.result))
        await self.stop_all()
        raise SupervisorError(f"linked process failed ({ev.from_}: {_outcome(ev.result)})")

    async def count_restart(self, why: str) -> None:
        """Record a restart now; past the intensity, stop everything and give up."""
        self.restarts, allowed = add_restart(self.restarts, time.monotonic(), self.intensity)
        if not allowed:
            _log.warning("supervisor %s: restart intensity exceeded (%s), stopping children",
                         self.me, why)
            await self.stop_all()
            raise SupervisorError(f"restart intensity exceeded ({why})")

    def schedule(self, children: list[str]) -> None:
        """Make ``children`` due together, after the backoff delay if any."""
        delay = 0.0
        if self.backoff is not None:
            delay = backoff_delay(self.backoff, len(self.restarts) - 1, self.rng)
        due = time.monotonic() + delay
        for child in children:
            self.pending[child] = due

    def forget(self, child: str) -> None:
        self.specs = [s for s in self.specs if s.id != child]
        self.pids.pop(child, None)
        self.pending.pop(child, None)

    # -- starting ------------------------------------------------------------------------------
    async def start(self, spec: ChildSpec) -> None:
        builder = process.SpawnBuilder()
        if spec.name is not None:
            builder = builder.with_name(spec.name)
        pid = await builder.spawn_linked_monitored(spec.process, spec.host, *spec.args)
        self.pids[spec.id] = pid

    async def start_due(self) -> None:
        """Start every due child, in list order; a failed spawn is retried as a restart."""
        now = time.monotonic()
        for spec in list(self.specs):
            due = self.pending.get(spec.id)
            if due is None or due > now:
                continue
            del self.pending[spec.id]
            try:
                await self.start(spec)
            except ProcessError as e:
                why = f"child {spec.id!r} failed to start: {e.kind}: {e}"
                _log.warning("supervisor %s: %s", self.me, why)
                await self.count_restart(why)
                # in a group, the ones still pending must not start before it
                group = [s.id for s in self.specs if s.id in self.pending]
                self.schedule([spec.id] if self.strategy == "one_for_one"
                              else [spec.id, *group])
                return

    # -- stopping ------------------------------------------------------------------------------
    async def stop_all(self, reason: str = REASON_SHUTDOWN) -> None:
        """Stop every running child, last to first; nothing stays pending."""
        self.pending.clear()
        for spec in reversed(self.specs):
            await self.stop(spec.id, reason)

    async def stop(self, child: str, reason: str) -> None:
        """Signal, wait, then kill one child, confirmed by its monitor's EXIT."""
        self.pending.pop(child, None)
        pid = self.pids.get(child)
        if pid is None:
            return
        self.pids[child] = None
        seconds = self.spec(child).shutdown_seconds
        with suppress(NotFoundError):  # already ended: its EXIT is queued or on its way
            if seconds is None:
                await process.terminate(pid)
            else:
                await process.cancel(pid, round(seconds * 1000), reason=reason)
        wait = _TERMINATE_WAIT if seconds is None else seconds + _DEADLINE_GRACE
        ev = await self.wait_exit(pid, wait)
        if ev is None:
            with suppress(NotFoundError):
                await process.terminate(pid)
            ev = await self.wait_exit(pid, _TERMINATE_WAIT)
        if ev is None:
            _log.error("supervisor %s: child %r %s did not end, giving up on it",
                       self.me, child, pid)
            self.stale_links.add(pid)
        elif ev.result and "error" in ev.result:
            self.stale_links.add(pid)

    async def wait_exit(self, pid: str, timeout: float) -> Event | None:
        """The EXIT of ``pid`` within ``timeout``; other events are kept in the backlog."""
        for i, ev in enumerate(self.backlog):
            if ev.kind == process.event.EXIT and ev.from_ == pid:
                del self.backlog[i]
                return ev
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            try:
                _, item = await channel.select(self.events, timeout=left)
            except TimeoutError:
                return None
            assert isinstance(item, Event)
            if item.kind == process.event.EXIT and item.from_ == pid:
                return item
            self.backlog.append(item)


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
