"""The daemon's commands: ``run``, ``check-config``, ``reload``, ``shutdown`` (and the wait
for the daemon's exit)."""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from actord.cli.app import call, common_options, emit, main, setup
from actord.cli.output import EXIT_FAILED, esc, fail, to_json
from actord.errors import ConfigError


@main.command()
@click.option("--config", "config_path", type=click.Path(), default="/etc/actord/actord.toml",
              show_default=True, help="The TOML config file.")
def run(config_path: str) -> None:
    """Run the daemon in the foreground."""
    from actord import configfile
    from actord.daemon import run as run_daemon

    try:
        config = configfile.load(config_path)
        configfile.check(config)
    except ConfigError as e:
        fail(str(e), EXIT_FAILED)
    from actord.ownership import SocketInUseError

    try:
        sys.exit(run_daemon(config))
    except (OSError, ConfigError, SocketInUseError) as e:
        fail(str(e), EXIT_FAILED)


@main.command("check-config")
@click.argument("path", type=click.Path())
@click.option("--json", "as_json", is_flag=True)
def check_config(path: str, as_json: bool) -> None:
    """Validate a config file without starting anything (stricter than run: see README)."""
    from actord import configfile

    try:
        config = configfile.load(path)
        configfile.check(config, strict=True)
    except ConfigError as e:
        if as_json:
            click.echo(to_json({"ok": False, "error": str(e)}))
        fail(str(e))
    summary = {"ok": True, "hosts": len(config.hosts), "processes": len(config.processes),
               "services": len(config.services)}
    if as_json:
        click.echo(to_json(summary))
    else:
        click.echo(f"{esc(path)}: ok ({summary['hosts']} hosts, {summary['processes']} processes, "
                   f"{summary['services']} services)")


@main.command()
@common_options
def reload(ctx: click.Context, socket_path: str | None, config_path: str | None,
           as_json: bool) -> None:
    """Re-read the config and apply what changed (a bad config changes nothing).

    Also says which workers a shrink retired and how many processes ended with them, and
    (on stderr) the [daemon] keys that need a restart and services not running after it.
    """
    setup(ctx, socket_path, config_path, as_json)
    summary = call(ctx, "reload", 120.0)
    hosts, services = summary["hosts"], summary["services"]
    lines = [f"reloaded: hosts +{len(hosts['added'])} -{len(hosts['removed'])} "
             f"~{len(hosts['resized'])}, services +{len(services['added'])} "
             f"-{len(services['removed'])} ~{len(services['changed'])}, "
             f"processes changed {len(summary['processes'])}"]
    for r in summary.get("retired", []):
        n = len(r["processes"])
        lines.append(f"retired worker {r['worker']} (os pid {r['os_pid']}): "
                     f"ended {n} process{'' if n == 1 else 'es'}")
    emit(ctx, summary, "\n".join(lines))
    if not as_json and summary.get("not_applied"):
        click.echo("actord: warning: not applied until the daemon restarts: [daemon] "
                   + ", ".join(summary["not_applied"]), err=True)
    if not as_json and summary.get("not_running"):
        click.echo("actord: warning: services not running after the reload: "
                   + ", ".join(summary["not_running"]), err=True)


@main.command()
@click.option("--no-wait", is_flag=True,
              help="Return once the daemon began to stop, without waiting for it to exit.")
@common_options
def shutdown(ctx: click.Context, no_wait: bool, socket_path: str | None,
             config_path: str | None, as_json: bool) -> None:
    """Stop the daemon (cancel all, wait, terminate the rest) and wait until it has exited.

    Progress goes to stderr (not with --json). Exit 1 if the daemon is still running after
    the longest its shutdown can take (the bound it answers with).
    """
    setup(ctx, socket_path, config_path, as_json)
    reply = call(ctx, "shutdown")
    pid, bound = int(reply["os_pid"]), float(reply["bound"])
    if no_wait:
        emit(ctx, {"ok": True, "os_pid": pid, "exited": False}, "shutting down")
        return
    if not as_json:
        click.echo(f"waiting for the daemon (pid {pid}) to exit...", err=True, nl=False)
    gone = _wait_exit(pid, bound, None if as_json else lambda: click.echo(".", err=True, nl=False))
    if not as_json:
        click.echo(" exited" if gone else "", err=True)
    if not gone:
        fail(f"the daemon (pid {pid}) is still running {bound:g}s after shutdown")
    emit(ctx, {"ok": True, "os_pid": pid, "exited": True}, "stopped")


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
