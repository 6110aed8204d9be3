"""Process lifecycles: the task that runs a process, its upgrades, its one end, crash reports.

Responsibility: run a process's entry as its task (following upgrades: old tasks cancelled,
queued mail put back as held, UPGRADED sent, the new code run under the same PID), turn
every ending (return, exception, terminate, cancel deadline, untrapped LINK_DOWN, failed
upgrade) into exactly one ``EXITED`` frame, and every abnormal end into one crash report in
the log (its traceback when an exception ended it; at most ``CRASH_REPORTS_PER_SECOND`` a
second, the rest counted); own the tasks a process starts (``task_factory``) and cancel them
at its end.
Invariants: a process is in ``procs`` iff it is alive; once dead it never reports again; a
result over ``max_frame`` ends its process with ``"result too large"``, so no value a process
makes can cost the worker its router link.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from typing import Any

from actord.core import wire
from actord.core.wire import ExitResult, exit_error, exit_value, is_abnormal, value_of
from actord.kernel import Upgrade, current
from actord.worker.entries import Entries
from actord.worker.proc import Proc, TaskList

#: Crash reports: one record per abnormal end (see ``Runtime._report``).
crash_log = logging.getLogger("actord.crash")
#: At most this many crash reports a second per worker; the rest are counted and summarised.
CRASH_REPORTS_PER_SECOND = 20
#: Longest error string a crash report quotes (the EXITED result keeps it whole).
REPORT_ERROR_LIMIT = 4096
#: The error of a process its cancel deadline ended (reported as a warning, not a crash).
DEADLINE_EXCEEDED = "cancel deadline exceeded"

_encode_value = wire.encode_value
_encode = wire.encode
_Task = asyncio.Task
_current_proc = current.get


def error_string(exc: BaseException) -> str:
    """The SPEC's ``"ExcType: message"`` for an exception that ended a process (clipped to
    ``wire.MAX_TEXT`` characters: it travels in EXITED and EXIT frames and log lines)."""
    return wire.clip_text(f"{type(exc).__name__}: {exc}")


class Lifecycle(Entries):
    """Process lifecycles for ``Runtime``."""

    crash_limit: CrashLimit  # made by Runtime

    async def _run(self, proc: Proc, entry: str, args: list[Any]) -> None:
        """The body of a process task: run the entry, follow upgrades, report the end."""
        current.set(proc)
        while True:
            result: ExitResult = {}
            upgrade: tuple[str, list[Any]] | None = None
            try:
                fn = self.load_entry(entry, reload=False)
                result = exit_value(await fn(*args))
            except Upgrade as up:
                upgrade = (up.id, up.args_)
            except asyncio.CancelledError as e:
                if proc.alive and proc.upgrade_request is not None:  # upgrade from a helper task
                    upgrade, proc.upgrade_request = proc.upgrade_request, None
                else:  # killed (reported by kill), or its task cancelled by its own code
                    result = self._crashed(proc, e, "process terminated")
            except Exception as e:  # the one place actor failures are caught: an abnormal end
                result = self._crashed(proc, e)
            except BaseExceptionGroup as eg:
                # an upgrade from inside a TaskGroup arrives wrapped in a group
                found = _upgrade_in(eg)
                if found is not None:
                    upgrade = (found.id, found.args_)
                else:
                    result = self._crashed(proc, eg)
            except BaseException as e:
                # SystemExit, KeyboardInterrupt...: they end this process, never the worker
                # (asyncio would re-raise them out of the event loop and kill every process)
                result = self._crashed(proc, e)
            if upgrade is not None:
                ok, entry_or_error = self._prepare_upgrade(proc, *upgrade)
                if ok:
                    entry, args = entry_or_error, upgrade[1]
                    continue
                result = exit_error(wire.clip_text(entry_or_error))
            break
        if upgrade is not None and proc.alive:  # an upgrade that failed: its error ends it
            self._report(proc, logging.ERROR, result["error"])
        try:
            self.finish(proc, result)
        finally:
            # break the cycle proc -> task -> task context -> proc, so an ended process is
            # freed by reference counting at once (the worker runs with a lazy cyclic GC)
            current.set(None)

    def _crashed(self, proc: Proc, exc: BaseException, error: str | None = None
                 ) -> ExitResult:
        """The result of a process ended by ``exc``, reported with its traceback (unless the
        process is already dead: then whoever ended it reported the end)."""
        if error is None:
            error = error_string(exc)
        if proc.alive:
            self._report(proc, logging.ERROR, error, exc)
        return exit_error(error)

    def _report(self, proc: Proc, level: int, error: str, exc: BaseException | None = None
                ) -> None:
        """Log one abnormal end: the process's id and error (tagged with its PID), and the
        traceback of the exception that ended it, if any; rate-limited per worker."""
        if not self.crash_limit.allow():
            return
        exc_info = None
        if exc is not None:
            tb = exc.__traceback__
            if tb is not None and tb.tb_next is not None:
                tb = tb.tb_next  # skip _run's own frame: the traceback starts in actor code
            exc_info = (type(exc), exc, tb)
        if len(error) > REPORT_ERROR_LIMIT:
            error = f"{error[:REPORT_ERROR_LIMIT]}... ({len(error)} characters)"
        token = current.set(proc)  # tags the record with the process's PID
        try:
            crash_log.log(level, "process %s %s: %s", proc.id,
                          "crashed" if exc is not None else "ended", error, exc_info=exc_info)
        finally:
            current.reset(token)

    def _prepare_upgrade(self, proc: Proc, id: str, args: list[Any]) -> tuple[bool, str]:
        """Unwind old tasks and channels; (True, entry) to go on, or (False, error)."""
        self._cancel_tasks(proc)
        entry = self.processes.get(id)
        if entry is None:
            return False, f"upgrade: NotFoundError: unknown process id {id!r}"
        try:
            self.load_entry(entry, reload=True)
        except Exception as e:
            return False, f"upgrade: {error_string(e)}"
        proc.reset_channels()
        proc.id = id
        self.conn.send([wire.UPGRADED, proc.pid, id])
        return True, entry

    def finish(self, proc: Proc, result: ExitResult) -> None:
        """Report the end of a process that has not been reported yet."""
        if not proc.alive:
            return
        self._mark_dead(proc)
        error = None  # set when the result cannot be carried: the end becomes abnormal
        try:
            data = _encode([wire.EXITED, proc.pid, result])
        except (TypeError, ValueError, OverflowError):
            bad = type(value_of(result)).__name__
            error = f"InvalidError: result of type {bad} is not a msgpack value"
        else:
            if len(data) > self.max_frame and not is_abnormal(result):  # rare: measure the value
                size = len(_encode_value(value_of(result)))
                if size > self.max_frame:
                    error = f"result too large: {size} bytes > max_frame ({self.max_frame})"
        if error is not None:
            self._report(proc, logging.ERROR, error)
            data = _encode([wire.EXITED, proc.pid, exit_error(error)])
        self.conn.send_encoded(data)
        self._cancel_tasks(proc)

    def kill(self, proc: Proc, error: str, report: bool = True) -> None:
        """Hard stop: the process is dead now and its tasks are cancelled; the end is
        reported (one line) unless ``report`` is False."""
        if not proc.alive:
            return
        if report:
            level = logging.WARNING if error == DEADLINE_EXCEEDED else logging.INFO
            self._report(proc, level, error)
        self._mark_dead(proc)
        self.conn.send([wire.EXITED, proc.pid, exit_error(error)])
        if proc.task is not None:
            proc.task.cancel()
        self._cancel_tasks(proc)

    def _mark_dead(self, proc: Proc) -> None:
        if self.direct is not None:  # its messages to other nodes before its end (direct.py)
            self.direct.fence()
        # the exec children it waited for are cancelled by the router on its EXITED
        proc.execs = None
        proc.alive = False
        self.ended_sent += proc.sent  # a dead process sends nothing more (require_process)
        self.ended_received += proc.received
        self.procs.pop(proc.pid, None)
        if proc.cancel_timer is not None:
            proc.cancel_timer.cancel()
            proc.cancel_timer = None

    def _cancel_tasks(self, proc: Proc) -> None:
        tasks = proc.tasks
        if not tasks:  # most processes start no task of their own: skip current_task()
            return
        proc.tasks = None
        me = asyncio.current_task()
        for task in tasks:  # detached above: a task created meanwhile goes to a new list
            if task is not me and task is not proc.task and not task.done():
                task.cancel()

    def _arm_deadline(self, proc: Proc, deadline: float) -> None:
        when = self.loop.time() + max(0.0, deadline - time.time())
        if proc.cancel_at is not None and proc.cancel_at <= when:
            return  # an earlier deadline is already armed
        if proc.cancel_timer is not None:
            proc.cancel_timer.cancel()
        proc.cancel_at = when
        proc.cancel_timer = self.loop.call_at(when, self.kill, proc, DEADLINE_EXCEEDED)


class CrashLimit:
    """At most ``limit`` crash reports per one-second window; past that, reports are only
    counted, and one line says how many were suppressed when the window ends."""

    def __init__(self, loop: asyncio.AbstractEventLoop, limit: int) -> None:
        self.loop = loop
        self.limit = limit
        self.window_end = 0.0
        self.count = 0
        self.suppressed = 0
        self.timer: asyncio.TimerHandle | None = None

    def allow(self) -> bool:
        """True if one more report may be logged now."""
        now = self.loop.time()
        if now >= self.window_end:
            self.window_end = now + 1.0
            self.count = 0
        if self.count < self.limit:
            self.count += 1
            return True
        self.suppressed += 1
        if self.timer is None:  # an empty context: the summary belongs to no process
            self.timer = self.loop.call_at(self.window_end, self._summarise,
                                           context=contextvars.Context())
        return False

    def _summarise(self) -> None:
        self.timer = None
        n, self.suppressed = self.suppressed, 0
        crash_log.warning("%d crash reports suppressed (more than %d a second on this worker)",
                          n, self.limit)


def task_factory(loop: asyncio.AbstractEventLoop, coro: Any, **kw: Any) -> asyncio.Task[Any]:
    """The worker loop's task factory: a task started by process code is owned by that
    process, whose end cancels it (process tasks themselves are built without it)."""
    task = _Task(coro, loop=loop, **kw)
    proc = _current_proc()
    if proc is not None:  # inlined ownership (runs for every task process code starts)
        tasks = proc.tasks
        if tasks is None:
            tasks = proc.tasks = TaskList()
        tasks.append(task)
        if len(tasks) > tasks.limit:
            tasks.prune()
    return task


def _upgrade_in(group: BaseExceptionGroup[Any]) -> Upgrade | None:
    """The first ``Upgrade`` inside a (nested) exception group, if any."""
    for exc in group.exceptions:
        if isinstance(exc, Upgrade):
            return exc
        if isinstance(exc, BaseExceptionGroup):
            found = _upgrade_in(exc)
            if found is not None:
                return found
    return None
