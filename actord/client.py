"""A blocking control-socket client, used by the CLI and by tests."""

from __future__ import annotations

import contextlib
import socket
from typing import Any

from actord.core import wire
from actord.errors import ProcessError, from_kind

#: the largest ``[daemon] max_frame`` a config may set
MAX_FRAME_LIMIT = 1 << 30


class DaemonUnreachableError(Exception):
    """No daemon listens on the socket."""


class CommandError(ProcessError):
    """The daemon answered with an error; ``.kind`` is its kind string."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class Client:
    """One connection to a daemon; ``call`` sends a command and waits for its reply."""

    def __init__(self, path: str, timeout: float | None = 30.0) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        try:
            self.sock.connect(path)
        except OSError as e:
            self.sock.close()
            raise DaemonUnreachableError(f"no actord daemon at {path}: {e.strerror}") from None
        # the largest max_frame a daemon may have: a reply (an exec result) is never refused
        self.decoder = wire.FrameDecoder(MAX_FRAME_LIMIT)
        self.next_req = 0
        self.dropped = False  # the daemon refused a request and closed this connection

    def call(self, command: str, wait: float | None = 30.0, /, **args: Any) -> Any:
        """Run one command; raises ``CommandError`` with the daemon's error kind."""
        self.next_req += 1
        self.sock.settimeout(wait)
        # BrokenPipe: the daemon refused the request while it was still being sent (too
        # large); its reply (request id None) is waiting to be read below
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.sock.sendall(wire.encode([wire.CTL_REQUEST, self.next_req, command, args]))
        while True:
            try:
                data = self.sock.recv(65536)
            except ConnectionError:
                data = b""
            if not data:
                raise DaemonUnreachableError(f"daemon at {self.path} closed the connection")
            for frame in self.decoder.feed(data):
                if frame[0] == wire.CTL_REPLY and frame[1] in (self.next_req, None):
                    self.dropped = frame[1] is None
                    if frame[2] is None:
                        return frame[3]
                    err = from_kind(frame[2], frame[3])
                    raise CommandError(err.kind if err.kind != "ERROR" else frame[2], frame[3])

    def close(self) -> None:
        """Close the connection."""
        self.sock.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
