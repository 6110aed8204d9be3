"""``actord trace DEST``: what one process does, a line per record as it happens (SPEC 12).

A trace is read as ``actord logs -f`` follows the log ring: long polls on one connection,
each answered as soon as records are queued (or after :data:`~actord.cli.logs.POLL_WAIT`
seconds). The daemon keeps a bounded queue for the trace, so a reader that stops reading
(a full pipe, Ctrl-Z) slows nothing: when it reads again it is told how many records it
missed. The trace ends with the connection (Ctrl-C, the CLI killed), at ``--limit``
records, after ``--duration``, or with the process (its ``exit`` record last).
"""

from __future__ import annotations

import math
import time
from typing import Any

import click

from actord.cli.app import common_options, main, session, setup
from actord.cli.logs import POLL_WAIT, show
from actord.cli.output import esc
from actord.cli.values import checked, incoming
from actord.core.trace import KINDS
from actord.durations import MAX_DURATION


def record_text(r: dict[str, Any]) -> str:
    """A record as one line: local time (microseconds), kind, the other process, what."""
    ts, kind = r["ts"], r["kind"]
    when = time.strftime("%H:%M:%S", time.localtime(ts)) + f".{int(ts * 1e6) % 1000000:06d}"
    peer, what = "-", ""
    if kind == "send" or kind == "receive":
        peer = (r["to"] if kind == "send" else r["from"]) or "-"  # "": sent by no process
        what = f"{esc(r['topic'])} {r['bytes']} bytes"
    elif kind == "spawn":
        peer = r["pid"]
        what = f"{esc(r['id'])} on {esc(r['host'])}" + (", linked" if r["link"] else "") + (
            ", monitored" if r["monitor"] else "")
    elif kind == "event":
        peer = r["from"] or "-"
        what = r["event"] + (f": {esc(r['error'])}" if r["error"] else "") + (
            f" ({esc(r['reason'])})" if r["reason"] else "")
    elif kind == "exit":
        what = "normal" if r["error"] is None else f"error: {esc(r['error'])}"
    elif "pid" in r:  # link, unlink, monitor, unmonitor
        peer = r["pid"]
    return f"{when} {kind:<9} {esc(peer):<24} {what}".rstrip()


#: what a trace reader prints when it missed records (N: how many)
MISSED = ("-- missed {} events (dropped while this client was behind; the process was not "
          "slowed) --")


def _kinds(ctx: click.Context, param: click.Parameter, value: str | None) -> list[str] | None:
    if value is None:
        return None
    kinds = [k.strip() for k in value.split(",") if k.strip()]
    bad = [k for k in kinds if k not in KINDS]
    if bad or not kinds:
        raise click.BadParameter(f"{', '.join(bad) or 'none given'}: a comma-separated list "
                                 f"of {', '.join(KINDS)}")
    return kinds


def _seconds(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    if value is not None and not (math.isfinite(value) and 0 < value <= MAX_DURATION):
        raise click.BadParameter(f"must be a number of seconds in (0, {MAX_DURATION:.0f}]")
    return value


@main.command()
@click.argument("dest")
@click.option("--events", default=None, metavar="LIST", callback=_kinds,
              help=f"Only these kinds, comma-separated: {', '.join(KINDS)}.")
@click.option("--limit", type=click.IntRange(1), default=1000, show_default=True,
              help="Stop after this many records.")
@click.option("--duration", type=float, default=None, metavar="S", callback=_seconds,
              help="Stop after S seconds.")
@common_options
def trace(ctx: click.Context, dest: str, events: list[str] | None, limit: int,
          duration: float | None, socket_path: str | None, config_path: str | None,
          as_json: bool) -> None:
    """What one process does, as it happens: messages sent and received, spawns, links,
    monitors, events and its end, a line each, until --limit, --duration, its end or Ctrl-C.

    With --json, one record a line: {"ts", "kind", ...}; a reader that fell behind gets
    {"missed": N}. Needs the permission process.trace on the process.
    """
    setup(ctx, socket_path, config_path, as_json)
    checked(incoming, dest, "dest", 0)
    try:
        with session(ctx) as client:
            started = client.call("trace", None, dest=dest, events=events, limit=limit,
                                  duration=duration)
            while True:
                reply = client.call("trace", None, dest=started["pid"],
                                    session=started["session"], wait=POLL_WAIT)
                show(reply, as_json, record_text, MISSED)
                if reply["end"] is not None:
                    break
    except KeyboardInterrupt:  # Ctrl-C: how a trace without a bound ends
        pass
