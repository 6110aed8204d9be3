"""Frame dispatch: one frame from a worker, handed to the job that owns it.

SEND comes first and is handled inline: it is the hot path (every message between workers),
so it costs one dict lookup, one int rewrite and one write, with no call of its own. The
other ops go to their module: CALL to ``calls``, EXITED and STARTED to ``exits``, STATS to
``stats``, HEARTBEAT to ``stall``, TRACE to ``traces``.

Invariant: frames are handled in the order they are read, and what they cause is sent in that
order (per-pair order, SPEC 4); a malformed frame never raises out of here: it drops the worker
that sent it (SPEC 10).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from actord.core import wire
from actord.logring import WORKER_RECORD
from actord.router.calls import Calls
from actord.router.slots import WorkerLink
from actord.router.stats import Stats
from actord.router.traces import Traces

log = logging.getLogger("actord.router")
worker_log = logging.getLogger("actord.worker")


class Dispatch(Calls, Stats):
    """``on_frame`` (a Router mixin)."""

    traces: Traces
    direct_ready: Callable[[WorkerLink], None]  # core.py

    def on_frame(self, link: WorkerLink, frame: list[Any]) -> None:
        """Handle one frame from a worker; a malformed one drops the worker."""
        op = frame[0]
        try:
            if op == wire.SEND:
                # hot path: reuse the frame as the DELIVER frame (no re-encoding of the payload)
                entry = self.procs.get(frame[1])
                if entry is None:
                    # slow path: another node's PID is forwarded (nodes.py), else dead
                    if not self._remote(frame):
                        self.dead_letters += 1
                    return
                self.routed += 1
                frame[0] = wire.DELIVER
                dest = entry.worker.conn
                dest.send(frame)
                if dest.write_paused:
                    # flow control: the destination worker is not keeping up; park the
                    # sender's worker until it drains, so router buffers stay bounded
                    link.conn.block_reading_on(dest)
            elif op == wire.CALL:
                self._on_call(link, frame)
            elif op == wire.EXITED:
                if frame[1] in link.pids:
                    self.process_exited(frame[1], frame[2])
            elif op == wire.LOG:
                _, level, name, message, pid, *tb = frame
                if len(tb) > 1 or (tb and type(tb[0]) is not str):
                    raise ValueError("bad LOG traceback")
                # its args are the record's own fields, for the log ring and the JSON format
                worker_log.log(int(level), WORKER_RECORD, link.tag, pid, name, message,
                               extra={"actord_traceback": tb[0]} if tb else None)
            elif op == wire.UPGRADED:
                entry = self.procs.get(frame[1])
                if entry is not None and entry.worker is link:
                    entry.id = str(frame[2])
            elif op == wire.STATS or op == wire.INFO:  # INFO: the same waits (stats.py)
                self._stats_answered(frame)
            elif op == wire.HEARTBEAT:
                self.stalls.heard(link)
            elif op == wire.HELLO:
                pass
            elif op == wire.STARTED:
                if frame[1] in link.pids:  # only the worker that runs it may say so
                    self._started(frame[1])
            elif op == wire.TRACE:
                self.traces.frame(link, frame)
            elif op == wire.FENCE:
                self.fence_from_worker(link, frame[1])
            elif op == wire.PAIR_BREAK:
                self.break_from_worker(link, frame[1], frame[2], frame[3])
            elif op == wire.DIRECT_READY:
                self.direct_ready(link)
            elif op == wire.DEAD_LETTERS:
                if type(frame[1]) is not int or frame[1] < 0:
                    raise ValueError("bad DEAD_LETTERS")
                self.dead_letters += frame[1]
            else:
                raise ValueError(f"unknown op {op}")
        except (ValueError, TypeError, LookupError, AttributeError, ArithmeticError) as e:
            log.error("worker %s sent a malformed frame (%s: %s); replacing it",
                      link.tag, type(e).__name__, e)
            link.conn.abort("malformed frame")
