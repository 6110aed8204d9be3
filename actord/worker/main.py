"""A worker OS process's ``main()``: set-up, the router connection, logging, exit.

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
from actord.transport import FrameProtocol
from actord.worker.runtime import Runtime, current, task_factory

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


class FrameLogHandler(logging.Handler):
    """Sends log records to the daemon as LOG frames, tagged with the calling process's PID."""

    def __init__(self, conn: FrameProtocol, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self.conn = conn
        self.loop = loop
        self.loop_thread = threading.get_ident()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
        except (TypeError, ValueError) as e:
            text = f"(unformattable log record {record.msg!r}: {e})"
        proc = current.get()
        # clipped: a record travels in a frame's envelope (see wire's size rule)
        frame = [wire.LOG, record.levelno, wire.clip_text(record.name, 1024),
                 wire.clip_text(text), proc.pid if proc else ""]
        if threading.get_ident() == self.loop_thread:
            self.conn.send(frame)
        else:
            self.loop.call_soon_threadsafe(self.conn.send, frame)


async def serve(fd: int, host: str, index: int, max_frame: int) -> None:
    """Connect to the router and run until told to shut down (or the router goes away)."""
    loop = asyncio.get_running_loop()
    runtime: list[Runtime] = []

    def on_close(exc: Exception | None) -> None:
        if not runtime or not runtime[0].stopping.is_set():
            if exc is not None:
                # the router link is gone, so the log frame path is too: say why on stderr
                # (the daemon's), e.g. an exception that escaped a frame handler
                traceback.print_exception(exc, file=sys.stderr)
                print(f"actord worker {host}/{index}: router connection lost: {exc!r}; "
                      "exiting", file=sys.stderr, flush=True)
            _die_with_group()

    conn = FrameProtocol(lambda frame: None, on_close=on_close, max_frame=max_frame)
    rt = Runtime(conn, host, index, max_frame)
    runtime.append(rt)
    conn._on_frame = rt.on_frame
    await loop.connect_accepted_socket(lambda: conn, socket.socket(fileno=fd))

    loop.set_task_factory(task_factory)
    root = logging.getLogger()
    root.handlers[:] = [FrameLogHandler(conn, loop)]
    root.setLevel(logging.INFO)
    conn.send([wire.HELLO, os.getpid()])
    await rt.stopping.wait()
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
    sys.stdout.flush()
    os._exit(0)
