"""The running supervisor: its event loop, restart strategy and stop sequence.

Responsibility: the state of one running supervisor (``Supervisor``) and the pure strategy
rule (:func:`restart_plan`), as :mod:`actord.supervisor`'s docstring specifies them: start
the children, restart them after their ends, answer ``which_children``, stop them (the
steps of :mod:`actord.core.stop`, with the child's ``shutdown`` as the cancel deadline) and
give up past the intensity. Built on the public ``process`` API only; the specs it gets are
already checked (:mod:`actord.supervisor_spec`).

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
from typing import Any

from actord import channel, process
from actord.core.config import Backoff, Intensity
from actord.core.restart import add_restart, backoff_delay, should_restart
from actord.core.stop import stop_steps
from actord.errors import NotFoundError, ProcessError
from actord.messages import Event, Message
from actord.supervisor_spec import (
    REASON_RESTART,
    REASON_SHUTDOWN,
    WHICH_CHILDREN,
    ChildSpec,
    SupervisorError,
)

_log = logging.getLogger("actord.supervisor")


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


def _outcome(result: dict[str, Any] | None) -> str:
    """How a child ended, for errors and logs."""
    if result and "error" in result:
        return str(result["error"])
    return "normal end"


class Supervisor:
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
        ev: Event | None = None
        for step in stop_steps(seconds):
            with suppress(NotFoundError):  # already ended: its EXIT is queued or on its way
                if step.signal == "cancel" and seconds is not None:
                    await process.cancel(pid, round(seconds * 1000), reason=reason)
                else:
                    await process.terminate(pid)
            ev = await self.wait_exit(pid, step.wait)
            if ev is not None:
                break
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


__all__ = ["Supervisor", "restart_plan"]
