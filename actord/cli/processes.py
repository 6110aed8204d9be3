"""The commands on processes, workers and nodes: ``status``, ``nodes``, ``ps``, ``spawn``,
``send``, ``kill``, ``cancel``, ``exec``, ``restart-worker``, ``registry``."""

from __future__ import annotations

import fnmatch
import time
from typing import Any

import click

from actord.cli.app import call, common_options, emit, main, setup
from actord.cli.output import EXIT_USAGE, esc, fail, to_json
from actord.cli.values import checked, incoming, parse_value, parse_values
from actord.durations import check_seconds, parse_duration


@main.command()
@common_options
def status(ctx: click.Context, socket_path: str | None, config_path: str | None,
           as_json: bool) -> None:
    """Daemon, hosts and workers."""
    setup(ctx, socket_path, config_path, as_json)
    st = call(ctx, "status")
    lines = [f"node {esc(st['node'])}  uptime {st['uptime']:.1f}s  processes {st['processes']}  "
             f"routed {st['routed']}  dead letters {st['dead_letters']}"]
    for host in st["hosts"]:
        lines.append(f"host {esc(host['name'])}")
        for w in host["workers"]:
            lines.append(f"  worker {w['index']}  os pid {w['os_pid']}  "
                         f"processes {w['processes']}  restarts {w['restarts']}"
                         + _worker_state(w))
    if st.get("cluster"):
        c = st["cluster"]
        up = [n["node"] for n in c["nodes"] if n["state"] == "up"]
        lines.append(f"cluster {esc(c['name'])}  node {esc(c['node'])}  "
                     f"up {esc(', '.join(up))}")
    emit(ctx, st, "\n".join(lines))


@main.command()
@common_options
def nodes(ctx: click.Context, socket_path: str | None, config_path: str | None,
          as_json: bool) -> None:
    """The cluster's nodes (SPEC 11), this one included; nothing without [cluster]."""
    setup(ctx, socket_path, config_path, as_json)
    rows = call(ctx, "nodes")
    if not rows:
        emit(ctx, rows, "not in a cluster (the config has no [cluster] table)")
        return
    header = f"{'NODE':<32} {'STATE':<6} {'LAST SEEN':>10} {'PROCESSES':>9}"
    now = time.time()
    text = "\n".join([header] + [
        f"{esc(r['node']):<32} {esc(r['state']):<6} {now - r['last_seen']:>9.1f}s "
        f"{r['processes']:>9}" for r in rows
    ])
    emit(ctx, rows, text)


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
@click.option("--state", default=None,
              help="Only processes in this state (e.g. running, or waiting for any channel).")
@click.option("--cluster", is_flag=True,
              help="Every node that is up (a NODE column; --json rows gain \"node\").")
@common_options
def ps(ctx: click.Context, host: str | None, id_glob: str | None, name_glob: str | None,
       state: str | None, cluster: bool, socket_path: str | None, config_path: str | None,
       as_json: bool) -> None:
    """Live processes with their mailbox depth (- when unknown: its worker is stalled).

    With --cluster, a node that is up but does not answer in time is named on stderr (its
    processes are not listed); the exit code stays 0."""
    setup(ctx, socket_path, config_path, as_json)
    checked(incoming, [id_glob, name_glob, state], "ps filter", 0)
    if cluster:
        answer = call(ctx, "ps", host=host, cluster=True)
        for node in answer["missing"]:
            click.echo(f"actord: node {esc(node)} did not answer within {answer['wait']}s: "
                       "its processes are not listed", err=True)
        for node, n in answer["omitted"].items():
            click.echo(f"actord: node {esc(node)}: {n} processes not listed (its answer "
                       "was cut to NATS's max_payload)", err=True)
        found = answer["processes"]
    else:
        found = call(ctx, "ps", host=host)
    rows = [
        r for r in found
        if (id_glob is None or fnmatch.fnmatchcase(str(r["id"]), id_glob))
        and (name_glob is None or any(fnmatch.fnmatchcase(n, name_glob) for n in r["names"]))
        and (state is None or state in (r["state"], r["state"].partition(":")[0]))
    ]
    width = max([4, *(len(esc(r["node"])) for r in rows)]) + 1 if cluster else 0
    pw = max([28, *(len(esc(r["pid"])) for r in rows)])  # a clustered PID is longer
    sw = max([12, *(len(esc(r["state"])) for r in rows)])  # e.g. waiting:inbox|events
    header = (f"{'NODE':<{width}}" if cluster else "") + (
        f"{'PID':<{pw}} {'ID':<28} {'HOST':<20} {'W':>2} {'STATE':<{sw}} {'MBOX':>6} NAMES")
    text = "\n".join([header] + [
        (f"{esc(r['node']):<{width}}" if cluster else "")
        + f"{esc(r['pid']):<{pw}} {esc(r['id']):<28} {esc(r['host']):<20} {r['worker']:>2} "
        f"{esc(r['state']):<{sw}} {'-' if r['mailbox'] is None else r['mailbox']:>6} "
        f"{esc(','.join(r['names']))}" for r in rows
    ])
    emit(ctx, rows, text)


@main.command()
@click.argument("id")
@click.argument("host")
@click.argument("args", nargs=-1)
@click.option("--name", default=None, help="Register this name for the new process.")
@common_options
def spawn(ctx: click.Context, id: str, host: str, args: tuple[str, ...],
          name: str | None, socket_path: str | None, config_path: str | None,
          as_json: bool) -> None:
    """Start a process; prints its PID."""
    setup(ctx, socket_path, config_path, as_json)
    values = checked(parse_values, args, "ARGS")
    pid = call(ctx, "spawn", id=id, host=host, args=values, name=name)
    emit(ctx, {"pid": pid}, esc(pid))


@main.command()
@click.argument("dest")
@click.argument("topic")
@click.argument("values", nargs=-1)
@common_options
def send(ctx: click.Context, dest: str, topic: str, values: tuple[str, ...],
         socket_path: str | None, config_path: str | None, as_json: bool) -> None:
    """Send a message to a PID or registered name."""
    setup(ctx, socket_path, config_path, as_json)
    parsed = checked(parse_values, values, "VALUES")
    call(ctx, "send", dest=dest, topic=topic, values=parsed)
    emit(ctx, {"ok": True})


@main.command()
@click.argument("dest")
@click.option("--no-wait", is_flag=True, help="Return once the terminate is sent.")
@common_options
def kill(ctx: click.Context, dest: str, no_wait: bool, socket_path: str | None,
         config_path: str | None, as_json: bool) -> None:
    """Terminate a process (hard stop) and wait for its end.

    Exit 1 if its worker is stalled: it ends when that worker's loop runs again (or
    restart-worker it)."""
    setup(ctx, socket_path, config_path, as_json)
    call(ctx, "kill", dest=dest, no_wait=no_wait)
    emit(ctx, {"ok": True})


@main.command()
@click.argument("dest")
@click.option("--deadline", default=None,
              help="e.g. 5s (at most 7 days); terminate if still alive then.")
@click.option("--reason", default=None)
@common_options
def cancel(ctx: click.Context, dest: str, deadline: str | None, reason: str | None,
           socket_path: str | None, config_path: str | None, as_json: bool) -> None:
    """Deliver a CANCEL event."""
    setup(ctx, socket_path, config_path, as_json)
    value = None
    if deadline is not None:
        value = checked(parse_value, deadline, "--deadline")
        try:
            parse_duration(value)
        except ValueError as e:
            fail(f"--deadline: {e}", EXIT_USAGE)
    call(ctx, "cancel", dest=dest, deadline=value, reason=reason)
    emit(ctx, {"ok": True})


@main.command("exec")
@click.argument("id")
@click.argument("host")
@click.argument("args", nargs=-1)
@click.option("--timeout", type=float, default=None, metavar="SECONDS",
              help="How long the process may run (at most 7 days); then it is cancelled and "
                   "the error is \"timeout\". Default: no limit.")
@common_options
def exec_(ctx: click.Context, id: str, host: str, args: tuple[str, ...],
          timeout: float | None, socket_path: str | None, config_path: str | None,
          as_json: bool) -> None:
    """Run a process to completion and print its result."""
    setup(ctx, socket_path, config_path, as_json)
    if timeout is not None:
        try:
            check_seconds(timeout)
        except ValueError as e:
            fail(f"--timeout: {e}", EXIT_USAGE)
    values = checked(parse_values, args, "ARGS")
    result = call(ctx, "exec", None, id=id, host=host, args=values, timeout=timeout)
    out = {k: v for k, v in result.items() if k in ("value", "error")}
    if as_json:
        click.echo(to_json(out))
    elif "error" not in out:
        click.echo(to_json(out["value"]))
    if "error" in out:
        fail(f"exec failed: {out['error']}")


@main.command("restart-worker")
@click.argument("host")
@click.argument("index", type=click.IntRange(min=0))
@common_options
def restart_worker(ctx: click.Context, host: str, index: int, socket_path: str | None,
                   config_path: str | None, as_json: bool) -> None:
    """Kill worker INDEX of HOST (e.g. a stalled one) and start a new one in its slot.

    Its processes end with "worker crashed" (monitors get EXIT, links LINK_DOWN)."""
    setup(ctx, socket_path, config_path, as_json)
    r = call(ctx, "restart-worker", host=host, index=index)
    emit(ctx, r, f"worker {r['host']}/{r['index']} restarted: os pid {r['old_os_pid']} -> "
                  f"{r['os_pid']}, {r['ended']} processes ended (worker crashed)")


@main.command()
@common_options
def registry(ctx: click.Context, socket_path: str | None, config_path: str | None,
             as_json: bool) -> None:
    """Registered names."""
    setup(ctx, socket_path, config_path, as_json)
    names = call(ctx, "registry")
    emit(ctx, names, "\n".join(f"{esc(n)}\t{esc(p)}" for n, p in sorted(names.items())))
