"""The control socket: CLI commands as a literal table of handlers over framed msgpack.

:mod:`~actord.control.server` listens, reads each client's requests and checks its
permissions; :mod:`~actord.control.commands` holds one handler per command. The socket's
protocol and invariant are in the server's docstring; who owns the socket path is
:mod:`actord.ownership`. Nothing is imported here: the CLI imports
:mod:`~actord.control.top` for its sort keys and must not load the server (and its config
and policy modules) for every command.
"""
