"""Worker OS processes: start (fork+exec), watch, reap, replace.

Each worker is ``python -m actord.worker`` in its own session (so its process group holds
everything its actors start), connected to the router by a socketpair passed as an fd.
Exits are watched with a pidfd on the event loop, so no SIGCHLD handler is needed and PID
reuse cannot confuse us. Invariant: a slot has at most one live worker; a replacement is
started only after the old one was reaped, its process group killed and its processes ended
with ``"worker crashed"``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time

from actord.core import wire
from actord.router import Router, WorkerLink
from actord.transport import FrameProtocol

log = logging.getLogger("actord.pool")

#: restarts of one slot within this many seconds count towards the crash-loop backoff
CRASH_WINDOW = 30.0


class WorkerPool:
    """Starts the workers of every host and keeps each slot filled until shutdown."""

    def __init__(self, router: Router, max_frame: int) -> None:
        self.router = router
        self.max_frame = max_frame
        self.stopping = False
        self.procs: dict[tuple[str, int], subprocess.Popen[bytes]] = {}
        self._crashes: dict[tuple[str, int], list[float]] = {}
        self._exited: dict[tuple[str, int], asyncio.Event] = {}
        self._loop = asyncio.get_running_loop()

    async def start_host(self, host: str, workers: int) -> None:
        """Start ``workers`` worker processes for ``host``."""
        for index in range(workers):
            await self.launch(host, index, restarts=0)

    async def launch(self, host: str, index: int, restarts: int) -> WorkerLink:
        """Fork+exec one worker and attach it to the router."""
        parent_sock, child_sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        fd = child_sock.fileno()
        cmd = [
            sys.executable, "-m", "actord.worker",
            "--fd", str(fd), "--host", host, "--index", str(index),
            "--ppid", str(os.getpid()), "--max-frame", str(self.max_frame),
        ]
        proc = subprocess.Popen(cmd, pass_fds=[fd], start_new_session=True,
                                stdin=subprocess.DEVNULL)
        child_sock.close()
        key = (host, index)
        self.procs[key] = proc
        self._exited[key] = asyncio.Event()
        holder: list[WorkerLink] = []
        _, conn = await self._loop.connect_accepted_socket(
            lambda: FrameProtocol(
                lambda f: self.router.on_frame(holder[0], f),
                on_close=lambda exc: self._on_conn_lost(holder[0], proc),
                on_bad_frame=lambda why: log.error("worker %s/%d: %s", host, index, why),
                max_frame=self.max_frame,
            ),
            parent_sock,
        )
        link = WorkerLink(host, index, conn, proc.pid)
        link.restarts = restarts
        holder.append(link)
        self.router.attach(link)
        pidfd = os.pidfd_open(proc.pid)
        self._loop.add_reader(pidfd, self._on_exit, link, proc, pidfd)
        log.info("worker %s started (os pid %d)", link.tag, proc.pid)
        return link

    def _on_conn_lost(self, link: WorkerLink, proc: subprocess.Popen[bytes]) -> None:
        self.router.worker_down(link)
        if proc.poll() is None:
            proc.kill()

    def _on_exit(self, link: WorkerLink, proc: subprocess.Popen[bytes], pidfd: int) -> None:
        self._loop.remove_reader(pidfd)
        os.close(pidfd)
        code = proc.wait()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)  # whatever its actors left behind
        self.router.worker_down(link)
        key = (link.host, link.index)
        self._exited[key].set()
        if self.stopping:
            return
        log.error("worker %s (os pid %d) exited with %s; replacing it", link.tag, proc.pid, code)
        now = time.monotonic()
        recent = [t for t in self._crashes.get(key, []) if now - t < CRASH_WINDOW] + [now]
        self._crashes[key] = recent
        delay = 0.0 if len(recent) <= 3 else min(5.0, 0.1 * 2 ** (len(recent) - 3))
        self._loop.call_later(delay, self._relaunch, link)

    def _relaunch(self, old: WorkerLink) -> None:
        if not self.stopping:
            self._loop.create_task(self.launch(old.host, old.index, restarts=old.restarts + 1))

    async def stop(self, timeout: float) -> None:
        """Ask every worker to exit, wait up to ``timeout``, then SIGKILL and reap."""
        self.stopping = True
        for slots in self.router.hosts.values():
            for link in slots:
                if link.up:
                    link.conn.send([wire.SHUTDOWN])
                    link.conn.flush_now()
        waits = [self._exited[key].wait() for key, proc in self.procs.items()
                 if proc.returncode is None]
        try:
            async with asyncio.timeout(timeout):
                await asyncio.gather(*waits)
        except TimeoutError:
            for key, proc in self.procs.items():
                if proc.poll() is None:
                    log.warning("worker %s/%d did not exit; killing it", *key)
                    proc.kill()
            async with asyncio.timeout(5.0):
                await asyncio.gather(*(ev.wait() for ev in self._exited.values()))
        await asyncio.sleep(0)
