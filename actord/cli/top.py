"""``actord top``: a live view of the node, its workers and its busiest processes (SPEC 12).

The screen, the keys and the rates are in :mod:`actord.cli.topscreen`, imported only when the
command runs (rich takes a tenth of a second to import: the other commands do not pay it).
"""

from __future__ import annotations

import sys

import click

from actord.cli.app import common_options, main, session, setup
from actord.cli.output import EXIT_USAGE, fail
from actord.control.top import SORTS


@main.command()
@click.option("--host", default=None, metavar="H", help="Only this host's workers and processes.")
@click.option("--sort", type=click.Choice(SORTS), default="mailbox",
              show_default=True, help="Busiest first by mailbox depth, message rate, or "
              "(workers) resident memory; keys m, r, s while it runs.")
@click.option("--once", is_flag=True, help="Print one sample (taken over one second) and exit.")
@common_options
def top(ctx: click.Context, host: str | None, sort: str, once: bool,
        socket_path: str | None, config_path: str | None, as_json: bool) -> None:
    """A live view of the node, its workers and its busiest processes; q or Ctrl-C quits.

    With --json, a sample a second as one JSON object a line (--once: one):
    {"ts", "sort", "node", "hosts", "processes"}; rates are per second, cpu in percent of
    one core, rss in bytes (README "Watch it live").
    """
    setup(ctx, socket_path, config_path, as_json)
    query = {"sort": sort} if host is None else {"sort": sort, "host": host}
    if not (once or as_json or sys.stdout.isatty()):
        fail("top: stdout is not a terminal (use --once or --json)", EXIT_USAGE)
    from actord.cli import topscreen

    try:
        with session(ctx) as client:
            if once or as_json:
                topscreen.print_samples(client, query, once, as_json)
            else:
                topscreen.live(client, query)
    except KeyboardInterrupt:  # Ctrl-C: how it ends
        pass


