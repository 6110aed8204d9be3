"""The ``actord`` command line (SPEC section 9), built with click.

Exit codes: 0 success, 1 the operation failed (message on stderr), 2 usage error, 3 no
daemon reachable. ``--json`` prints machine-readable output. ARGS and VALUES are parsed as
JSON when they parse, else taken as strings.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, NoReturn

import click

from actord.client import Client, CommandError, DaemonUnreachableError
from actord.errors import ConfigError

EXIT_FAILED, EXIT_USAGE, EXIT_UNREACHABLE = 1, 2, 3


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _fail(message: str, code: int = EXIT_FAILED) -> NoReturn:
    click.echo(f"actord: {message}", err=True)
    sys.exit(code)


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


def _call(ctx: click.Context, command: str, wait: float | None = 30.0, **args: Any) -> Any:
    path = _socket_path(ctx.obj["socket"], ctx.obj["config"])
    try:
        with Client(path, timeout=10.0) as client:
            return client.call(command, wait, **args)
    except DaemonUnreachableError as e:
        _fail(str(e), EXIT_UNREACHABLE)
    except CommandError as e:
        _fail(f"{e.kind}: {e}")
    except TimeoutError:
        _fail(f"{command}: no answer from the daemon", EXIT_FAILED)


def _emit(ctx: click.Context, value: Any, text: str | None = None) -> None:
    if ctx.obj["json"]:
        click.echo(json.dumps(value, indent=None, sort_keys=False))
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
    ctx.obj = {"socket": socket_path, "config": config_path, "json": as_json}


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """actord: Erlang-style actors for Python, supervised across OS worker processes."""


@main.command()
@click.option("--config", "config_path", type=click.Path(), default="/etc/actord/actord.toml",
              show_default=True, help="The TOML config file.")
def run(config_path: str) -> None:
    """Run the daemon in the foreground."""
    from actord.core import config as cfg
    from actord.daemon import run as run_daemon

    try:
        config = cfg.load(config_path)
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
    """Validate a config file without starting anything."""
    from actord.core import config as cfg

    try:
        config = cfg.load(path)
    except ConfigError as e:
        if as_json:
            click.echo(json.dumps({"ok": False, "error": str(e)}))
        _fail(str(e))
    summary = {"ok": True, "hosts": len(config.hosts), "processes": len(config.processes),
               "services": len(config.services)}
    if as_json:
        click.echo(json.dumps(summary))
    else:
        click.echo(f"{path}: ok ({summary['hosts']} hosts, {summary['processes']} processes, "
                   f"{summary['services']} services)")


@main.command()
@_common
def status(ctx: click.Context, socket_path: str | None, config_path: str | None,
           as_json: bool) -> None:
    """Daemon, hosts and workers."""
    _setup(ctx, socket_path, config_path, as_json)
    st = _call(ctx, "status")
    lines = [f"node {st['node']}  uptime {st['uptime']:.1f}s  processes {st['processes']}  "
             f"routed {st['routed']}  dead letters {st['dead_letters']}"]
    for host in st["hosts"]:
        lines.append(f"host {host['name']}")
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
@_common
def ps(ctx: click.Context, host: str | None, socket_path: str | None, config_path: str | None,
       as_json: bool) -> None:
    """Live processes with their mailbox depth (- when unknown: its worker is stalled)."""
    _setup(ctx, socket_path, config_path, as_json)
    rows = _call(ctx, "ps", host=host)
    header = f"{'PID':<28} {'ID':<28} {'HOST':<20} {'W':>2} {'STATE':<12} {'MBOX':>6} NAMES"
    text = "\n".join([header] + [
        f"{r['pid']:<28} {r['id']:<28} {r['host']:<20} {r['worker']:>2} {r['state']:<12} "
        f"{'-' if r['mailbox'] is None else r['mailbox']:>6} {','.join(r['names'])}"
        for r in rows
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
    pid = _call(ctx, "spawn", id=id, host=host, args=[_value(a) for a in args], name=name)
    _emit(ctx, {"pid": pid}, pid)


@main.command()
@click.argument("dest")
@click.argument("topic")
@click.argument("values", nargs=-1)
@_common
def send(ctx: click.Context, dest: str, topic: str, values: tuple[str, ...],
         socket_path: str | None, config_path: str | None, as_json: bool) -> None:
    """Send a message to a PID or registered name."""
    _setup(ctx, socket_path, config_path, as_json)
    _call(ctx, "send", dest=dest, topic=topic, values=[_value(v) for v in values])
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
@click.option("--deadline", default=None, help="e.g. 5s; terminate if still alive then.")
@click.option("--reason", default=None)
@_common
def cancel(ctx: click.Context, dest: str, deadline: str | None, reason: str | None,
           socket_path: str | None, config_path: str | None, as_json: bool) -> None:
    """Deliver a CANCEL event."""
    _setup(ctx, socket_path, config_path, as_json)
    _call(ctx, "cancel", dest=dest, deadline=_value(deadline) if deadline else None,
          reason=reason)
    _emit(ctx, {"ok": True})


@main.command("exec")
@click.argument("id")
@click.argument("host")
@click.argument("args", nargs=-1)
@click.option("--timeout", type=float, default=None, help="Seconds to wait.")
@_common
def exec_(ctx: click.Context, id: str, host: str, args: tuple[str, ...],
          timeout: float | None, socket_path: str | None, config_path: str | None,
          as_json: bool) -> None:
    """Run a process to completion and print its result."""
    _setup(ctx, socket_path, config_path, as_json)
    result = _call(ctx, "exec", None, id=id, host=host, args=[_value(a) for a in args],
                   timeout=timeout)
    out = {k: v for k, v in result.items() if k in ("value", "error")}
    if as_json:
        click.echo(json.dumps(out))
    elif "error" in out:
        click.echo(f"actord: exec failed: {out['error']}", err=True)
    else:
        click.echo(json.dumps(out["value"]))
    sys.exit(EXIT_FAILED if "error" in out else 0)


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
    _emit(ctx, names, "\n".join(f"{n}\t{p}" for n, p in sorted(names.items())))


@main.command()
@_common
def services(ctx: click.Context, socket_path: str | None, config_path: str | None,
             as_json: bool) -> None:
    """Supervised services."""
    _setup(ctx, socket_path, config_path, as_json)
    rows = _call(ctx, "services")
    _emit(ctx, rows, "\n".join(
        f"{r['name']:<24} {r['state']:<10} {r.get('pid') or '-':<28} restarts {r['restarts']}"
        f"  {r.get('last_error') or ''}" for r in rows))


def _service_row(row: dict[str, Any]) -> str:
    return (f"{row['name']}  {row['state']}  {row.get('pid') or '-'}  "
            f"restarts {row['restarts']}" + (f"  {row['last_error']}" if row["last_error"] else ""))


def _service_command(command: str, summary: str) -> None:
    """Register ``actord start|stop|restart SERVICE``: prints the service's row afterwards.

    ``start``/``restart`` exit 1 if the service ends up ``failed`` (it could not be started).
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


_service_command("start", "Start a service that is not running.")
_service_command("stop", "Stop a service: CANCEL, wait its stop_timeout, then terminate.")
_service_command("restart", "Stop a service (if running), then start it.")


@main.command()
@_common
def reload(ctx: click.Context, socket_path: str | None, config_path: str | None,
           as_json: bool) -> None:
    """Re-read the config and apply what changed (a bad config changes nothing)."""
    _setup(ctx, socket_path, config_path, as_json)
    summary = _call(ctx, "reload", 120.0)
    hosts, services = summary["hosts"], summary["services"]
    text = (f"reloaded: hosts +{len(hosts['added'])} -{len(hosts['removed'])} "
            f"~{len(hosts['resized'])}, services +{len(services['added'])} "
            f"-{len(services['removed'])} ~{len(services['changed'])}, "
            f"processes changed {len(summary['processes'])}")
    _emit(ctx, summary, text)


@main.command()
@_common
def shutdown(ctx: click.Context, socket_path: str | None, config_path: str | None,
             as_json: bool) -> None:
    """Stop the daemon (cancel all, wait, terminate the rest)."""
    _setup(ctx, socket_path, config_path, as_json)
    _emit(ctx, {"ok": True}, _call(ctx, "shutdown"))
