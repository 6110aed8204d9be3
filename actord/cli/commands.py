"""The ``actord`` command line (SPEC section 9), built with click.

Exit codes: 0 success, 1 the operation failed, 2 usage error (bad input rejected before the
daemon is asked), 3 no daemon answers. Every failure is one line ``actord: ...`` on stderr;
no command prints a traceback (:class:`_Cli` turns click's errors and, as a last line of
defence, any unexpected exception into that line). ``--json`` prints machine-readable output.

Values: ARGS and VALUES are parsed as JSON when they parse, else taken as strings; ``@PATH``
reads the value from a file and ``-`` from stdin (then parsed the same way; bytes that are
not UTF-8 are sent as bytes). ``{"$bytes": "<base64>"}`` anywhere in a value is sent as
bytes and ``{"$float": "nan"|"inf"|"-inf"}`` as that float. Output shows bytes as
``{"$bytes": ...}`` and non-finite floats as ``{"$float": ...}``, so it is always valid JSON.
A value msgpack cannot carry (an int beyond 64 bits, text with lone surrogates such as
invalid UTF-8 in argv) is a usage error naming the argument, found before connecting.
Text rows escape control characters, so one row is one line.
"""

from __future__ import annotations

import base64
import binascii
import errno
import fnmatch
import json
import math
import os
import sys
import traceback
from importlib import metadata
from typing import Any, NoReturn

import click

from actord.client import Client, ClientError, CommandError, DaemonUnreachableError
from actord.durations import MAX_DURATION, check_seconds, parse_duration
from actord.errors import ConfigError

EXIT_FAILED, EXIT_USAGE, EXIT_UNREACHABLE = 1, 2, 3
#: the client timeout when neither ``--client-timeout`` nor ``ACTORD_CLIENT_TIMEOUT`` is set
DEFAULT_CLIENT_TIMEOUT = 5.0
#: deepest nesting of a value the CLI sends (msgpack and the daemon's decoder stop at 511)
MAX_DEPTH = 256
_MIN_INT, _MAX_INT = -(2**63), 2**64 - 1
_FLOATS = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


class _Usage(Exception):
    """Bad input found before the daemon is asked (exit 2)."""


def _fail(message: str, code: int = EXIT_FAILED) -> NoReturn:
    click.echo(f"actord: {_t(message)}", err=True)
    sys.exit(code)


def _t(value: object) -> str:
    """``value`` as text on one line: control and other unprintable characters escaped."""
    text = value if isinstance(value, str) else str(value)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape",
                                                         "backslashreplace").decode("ascii")
                   for c in text)


# -- values in ---------------------------------------------------------------------------------


def _value(text: str, label: str) -> Any:
    """One ARG/VALUE: ``@PATH`` (a file), ``-`` (stdin), else the text; JSON when it parses."""
    if text == "-" or (text.startswith("@") and len(text) > 1):
        try:
            data = sys.stdin.buffer.read() if text == "-" else _read(text[1:])
        except OSError as e:
            raise _Usage(f"{label}: cannot read {text}: {e.strerror or e}") from None
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            return data  # not text: sent as bytes
    try:
        value = json.loads(text)
    except RecursionError:
        raise _Usage(f"{label}: nested deeper than {MAX_DEPTH} levels") from None
    except ValueError:
        value = text
    return _incoming(value, label, 0)


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _incoming(value: Any, label: str, depth: int) -> Any:
    """``value`` with ``$bytes``/``$float`` objects decoded; ``_Usage`` for what msgpack
    cannot carry."""
    if depth > MAX_DEPTH:
        raise _Usage(f"{label}: nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise _Usage(f"{label}: not valid UTF-8 text: {_t(value)[:60]}") from None
        return value
    if isinstance(value, bool) or value is None or isinstance(value, float | bytes):
        return value
    if isinstance(value, int):
        if not _MIN_INT <= value <= _MAX_INT:
            raise _Usage(f"{label}: integer out of the 64-bit range: {str(value)[:40]}")
        return value
    if isinstance(value, list):
        return [_incoming(v, label, depth + 1) for v in value]
    if isinstance(value, dict):
        if len(value) == 1 and "$bytes" in value:
            try:
                return base64.b64decode(_incoming(value["$bytes"], label, depth), validate=True)
            except (binascii.Error, TypeError, ValueError):
                raise _Usage(f'{label}: "$bytes" must be a base64 string') from None
        if len(value) == 1 and "$float" in value:
            try:
                return _FLOATS[value["$float"]]
            except (KeyError, TypeError):
                raise _Usage(f'{label}: "$float" must be "nan", "inf" or "-inf"') from None
        return {_incoming(k, label, depth + 1): _incoming(v, label, depth + 1)
                for k, v in value.items()}
    return value


def _values(texts: tuple[str, ...], what: str) -> list[Any]:
    if sum(t == "-" for t in texts) > 1:
        raise _Usage(f"{what}: stdin (-) can be read only once")
    return [_value(t, f"{what} #{i}") for i, t in enumerate(texts, 1)]


# -- values out --------------------------------------------------------------------------------


def _outgoing(value: Any) -> Any:
    """``value`` with bytes and non-finite floats as ``$bytes``/``$float`` objects."""
    if isinstance(value, bytes):
        return {"$bytes": base64.b64encode(value).decode("ascii")}
    if isinstance(value, float) and not math.isfinite(value):
        return {"$float": "nan" if math.isnan(value) else "inf" if value > 0 else "-inf"}
    if isinstance(value, list | tuple):
        return [_outgoing(v) for v in value]
    if isinstance(value, dict):
        return {(k if isinstance(k, str) else _json(_outgoing(k))): _outgoing(v)
                for k, v in value.items()}
    return value


def _json(value: Any) -> str:
    """Valid JSON for any value the daemon sends (see :func:`_outgoing`)."""
    return json.dumps(_outgoing(value), allow_nan=False)


# -- talking to the daemon ---------------------------------------------------------------------


def _socket_path(socket_opt: str | None, config_opt: str | None) -> str:
    if socket_opt:
        return socket_opt
    env = os.environ.get("ACTORD_SOCKET")
    if env:
        return env
    from actord.core import config as cfg

    if config_opt:
        try:
            return cfg.load(config_opt).daemon.socket
        except ConfigError as e:
            _fail(str(e), EXIT_USAGE)
    return cfg.default_socket_path()


def _call(ctx: click.Context, command: str, wait: float | None = None, **args: Any) -> Any:
    """Run one command; every failure ends the CLI with one line and its exit code.

    Arguments are checked before connecting; the client timeout (``--client-timeout``)
    bounds the daemon's silences, ``wait`` the whole command.
    """
    for key, value in args.items():
        if key not in ("args", "values"):  # those were checked when parsed
            _checked(_incoming, value, key.replace("_", "-"), 0)
    path = _socket_path(ctx.obj["socket"], ctx.obj["config"])
    try:
        with Client(path, timeout=ctx.obj["client_timeout"]) as client:
            return client.call(command, wait, **args)
    except DaemonUnreachableError as e:
        _fail(str(e), EXIT_UNREACHABLE)
    except ClientError as e:
        _fail(str(e))
    except CommandError as e:
        _fail(f"{e.kind}: {e}")
    except TimeoutError:
        _fail(f"{command}: no reply from the daemon within {wait}s")


def _checked(check: Any, *args: Any) -> Any:
    try:
        return check(*args)
    except _Usage as e:
        _fail(str(e), EXIT_USAGE)


def _emit(ctx: click.Context, value: Any, text: str | None = None) -> None:
    if ctx.obj["json"]:
        click.echo(_json(value))
    elif text is not None:
        click.echo(text)


def _common(f: Any) -> Any:
    f = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")(f)
    f = click.option("--config", "config_path", type=click.Path(), default=None,
                     help="Find the socket in this config file.")(f)
    f = click.option("--socket", "socket_path", type=click.Path(), default=None,
                     help="Control socket (default: $ACTORD_SOCKET, then the config's).")(f)
    return click.pass_context(f)


def _setup(ctx: click.Context, socket_path: str | None, config_path: str | None,
           as_json: bool) -> None:
    ctx.ensure_object(dict)
    ctx.obj.update(socket=socket_path, config=config_path, json=as_json)
    ctx.obj.setdefault("client_timeout", DEFAULT_CLIENT_TIMEOUT)


class _Cli(click.Group):
    """The command group; its ``main`` keeps every failure to one line on stderr."""

    def main(self, *args: Any, **kwargs: Any) -> NoReturn:  # type: ignore[override]
        kwargs["standalone_mode"] = False
        kwargs.setdefault("prog_name", "actord")  # not "-m actord" under ``python -m``
        try:
            code = super().main(*args, **kwargs)
        except click.ClickException as e:
            ctx = getattr(e, "ctx", None)
            sub = ctx.command_path.partition(" ")[2] if ctx is not None else ""
            where = f"{sub}: " if sub else ""
            _fail(where + e.format_message(), e.exit_code)
        except click.Abort:
            _fail("interrupted")
        except OSError as e:
            if e.errno != errno.EPIPE:
                _fail(f"{e.strerror or e}")
            sys.stderr.close()  # stdout's reader went away (``actord ps | head``)
            os._exit(EXIT_FAILED)
        except Exception as e:  # the last line of defence: one line, no traceback
            where = traceback.extract_tb(e.__traceback__)[-1:]
            at = f" (at {where[0].filename}:{where[0].lineno})" if where else ""
            _fail(f"internal error: {type(e).__name__}: {e}{at}")
        sys.exit(code if isinstance(code, int) else 0)


def _client_timeout(ctx: click.Context, param: click.Parameter, value: float | None) -> float:
    if value is None:
        return DEFAULT_CLIENT_TIMEOUT
    if not (math.isfinite(value) and 0 < value <= MAX_DURATION):
        raise click.BadParameter(f"must be a number of seconds in (0, {MAX_DURATION:.0f}]")
    return value


@click.group(cls=_Cli, context_settings={"help_option_names": ["-h", "--help"]},
             invoke_without_command=True, no_args_is_help=False)
@click.version_option(metadata.version("actord"), "--version", prog_name="actord",
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
        _fail("missing command (see the help above)", EXIT_USAGE)
    ctx.ensure_object(dict)
    ctx.obj["client_timeout"] = client_timeout


@main.command()
@click.option("--config", "config_path", type=click.Path(), default="/etc/actord/actord.toml",
              show_default=True, help="The TOML config file.")
def run(config_path: str) -> None:
    """Run the daemon in the foreground."""
    from actord.core import config as cfg
    from actord.core import config_env
    from actord.daemon import run as run_daemon

    try:
        config = cfg.load(config_path)
        config_env.check(config)
    except ConfigError as e:
        _fail(str(e), EXIT_FAILED)
    from actord.control import SocketInUseError

    try:
        sys.exit(run_daemon(config))
    except (OSError, ConfigError, SocketInUseError) as e:
        _fail(str(e), EXIT_FAILED)


@main.command("check-config")
@click.argument("path", type=click.Path())
@click.option("--json", "as_json", is_flag=True)
def check_config(path: str, as_json: bool) -> None:
    """Validate a config file without starting anything (stricter than run: see README)."""
    from actord.core import config as cfg
    from actord.core import config_env

    try:
        config = cfg.load(path)
        config_env.check(config, strict=True)
    except ConfigError as e:
        if as_json:
            click.echo(_json({"ok": False, "error": str(e)}))
        _fail(str(e))
    summary = {"ok": True, "hosts": len(config.hosts), "processes": len(config.processes),
               "services": len(config.services)}
    if as_json:
        click.echo(_json(summary))
    else:
        click.echo(f"{_t(path)}: ok ({summary['hosts']} hosts, {summary['processes']} processes, "
                   f"{summary['services']} services)")


@main.command()
@_common
def status(ctx: click.Context, socket_path: str | None, config_path: str | None,
           as_json: bool) -> None:
    """Daemon, hosts and workers."""
    _setup(ctx, socket_path, config_path, as_json)
    st = _call(ctx, "status")
    lines = [f"node {_t(st['node'])}  uptime {st['uptime']:.1f}s  processes {st['processes']}  "
             f"routed {st['routed']}  dead letters {st['dead_letters']}"]
    for host in st["hosts"]:
        lines.append(f"host {_t(host['name'])}")
        for w in host["workers"]:
            lines.append(f"  worker {w['index']}  os pid {w['os_pid']}  "
                         f"processes {w['processes']}  restarts {w['restarts']}"
                         + _worker_state(w))
    _emit(ctx, st, "\n".join(lines))


def _worker_state(w: dict[str, Any]) -> str:
    """The status line's tail for a worker that is not simply running."""
    if w.get("state") == "stalled":
        return f"  STALLED for {w['stalled_for']:.1f}s (event loop blocked)"
    return "  down" if w.get("state") == "down" else ""


@main.command()
@click.option("--host", default=None, help="Only this host.")
@click.option("--id", "id_glob", default=None, metavar="GLOB",
              help="Only processes whose id matches (a glob, e.g. 'app.*:worker').")
@click.option("--name", "name_glob", default=None, metavar="GLOB",
              help="Only processes with a registered name that matches (a glob).")
@click.option("--state", default=None, help="Only processes in this state (e.g. running).")
@_common
def ps(ctx: click.Context, host: str | None, id_glob: str | None, name_glob: str | None,
       state: str | None, socket_path: str | None, config_path: str | None,
       as_json: bool) -> None:
    """Live processes with their mailbox depth (- when unknown: its worker is stalled)."""
    _setup(ctx, socket_path, config_path, as_json)
    _checked(_incoming, [id_glob, name_glob, state], "ps filter", 0)
    rows = [
        r for r in _call(ctx, "ps", host=host)
        if (id_glob is None or fnmatch.fnmatchcase(str(r["id"]), id_glob))
        and (name_glob is None or any(fnmatch.fnmatchcase(n, name_glob) for n in r["names"]))
        and (state is None or r.get("state") == state)
    ]
    header = f"{'PID':<28} {'ID':<28} {'HOST':<20} {'W':>2} {'STATE':<12} {'MBOX':>6} NAMES"
    text = "\n".join([header] + [
        f"{_t(r['pid']):<28} {_t(r['id']):<28} {_t(r['host']):<20} {r['worker']:>2} "
        f"{_t(r['state']):<12} {'-' if r['mailbox'] is None else r['mailbox']:>6} "
        f"{_t(','.join(r['names']))}" for r in rows
    ])
    _emit(ctx, rows, text)


@main.command()
@click.argument("id")
@click.argument("host")
@click.argument("args", nargs=-1)
@click.option("--name", default=None, help="Register this name for the new process.")
@_common
def spawn(ctx: click.Context, id: str, host: str, args: tuple[str, ...],
          name: str | None, socket_path: str | None, config_path: str | None,
          as_json: bool) -> None:
    """Start a process; prints its PID."""
    _setup(ctx, socket_path, config_path, as_json)
    values = _checked(_values, args, "ARGS")
    pid = _call(ctx, "spawn", id=id, host=host, args=values, name=name)
    _emit(ctx, {"pid": pid}, _t(pid))


@main.command()
@click.argument("dest")
@click.argument("topic")
@click.argument("values", nargs=-1)
@_common
def send(ctx: click.Context, dest: str, topic: str, values: tuple[str, ...],
         socket_path: str | None, config_path: str | None, as_json: bool) -> None:
    """Send a message to a PID or registered name."""
    _setup(ctx, socket_path, config_path, as_json)
    parsed = _checked(_values, values, "VALUES")
    _call(ctx, "send", dest=dest, topic=topic, values=parsed)
    _emit(ctx, {"ok": True})


@main.command()
@click.argument("dest")
@click.option("--no-wait", is_flag=True, help="Return once the terminate is sent.")
@_common
def kill(ctx: click.Context, dest: str, no_wait: bool, socket_path: str | None,
         config_path: str | None, as_json: bool) -> None:
    """Terminate a process (hard stop) and wait for its end.

    Exit 1 if its worker is stalled: it ends when that worker's loop runs again (or
    restart-worker it)."""
    _setup(ctx, socket_path, config_path, as_json)
    _call(ctx, "kill", dest=dest, no_wait=no_wait)
    _emit(ctx, {"ok": True})


@main.command()
@click.argument("dest")
@click.option("--deadline", default=None,
              help="e.g. 5s (at most 7 days); terminate if still alive then.")
@click.option("--reason", default=None)
@_common
def cancel(ctx: click.Context, dest: str, deadline: str | None, reason: str | None,
           socket_path: str | None, config_path: str | None, as_json: bool) -> None:
    """Deliver a CANCEL event."""
    _setup(ctx, socket_path, config_path, as_json)
    value = None
    if deadline is not None:
        value = _checked(_value, deadline, "--deadline")
        try:
            parse_duration(value)
        except ValueError as e:
            _fail(f"--deadline: {e}", EXIT_USAGE)
    _call(ctx, "cancel", dest=dest, deadline=value, reason=reason)
    _emit(ctx, {"ok": True})


@main.command("exec")
@click.argument("id")
@click.argument("host")
@click.argument("args", nargs=-1)
@click.option("--timeout", type=float, default=None, metavar="SECONDS",
              help="How long the process may run (at most 7 days); then it is cancelled and "
                   "the error is \"timeout\". Default: no limit.")
@_common
def exec_(ctx: click.Context, id: str, host: str, args: tuple[str, ...],
          timeout: float | None, socket_path: str | None, config_path: str | None,
          as_json: bool) -> None:
    """Run a process to completion and print its result."""
    _setup(ctx, socket_path, config_path, as_json)
    if timeout is not None:
        try:
            check_seconds(timeout)
        except ValueError as e:
            _fail(f"--timeout: {e}", EXIT_USAGE)
    values = _checked(_values, args, "ARGS")
    result = _call(ctx, "exec", None, id=id, host=host, args=values, timeout=timeout)
    out = {k: v for k, v in result.items() if k in ("value", "error")}
    if as_json:
        click.echo(_json(out))
    elif "error" not in out:
        click.echo(_json(out["value"]))
    if "error" in out:
        _fail(f"exec failed: {out['error']}")


@main.command("restart-worker")
@click.argument("host")
@click.argument("index", type=click.IntRange(min=0))
@_common
def restart_worker(ctx: click.Context, host: str, index: int, socket_path: str | None,
                   config_path: str | None, as_json: bool) -> None:
    """Kill worker INDEX of HOST (e.g. a stalled one) and start a new one in its slot.

    Its processes end with "worker crashed" (monitors get EXIT, links LINK_DOWN)."""
    _setup(ctx, socket_path, config_path, as_json)
    r = _call(ctx, "restart-worker", host=host, index=index)
    _emit(ctx, r, f"worker {r['host']}/{r['index']} restarted: os pid {r['old_os_pid']} -> "
                  f"{r['os_pid']}, {r['ended']} processes ended (worker crashed)")


@main.command()
@_common
def registry(ctx: click.Context, socket_path: str | None, config_path: str | None,
             as_json: bool) -> None:
    """Registered names."""
    _setup(ctx, socket_path, config_path, as_json)
    names = _call(ctx, "registry")
    _emit(ctx, names, "\n".join(f"{_t(n)}\t{_t(p)}" for n, p in sorted(names.items())))


@main.command()
@_common
def services(ctx: click.Context, socket_path: str | None, config_path: str | None,
             as_json: bool) -> None:
    """Supervised services."""
    _setup(ctx, socket_path, config_path, as_json)
    rows = _call(ctx, "services")
    _emit(ctx, rows, "\n".join(
        f"{_t(r['name']):<24} {_t(r['state']):<10} {_t(r.get('pid') or '-'):<28} "
        f"restarts {r['restarts']}  {_t(r.get('last_error') or '')}" for r in rows))


def _service_row(row: dict[str, Any]) -> str:
    return _t(f"{row['name']}  {row['state']}  {row.get('pid') or '-'}  "
              f"restarts {row['restarts']}"
              + (f"  {row['last_error']}" if row.get("last_error") else ""))


def _service_command(command: str, summary: str) -> None:
    """Register ``actord start|stop|restart SERVICE``: prints the service's row afterwards.

    ``start``/``restart`` wait until the service runs (its entry loaded) or could not start,
    and exit 1 unless it is ``running``.
    """

    @main.command(command, help=summary)
    @click.argument("service")
    @_common
    def _command(ctx: click.Context, service: str, socket_path: str | None,
                 config_path: str | None, as_json: bool) -> None:
        _setup(ctx, socket_path, config_path, as_json)
        # no client-side wait limit: a stop lasts up to the service's stop_timeout (+ grace)
        row = _call(ctx, command, None, service=service)
        _emit(ctx, row, _service_row(row))
        if command != "stop" and row["state"] == "failed":
            _fail(f"service {service} failed: {row['last_error'] or row.get('reason')}")
        if command != "stop" and row["state"] != "running":
            _fail(f"service {service} is not running ({row['state']})")


_service_command("start", "Start a service that is not running.")
_service_command("stop", "Stop a service: CANCEL, wait its stop_timeout, then terminate.")
_service_command("restart", "Stop a service (if running), then start it.")


@main.command()
@_common
def reload(ctx: click.Context, socket_path: str | None, config_path: str | None,
           as_json: bool) -> None:
    """Re-read the config and apply what changed (a bad config changes nothing).

    Also says which workers a shrink retired and how many processes ended with them, and
    (on stderr) the [daemon] keys that need a restart and services not running after it.
    """
    _setup(ctx, socket_path, config_path, as_json)
    summary = _call(ctx, "reload", 120.0)
    hosts, services = summary["hosts"], summary["services"]
    lines = [f"reloaded: hosts +{len(hosts['added'])} -{len(hosts['removed'])} "
             f"~{len(hosts['resized'])}, services +{len(services['added'])} "
             f"-{len(services['removed'])} ~{len(services['changed'])}, "
             f"processes changed {len(summary['processes'])}"]
    for r in summary.get("retired", []):
        n = len(r["processes"])
        lines.append(f"retired worker {r['worker']} (os pid {r['os_pid']}): "
                     f"ended {n} process{'' if n == 1 else 'es'}")
    _emit(ctx, summary, "\n".join(lines))
    if not as_json and summary.get("not_applied"):
        click.echo("actord: warning: not applied until the daemon restarts: [daemon] "
                   + ", ".join(summary["not_applied"]), err=True)
    if not as_json and summary.get("not_running"):
        click.echo("actord: warning: services not running after the reload: "
                   + ", ".join(summary["not_running"]), err=True)


@main.command()
@click.option("--no-wait", is_flag=True,
              help="Return once the daemon began to stop, without waiting for it to exit.")
@_common
def shutdown(ctx: click.Context, no_wait: bool, socket_path: str | None,
             config_path: str | None, as_json: bool) -> None:
    """Stop the daemon (cancel all, wait, terminate the rest) and wait until it has exited.

    Progress goes to stderr (not with --json). Exit 1 if the daemon is still running after
    the longest its shutdown can take (the bound it answers with).
    """
    _setup(ctx, socket_path, config_path, as_json)
    reply = _call(ctx, "shutdown")
    pid, bound = int(reply["os_pid"]), float(reply["bound"])
    if no_wait:
        _emit(ctx, {"ok": True, "os_pid": pid, "exited": False}, "shutting down")
        return
    if not as_json:
        click.echo(f"waiting for the daemon (pid {pid}) to exit...", err=True, nl=False)
    gone = _wait_exit(pid, bound, None if as_json else lambda: click.echo(".", err=True, nl=False))
    if not as_json:
        click.echo(" exited" if gone else "", err=True)
    if not gone:
        _fail(f"the daemon (pid {pid}) is still running {bound:g}s after shutdown")
    _emit(ctx, {"ok": True, "os_pid": pid, "exited": True}, "stopped")


def _wait_exit(pid: int, bound: float, tick: Any = None) -> bool:
    """Wait up to ``bound`` seconds for process ``pid`` to end (a zombie has ended); True if
    it did. ``tick()`` is called once a second while waiting. A pidfd when the kernel has
    them, else /proc polled."""
    import select
    import time

    from actord.proctable import is_alive

    deadline = time.monotonic() + bound
    try:
        fd: int | None = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    except (OSError, AttributeError):
        fd = None
    try:
        while True:
            left = deadline - time.monotonic()
            if fd is not None:
                if select.select([fd], [], [], max(0.0, min(1.0, left)))[0]:
                    return True
            else:
                step = time.monotonic() + max(0.0, min(1.0, left))
                while is_alive(pid) and time.monotonic() < step:
                    time.sleep(0.02)
                if not is_alive(pid):
                    return True
            if time.monotonic() >= deadline:
                return False
            if tick is not None:
                tick()
    finally:
        if fd is not None:
            os.close(fd)
