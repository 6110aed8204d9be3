"""The control socket: CLI commands as a literal table of handlers over framed msgpack.

:mod:`~actord.control.server` listens, reads each client's requests and checks its
permissions; :mod:`~actord.control.commands` holds one handler per command. The socket's
protocol and invariant are in the server's docstring; who owns the socket path is
:mod:`actord.ownership`.
"""

from actord.control.server import ControlServer
from actord.ownership import SocketInUseError, prepare_socket_path

__all__ = ["ControlServer", "SocketInUseError", "prepare_socket_path"]
