"""The commands on services: ``services``, ``start``, ``stop``, ``restart``."""

from __future__ import annotations

from typing import Any

import click

from actord.cli.app import call, common_options, emit, main, setup
from actord.cli.output import esc, fail


@main.command()
@common_options
def services(ctx: click.Context, socket_path: str | None, config_path: str | None,
             as_json: bool) -> None:
    """Supervised services."""
    setup(ctx, socket_path, config_path, as_json)
    rows = call(ctx, "services")
    emit(ctx, rows, "\n".join(
        f"{esc(r['name']):<24} {esc(r['state']):<10} {esc(r.get('pid') or '-'):<28} "
        f"restarts {r['restarts']}  {esc(r.get('last_error') or '')}" for r in rows))


def _service_row(row: dict[str, Any]) -> str:
    return esc(f"{row['name']}  {row['state']}  {row.get('pid') or '-'}  "
              f"restarts {row['restarts']}"
              + (f"  {row['last_error']}" if row.get("last_error") else ""))


def _service_command(command: str, summary: str) -> None:
    """Register ``actord start|stop|restart SERVICE``: prints the service's row afterwards.

    ``start``/``restart`` wait until the service runs (its entry loaded) or could not start,
    and exit 1 unless it is ``running``.
    """

    @main.command(command, help=summary)
    @click.argument("service")
    @common_options
    def _command(ctx: click.Context, service: str, socket_path: str | None,
                 config_path: str | None, as_json: bool) -> None:
        setup(ctx, socket_path, config_path, as_json)
        # no client-side wait limit: a stop lasts up to the service's stop_timeout (+ grace)
        row = call(ctx, command, None, service=service)
        emit(ctx, row, _service_row(row))
        if command != "stop" and row["state"] == "failed":
            fail(f"service {service} failed: {row['last_error'] or row.get('reason')}")
        if command != "stop" and row["state"] != "running":
            fail(f"service {service} is not running ({row['state']})")


_service_command("start", "Start a service that is not running.")
_service_command("stop", "Stop a service: CANCEL, wait its stop_timeout, then terminate.")
_service_command("restart", "Stop a service (if running), then start it.")
