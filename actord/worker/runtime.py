"""The worker's runtime: its process table, frames from the router, and process lifecycles.

One ``Runtime`` per worker OS process. It starts processes as asyncio tasks, delivers
messages and events to them, sends their calls to the router and turns every ending
(return, exception, terminate, cancel deadline, untrapped LINK_DOWN, failed upgrade) into
exactly one ``EXITED`` frame, and every abnormal end into one crash report in the log
(its traceback when an exception ended it; at most ``CRASH_REPORTS_PER_SECOND`` a second,
the rest counted). Invariants: a process is in ``procs`` iff it is alive; once
dead it never reports again; same-worker messages skip the router but keep per-pair order
because delivery to a local process is immediate; no frame it sends breaks ``wire``'s size
rule (a value over ``max_frame`` fails its call, a result over it ends its process with
``"result too large"``), so no value a process makes can cost the worker its router link.
"""

from __future__ import annotations

import asyncio
import contextvars
import importlib
import logging
import os
import sys
import time
from collections.abc import Callable
from types import ModuleType
from typing import Any

from actord import ids
from actord.core import wire
from actord.core.config import SecurityConfig
from actord.errors import InvalidError, NotFoundError, ProcessError, from_kind
from actord.messages import Event, Message
from actord.security import Guard
from actord.transport import FrameProtocol
from actord.worker.proc import Proc, TaskList

log = logging.getLogger("actord.worker")
#: Crash reports: one record per abnormal end (see ``Runtime._report``).
crash_log = logging.getLogger("actord.crash")
#: At most this many crash reports a second per worker; the rest are counted and summarised.
CRASH_REPORTS_PER_SECOND = 20
#: Longest error string a crash report quotes (the EXITED result keeps it whole).
REPORT_ERROR_LIMIT = 4096

_copy_value = wire.copy_value
_encode_value = wire.encode_value
_encode = wire.encode
_ValueTooLarge = wire.ValueTooLarge
_MAX_ADDRESS = wire.MAX_ADDRESS
_Task = asyncio.Task
# The context of a process spawned without one; never mutated (ctx only reads or copies it),
# so all such processes share it.
_NO_CONTEXT: dict[str, Any] = {}

#: The process whose code is running (set inside each process task, inherited by its tasks).
current: contextvars.ContextVar[Proc | None] = contextvars.ContextVar("actord_proc", default=None)
_current_proc = current.get


class Upgrade(BaseException):
    """Raised by ``process.upgrade`` to unwind the current code (BaseException: not caught
    by the ``except Exception`` of actor code)."""

    def __init__(self, id: str, args: list[Any]) -> None:
        super().__init__(id)
        self.id = id
        self.args_ = args


DEADLINE_EXCEEDED = "cancel deadline exceeded"


def error_string(exc: BaseException) -> str:
    """The SPEC's ``"ExcType: message"`` for an exception that ended a process (clipped to
    ``wire.MAX_TEXT`` characters: it travels in EXITED and EXIT frames and log lines)."""
    return wire.clip_text(f"{type(exc).__name__}: {exc}")


class Runtime:
    """State and frame handlers of one worker."""

    instance: Runtime | None = None

    def __init__(self, conn: FrameProtocol, host: str, index: int,
                 max_frame: int = wire.DEFAULT_MAX_FRAME) -> None:
        self.conn = conn
        self.host = host
        self.index = index
        self.max_frame = max_frame  # the largest value a process may send (wire's size rule)
        self.loop = asyncio.get_running_loop()
        self.procs: dict[str, Proc] = {}
        self.names: dict[str, str] = {}
        self.guard = Guard(SecurityConfig())  # replaced by INIT's before any process runs
        self.processes: dict[str, str] = {}  # process id -> entry
        self.pending: dict[int, asyncio.Future[Any]] = {}
        # request id -> caller, for the spawn calls of exec (see ``_on_reply``)
        self.exec_spawns: dict[int, Proc] = {}
        self.next_req = 0
        self.dead_letters = 0
        # canonical PIDs of other workers already checked by ``send`` (bounded, see there)
        self._checked_pids: set[str] = set()
        self.stopping = asyncio.Event()
        self._module_stamp: dict[str, tuple[int, int]] = {}
        # entry -> (module name, attribute, module, function): see ``load_entry``
        self._entries: dict[str, tuple[str, str, ModuleType, Callable[..., Any]]] = {}
        self.crash_limit = CrashLimit(self.loop, CRASH_REPORTS_PER_SECOND)
        self._handlers: dict[int, Callable[[list[Any]], None]] = {
            wire.DELIVER: self._on_deliver,
            wire.START: self._on_start,
            wire.EVENT: self._on_event,
            wire.REPLY: self._on_reply,
            wire.NAME: self._on_name,
            wire.KILL: self._on_kill,
            wire.STATS_REQ: self._on_stats,
            wire.SHUTDOWN: self._on_shutdown,
            wire.INIT: self._on_init,
            wire.PROCESSES: self._on_processes,
            wire.SECURITY: self._on_security,
        }
        Runtime.instance = self

    # -- frames from the router ------------------------------------------------------------------
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

    def _on_reply(self, frame: list[Any]) -> None:
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

    def _on_start(self, frame: list[Any]) -> None:
        if len(frame) > 9:  # SPAWN_ACK
            self._start_acked(frame)
            return
        _, pid, id, entry, args, context, actor, scope, messages = frame
        proc = Proc(pid, id, context or _NO_CONTEXT, actor, scope)
        self.procs[pid] = proc
        if messages:
            for topic, payload in messages:
                proc.deliver(Message(topic, "", payload))
        # The task is built directly, not through loop.create_task: that would call our
        # Python task factory, which only tracks tasks started by process code anyway.
        proc.task = _Task(self._run(proc, entry, args), loop=self.loop,
                          context=contextvars.Context())

    def _start_acked(self, frame: list[Any]) -> None:
        """START of a SPAWN_ACK spawn: load the entry first; STARTED once the task exists,
        or the process ends at once (one EXITED, no STARTED) with the load error."""
        try:
            self.load_entry(frame[3], reload=False)
        except BaseException as e:  # SystemExit at import...: ends this process, not the worker
            _, pid, id, _entry, _args, context, actor, scope, _messages, _ack = frame
            proc = Proc(pid, id, context or _NO_CONTEXT, actor, scope)
            self.procs[pid] = proc
            self.finish(proc, self._crashed(proc, e))  # one crash report, with the traceback
            return
        self._on_start(frame[:9])  # the entry is cached now: the task finds it at once
        self.conn.send([wire.STARTED, frame[1]])

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

    def _on_stats(self, frame: list[Any]) -> None:
        procs = [
            {"pid": p.pid, "id": p.id, "mailbox": p.mailbox_depth(), "state": "running"}
            for p in self.procs.values()
        ]
        self.conn.send(
            [wire.STATS, frame[1], {"processes": procs, "dead_letters": self.dead_letters}]
        )

    def _on_shutdown(self, frame: list[Any]) -> None:
        # no report per process: the daemon logs how many it had to terminate
        for proc in list(self.procs.values()):
            self.kill(proc, "process terminated", report=False)
        self.stopping.set()

    # -- process lifecycle -----------------------------------------------------------------------
    async def _run(self, proc: Proc, entry: str, args: list[Any]) -> None:
        """The body of a process task: run the entry, follow upgrades, report the end."""
        current.set(proc)
        while True:
            result: dict[str, Any] = {}
            upgrade: tuple[str, list[Any]] | None = None
            try:
                fn = self.load_entry(entry, reload=False)
                result = {"value": await fn(*args)}
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
                up = _upgrade_in(eg)
                if up is not None:
                    upgrade = (up.id, up.args_)
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
                result = {"error": wire.clip_text(entry_or_error)}
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
                 ) -> dict[str, Any]:
        """The result of a process ended by ``exc``, reported with its traceback (unless the
        process is already dead: then whoever ended it reported the end)."""
        if error is None:
            error = error_string(exc)
        if proc.alive:
            self._report(proc, logging.ERROR, error, exc)
        return {"error": error}

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

    def load_entry(self, entry: str, *, reload: bool) -> Callable[..., Any]:
        """Import ``module:function``; with ``reload``, re-import a module changed on disk."""
        if not reload:
            # Every spawn loads its entry: reuse the last answer while it is still what a
            # fresh lookup would give (same module object imported, attribute not rebound,
            # which also covers a reload by an upgrade), skipping the coroutine check.
            cached = self._entries.get(entry)
            if cached is not None:
                module_name, attr, module, fn = cached
                if sys.modules.get(module_name) is module and getattr(module, attr, None) is fn:
                    return fn
        module_name, _, attr = entry.partition(":")
        module = sys.modules.get(module_name)
        if module is None:
            importlib.invalidate_caches()
            module = importlib.import_module(module_name)
            self._stamp_new_modules()
        elif reload:
            # A module with no stamp was imported outside load_entry (lazily, by actor code)
            # and is taken as current: only a change seen since a stamp triggers a re-import.
            stamp = self._module_stamp.setdefault(module_name, _stamp(module))
            if _stamp(module) != stamp:
                module = importlib.reload(module)
                self._module_stamp[module_name] = _stamp(module)
        fn = getattr(module, attr, None)
        if fn is None:
            raise NotFoundError(f"entry {entry!r}: module has no {attr!r}")
        if not asyncio.iscoroutinefunction(fn):
            raise InvalidError(f"entry {entry!r} is not an async function")
        self._entries[entry] = (module_name, attr, module, fn)
        return fn  # type: ignore[no-any-return]

    def _stamp_new_modules(self) -> None:
        """Remember the on-disk stamp of every module imported so far (an entry's imports
        included), so upgrade re-imports a module only when its file changed since."""
        stamps = self._module_stamp
        for name, module in list(sys.modules.items()):
            if name not in stamps and module is not None:
                stamps[name] = _stamp(module)

    def finish(self, proc: Proc, result: dict[str, Any]) -> None:
        """Report the end of a process that has not been reported yet."""
        if not proc.alive:
            return
        self._mark_dead(proc)
        error = None  # set when the result cannot be carried: the end becomes abnormal
        try:
            data = _encode([wire.EXITED, proc.pid, result])
        except (TypeError, ValueError, OverflowError):
            bad = type(result.get("value")).__name__
            error = f"InvalidError: result of type {bad} is not a msgpack value"
        else:
            if len(data) > self.max_frame and "value" in result:  # rare: measure the value
                size = len(_encode_value(result["value"]))
                if size > self.max_frame:
                    error = f"result too large: {size} bytes > max_frame ({self.max_frame})"
        if error is not None:
            self._report(proc, logging.ERROR, error)
            data = _encode([wire.EXITED, proc.pid, {"error": error}])
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
        self.conn.send([wire.EXITED, proc.pid, {"error": error}])
        if proc.task is not None:
            proc.task.cancel()
        self._cancel_tasks(proc)

    def _mark_dead(self, proc: Proc) -> None:
        # the exec children it waited for are cancelled by the router on its EXITED
        proc.execs = None
        proc.alive = False
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

    # -- calls made by processes -----------------------------------------------------------------
    def permit(self, proc: Proc, action: str, resource: str) -> None:
        """PERMISSION_DENIED unless ``proc`` may do ``action`` on ``resource`` (SPEC 7)."""
        cached = proc.evaluator
        if cached is None or cached[0] is not self.guard:
            evaluator = self.guard.evaluator(proc.actor, proc.scope)
            cached = proc.evaluator = (self.guard, evaluator, evaluator.fixed is True)
        if not cached[1].check(action, resource, proc.meta):
            self.guard.require(cached[1], [(action, resource)], proc.meta)

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
            # scalars, and checks the size rule); else the encoded payload the router
            # forwards without decoding it.
            value = (_copy_value(payload, max_frame) if target is not None
                     else _encode_value(payload))
        except _ValueTooLarge as e:
            raise InvalidError(str(e)) from None
        except (TypeError, ValueError, OverflowError) as e:
            raise InvalidError(f"payload is not a msgpack value: {e}") from None
        if target is not None:
            # delivered now, before this call returns: that keeps per-pair order locally
            target.deliver(Message(topic, proc.pid, value))
        else:
            if len(value) > max_frame:
                raise InvalidError(wire.too_large(len(value), max_frame))
            self.conn.send([wire.SEND, dest, proc.pid, topic, value])

    def _check_pid(self, dest: str) -> str:
        """The canonical spelling of ``dest`` (INVALID if malformed), remembered when it
        was already canonical; the memory is bounded by forgetting everything at 64k."""
        pid = ids.canonical_pid(dest)
        if pid == dest:
            if len(self._checked_pids) >= 65536:
                self._checked_pids.clear()
            self._checked_pids.add(pid)
        return pid

    def resolve(self, dest: object) -> str:
        """A canonical PID from a PID (INVALID if malformed) or a registered name
        (NOT_FOUND for an unknown name)."""
        if not isinstance(dest, str) or not dest:
            raise InvalidError(f"bad destination {dest!r}: expected a PID or a name")
        if dest[0] == "{":
            return dest if dest in self.procs else ids.canonical_pid(dest)
        pid = self.names.get(dest)
        if pid is None:
            raise NotFoundError(f"no process registered as {dest!r}")
        return pid

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
        self.conn.send_encoded(data)
        fut: asyncio.Future[Any] = self.loop.create_future()
        self.pending[req] = fut
        if exec_caller:
            self.exec_spawns[req] = proc
        return fut

    async def exec(self, proc: Proc, args: list[Any], timeout: float | None) -> Any:
        """Spawn an exec child and wait for its result (SPEC: ``exec``).

        A caller that stops waiting (timeout, its task cancelled, its process ended) leaves
        the child a CANCEL, so an abandoned child is asked to stop rather than forgotten.
        """
        from actord.errors import ProcessFailedError

        child = await self.request(proc, "spawn", args, exec_caller=True)
        fut = proc.execs[child]  # registered by _on_reply
        try:
            async with asyncio.timeout(timeout):
                result: dict[str, Any] = await fut
        except TimeoutError:
            self._abandon_exec(proc, child, "exec timeout")
            raise
        except BaseException:
            self._abandon_exec(proc, child, "exec cancelled")
            raise
        finally:
            if proc.execs:
                proc.execs.pop(child, None)
        if "error" in result:
            raise ProcessFailedError(
                f"{child} failed: {result['error']}", pid=child, error=result["error"]
            )
        return result.get("value")

    def _abandon_exec(self, proc: Proc, child: str, reason: str) -> None:
        """CANCEL an exec child nobody waits for any more (no-op once ``proc`` is dead)."""
        if proc.alive:
            self.conn.send([wire.CALL, 0, proc.pid, "cancel", {"dest": child, "reason": reason}])


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


def _stamp(module: ModuleType) -> tuple[int, int]:
    path = getattr(module, "__file__", None)
    if not path:
        return (0, 0)
    try:
        st = os.stat(path)
    except OSError:
        return (0, 0)
    return (st.st_mtime_ns, st.st_size)


def require_process() -> tuple[Runtime, Proc]:
    """The runtime and the calling process; INVALID outside a process."""
    proc = current.get()
    if proc is not None and proc.alive:  # the common case first: one test, no raise
        rt = Runtime.instance
        if rt is not None:
            return rt, proc
    rt = Runtime.instance
    if proc is None or rt is None:
        raise InvalidError("not called from inside an actord process")
    if not proc.alive:
        # a terminated process runs no more code: unwind whatever still runs
        raise asyncio.CancelledError()
    return rt, proc


__all__ = ["ProcessError", "Runtime", "Upgrade", "current", "require_process"]
