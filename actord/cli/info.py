"""``actord info DEST``: one process as Erlang's ``process_info`` shows it (SPEC 12)."""

from __future__ import annotations

import time
from typing import Any

import click

from actord.cli.app import call, common_options, emit, main, setup
from actord.cli.output import esc


def info_text(r: dict[str, Any]) -> str:
    """A readable key/value block: one field a line, lists comma-separated (``-`` when
    empty or unknown), the mailbox per channel, the stack one frame a line."""

    def items(values: list[str] | None) -> str:
        return ", ".join(esc(v) for v in values) if values else "-"

    started = r["started"]
    when = "-" if started is None else (
        time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started))
        + f" ({time.time() - started:.1f}s ago)")
    box = r["mailbox"]
    mailbox = "-" if box is None else f"{sum(box.values())}  (" + ", ".join(
        f"{esc(k)} {v}" for k, v in box.items()) + ")"
    rows = [
        ("pid", esc(r["pid"])), ("id", esc(r["id"])), ("host", esc(r["host"])),
        ("worker", str(r["worker"])), ("state", esc(r["state"])), ("names", items(r["names"])),
        ("parent", esc(r["parent"] or "-")), ("links", items(r["links"])),
        ("monitors", items(r["monitors"])), ("monitored_by", items(r["monitored_by"])),
        ("trap_links", "-" if r["trap_links"] is None else str(r["trap_links"]).lower()),
        ("mailbox", mailbox),
        ("sent", "-" if r["sent"] is None else str(r["sent"])),
        ("received", "-" if r["received"] is None else str(r["received"])),
        ("started", when),
    ]
    lines = [f"{key:<13} {value}" for key, value in rows]
    stack = r["stack"]
    lines.append(f"{'stack':<13} " + ("-" if not stack else esc(stack[0])))
    lines.extend(f"{'':<13} {esc(frame)}" for frame in (stack or [])[1:])
    return "\n".join(lines)


@main.command()
@click.argument("dest")
@common_options
def info(ctx: click.Context, dest: str, socket_path: str | None, config_path: str | None,
         as_json: bool) -> None:
    """One process (a PID or a registered name): state, names, parent, links, monitors both
    ways, mailbox per channel, messages sent and received, start time and current stack."""
    setup(ctx, socket_path, config_path, as_json)
    r = call(ctx, "info", dest=dest)
    emit(ctx, r, info_text(r))
