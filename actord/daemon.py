"""The daemon (``actord run``): composes router, worker pool and control socket.

Start-up: load config -> take the lock ``<socket>.lock`` (one daemon per socket for the whole
life of this process) -> become child subreaper -> router -> control socket -> with
``[cluster]``, join it (:mod:`actord.router.nodes`: NATS connected, or 2 s waited) -> fork+exec each
host's workers -> start ``auto_start`` services in dependency order, each ``running`` once its
entry loaded -> ``READY=1`` (or, if one of them cannot start, the shutdown below and exit 1), then
``WATCHDOG=1`` pings and ``STATUS=`` lines (:mod:`actord.notify`); the optional metrics endpoint
(:mod:`actord.metrics`) listens from just after the control socket until the workers are reaped.
Shutdown (SIGTERM, SIGINT, ``actord shutdown``)::

    stop accepting commands
    stop services in reverse dependency order (each: CANCEL, stop_timeout, terminate)
    CANCEL every process (deadline = shutdown_timeout)
    wait until every process ended, or shutdown_timeout
    SHUTDOWN every worker (terminates what is left, reports EXITs, exits)
    reap workers (SIGKILL after a grace period), SIGKILL + reap any leftover descendant
    leave the cluster (heartbeats stop, NATS connection closed)
    remove the socket (only if it is still the one this daemon bound), exit 0

Invariants: when ``run`` returns, no OS process started by this daemon is alive; while it
runs, no other ``actord run`` on the same socket gets past the lock (the kernel drops the
``flock`` when this process ends, however it ends).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import json
import logging
import os
import signal
import socket
import sys
import time
from typing import TYPE_CHECKING, Any

import msgspec
import uvloop

from actord import proctable
from actord.control.server import ControlServer
from actord.core.config import Config, service_start_order
from actord.core.stop import stop_bound
from actord.errors import ConfigError, InvalidError
from actord.logring import LogRing, record_fields
from actord.notify import Notifier
from actord.ownership import acquire_lock, remove_own_socket, socket_identity
from actord.pool import WorkerPool
from actord.router import Router
from actord.router.nodes import CONNECT_WAIT
from actord.services import ServiceManager

if TYPE_CHECKING:
    from actord.metrics import MetricsServer

log = logging.getLogger("actord.daemon")

PR_SET_CHILD_SUBREAPER = 36
#: seconds the workers get to exit at shutdown before they are SIGKILLed
WORKER_STOP = 5.0
#: seconds added to the computed worst case of a shutdown (``stop_bound``): reaping, exit
STOP_MARGIN = 5.0


#: Control characters (C0, DEL, C1) and the Unicode line and paragraph separators, escaped
#: in log text so that no message can start a line of its own.
_ESCAPES: dict[int, str] = {
    **{c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F, *range(0x80, 0xA0))},
    0x09: "\\t", 0x0A: "\\n", 0x0D: "\\r", 0x2028: "\\u2028", 0x2029: "\\u2029",
}

#: What starts each continuation line of a record (its traceback).
CONTINUATION = "  | "


def one_line(text: str) -> str:
    """``text`` with its control characters escaped (a newline becomes ``\\n``)."""
    return text.translate(_ESCAPES)


class LogFormatter(logging.Formatter):
    """The daemon's log format: one line per record, ``time LEVEL logger: message``, with
    control characters in the message escaped; a record's traceback (its own ``exc_info``,
    or a worker's forwarded as ``actord_traceback``) follows on lines starting with
    ``CONTINUATION``. So every line of the log starts a record or is marked as continuing one.
    """

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        record.message = one_line(record.getMessage())
        record.asctime = self.formatTime(record, self.datefmt)
        text = self.formatMessage(record)
        parts = []
        if record.exc_info:
            parts.append(self.formatException(record.exc_info))
        if record.stack_info:
            parts.append(self.formatStack(record.stack_info))
        forwarded = getattr(record, "actord_traceback", None)
        if forwarded:
            parts.append(forwarded)
        for part in parts:
            text += "".join(f"\n{CONTINUATION}{one_line(ln)}" for ln in part.splitlines())
        return text


class JsonLogFormatter(logging.Formatter):
    """``[daemon] log_format = "json"``: one JSON object a line, the log ring's fields
    (:func:`~actord.logring.record_fields`: ``ts level logger message pid host worker
    traceback``); non-ASCII characters are escaped, so no text can break the line."""

    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(record_fields(record), default=str)


def configure_logging(level: str, fmt: str = "text", ring: LogRing | None = None) -> None:
    """One stderr handler for the daemon and every worker's forwarded records (in ``fmt``),
    and the log ring beside it (every record that handler gets, the ring keeps)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLogFormatter() if fmt == "json" else LogFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler] if ring is None else [handler, ring]
    root.setLevel(level.upper())


class Daemon:
    """One node: owns the router, the worker pool and the control server.

    Its control server and metrics endpoint see it as a :class:`~actord.nodeview.ControlledNode`
    (resp. :class:`~actord.nodeview.NodeView`), not as a ``Daemon``.
    """

    def __init__(self, config: Config, notifier: Notifier | None = None,
                 logs: LogRing | None = None) -> None:
        self.config = config
        #: the recent log records (``actord logs``); filled once configure_logging installed it
        self.logs = logs if logs is not None else LogRing(config.daemon.log_ring)
        self.notifier = notifier if notifier is not None else Notifier(None)
        self.metrics: MetricsServer | None = None
        self._reload_error: str | None = None  # shown in STATUS= until a reload succeeds
        self.node = f"actord@{socket.gethostname()}"
        self.started_at = time.time()
        self.ready = False  # workers started and auto-start services running (READY=1 sent)
        self.router = Router(config)
        self.services = ServiceManager(self.router, config)
        self._stop = asyncio.Event()
        self._reload_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[Any]] = set()
        self.pool: WorkerPool | None = None
        self.control: ControlServer | None = None
        self._socket_id: tuple[int, int] | None = None  # (dev, ino) of the socket we bound

    def request_stop(self, why: str) -> None:
        """Begin the shutdown sequence (idempotent)."""
        if not self._stop.is_set():
            log.info("stopping: %s", why)
            self._stop.set()

    def on_sighup(self) -> None:
        """SIGHUP: reload in the background; a refused reload is logged and changes nothing."""
        task = asyncio.get_running_loop().create_task(self.reload())
        self._tasks.add(task)
        task.add_done_callback(self._reload_done)

    def _reload_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            err = task.exception()
            if not isinstance(err, InvalidError):  # InvalidError: logged by reload already
                log.error("reload failed: %s: %s", type(err).__name__, err)

    async def reload(self) -> dict[str, Any]:
        """Re-read the config file and apply only what changed (SPEC section 10).

        Validation comes first: a bad file raises INVALID and the running config is kept.
        ``[daemon]`` changes (socket, frame size, ...) need a restart and are not applied:
        the summary lists them (``not_applied``), as it lists the workers a shrink retired
        with the processes that ended with them (``retired``) and the services that do not
        run after it (``not_running``).
        """
        async with self._reload_lock:
            self.notifier.reloading()
            try:
                summary = await self._apply_reload()
                self._reload_error = None
                return summary
            except InvalidError as e:
                self._reload_error = str(e)
                raise
            except Exception as e:
                self._reload_error = f"reload failed: {type(e).__name__}: {e}"
                raise
            finally:
                self.notifier.ready(self.status_line())  # also when refused: the old config runs

    def stop_bound(self) -> float:
        """Seconds the shutdown sequence can take at most (``actord shutdown`` waits that long).

        Each service level: the stop sequence's bound for its longest stop_timeout; then
        shutdown_timeout; then the workers' exit and SIGKILL waits; plus a margin.
        """
        svcs = self.config.services
        services = sum(
            stop_bound(max(svcs[n].stop_timeout for n in level))
            for level in service_start_order(self.config) if level
        )
        return (services + self.config.daemon.shutdown_timeout + WORKER_STOP
                + WorkerPool.KILL_WAIT + STOP_MARGIN)

    def status_line(self) -> str:
        """systemd's ``STATUS=``: e.g. ``running: 2 hosts, 3 workers, 7 processes; services
        2 running, 1 failed; stalled workers app:a/0`` (plus the last refused reload until one
        succeeds)."""
        r = self.router
        workers = sum(1 for slots in r.hosts.values() for w in slots if w.up)
        line = f"running: {len(r.hosts)} hosts, {workers} workers, {len(r.procs)} processes"
        states: dict[str, int] = {}
        for row in self.services.rows():
            states[row["state"]] = states.get(row["state"], 0) + 1
        if states:
            line += "; services " + ", ".join(f"{n} {s}" for s, n in states.items())
        stalled = [w.tag for slots in r.hosts.values() for w in slots if r.stalls.is_stalled(w)]
        if stalled:
            line += "; stalled workers " + ", ".join(stalled)
        if self._reload_error:
            line += f"; {self._reload_error}"
        return line

    async def _apply_reload(self) -> dict[str, Any]:
        from actord import configfile

        try:
            new = configfile.load(self.config.path)
            configfile.check(new)
        except ConfigError as e:
            log.error("reload refused, running config kept: %s", e)
            raise InvalidError(f"reload refused: {e}") from None
        old = self.config
        not_applied = [key for key in old.daemon.__struct_fields__
                       if getattr(new.daemon, key) != getattr(old.daemon, key)]
        if not_applied:
            log.warning("reload: [daemon] %s changed: takes effect after a restart; not applied",
                        ", ".join(not_applied))
            new = msgspec.structs.replace(new, daemon=old.daemon)
        if new.cluster != old.cluster:  # the node's name is in its PIDs: a restart only
            log.warning("reload: [cluster] changed: takes effect after a restart; not applied")
            not_applied.append("cluster")
            new = msgspec.structs.replace(new, cluster=old.cluster)
        self.config = new
        self.router.apply_config(new)
        assert self.pool is not None
        hosts = {
            "added": [h for h in new.hosts if h not in old.hosts],
            "removed": [h for h in old.hosts if h not in new.hosts],
            "resized": [h for h in new.hosts
                        if h in old.hosts and new.hosts[h].workers != old.hosts[h].workers],
        }
        services = await self.services.apply(new)  # stop removed services before their hosts go
        retired: list[dict[str, Any]] = []
        for name in hosts["removed"]:
            retired += await self.pool.resize_host(name, 0)
        for name in hosts["added"] + hosts["resized"]:
            retired += await self.pool.resize_host(name, new.hosts[name].workers)
        not_running = await self.services.start_pending()
        processes = sorted(n for n in set(new.processes) | set(old.processes)
                           if old.processes.get(n) != new.processes.get(n))
        log.info("reloaded %s: hosts %s, services %s, processes changed %s, workers retired "
                 "%s (%d processes ended)", new.path, hosts, services, processes,
                 [r["worker"] for r in retired], sum(len(r["processes"]) for r in retired))
        if not_running:
            log.warning("reload: services not running after it: %s", ", ".join(not_running))
        return {"hosts": hosts, "services": services, "processes": processes,
                "retired": retired, "not_applied": not_applied, "not_running": not_running}

    async def main(self) -> int:
        """Run until asked to stop, then shut down cleanly; the exit code (1: an
        ``auto_start`` service could not start, so the daemon never became ready)."""
        loop = asyncio.get_running_loop()
        self.logs.bind(loop)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop, signal.Signals(sig).name)
        loop.add_signal_handler(signal.SIGHUP, self.on_sighup)
        self.control = ControlServer(self)
        await self.control.start(self.config.daemon.socket, self.config.daemon.socket_group)
        self._socket_id = socket_identity(self.config.daemon.socket)
        if self.config.daemon.metrics is not None:
            # prometheus_client is loaded only by a daemon with [daemon] metrics (0.1 s)
            from actord.metrics import MetricsServer

            self.metrics = MetricsServer(self)
            try:
                await self.metrics.start(*self.config.daemon.metrics)
            except OSError:  # e.g. the port is taken: refuse to start, leave nothing behind
                self.control.close()
                remove_own_socket(self.config.daemon.socket, self._socket_id)
                raise
        if self.router.cluster is not None:
            self.notifier.status("joining the cluster")
            await self.router.cluster.start()
        self.notifier.status("starting workers")
        self.pool = WorkerPool(self.router, self.config.daemon.max_frame)
        for host in self.config.hosts.values():
            await self.pool.start_host(host.name, host.workers)
        if self.router.cluster is not None:
            # each worker listens for other nodes' messages before it takes a process
            # (a worker that cannot reach NATS says so, and is ready, after CONNECT_WAIT)
            with contextlib.suppress(TimeoutError):
                await self.router.all_ready(2 * CONNECT_WAIT)
        self.notifier.status("starting services")
        failed = await self.services.start_all()
        if failed:
            # Refuse to start (no READY=1: `systemctl start` fails): a node missing one of
            # its services is not what was asked for, and the error is in front of the user.
            why = "; ".join(f"service {n} could not start: {e}" for n, e in failed.items())
            log.error("%s; stopping (exit 1)", why)
            self.notifier.stopping(f"stopping: {why}")
            await self.shutdown()
            return 1
        self.ready = True
        log.info("actord ready on %s (%d hosts)", self.config.daemon.socket,
                 len(self.config.hosts))
        self.notifier.ready(self.status_line())
        self.notifier.start_heartbeat(self.status_line)
        await self._stop.wait()
        self.notifier.stopping("stopping: services")
        await self.shutdown()
        return 0

    async def shutdown(self) -> None:
        """The shutdown sequence in the module docstring."""
        assert self.control is not None and self.pool is not None
        self.control.close()
        await self.services.stop_all()
        timeout = self.config.daemon.shutdown_timeout
        self.notifier.status(f"stopping: {len(self.router.procs)} processes")
        self.router.cancel_all(time.time() + timeout, "shutdown")
        try:
            async with asyncio.timeout(timeout):
                await self.router.empty.wait()
        except TimeoutError:
            log.warning("%d processes still alive after %.1fs; terminating them",
                        len(self.router.procs), timeout)
        self.notifier.status("stopping: workers")
        await self.pool.stop(timeout=WORKER_STOP)
        if self.metrics is not None:
            self.metrics.close()
        reap_descendants()
        if self.router.global_names is not None:
            await self.router.global_names.close()
        if self.router.cluster is not None:
            await self.router.cluster.close()
        remove_own_socket(self.config.daemon.socket, self._socket_id)
        log.info("stopped")
        self.notifier.close()


def reap_descendants() -> None:
    """SIGKILL and reap every remaining child (orphans reparented to us as subreaper)."""
    me = os.getpid()
    for _ in range(50):
        children = proctable.children_map().get(me, [])
        if not children:
            break
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for pid in children:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)


def run(config: Config) -> int:
    """``actord run``: the daemon in the foreground; returns the exit code.

    The lock comes first: a second daemon on the same socket stops here
    (``DaemonLockedError``) before it touches the socket or starts anything.
    """
    acquire_lock(config.daemon.socket)  # held (fd open) until this process exits
    logs = LogRing(config.daemon.log_ring)
    configure_logging(config.daemon.log_level, config.daemon.log_format, logs)
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    # systemd's variables are for this process only: workers and actor code must not see them
    daemon = Daemon(config, Notifier.from_environ(unset=True), logs)
    # The router allocates a few tracked objects per spawn and per process end; with the
    # default gen-0 threshold (700) a spawn burst runs a collection every few hundred spawns,
    # each walking the young objects. Start-up objects are frozen (never scanned again).
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)
    return uvloop.run(daemon.main())
