"""``actord logs``: the daemon's recent log records, and with ``-f`` new ones as they come.

Following is a long poll: each request asks for the records after the last one seen and the
daemon answers as soon as there is one (or after :data:`POLL_WAIT` seconds with none), so
the daemon keeps nothing per follower and one that stops reading (a full pipe, Ctrl-Z) costs
it nothing: when it asks again, it is told how many records the ring dropped meanwhile.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import click

from actord.cli.app import common_options, main, session, setup
from actord.cli.output import esc, to_json
from actord.cli.values import checked, incoming
from actord.logring import LEVELS

#: how long one poll of ``-f`` waits for a new record, in seconds
POLL_WAIT = 2.0
#: what starts each line of a record's traceback (as in the daemon's own log)
CONTINUATION = "  | "


def record_text(r: dict[str, Any]) -> str:
    """A record as the daemon's text log shows it: ``time LEVEL [worker] pid logger: message``,
    then its traceback's lines, each starting with ``CONTINUATION``."""
    ts = r["ts"]
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) + f",{int(ts * 1000) % 1000:03d}"
    where = f"[{esc(r['worker'])}] " if r["worker"] else ""
    if r["pid"]:
        where += f"{esc(r['pid'])} "
    text = f"{when} {r['level']} {where}{esc(r['logger'])}: {esc(r['message'])}"
    if r["traceback"]:
        text += "".join(f"\n{CONTINUATION}{esc(ln)}" for ln in r["traceback"].splitlines())
    return text


#: what ``logs -f`` prints when it missed records (N: how many)
MISSED = "-- missed {} records (dropped from the daemon's log ring before they were read) --"


def show(reply: dict[str, Any], as_json: bool, text: Callable[[dict[str, Any]], str] = record_text,
         missed: str = MISSED) -> None:
    """Print one reply of a long poll (``logs``, ``trace``): its missed count (if any, as
    ``missed`` says it), then its records (as ``text`` says each), in one write."""
    lines = []
    if reply["missed"]:
        lines.append(to_json({"missed": reply["missed"]}) if as_json else
                     missed.format(reply["missed"]))
    lines += [to_json(r) if as_json else text(r) for r in reply["records"]]
    if lines:
        click.echo("\n".join(lines))


@main.command()
@click.option("-f", "--follow", is_flag=True, help="Then print new records as they come, "
              "until Ctrl-C.")
@click.option("--pid", default=None, metavar="DEST", help="Only this process's records (a PID "
              "or a registered name).")
@click.option("--host", default=None, metavar="H", help="Only the records of this host's "
              "workers (or of one worker: HOST/INDEX).")
@click.option("--level", type=click.Choice(LEVELS, case_sensitive=False), default=None,
              help="Only records at this level or above.")
@click.option("--lines", "-n", type=click.IntRange(0, 1000), default=100, show_default=True,
              help="How many of the recent records to print first.")
@common_options
def logs(ctx: click.Context, follow: bool, pid: str | None, host: str | None,
         level: str | None, lines: int, socket_path: str | None, config_path: str | None,
         as_json: bool) -> None:
    """The daemon's recent log records (its own and every worker's); -f: and new ones.

    With --json, one record a line: {"seq", "ts", "level", "logger", "message", "pid",
    "host", "worker", "traceback"}; a follower that fell behind gets {"missed": N}.
    """
    setup(ctx, socket_path, config_path, as_json)
    filters = {k: v for k, v in (("pid", pid), ("host", host), ("level", level))
               if v is not None}
    for key, value in filters.items():
        checked(incoming, value, key, 0)
    try:
        with session(ctx) as client:
            reply = client.call("logs", None, lines=lines, **filters)
            show(reply, as_json)
            if pid is not None:  # a name resolved once: followed after the name is released
                filters["pid"] = reply["pid"]
            while follow:
                reply = client.call("logs", None, after=reply["cursor"], wait=POLL_WAIT,
                                    **filters)
                show(reply, as_json)
    except KeyboardInterrupt:  # Ctrl-C: how a follower ends
        pass
