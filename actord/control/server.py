"""The control socket's server: listening, connections, and the checks before a command runs.

Every request is ``[CTL_REQUEST, req_id, command, args]`` and gets exactly one
``[CTL_REPLY, req_id, error_kind_or_None, value_or_message]``. The socket file is created
mode 0660 and a peer's uid/gid (SO_PEERCRED) is recorded for the security layer. Invariant:
nothing a client sends can crash the daemon: bad frames drop that client after an INVALID
reply with request id None (so a too large request reads as refused, not as "no daemon"),
bad arguments get an INVALID reply, and a value over ``max_frame`` is INVALID "message too
large". The commands themselves are in :mod:`actord.control.commands`.
"""

from __future__ import annotations

import asyncio
import grp
import logging
import os
import socket
import struct
from typing import TYPE_CHECKING, Any

from actord import ids
from actord.control.commands import Closers, Commands, current_client, current_closers
from actord.core import wire
from actord.errors import ConfigError, InvalidError, PermissionDeniedError, ProcessError
from actord.ownership import prepare_socket_path
from actord.security import client_identity, command_permissions
from actord.transport import FrameProtocol

if TYPE_CHECKING:
    from actord.core.policy import Evaluator
    from actord.nodeview import ControlledNode

log = logging.getLogger("actord.control")


#: commands whose ``dest`` argument is the resource of their permission
_TARGETED = frozenset({"send", "kill", "cancel", "trace"})
#: commands cancelled when their client goes away (a long poll answers no one then)
_WAITING = ("exec", "logs", "trace")


class ControlConnection(FrameProtocol):
    """A CLI connection; knows its peer's uid/gid (SO_PEERCRED, read when it connects).

    Its ``exec``, ``logs`` and ``trace`` commands are cancelled when it goes away: a client
    that stops waiting (the CLI killed, Ctrl-C) leaves an exec's child a CANCEL, as an actor's
    exec does, and a long poll of ``logs`` nothing; then its ``closers`` run (its trace
    sessions end, so the traces are switched off).
    """

    uid = -1
    gid = -1

    def connection_made(self, transport: Any) -> None:
        self.waiting: set[asyncio.Task[None]] = set()  # running exec, logs, trace commands
        self.closers = Closers()  # what to do when the client goes
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
        self.closers.run()

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
    """Accepts CLI connections and runs their commands against the node."""

    def __init__(self, node: ControlledNode) -> None:
        self.node = node
        self.router = node.router
        self.server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.handlers = Commands(node).handlers

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
        if frame[2] in _WAITING:
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
            actor, scope = client_identity(self.node.config.security, conn.uid, conn.gid)
            current_client.set((actor, scope))
            current_closers.set(conn.closers)
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
        lookup = self.router.lookup_name
        if not ids.is_name(dest):
            return ids.resolve(dest, lookup)  # a PID, or INVALID
        action = command_permissions(command, args, "")[0][0]
        if not evaluator.may_allow(action):
            raise PermissionDeniedError(f"{action} on {dest!r}: denied")
        pid = ids.resolve(dest, lookup)
        if not evaluator.check(action, pid):
            raise PermissionDeniedError(f"{action} on {dest!r}: denied")
        return pid


def peer_credentials(sock: socket.socket) -> tuple[int, int, int]:
    """``(pid, uid, gid)`` of a unix socket peer."""
    data = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, gid = struct.unpack("3i", data)
    return pid, uid, gid
