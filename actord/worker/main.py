"""A worker OS process's ``main()``: set-up, the router connection, logging, exit.

Logging: the root logger's one handler sends each record to the daemon as a LOG frame tagged
with the current process's PID, at the daemon's ``log_level`` (INIT); ``sys.stdout`` and
``sys.stderr`` are replaced by line writers whose lines become such records (loggers
``stdout`` at INFO, ``stderr`` at WARNING). The real streams stay for the worker's last words.

The daemon starts each worker with fork+exec (``python -m actord.worker``), so no event loop
state is ever inherited across a fork. A worker dies with the daemon: it asks the kernel for
SIGTERM when its parent dies and also treats EOF on the router socket as the end; either way
it SIGKILLs every OS process below it (whatever session or group actor code put them in), then
its whole process group, itself included.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import gc
import io
import logging
import os
import signal
import socket
import sys
import threading
import traceback
from typing import Any

import uvloop

from actord import proctable
from actord.core import wire
from actord.kernel import current
from actord.transport import FrameProtocol
from actord.worker.lifecycle import task_factory
from actord.worker.runtime import Runtime

PR_SET_NAME = 15
PR_SET_PDEATHSIG = 1


def _prctl(option: int, arg: int | bytes) -> None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(option, arg, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def _die_with_group(*_: Any) -> None:
    """Kill this worker and every OS process it or its actors started."""
    try:
        with contextlib.suppress(OSError):
            _kill_descendants()
        os.killpg(os.getpgid(0), signal.SIGKILL)
    finally:
        os._exit(1)


def _kill_descendants() -> None:
    """SIGKILL every live process below this one, including those in their own session.

    The tree is frozen first (SIGSTOP, repeated until no new process shows up), because once
    the daemon is gone a killed child's children are re-parented to init, out of our sight.
    """
    stopped: set[int] = set()
    for _ in range(10):
        below = proctable.descendants(os.getpid(), live_only=True)
        fresh = [pid for pid in below if pid not in stopped]
        if not fresh:
            break
        for pid in fresh:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGSTOP)
        stopped.update(fresh)
    for pid in stopped:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


#: Longest traceback a LOG frame carries (its head and tail are kept).
TRACEBACK_LIMIT = 16384


class FrameLogHandler(logging.Handler):
    """Sends log records to the daemon as LOG frames, tagged with the calling process's PID.

    The message and a record's traceback (``exc_info``, ``stack_info``) travel in separate
    fields, so the daemon can keep the message on one line and mark the traceback's lines.
    """

    def __init__(self, conn: FrameProtocol, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self.conn = conn
        self.loop = loop
        self.loop_thread = threading.get_ident()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
        except (TypeError, ValueError) as e:
            text = f"(unformattable log record {record.msg!r}: {e})"
        tb = [_traceback_text(record)] if record.exc_info or record.stack_info else []
        proc = current.get()
        # clipped: a record travels in a frame's envelope (see wire's size rule)
        frame = [wire.LOG, record.levelno, wire.clip_text(record.name, 1024),
                 wire.clip_text(text), proc.pid if proc else ""]
        if threading.get_ident() == self.loop_thread:
            self.conn.send(frame + tb)
        else:
            self.loop.call_soon_threadsafe(self.conn.send, frame + tb)


def _traceback_text(record: logging.LogRecord) -> str:
    """A record's exception traceback and stack, clipped to ``TRACEBACK_LIMIT``."""
    parts = []
    if record.exc_info:
        parts.append(_FORMATTER.formatException(record.exc_info))
    if record.stack_info:
        parts.append(_FORMATTER.formatStack(record.stack_info))
    text = "\n".join(parts)
    if len(text) > TRACEBACK_LIMIT:
        half = TRACEBACK_LIMIT // 2
        text = f"{text[:half]}\n... ({len(text) - 2 * half} characters left out) ...\n" \
               f"{text[-half:]}"
    return text


_FORMATTER = logging.Formatter()


class LogWriter(io.TextIOBase):
    """A worker's ``sys.stdout``/``sys.stderr``: each line written becomes one record of
    logger ``name`` (so ``print()`` is tagged with the printing process's PID, as logging
    calls are). A partial line waits for its newline, a ``flush()``, a write by another
    process, or ``LINE_LIMIT`` characters. Writes made while a record is being handled (a
    logging error reported on stderr) go to the real stream."""

    LINE_LIMIT = 8192

    def __init__(self, name: str, level: int, real: Any) -> None:
        super().__init__()
        self.logger = logging.getLogger(name)
        self.level = level
        self.real = real
        self._partial: list[str] = []
        self._partial_len = 0
        self._owner: Any = None  # the process whose partial line is buffered
        self._lock = threading.Lock()
        self._local = threading.local()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        """The real stream's descriptor (what a child OS process inherits)."""
        return int(self.real.fileno())

    @property
    def buffer(self) -> Any:
        """The real stream's bytes layer (bytes written there are not tagged)."""
        return self.real.buffer

    def write(self, s: str) -> int:
        if not isinstance(s, str):
            raise TypeError(f"write() argument must be str, not {type(s).__name__}")
        if getattr(self._local, "busy", False):
            self.real.write(s)
            return len(s)
        proc = current.get()
        lines: list[tuple[Any, str]] = []
        with self._lock:
            if self._partial and self._owner is not proc:
                lines.append(self._take())
            self._owner = proc
            *done, rest = s.split("\n")
            for piece in done:
                self._partial.append(piece)
                lines.append(self._take())
            if rest:
                self._partial.append(rest)
                self._partial_len += len(rest)
                if self._partial_len >= self.LINE_LIMIT:
                    lines.append(self._take())
            if not self._partial:
                self._owner = None  # keep no ended process alive
        self._emit(lines)
        return len(s)

    def flush(self) -> None:
        with self._lock:
            lines = [self._take()] if self._partial else []
            self._owner = None
        self._emit(lines)

    def _take(self) -> tuple[Any, str]:
        line, self._partial, self._partial_len = "".join(self._partial), [], 0
        return self._owner, line

    def _emit(self, lines: list[tuple[Any, str]]) -> None:
        self._local.busy = True
        try:
            for proc, line in lines:
                token = current.set(proc)  # the PID tag is the writer's
                try:
                    self.logger.log(self.level, "%s", line)
                finally:
                    current.reset(token)
        finally:
            self._local.busy = False


async def serve(fd: int, host: str, index: int, max_frame: int) -> None:
    """Connect to the router and run until told to shut down (or the router goes away)."""
    loop = asyncio.get_running_loop()
    runtime: list[Runtime] = []

    def on_close(exc: Exception | None) -> None:
        if not runtime or not runtime[0].stopping.is_set():
            if exc is not None:
                # the router link is gone, so the log frame path is too: say why on the
                # real stderr (the daemon's), e.g. an exception that escaped a frame handler
                traceback.print_exception(exc, file=sys.__stderr__)
                print(f"actord worker {host}/{index}: router connection lost: {exc!r}; "
                      "exiting", file=sys.__stderr__, flush=True)
            _die_with_group()

    conn = FrameProtocol(lambda frame: None, on_close=on_close, max_frame=max_frame)
    rt = Runtime(conn, host, index, max_frame)
    runtime.append(rt)
    conn._on_frame = rt.on_frame
    root = logging.getLogger()
    root.handlers[:] = [FrameLogHandler(conn, loop)]
    root.setLevel(logging.INFO)  # before connecting: INIT, read from then on, sets log_level
    sys.stdout = LogWriter("stdout", logging.INFO, sys.__stdout__)
    sys.stderr = LogWriter("stderr", logging.WARNING, sys.__stderr__)
    await loop.connect_accepted_socket(lambda: conn, socket.socket(fileno=fd))

    loop.set_task_factory(task_factory)
    conn.send([wire.HELLO, os.getpid()])
    await rt.stopping.wait()
    if rt.direct is not None:  # our last messages to other nodes leave before we do
        await rt.direct.close()
    # let the final EXITED frames go out: close flushes, connection_lost confirms it
    await asyncio.sleep(0)
    conn.close()
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(2.0):
            await conn.lost.wait()


def main(argv: list[str] | None = None) -> None:
    """Parse the daemon's arguments, harden the process, run ``serve`` on uvloop."""
    parser = argparse.ArgumentParser(prog="actord-worker")
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--host", required=True)
    parser.add_argument("--index", type=int, required=True)
    parser.add_argument("--ppid", type=int, required=True)
    parser.add_argument("--max-frame", type=int, default=wire.DEFAULT_MAX_FRAME)
    args = parser.parse_args(argv)

    _prctl(PR_SET_NAME, f"actord-w{args.index}".encode())
    _prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    signal.signal(signal.SIGTERM, _die_with_group)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if os.getppid() != args.ppid:  # the daemon died before PDEATHSIG was armed
        _die_with_group()
    sys.dont_write_bytecode = True  # upgrade re-reads changed sources; never trust stale .pyc
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)
    uvloop.run(serve(args.fd, args.host, args.index, args.max_frame))
    if sys.__stdout__ is not None:
        sys.__stdout__.flush()
    os._exit(0)
