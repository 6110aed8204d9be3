"""Frames from the router: one handler per frame kind the worker reads.

Responsibility: turn each router frame into its effect on this worker's processes and tables
(deliver a message, start a process, queue an event, kill, answer STATS, take INIT/NAME/
PROCESSES/SECURITY updates, shut down). The router is trusted: it validated every frame, so
nothing here checks a frame's shape. Invariant: a frame for a PID that is not alive here has
no effect (a message to it is counted as a dead letter). REPLY, the answer to a call, is
handled beside the calls (``worker.calls``).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import sys
import time
from collections.abc import Callable
from typing import Any

from actord.core import wire
from actord.core.wire import Start
from actord.messages import Event, Message
from actord.security import Guard
from actord.worker.introspect import call_futures, info_of, state_of
from actord.worker.lifecycle import Lifecycle
from actord.worker.proc import Proc
from actord.worker.top import TopCounts

_Task = asyncio.Task
_START_FIELDS = wire.START_FIELDS
# The context of a process spawned without one; never mutated (ctx only reads or copies it),
# so all such processes share it.
_NO_CONTEXT: dict[str, Any] = {}


class RouterFrames(Lifecycle):
    """The frame handlers of ``Runtime`` (on ``Lifecycle``: frames start and end processes)."""

    _handlers: dict[int, Callable[[list[Any]], None]]  # frame kind -> handler: see Runtime
    top_counts: TopCounts | None = None  # made by the first top request (``_on_top``)

    def on_frame(self, frame: list[Any]) -> None:
        """Dispatch one router frame (the router is trusted: it validated everything)."""
        self._handlers[frame[0]](frame)

    def _on_deliver(self, frame: list[Any]) -> None:
        proc = self.procs.get(frame[1])
        if proc is None:
            self.dead_letters += 1
            return
        proc.deliver(Message(frame[3], frame[2], wire.decode_value(frame[4])))

    def _on_init(self, frame: list[Any]) -> None:
        init = frame[1]
        if "log_level" in init:  # the daemon's log_level reaches actor code's loggers
            logging.getLogger().setLevel(str(init["log_level"]).upper())
        if "security" in init:
            self.guard = Guard.from_builtins(init["security"])
        for path in init.get("python_path", ()):
            if path not in sys.path:
                sys.path.insert(0, path)
        self.processes = dict(init.get("processes", {}))
        self.names = dict(init.get("names", {}))
        self._start_heartbeat(init.get("heartbeat"))
        if "cluster" in init:
            from actord.worker.direct import DirectLink  # only a clustered node's workers

            self.direct = DirectLink(self, init["cluster"])
            self.loop.create_task(self.direct.start())

    def _on_peers(self, frame: list[Any]) -> None:
        self.direct.set_peers(frame[1])  # type: ignore[union-attr]  # PEERS: a cluster's

    def _on_fence(self, frame: list[Any]) -> None:
        self.direct.on_fence(frame, self._handlers)  # type: ignore[union-attr]

    def _on_gone(self, frame: list[Any]) -> None:
        self.direct.gone(frame[1], frame[2])  # type: ignore[union-attr]

    def _start_heartbeat(self, interval: float | None) -> None:
        """Send HEARTBEAT every ``interval`` s from a timer of this loop until the router link
        closes: silence tells the router the loop is blocked (see actord/router/stall.py)."""
        if not interval:
            return
        frame = [wire.HEARTBEAT]

        def beat() -> None:
            if not self.conn.closed:
                self.conn.send(frame)
                self.loop.call_later(interval, beat)

        beat()

    def _on_processes(self, frame: list[Any]) -> None:
        self.processes = dict(frame[1])

    def _on_security(self, frame: list[Any]) -> None:
        """Reload: new policies apply from the next check on (evaluators are re-fetched)."""
        self.guard = Guard.from_builtins(frame[1])

    def _on_name(self, frame: list[Any]) -> None:
        if frame[2] is None:
            self.names.pop(frame[1], None)
        else:
            self.names[frame[1]] = frame[2]


    def _on_start(self, frame: list[Any]) -> None:
        if len(frame) > _START_FIELDS:  # ends with wire.START_ACK: a SPAWN_ACK spawn
            self._start_acked(frame)
            return
        # a wire.Start, by position (one unpack, no attribute reads: the spawn path)
        _, pid, id, entry, args, context, actor, scope, messages = frame
        proc = Proc(pid, id, context or _NO_CONTEXT, actor, scope)
        self.procs[pid] = proc
        if messages:
            for topic, payload in messages:
                proc.deliver(Message(topic, "", payload))
        if self.direct is not None:  # messages from other nodes that came before START
            for msg in self.direct.started(pid):
                proc.deliver(msg)
        # The task is built directly, not through loop.create_task: that would call our
        # Python task factory, which only tracks tasks started by process code anyway.
        proc.task = _Task(self._run(proc, entry, args), loop=self.loop,
                          context=contextvars.Context())

    def _start_acked(self, frame: list[Any]) -> None:
        """START of a SPAWN_ACK spawn: load the entry first; STARTED once the task exists,
        or the process ends at once (one EXITED, no STARTED) with the load error."""
        start = Start._make(frame[:_START_FIELDS])
        try:
            self.load_entry(start.entry, reload=False)
        except BaseException as e:  # SystemExit at import...: ends this process, not the worker
            proc = Proc(start.pid, start.id, start.ctx or _NO_CONTEXT, start.actor, start.scope)
            self.procs[start.pid] = proc
            self.finish(proc, self._crashed(proc, e))  # one crash report, with the traceback
            return
        self._on_start(list(start))  # the entry is cached now: the task finds it at once
        self.conn.send([wire.STARTED, start.pid])

    def _on_event(self, frame: list[Any]) -> None:
        _, dest, kind, from_, result, deadline, reason = frame
        proc = self.procs.get(dest)
        if proc is None:
            return
        if kind == wire.EV_EXEC:
            fut = proc.execs.get(from_) if proc.execs else None
            if fut is not None and not fut.done():
                fut.set_result(result)
            return
        if kind == wire.EV_LINK_DOWN and not proc.trap_links:
            self.kill(proc, "linked process failed")
            return
        if kind == wire.EV_CANCEL and deadline is not None:
            self._arm_deadline(proc, deadline)
        proc.deliver_event(Event(kind, from_, result, deadline, reason))

    def _on_kill(self, frame: list[Any]) -> None:
        proc = self.procs.get(frame[1])
        if proc is not None:
            self.kill(proc, frame[2])

    def _on_top(self, frame: list[Any]) -> None:
        """``[TOP_REQ, req, n, sort]``: the totals of a metrics STATS answer and this worker's
        ``n`` busiest processes by ``sort`` (worker/top.py)."""
        _, req, n, sort = frame
        if self.top_counts is None:
            self.top_counts = TopCounts()
        rows, mailbox = self.top_counts.busiest(self.procs.values(), n, sort, time.monotonic())
        sent, received = self.message_totals()
        self.conn.send([wire.STATS, req, {
            "dead_letters": self.dead_letters, "sent": sent, "received": received,
            "mailbox": mailbox, "processes": rows,
        }])

    def _on_stats(self, frame: list[Any]) -> None:
        """``[STATS_REQ, req(, True)]``: the worker's counters, with every process (ps) or,
        given True, only the mailbox total (metrics: no list of thousands to send)."""
        sent, received = self.message_totals()
        stats: dict[str, Any] = {
            "dead_letters": self.dead_letters, "sent": sent, "received": received,
        }
        if self.direct is not None:
            stats["direct"] = self.direct.stats()
        if len(frame) > 2 and frame[2]:
            stats["mailbox"] = sum(p.mailbox_depth() for p in self.procs.values())
        else:
            calls = call_futures(self.pending, self.procs)
            stats["processes"] = [
                {"pid": p.pid, "id": p.id, "mailbox": p.mailbox_depth(),
                 "state": state_of(p, calls), "sent": p.sent, "received": p.received}
                for p in self.procs.values()
            ]
        self.conn.send([wire.STATS, frame[1], stats])

    def _on_info(self, frame: list[Any]) -> None:
        """``[INFO_REQ, req, pid]``: the worker's part of ``actord info`` ({}: not alive)."""
        proc = self.procs.get(frame[2])
        info = {} if proc is None else info_of(proc, call_futures(self.pending, self.procs))
        self.conn.send([wire.INFO, frame[1], info])

    def _on_shutdown(self, frame: list[Any]) -> None:
        # no report per process: the daemon logs how many it had to terminate
        for proc in list(self.procs.values()):
            self.kill(proc, "process terminated", report=False)
        self.stopping.set()

