"""The ``actord`` command group: its options, how a command talks to the daemon, and the
last line of defence that keeps every failure to one line (:class:`_Cli`).
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import sys
import traceback
from collections.abc import Iterator
from typing import Any, NoReturn

import click

from actord.cli.output import EXIT_FAILED, EXIT_UNREACHABLE, EXIT_USAGE, fail, to_json
from actord.cli.values import checked, incoming
from actord.client import Client, ClientError, CommandError, DaemonUnreachableError
from actord.durations import MAX_DURATION
from actord.errors import ConfigError

#: the client timeout when neither ``--client-timeout`` nor ``ACTORD_CLIENT_TIMEOUT`` is set
DEFAULT_CLIENT_TIMEOUT = 5.0


# -- talking to the daemon ---------------------------------------------------------------------


def _socket_path(socket_opt: str | None, config_opt: str | None) -> str:
    if socket_opt:
        return socket_opt
    env = os.environ.get("ACTORD_SOCKET")
    if env:
        return env
    from actord import configfile
    from actord.core import config as cfg

    if config_opt:
        try:
            return configfile.load(config_opt).daemon.socket
        except ConfigError as e:
            fail(str(e), EXIT_USAGE)
    return cfg.default_socket_path()


def call(ctx: click.Context, command: str, wait: float | None = None, **args: Any) -> Any:
    """Run one command; every failure ends the CLI with one line and its exit code.

    Arguments are checked before connecting; the client timeout (``--client-timeout``)
    bounds the daemon's silences, ``wait`` the whole command.
    """
    for key, value in args.items():
        if key not in ("args", "values"):  # those were checked when parsed
            checked(incoming, value, key.replace("_", "-"), 0)
    with session(ctx) as client:
        try:
            return client.call(command, wait, **args)
        except TimeoutError:
            fail(f"{command}: no reply from the daemon within {wait}s")


@contextlib.contextmanager
def session(ctx: click.Context) -> Iterator[Client]:
    """A connection to the daemon for several commands (e.g. ``logs -f``); every failure in
    it ends the CLI with one line and its exit code, as in :func:`call`."""
    path = _socket_path(ctx.obj["socket"], ctx.obj["config"])
    try:
        with Client(path, timeout=ctx.obj["client_timeout"]) as client:
            yield client
    except DaemonUnreachableError as e:
        fail(str(e), EXIT_UNREACHABLE)
    except ClientError as e:
        fail(str(e))
    except CommandError as e:
        fail(f"{e.kind}: {e}")


def emit(ctx: click.Context, value: Any, text: str | None = None) -> None:
    """Print a command's result: ``value`` as JSON with ``--json``, else ``text`` (if any)."""
    if ctx.obj["json"]:
        click.echo(to_json(value))
    elif text is not None:
        click.echo(text)


def common_options(f: Any) -> Any:
    """Add ``--json``, ``--config`` and ``--socket`` to a command that talks to the daemon."""
    f = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")(f)
    f = click.option("--config", "config_path", type=click.Path(), default=None,
                     help="Find the socket in this config file.")(f)
    f = click.option("--socket", "socket_path", type=click.Path(), default=None,
                     help="Control socket (default: $ACTORD_SOCKET, then the config's).")(f)
    return click.pass_context(f)


def setup(ctx: click.Context, socket_path: str | None, config_path: str | None,
           as_json: bool) -> None:
    """Record a command's common options in the click context (for :func:`call`)."""
    ctx.ensure_object(dict)
    ctx.obj.update(socket=socket_path, config=config_path, json=as_json)
    ctx.obj.setdefault("client_timeout", DEFAULT_CLIENT_TIMEOUT)


class _Cli(click.Group):
    """The command group; its ``main`` keeps every failure to one line on stderr."""

    def main(self, *args: Any, **kwargs: Any) -> NoReturn:
        kwargs["standalone_mode"] = False
        kwargs.setdefault("prog_name", "actord")  # not "-m actord" under ``python -m``
        try:
            code = super().main(*args, **kwargs)
        except click.ClickException as e:
            ctx = getattr(e, "ctx", None)
            sub = ctx.command_path.partition(" ")[2] if ctx is not None else ""
            where = f"{sub}: " if sub else ""
            fail(where + e.format_message(), e.exit_code)
        except click.Abort:
            fail("interrupted")
        except OSError as e:
            if e.errno != errno.EPIPE:
                fail(f"{e.strerror or e}")
            sys.stderr.close()  # stdout's reader went away (``actord ps | head``)
            os._exit(EXIT_FAILED)
        except Exception as e:  # the last line of defence: one line, no traceback
            last = traceback.extract_tb(e.__traceback__)[-1:]
            at = f" (at {last[0].filename}:{last[0].lineno})" if last else ""
            fail(f"internal error: {type(e).__name__}: {e}{at}")
        sys.exit(code if isinstance(code, int) else 0)


def _client_timeout(ctx: click.Context, param: click.Parameter, value: float | None) -> float:
    if value is None:
        return DEFAULT_CLIENT_TIMEOUT
    if not (math.isfinite(value) and 0 < value <= MAX_DURATION):
        raise click.BadParameter(f"must be a number of seconds in (0, {MAX_DURATION:.0f}]")
    return value


@click.group(cls=_Cli, context_settings={"help_option_names": ["-h", "--help"]},
             invoke_without_command=True, no_args_is_help=False)
@click.version_option(None, "--version", package_name="actord", prog_name="actord",
                      message="%(prog)s %(version)s")
@click.option("--client-timeout", type=float, default=None, envvar="ACTORD_CLIENT_TIMEOUT",
              callback=_client_timeout, metavar="SECONDS",
              help="How long the daemon may stay silent before the CLI gives up (exit 3); "
                   f"default {DEFAULT_CLIENT_TIMEOUT:g}s, env ACTORD_CLIENT_TIMEOUT.")
@click.pass_context
def main(ctx: click.Context, client_timeout: float) -> None:
    """actord: Erlang-style actors for Python, supervised across OS worker processes."""
    if ctx.invoked_subcommand is None:  # bare ``actord``: the help, then the one line
        click.echo(ctx.get_help())
        fail("missing command (see the help above)", EXIT_USAGE)
    ctx.ensure_object(dict)
    ctx.obj["client_timeout"] = client_timeout
