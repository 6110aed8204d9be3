"""Worker OS processes: start (fork+exec), watch, reap, replace.

Each worker is ``python -m actord.worker`` in its own session (so its process group holds
everything its actors start), connected to the router by a socketpair passed as an fd.
Exits are watched with a pidfd on the event loop, so PID reuse cannot confuse us. The daemon
is child subreaper, so processes that actor code left behind are re-parented to it: a timer
reaps those that exited (no SIGCHLD: uvloop keeps that signal to itself).

Invariant: a slot has at most one live worker; a replacement is started only after the old
one was reaped, its process group killed and its processes ended with ``"worker crashed"``,
and it takes the slot in that same step, so the slot is never seen empty when the first
crash notices go out (except during a crash-loop backoff).
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
from typing import Any

from actord import ids
from actord.core import wire
from actord.core.restart import worker_restart_delay
from actord.errors import NotFoundError, ProcessError
from actord.router import Router, WorkerLink
from actord.transport import FrameProtocol

log = logging.getLogger("actord.pool")

#: seconds restart-worker waits for the killed worker's replacement to run
RESTART_TIMEOUT = 10.0
#: seconds between two reaps of orphans (processes actor code left behind) that exited
REAP_INTERVAL = 1.0
#: seconds to wait, after a worker exited, for the EOF that follows its last frames
DRAIN_TIMEOUT = 1.0
#: seconds a worker whose socket closed has to end itself before it is SIGKILLed
KILL_GRACE = 1.0
#: seconds a reload waits for the workers it retired to exit
RETIRE_WAIT = 5.0
#: processes named in the log line of a retired worker (all of them are in the reload reply)
RETIRE_LOG_PIDS = 10


class WorkerPool:
    """Starts the workers of every host and keeps each slot filled until shutdown."""

    #: seconds ``stop`` waits for the workers it SIGKILLed to be reaped
    KILL_WAIT = 5.0

    def __init__(self, router: Router, max_frame: int) -> None:
        self.router = router
        self.max_frame = max_frame
        self.stopping = False
        self.procs: dict[tuple[str, int], subprocess.Popen[bytes]] = {}
        self._crashes: dict[tuple[str, int], tuple[float, ...]] = {}
        self._exited: dict[tuple[str, int], asyncio.Event] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._retired: set[tuple[str, int]] = set()
        self._restarting: set[tuple[str, int]] = set()  # killed by restart-worker
        self._loop = asyncio.get_running_loop()
        self._reaper = self._loop.call_later(REAP_INTERVAL, self._reap_orphans)

    async def start_host(self, host: str, workers: int) -> None:
        """Start ``workers`` worker processes for ``host`` and wait until each is connected."""
        for index in range(workers):
            link = self.launch(host, index, restarts=0)
            await link.conn.connected.wait()

    async def resize_host(self, host: str, workers: int) -> list[dict[str, Any]]:
        """Reload: grow ``host`` to ``workers`` slots (waiting for the new ones) or retire the
        highest slots (their processes are terminated; no replacement), waiting up to
        ``RETIRE_WAIT`` for them to exit. What :meth:`retire` says of each retired worker."""
        slots = list(self.router.hosts.get(host, []))
        exited = [self._exited[(link.host, link.index)] for link in slots[workers:]]
        retired = [self.retire(link) for link in slots[workers:]]
        for index in range(len(slots), workers):
            link = self.launch(host, index, restarts=0)
            await link.conn.connected.wait()
        try:
            async with asyncio.timeout(RETIRE_WAIT):
                await asyncio.gather(*(ev.wait() for ev in exited))
        except TimeoutError:
            log.warning("retired workers of %s still running %.0fs later", host, RETIRE_WAIT)
        return retired

    def retire(self, link: WorkerLink) -> dict[str, Any]:
        """Ask a worker to end its processes and exit, and do not replace it; logged, and
        returned as ``{"worker", "os_pid", "processes": [{"pid", "id"}]}`` (what it ends)."""
        self._retired.add((link.host, link.index))
        link.retiring = True
        link.conn.send([wire.SHUTDOWN])
        pids = sorted(link.pids, key=lambda p: ids.parse_pid(p) or ("", 0))
        shown = ", ".join(pids[:RETIRE_LOG_PIDS]) + (" ..." if len(pids) > RETIRE_LOG_PIDS else "")
        log.warning("worker %s (os pid %d) retired by reload: ending its %d processes%s",
                    link.tag, link.os_pid, len(pids), f": {shown}" if pids else "")
        procs = self.router.procs
        return {"worker": link.tag, "os_pid": link.os_pid,
                "processes": [{"pid": p, "id": procs[p].id if p in procs else None}
                              for p in pids]}

    async def restart_worker(self, host: str, index: int) -> dict[str, Any]:
        """SIGKILL the worker in slot ``host``/``index`` (``actord restart-worker``, e.g. for a
        stalled one) and wait until its replacement runs. Its processes end with
        ``"worker crashed"`` (SPEC 4.4 as for any worker death); the slot is refilled at once
        (no crash-loop backoff: the operator asked for it) and its ``restarts`` counts it. Returns
        once the new worker's first heartbeat arrived (its loop runs and has its INIT)."""
        slots = self.router.hosts.get(host)
        if not slots:
            raise NotFoundError(f"unknown host {host!r}")
        if not 0 <= index < len(slots):
            raise NotFoundError(f"host {host!r} has no worker {index} (0..{len(slots) - 1})")
        old, key = slots[index], (host, index)
        if not old.up or old.retiring or key in self._restarting or self.stopping:
            raise NotFoundError(f"worker {old.tag} is not running (being replaced or retired)")
        ended = len(old.pids)
        log.warning("worker %s (os pid %d) restarted on request: SIGKILL; its %d processes end "
                    "with \"worker crashed\"", old.tag, old.os_pid, ended)
        self._restarting.add(key)
        exited = self._exited[key]
        self.procs[key].kill()
        try:
            async with asyncio.timeout(RESTART_TIMEOUT):
                await exited.wait()
                new = self.router.hosts[host][index]
                await self.router.stalls.when_running(new)  # its loop runs: it has INIT
        except TimeoutError:
            raise ProcessError(f"worker {old.tag} was not replaced within "
                               f"{RESTART_TIMEOUT:.0f}s") from None
        return {"host": host, "index": index, "old_os_pid": old.os_pid,
                "os_pid": new.os_pid, "ended": ended}

    def launch(self, host: str, index: int, restarts: int) -> WorkerLink:
        """Fork+exec one worker and attach it to the router now.

        Attaching does not wait for the connection: frames sent to the new worker queue in
        its ``FrameProtocol`` until the socket is connected, so a replacement takes its slot
        in the same loop iteration that reported the old worker's death and nobody who
        heard of the crash can find the slot empty.
        """
        parent_sock, child_sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        fd = child_sock.fileno()
        cmd = [
            sys.executable, "-m", "actord.worker",
            "--fd", str(fd), "--host", host, "--index", str(index),
            "--ppid", str(os.getpid()), "--max-frame", str(self.max_frame),
        ]
        try:
            proc = subprocess.Popen(cmd, pass_fds=[fd], start_new_session=True,
                                    stdin=subprocess.DEVNULL)
        except BaseException:
            parent_sock.close()
            raise
        finally:
            child_sock.close()
        key = (host, index)
        self.procs[key] = proc
        self._exited[key] = asyncio.Event()
        holder: list[WorkerLink] = []
        conn = FrameProtocol(
            lambda f: self.router.on_frame(holder[0], f),
            on_close=lambda exc: self._on_conn_lost(proc),
            on_bad_frame=lambda why: log.error("worker %s/%d: %s", host, index, why),
            max_frame=self.max_frame,
        )
        link = WorkerLink(host, index, conn, proc.pid)
        link.restarts = restarts
        holder.append(link)
        self.router.attach(link)
        pidfd = os.pidfd_open(proc.pid)
        self._loop.add_reader(pidfd, self._on_exit, link, proc, pidfd)
        task = self._loop.create_task(self._connect(conn, parent_sock, proc))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        log.info("worker %s started (os pid %d)", link.tag, proc.pid)
        return link

    async def _connect(self, conn: FrameProtocol, sock: socket.socket,
                       proc: subprocess.Popen[bytes]) -> None:
        try:
            await self._loop.connect_accepted_socket(lambda: conn, sock)
        except OSError as e:  # cannot happen with a fresh socketpair; never leave a mute worker
            log.error("cannot connect to worker (os pid %d): %s; killing it", proc.pid, e)
            sock.close()
            proc.kill()

    def _on_conn_lost(self, proc: subprocess.Popen[bytes]) -> None:
        # On EOF a worker kills its descendants and itself; SIGKILL it only if it has not
        # done so by then (a SIGKILL now could cut its clean-up short). It is declared down
        # once reaped (``_on_exit``): its processes end and its replacement starts in one step.
        self._loop.call_later(KILL_GRACE, self._kill_if_running, proc)

    @staticmethod
    def _kill_if_running(proc: subprocess.Popen[bytes]) -> None:
        if proc.returncode is None:
            proc.kill()

    def _on_exit(self, link: WorkerLink, proc: subprocess.Popen[bytes], pidfd: int) -> None:
        self._loop.remove_reader(pidfd)
        os.close(pidfd)
        code = proc.wait()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)  # whatever its actors left behind
        if link.conn.lost.is_set():
            self._down(link, proc, code)
        else:
            # Frames it wrote before dying may still be unread: handle them before its
            # processes end (a message before its sender's EXIT, a real result before
            # "worker crashed"). The kernel closed its end, so EOF follows them.
            task = self._loop.create_task(self._drain_then_down(link, proc, code))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _drain_then_down(self, link: WorkerLink, proc: subprocess.Popen[bytes],
                               code: int) -> None:
        try:
            async with asyncio.timeout(DRAIN_TIMEOUT):
                await link.conn.lost.wait()
        except TimeoutError:  # a descendant that inherited the socket keeps it open
            link.conn.abort("worker exited but its socket is still open")
        self._down(link, proc, code)

    def _down(self, link: WorkerLink, proc: subprocess.Popen[bytes], code: int) -> None:
        """The worker is reaped and its frames handled: end its processes, refill the slot."""
        self.router.worker_down(link)
        key = (link.host, link.index)
        self._exited[key].set()
        if key in self._retired:
            self._retired.discard(key)
            self.router.detach(link)
            del self.procs[key], self._exited[key]
            log.info("worker %s retired", link.tag)
            return
        if self.stopping:
            return
        if key in self._restarting:  # restart-worker: not a crash, no backoff
            self._restarting.discard(key)
            self._relaunch(link)
            return
        log.error("worker %s (os pid %d) exited with %s; replacing it", link.tag, proc.pid, code)
        self._crashes[key], delay = worker_restart_delay(self._crashes.get(key, ()),
                                                         time.monotonic())
        if delay == 0.0:
            self._relaunch(link)  # at once: the EXITs just queued go out after the new link
        else:
            self._loop.call_later(delay, self._relaunch, link)

    def _reap_orphans(self) -> None:
        """Reap exited children that are not workers (orphans adopted as subreaper)."""
        workers = {proc.pid for proc in self.procs.values()}
        while True:
            try:  # peek (WNOWAIT): a worker's exit is left to ``_on_exit``, which wants its code
                info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:
                info = None
            if info is None or info.si_pid in workers:
                break  # nothing exited, or a worker whose pidfd callback comes next
            with contextlib.suppress(ChildProcessError):
                os.waitpid(info.si_pid, 0)
        self._reaper = self._loop.call_later(REAP_INTERVAL, self._reap_orphans)

    def _relaunch(self, old: WorkerLink) -> None:
        if self.stopping:
            return
        try:
            self.launch(old.host, old.index, restarts=old.restarts + 1)
        except OSError as e:  # e.g. out of fds or memory: keep trying, the slot must be refilled
            log.error("cannot start worker %s: %s; retrying in 1s", old.tag, e)
            self._loop.call_later(1.0, self._relaunch, old)

    async def stop(self, timeout: float) -> None:
        """Ask every worker to exit, wait up to ``timeout``, then SIGKILL and reap."""
        self.stopping = True
        self._reaper.cancel()  # the daemon's final reap takes over
        for slots in self.router.hosts.values():
            for link in slots:
                if link.up:
                    link.conn.send([wire.SHUTDOWN])
                    link.conn.flush_now()
        waits = [ev.wait() for ev in self._exited.values() if not ev.is_set()]
        try:
            async with asyncio.timeout(timeout):
                await asyncio.gather(*waits)
        except TimeoutError:
            for key, proc in self.procs.items():
                if not self._exited[key].is_set():
                    log.warning("worker %s/%d did not exit; killing it", *key)
                    proc.kill()
            try:
                async with asyncio.timeout(self.KILL_WAIT):
                    await asyncio.gather(*(ev.wait() for ev in self._exited.values()))
            except TimeoutError:  # unkillable (D state): the daemon's final reap waits for it
                log.error("workers still not reaped 5s after SIGKILL")
        await asyncio.sleep(0)
