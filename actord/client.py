"""A blocking control-socket client, used by the CLI and by tests.

Failures are classified for the CLI's exit codes: ``DaemonUnreachableError`` only when no
daemon answers (nothing listens, connection refused, or no frame at all within the client
``timeout`` -- a stopped daemon); ``ClientError`` when a daemon is there but the request
could not be made (the socket may not be opened, the daemon closed the connection before
answering); ``CommandError`` when the daemon answered with an error, also for a request
frame too large for it to decode (it answers that one with request id None, then closes).
While a long command runs (``exec``, ``start``...), the client
sends ``ping`` requests on the same connection whenever it has heard nothing for half the
timeout, so a live daemon is never mistaken for a dead one and a stopped one is noticed
within the timeout.
"""

from __future__ import annotations

import errno
import socket
import time
from typing import Any

from actord.core import wire
from actord.errors import ProcessError, from_kind

#: connect errors that mean "nobody listens there"
_NO_DAEMON = frozenset({errno.ENOENT, errno.ECONNREFUSED, errno.ENOTDIR, errno.ECONNRESET,
                        errno.EPIPE})
#: the largest reply frame accepted: a daemon's ``max_frame`` is at most this
_MAX_REPLY = 1 << 30


class DaemonUnreachableError(Exception):
    """No daemon answers on the socket (exit 3 in the CLI)."""


class ClientError(Exception):
    """A daemon may be there but the request could not be made or answered (exit 1)."""


class CommandError(ProcessError):
    """The daemon answered with an error; ``.kind`` is its kind string."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class Client:
    """One connection to a daemon; ``call`` sends a command and waits for its reply.

    ``timeout`` bounds connecting and every silence of the daemon (None: wait forever).
    """

    def __init__(self, path: str, timeout: float | None = 30.0) -> None:
        self.path = path
        self.timeout = timeout
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        try:
            self.sock.connect(path)
        except TimeoutError:
            self.sock.close()
            raise DaemonUnreachableError(
                f"no answer from a daemon at {path} within {timeout}s") from None
        except OSError as e:
            self.sock.close()
            why = e.strerror or str(e)
            if e.errno in _NO_DAEMON:
                raise DaemonUnreachableError(f"no actord daemon at {path}: {why}") from None
            if e.errno in (errno.EACCES, errno.EPERM):
                raise ClientError(f"may not open the control socket {path}: {why}") from None
            raise ClientError(f"cannot connect to {path}: {why}") from None
        self.decoder = wire.FrameDecoder(_MAX_REPLY)
        self.next_req = 0
        self.dropped = False  # the daemon refused a request as a whole and closed this connection

    def call(self, command: str, wait: float | None = 30.0, /, **args: Any) -> Any:
        """Run one command; raises ``CommandError`` with the daemon's error kind.

        ``wait`` bounds the whole command (``TimeoutError`` past it; None: no bound).
        """
        frame = wire.encode([wire.CTL_REQUEST, self.next_req + 1, command, args])
        self.next_req += 1
        return self._roundtrip(frame, self.next_req, wait)

    def _send(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except TimeoutError:
            raise DaemonUnreachableError(
                f"daemon at {self.path} reads nothing (no answer within {self.timeout}s)"
            ) from None
        except OSError as e:
            if e.errno not in _NO_DAEMON:
                raise ClientError(f"cannot send to {self.path}: {e.strerror or e}") from None
            # the daemon closed the connection: its last words may explain why

    def _roundtrip(self, frame: bytes, req: int, wait: float | None) -> Any:
        deadline = None if wait is None else time.monotonic() + wait
        self._send(frame)
        step = None if self.timeout is None else self.timeout / 2
        pinged = False  # a ping is outstanding: the daemon must answer something
        while True:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise TimeoutError(f"no reply within {wait}s")
            bounds = [x for x in (step, left) if x is not None]
            self.sock.settimeout(min(bounds) if bounds else None)
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                if left is not None and step is not None and left < step:
                    continue  # the command's own bound, checked above
                if pinged:
                    raise DaemonUnreachableError(
                        f"no answer from the daemon at {self.path} within {self.timeout}s"
                    ) from None
                pinged = True
                self.next_req += 1
                self._send(wire.encode([wire.CTL_REQUEST, self.next_req, "ping", {}]))
                continue
            except OSError:
                data = b""
            if not data:
                raise ClientError(f"the daemon at {self.path} closed the connection "
                                  "before answering")
            pinged = False
            try:
                frames = self.decoder.feed(data)
            except wire.FrameError as e:
                raise ClientError(f"bad reply from the daemon: {e}") from None
            for f in frames:
                # request id None: the daemon refused a frame it could not decode (too
                # large) and closes the connection after this reply
                if f[0] == wire.CTL_REPLY and len(f) == 4 and f[1] in (req, None):
                    self.dropped = f[1] is None
                    if f[2] is None:
                        return f[3]
                    err = from_kind(f[2], str(f[3]))
                    raise CommandError(err.kind if err.kind != "ERROR" else str(f[2]), str(f[3]))

    def close(self) -> None:
        """Close the connection."""
        self.sock.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
