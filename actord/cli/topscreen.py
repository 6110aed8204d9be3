"""``actord top``'s screen and samples (imported by the command, actord/cli/top.py, when it
runs: rich is not loaded by the other commands).

Each refresh is one ``top`` control command (actord/control/top.py): the node's and each
worker's totals, which two successive samples turn into rates (messages and CPU seconds a
second, over the daemon's monotonic clock), and the busiest processes, ranked in the workers.
Drawn with rich: a ``Live`` on the alternate screen holding ``Table``s sized to the terminal
now, so it fits any width and is redrawn at once on a resize (SIGWINCH). Keys are read in
cbreak mode (termios); the terminal's mode, screen and cursor are restored on the way out,
whatever ends it (q, Ctrl-C, the daemon gone). Nothing but a plain terminal is needed (no
mouse, no colours), so it works over SSH.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import sys
import termios
import time
import tty
from collections.abc import Iterator
from typing import Any

import click
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from actord.cli.output import EXIT_USAGE, esc, fail, to_json
from actord.client import Client

#: seconds between two samples
INTERVAL = 1.0
#: the keys that change the sort while it runs
SORT_KEYS = {"m": "mailbox", "r": "rate", "s": "memory"}
#: process rows of a sample that is not drawn on a terminal (--once to a pipe, --json)
ROWS = 20
#: the width from which the tables also show message totals (sent, received)
WIDE = 110
#: lines of the screen that are not process rows: 2 header lines, 2 table headers, 2 blanks
CHROME = 6


# -- samples to rows -------------------------------------------------------------------------------


def with_rates(before: dict[str, Any] | None, now: dict[str, Any]) -> dict[str, Any]:
    """``now`` with rates from ``before`` (the previous sample, None for the first): the node's
    ``routed_rate``; each worker's ``cpu`` (percent of one core), ``in_rate`` and
    ``out_rate`` (messages a second). A rate is None without a previous sample of the same
    OS process (a restarted worker's counters start again) or when either count is."""
    dt = None if before is None else now["ts"] - before["ts"]
    if not dt or dt <= 0 or before is None:
        dt, before = None, {"node": {}, "hosts": []}
    node = now["node"]
    node["routed_rate"] = _rate(before["node"].get("routed"), node["routed"], dt)
    then = {(h["name"], w["index"], w["os_pid"]): w
            for h in before["hosts"] for w in h["workers"]}
    for host in now["hosts"]:
        for w in host["workers"]:
            old = then.get((host["name"], w["index"], w["os_pid"]), {})
            cpu = _rate(old.get("cpu_seconds"), w["cpu_seconds"], dt)
            w["cpu"] = None if cpu is None else round(100 * cpu, 1)
            w["in_rate"] = _rate(old.get("received"), w["received"], dt)
            w["out_rate"] = _rate(old.get("sent"), w["sent"], dt)
    return now


def _rate(before: float | None, now: float | None, dt: float | None) -> float | None:
    if before is None or now is None or dt is None:
        return None
    return round(max(0.0, now - before) / dt, 3)


def _workers(sample: dict[str, Any], sort: str) -> list[dict[str, Any]]:
    """Every worker row, tagged ``host``, busiest first by ``sort`` (host order on ties)."""
    rows = [{**w, "host": h["name"]} for h in sample["hosts"] for w in h["workers"]]
    if sort == "memory":
        return sorted(rows, key=lambda w: -(w["rss"] or 0))
    if sort == "rate":
        return sorted(rows, key=lambda w: -((w["in_rate"] or 0) + (w["out_rate"] or 0)))
    return sorted(rows, key=lambda w: -(w["mailbox"] or 0))


# -- drawing ---------------------------------------------------------------------------------------


def _count(n: float | None) -> str:
    """A count or rate in at most 6 characters: 999, 12.3k, 4.5M; ``-`` when unknown."""
    if n is None:
        return "-"
    for at, size, unit in ((1e9, 1e9, "G"), (1e6, 1e6, "M"), (1e4, 1e3, "k")):
        if n >= at:
            return f"{n / size:.1f}{unit}" if n < 99.95 * size else f"{n / size:.0f}{unit}"
    return f"{n:.0f}"


def _bytes(n: int | None) -> str:
    """A size in MiB (``35.2M``) or GiB (``1.2G``); ``-`` when unknown."""
    if n is None:
        return "-"
    return f"{n / 2**30:.1f}G" if n >= 2**30 else f"{n / 2**20:.1f}M"


def _uptime(seconds: float) -> str:
    days, rest = divmod(int(seconds), 86400)
    clock = time.strftime("%H:%M:%S", time.gmtime(rest))
    return f"{days}d {clock}" if days else clock


def _table(*columns: str) -> Table:
    """A borderless table of the ``columns`` (names; ``*`` ends the text columns, then
    right-aligned numbers). When the screen is too narrow, the text columns after the first
    shrink (a cut cell ends with an ellipsis); the first (the key) and the numbers keep
    their width."""
    table = Table(box=None, pad_edge=False, padding=(0, 1), header_style="bold reverse")
    numbers = False
    for i, name in enumerate(columns):
        if name == "*":
            numbers = True
            continue
        table.add_column(name, justify="right" if numbers else "left", min_width=len(name),
                         no_wrap=numbers or i == 0, overflow="ellipsis")
    return table


def _text(value: object) -> Text:
    """A user's string (a name, an id) as a cell: unprintable characters escaped, and never
    read as rich markup."""
    return Text(esc(value))


def render(sample: dict[str, Any], sort: str, width: int) -> RenderableType:
    """One screen of ``sample`` (with rates): the node, the workers, the busiest processes;
    ``width`` columns of at least :data:`WIDE` also show the message totals."""
    n = sample["node"]
    dead = n["dead_letters"] + sum(w["dead_letters"] or 0 for h in sample["hosts"]
                                   for w in h["workers"])
    head = Text.assemble(
        (esc(n["node"]), "bold"), f"  up {_uptime(n['uptime'])}  routed "
        f"{_count(n['routed_rate'])}/s  dead letters {dead}  processes {n['processes']}")
    keys = "  ".join(f"{k} {v}" for k, v in SORT_KEYS.items())
    help_line = Text(f"sort: {sort}   keys: {keys}, q quit", style="dim")
    wide = width >= WIDE
    totals = ("SENT", "RECEIVED") if wide else ()
    workers = _table("WORKER", "*", "OS PID", "CPU%", "RSS", "PROCS", "MBOX", "IN/s",
                     "OUT/s", *totals, "RESTARTS")
    for w in _workers(sample, sort):
        state = "" if w["state"] == "running" else f" {w['state']}"
        workers.add_row(_text(f"{w['host']}/{w['index']}{state}"), str(w["os_pid"]),
                        "-" if w["cpu"] is None else f"{w['cpu']:.1f}", _bytes(w["rss"]),
                        _count(w["processes"]), _count(w["mailbox"]), _count(w["in_rate"]),
                        _count(w["out_rate"]), *(_count(w[k]) for k in ("sent", "received")
                                                 if wide), str(w["restarts"]))
    procs = _table("PID", "ID", "NAMES", "*", "W", "MBOX", "MSG/s", *totals)
    for p in sample["processes"]:
        procs.add_row(_text(p["pid"]), _text(p["id"]), _text(",".join(p["names"])),
                      str(p["worker"]), _count(p["mailbox"]), _count(p.get("rate")),
                      *(_count(p.get(k)) for k in ("sent", "received") if wide))
    return Group(head, help_line, Text(""), workers, Text(""), procs)


# -- running -------------------------------------------------------------------------------------


def print_samples(client: Client, query: dict[str, Any], once: bool, as_json: bool) -> None:
    """Samples as JSON lines or (``--once`` only) one drawn screen: the first after one
    interval, so it has rates."""
    console = Console()
    limit = ROWS if as_json or not console.is_terminal else _rows(console, 0)
    before = client.call("top", None, limit=limit, **query)
    while True:
        time.sleep(INTERVAL)
        now = client.call("top", None, limit=limit, **query)
        sample, before = with_rates(before, now), now
        if as_json:
            click.echo(to_json(sample))
        else:
            console.print(render(sample, query["sort"], console.width))
        if once:
            return


def _rows(console: Console, workers: int) -> int:
    """How many process rows fit under ``workers`` worker rows now."""
    return max(1, min(200, console.size.height - CHROME - workers))


def live(client: Client, query: dict[str, Any]) -> None:
    """Draw a sample a second until q or Ctrl-C; m, r, s change the sort at once."""
    console = Console()
    with _keys() as (keys, resized), Live(console=console, screen=True,
                                           auto_refresh=False) as live:
        before: dict[str, Any] | None = None
        workers = 0
        while True:
            now = client.call("top", None, limit=_rows(console, workers), **query)
            sample, before = with_rates(before, now), now
            workers = sum(len(h["workers"]) for h in sample["hosts"])
            live.update(render(sample, query["sort"], console.width), refresh=True)
            due = time.monotonic() + INTERVAL
            while (left := due - time.monotonic()) > 0:
                ready = select.select([keys, resized], [], [], left)[0]
                if resized in ready:  # SIGWINCH: draw this sample again at the new size
                    with contextlib.suppress(BlockingIOError):
                        os.read(resized, 64)
                    live.update(render(sample, query["sort"], console.width), refresh=True)
                if keys in ready:
                    typed = os.read(keys, 64).decode("utf-8", "replace")
                    if "q" in typed or not typed:  # q, or the terminal closed
                        return
                    for key in typed:
                        if key in SORT_KEYS:
                            query["sort"], due = SORT_KEYS[key], 0.0


@contextlib.contextmanager
def _keys() -> Iterator[tuple[int, int]]:
    """``(keys, resized)``: stdin in cbreak mode (keys as typed, no echo; Ctrl-C still
    interrupts) and a pipe readable after each SIGWINCH; the terminal's mode and the
    previous SIGWINCH handler are restored on exit, whatever ends the block."""
    fd = sys.stdin.fileno()
    try:
        saved = termios.tcgetattr(fd)
    except termios.error:
        fail("top: stdin is not a terminal (use --once or --json)", EXIT_USAGE)
    resized, poke = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    def on_winch(signum: int, frame: Any) -> None:
        with contextlib.suppress(BlockingIOError):
            os.write(poke, b"w")

    previous = signal.signal(signal.SIGWINCH, on_winch)
    try:
        tty.setcbreak(fd, termios.TCSANOW)
        yield fd, resized
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
        signal.signal(signal.SIGWINCH, previous)
        os.close(resized)
        os.close(poke)
