"""The control socket: CLI commands as a literal table of handlers over framed msgpack.

Every request is ``[CTL_REQUEST, req_id, command, args]`` and gets exactly one
``[CTL_REPLY, req_id, error_kind_or_None, value_or_message]``. The socket file is created
mode 0660 and a peer's uid/gid (SO_PEERCRED) is recorded for the security layer. Invariant:
nothing a client sends can crash the daemon: bad frames drop that client after an INVALID
reply with request id None (so a too large request reads as refused, not as "no daemon"),
bad arguments get an INVALID reply, and a value over ``max_frame`` is INVALID "message too
large".
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import grp
import logging
import os
import socket
import struct
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from actord import ids
from actord.core import wire
from actord.durations import check_seconds, parse_duration
from actord.errors import (
    ConfigError,
    InvalidError,
    NotFoundError,
    PermissionDeniedError,
    ProcessError,
)
from actord.security import client_identity, command_permissions
from actord.transport import FrameProtocol

if TYPE_CHECKING:
    from actord.core.policy import Evaluator
    from actord.daemon import Daemon

log = logging.getLogger("actord.control")

Handler = Callable[[dict[str, Any]], Awaitable[Any]]


class SocketInUseError(Exception):
    """Another live daemon owns the control socket."""


def prepare_socket_path(path: str) -> None:
    """Create the socket's directory; refuse a live socket, remove a stale one."""
    os.makedirs(os.path.dirname(path) or ".", mode=0o755, exist_ok=True)
    if not os.path.exists(path):
        return
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except OSError:
        os.unlink(path)  # stale: nobody listens
        return
    finally:
        probe.close()
    raise SocketInUseError(f"{path}: another actord daemon is running")


#: the (actor, scope) of the client whose command is running (set per command task)
_client: contextvars.ContextVar[tuple[dict[str, Any] | None, list[str] | None]] = (
    contextvars.ContextVar("actord_control_client", default=(None, None))
)
#: commands whose ``dest`` argument is the resource of their permission
_TARGETED = frozenset({"send", "kill", "cancel"})


class ControlConnection(FrameProtocol):
    """A CLI connection; knows its peer's uid/gid (SO_PEERCRED, read when it connects).

    Its ``exec`` commands are cancelled when it goes away: a client that stops waiting (the
    CLI killed, Ctrl-C) leaves its child a CANCEL, as an actor's exec does.
    """

    uid = -1
    gid = -1

    def connection_made(self, transport: Any) -> None:
        self.waiting: set[asyncio.Task[None]] = set()  # running exec commands
        sock = transport.get_extra_info("socket")
        try:
            _, self.uid, self.gid = peer_credentials(sock)
        except (OSError, AttributeError) as e:
            log.warning("control client without credentials (%s); treated as unmapped", e)
        super().connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        for task in self.waiting:
            task.cancel()

    def _bad(self, reason: str) -> None:
        """Drop the client, answering first: it may still be sending (a request over the
        decoder's limit), so the reply is written and the connection closed, not aborted;
        the client reads the reply before it sees the connection end."""
        if self._on_bad_frame is not None:
            self._on_bad_frame(reason)
        self.closed = True
        self._out.clear()
        if self._transport is not None:
            self._transport.write(wire.encode(
                [wire.CTL_REPLY, None, InvalidError.kind, f"bad request: {reason}"]))
            self._transport.close()


class ControlServer:
    """Accepts CLI connections and runs their commands against the daemon."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.router = daemon.router
        self.server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.handlers: dict[str, Handler] = {
            "status": self.status,
            "ps": self.ps,
            "spawn": self.spawn,
            "send": self.send,
            "kill": self.kill,
            "cancel": self.cancel,
            "exec": self.exec,
            "registry": self.registry,
            "services": self.services,
            "start": self.start_service,
            "stop": self.stop_service,
            "restart": self.restart_service,
            "reload": self.reload,
            "shutdown": self.shutdown,
            "ping": self.ping,
            "restart-worker": self.restart_worker,
        }

    async def start(self, path: str, group: str | None = None) -> None:
        """Listen on ``path``: mode 0660 owned by ``group``, or 0600 when no group is set.

        The socket is created inside a 0700 umask so it is never open to others, not even
        between bind and chmod.
        """
        prepare_socket_path(path)
        gid = -1
        if group is not None:
            try:
                gid = grp.getgrnam(group).gr_gid
            except KeyError:
                raise ConfigError(f"[daemon] socket_group: unknown group {group!r}") from None
        loop = asyncio.get_running_loop()
        old_umask = os.umask(0o077)
        try:
            self.server = await loop.create_unix_server(self._connection, path)
        finally:
            os.umask(old_umask)
        if gid >= 0:
            os.chown(path, -1, gid)
        os.chmod(path, 0o660 if gid >= 0 else 0o600)

    def close(self) -> None:
        """Stop accepting connections."""
        if self.server is not None:
            self.server.close()

    def _connection(self) -> ControlConnection:
        holder: list[ControlConnection] = []
        proto = ControlConnection(
            lambda frame: self._on_frame(holder[0], frame),
            on_bad_frame=lambda why: log.warning("control client dropped: %s", why),
            max_frame=self.router.max_frame,
        )
        holder.append(proto)
        return proto

    def _on_frame(self, conn: ControlConnection, frame: list[Any]) -> None:
        if frame[0] != wire.CTL_REQUEST or len(frame) != 4:
            conn.abort(f"unexpected frame op {frame[0]}")
            return
        task = asyncio.get_running_loop().create_task(
            self._run(conn, frame[1], frame[2], frame[3])
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        if frame[2] == "exec":
            conn.waiting.add(task)
            task.add_done_callback(conn.waiting.discard)

    async def _run(self, conn: ControlConnection, req: Any, command: Any, args: Any) -> None:
        handler = self.handlers.get(command) if isinstance(command, str) else None
        try:
            if handler is None:
                raise InvalidError(f"unknown command {command!r}")
            if not isinstance(args, dict):
                raise InvalidError("arguments must be a map")
            # SPEC 7: a CLI client is an actor too; check before the command acts
            actor, scope = client_identity(self.daemon.config.security, conn.uid, conn.gid)
            _client.set((actor, scope))
            evaluator = self.router.guard.evaluator(actor, scope)
            dest = self._resolve_for(evaluator, command, args) if command in _TARGETED else ""
            self.router.guard.require(evaluator, command_permissions(command, args, dest))
            value = await handler(args)
        except ProcessError as e:  # clipped: a message may quote a (huge) argument
            conn.send([wire.CTL_REPLY, req, e.kind, wire.clip_text(str(e))])
            return
        except (KeyError, TypeError, ValueError) as e:
            conn.send([wire.CTL_REPLY, req, InvalidError.kind, f"malformed request: {e}"])
            return
        try:
            conn.send([wire.CTL_REPLY, req, None, value])
        except TypeError:
            conn.send([wire.CTL_REPLY, req, "ERROR", "result is not encodable"])

    # -- helpers ---------------------------------------------------------------------------------
    def _resolve_for(self, evaluator: Evaluator, command: str, args: dict[str, Any]) -> str:
        """The PID a targeted command acts on, resolved only for a client that may act at all.

        A client without the command's permission on any process gets PERMISSION_DENIED
        before a name is looked up, and a denial for a name does not show its PID: neither
        answer tells whether the name exists.
        """
        dest = args.get("dest")
        if not ids.is_name(dest):
            return self._resolve(dest)  # a PID, or INVALID
        action = command_permissions(command, args, "")[0][0]
        if not evaluator.may_allow(action):
            raise PermissionDeniedError(f"{action} on {dest!r}: denied")
        pid = self._resolve(dest)
        if not evaluator.check(action, pid):
            raise PermissionDeniedError(f"{action} on {dest!r}: denied")
        return pid

    def _resolve(self, dest: Any) -> str:
        if not isinstance(dest, str) or not dest:
            raise InvalidError(f"bad destination {dest!r}")
        if dest.startswith("{"):
            return ids.canonical_pid(dest)
        pid = self.router.registry.lookup(ids.check_name(dest))
        if pid is None:
            raise NotFoundError(f"no process registered as {dest!r}")
        return pid

    # -- commands --------------------------------------------------------------------------------
    async def status(self, args: dict[str, Any]) -> dict[str, Any]:
        d = self.daemon
        hosts = [
            {
                "name": host,
                "workers": [
                    {"index": w.index, "os_pid": w.os_pid, "processes": len(w.pids),
                     "restarts": w.restarts, "up": w.up,
                     "uptime": round(time.time() - w.started_at, 3),
                     **self.router.stalls.row(w)}
                    for w in slots
                ],
            }
            for host, slots in self.router.hosts.items()
        ]
        return {
            "node": d.node,
            "ready": d.ready,
            "uptime": round(time.time() - d.started_at, 3),
            "os_pid": os.getpid(),
            "processes": len(self.router.procs),
            "routed": self.router.routed,
            "dead_letters": self.router.dead_letters,
            "hosts": hosts,
            "services": d.services.rows(),
        }

    async def ps(self, args: dict[str, Any]) -> list[dict[str, Any]]:
        host = args.get("host")
        if host is not None and host not in self.router.hosts:
            raise NotFoundError(f"unknown host {host!r}")
        return await self.router.ps(host)

    async def spawn(self, args: dict[str, Any]) -> str:
        return self.router.spawn("", self._spawn_request(args))

    def _spawn_request(self, args: dict[str, Any], flags: int = 0) -> list[Any]:
        spawn_args = args.get("args") or []
        if not isinstance(spawn_args, list):
            raise InvalidError("args must be a list")
        name = args.get("name")
        try:
            wire.check_size(wire.encode_value(spawn_args), self.router.max_frame)
        except wire.ValueTooLarge as e:
            raise InvalidError(str(e)) from None
        except (TypeError, ValueError, OverflowError) as e:
            raise InvalidError(f"args are not msgpack values: {e}") from None
        actor, scope = _client.get()  # processes a client starts run as that client
        return wire.spawn_request(str(args["id"]), str(args["host"]), spawn_args, flags,
                                  name=None if name is None else ids.check_name(name),
                                  actor=actor, scope=scope)

    async def send(self, args: dict[str, Any]) -> None:
        from actord.values import check_topic

        topic = check_topic(args.get("topic"))
        values = args.get("values") or []
        payload = None if not values else values[0] if len(values) == 1 else values
        self.router.send("", self._resolve(args.get("dest")), topic, wire.encode_value(payload))

    async def kill(self, args: dict[str, Any]) -> None:
        """Terminate, then wait for the EXIT unless ``no_wait`` (the worker acts on the
        terminate when its loop runs)."""
        no_wait = args.get("no_wait", False)
        if type(no_wait) is not bool:
            raise InvalidError(f"bad no_wait {no_wait!r}")
        pid = self._resolve(args.get("dest"))
        self.router.terminate(pid)
        if not no_wait:
            await self._wait_exit(pid)

    async def _wait_exit(self, pid: str) -> None:
        """Wait for ``pid``'s end; fail at once if its worker is (or becomes) stalled, and
        after ``stall_timeout`` + 2 s (at most 25 s) without either."""
        entry = self.router.procs.get(pid)
        if entry is None:
            return
        link = entry.worker
        loop = asyncio.get_running_loop()
        ended: asyncio.Future[None] = loop.create_future()
        self.router.on_exit(pid, lambda _: ended.done() or ended.set_result(None))
        stalled = self.router.stalls.when_stalled(link)
        bound = min(self.router.stalls.timeout + 2.0, 25.0)
        try:
            await asyncio.wait((ended, stalled), timeout=bound,
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            stalled.cancel()
        if ended.done():
            return
        since = self.router.stalls.stalled_for(link)
        if since is None:
            raise ProcessError(f"process {pid} did not end within {bound:.0f}s")
        raise ProcessError(
            f"process {pid} is on worker {link.tag}, stalled for {since:.1f}s (its event loop "
            f"is blocked): it ends when that loop runs again; to end it now: "
            f"actord restart-worker {link.host} {link.index}"
        )

    async def cancel(self, args: dict[str, Any]) -> None:
        deadline = args.get("deadline")
        at = None
        if deadline is not None:
            try:
                at = time.time() + parse_duration(deadline)
            except ValueError as e:
                raise InvalidError(str(e)) from None
        reason = args.get("reason")
        self.router.cancel("", self._resolve(args.get("dest")), at,
                           None if reason is None else str(reason))

    async def exec(self, args: dict[str, Any]) -> dict[str, Any]:
        timeout = args.get("timeout")
        if timeout is not None:  # before anything acts: a bad timeout spawns nothing
            try:
                timeout = check_seconds(timeout)
            except ValueError as e:
                raise InvalidError(f"bad timeout: {e}") from None
        pid = self.router.spawn("", self._spawn_request(args))
        done: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        with contextlib.suppress(NotFoundError):
            self.router.on_exit(pid, lambda r: done.done() or done.set_result(r))
        try:
            async with asyncio.timeout(timeout):
                result = await done
        except TimeoutError:
            with contextlib.suppress(NotFoundError):
                self.router.cancel("", pid, None, "exec timeout")
            return {"error": "timeout", "pid": pid}
        except asyncio.CancelledError:  # the client went away (or the daemon stops)
            with contextlib.suppress(NotFoundError):
                self.router.cancel("", pid, None, "exec cancelled")
            raise
        return {**result, "pid": pid}

    async def registry(self, args: dict[str, Any]) -> dict[str, str]:
        return self.router.registry.snapshot()

    async def services(self, args: dict[str, Any]) -> list[dict[str, Any]]:
        return self.daemon.services.rows()

    async def start_service(self, args: dict[str, Any]) -> dict[str, Any]:
        return await self.daemon.services.start(args["service"])

    async def stop_service(self, args: dict[str, Any]) -> dict[str, Any]:
        return await self.daemon.services.stop(args["service"])

    async def restart_service(self, args: dict[str, Any]) -> dict[str, Any]:
        return await self.daemon.services.restart(args["service"])

    async def restart_worker(self, args: dict[str, Any]) -> dict[str, Any]:
        """SIGKILL one worker (e.g. a stalled one); its processes end with ``"worker
        crashed"`` and its slot is refilled. Returns the old and new OS pids and the ends."""
        host, index = args.get("host"), args.get("index")
        if not isinstance(host, str) or type(index) is not int:
            raise InvalidError("restart-worker needs a host name and a worker index")
        if self.daemon.pool is None:
            raise NotFoundError("the workers are not started yet")
        return await self.daemon.pool.restart_worker(host, index)

    async def reload(self, args: dict[str, Any]) -> dict[str, Any]:
        return await self.daemon.reload()

    async def shutdown(self, args: dict[str, Any]) -> dict[str, Any]:
        """Begin the shutdown; the daemon's PID and how long its shutdown may take, so the
        CLI can wait for the process to be gone."""
        self.daemon.request_stop("shutdown command")
        return {"os_pid": os.getpid(), "bound": self.daemon.stop_bound()}

    async def ping(self, args: dict[str, Any]) -> dict[str, Any]:
        """A liveness probe (the CLI's client timeout) and the limits a client must respect."""
        return {"max_frame": self.daemon.config.daemon.max_frame}


def peer_credentials(sock: socket.socket) -> tuple[int, int, int]:
    """``(pid, uid, gid)`` of a unix socket peer."""
    data = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, gid = struct.unpack("3i", data)
    return pid, uid, gid
