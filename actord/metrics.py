"""The optional Prometheus endpoint (``[daemon] metrics = "host:port"``).

``GET /metrics`` answers in the Prometheus text exposition format (version 0.0.4). Every
value is read at scrape time from the router and the service manager, which own them; only
the mailbox depths are asked from the workers (one STATS round trip, bounded by
``STATS_TIMEOUT``; a worker that does not answer in time is counted in
``actord_stats_timeouts``, and a stalled one is not asked: either counts with the depth of its
last answer, kept by the router's :class:`~actord.router.stall.StallWatch`). Nothing else is
cached, so there is no registry to keep in sync.

The HTTP side is a minimal HTTP/1.1 server on the daemon's event loop
(``asyncio.start_server``): one request per connection, GET only, a bounded request head
and a deadline to send it, then ``Connection: close``. No thread, no dependency.

Invariant: a scrape never changes daemon state (it only records each worker's last mailbox
depth), and nothing a client sends can raise out of the connection handler.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from actord.services import ServiceState

if TYPE_CHECKING:
    from actord.nodeview import NodeView
    from actord.router import WorkerLink

log = logging.getLogger("actord.metrics")

#: seconds the workers have to answer the STATS request of one scrape
STATS_TIMEOUT = 1.0
#: seconds a client has to send its request head
REQUEST_TIMEOUT = 5.0
#: the largest request head accepted (bytes)
MAX_REQUEST = 8192
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

Labels = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Metric:
    """One metric family: name, type, help text and its samples (labels, value)."""

    name: str
    type: Literal["counter", "gauge"]
    help: str
    samples: list[tuple[Labels, float]] = field(default_factory=list)

    def add(self, value: float, **labels: str) -> None:
        """Append one sample."""
        self.samples.append((tuple(labels.items()), value))


# -- exposition format (pure) ---------------------------------------------------------------------


def render(metrics: Iterable[Metric]) -> str:
    """The text exposition of ``metrics``: HELP, TYPE, then one line per sample."""
    lines: list[str] = []
    for m in metrics:
        lines.append(f"# HELP {m.name} {_escape_help(m.help)}")
        lines.append(f"# TYPE {m.name} {m.type}")
        for labels, value in m.samples:
            if labels:
                inner = ",".join(f'{k}="{_escape_label(v)}"' for k, v in labels)
                lines.append(f"{m.name}{{{inner}}} {_number(value)}")
            else:
                lines.append(f"{m.name} {_number(value)}")
    return "\n".join(lines) + "\n"


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _escape_label(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    if isinstance(value, bool) or (isinstance(value, float) and value.is_integer()):
        return str(int(value))
    return repr(value)


# -- collection ------------------------------------------------------------------------------------


async def collect(node: NodeView) -> list[Metric]:
    """Every metric of the node, read now."""
    router, services = node.router, node.services
    answers, missed = await router.worker_stats(STATS_TIMEOUT)

    info = Metric("actord_info", "gauge", "The node; always 1.")
    info.add(1, node=node.node)
    uptime = Metric("actord_uptime_seconds", "gauge", "Seconds since the daemon started.")
    uptime.add(round(time.time() - node.started_at, 3))

    processes = Metric("actord_processes", "gauge", "Live processes per host.")
    workers = Metric("actord_workers", "gauge", "Running worker OS processes per host.")
    restarts = Metric("actord_worker_restarts_total", "counter",
                      "Times a worker slot was refilled after its worker died.")
    for host, slots in router.hosts.items():
        processes.add(sum(len(w.pids) for w in slots), host=host)
        workers.add(sum(1 for w in slots if w.up), host=host)
        for w in slots:
            restarts.add(w.restarts, host=host, worker=str(w.index))

    depth = {host: 0 for host in router.hosts}
    local_dead = Metric("actord_worker_dead_letters_total", "counter",
                        "Messages that reached a worker after their process ended "
                        "(resets with the worker).")
    answered: set[WorkerLink] = set()
    for link, stats in answers:
        answered.add(link)
        router.stalls.mailbox[link] = n = sum(
            int(p.get("mailbox", 0)) for p in stats.get("processes", ()) if p["pid"] in router.procs
        )
        depth[link.host] = depth.get(link.host, 0) + n
        local_dead.add(int(stats.get("dead_letters", 0)), host=link.host, worker=str(link.index))
    stalled = Metric("actord_worker_stalled", "gauge",
                     "1 while a worker's event loop is blocked (no heartbeat for stall_timeout).")
    for host, slots in router.hosts.items():
        for w in slots:
            if w.up:
                stalled.add(int(router.stalls.is_stalled(w)), host=host, worker=str(w.index))
                if w not in answered:  # stalled or late: its last known depth, not 0
                    depth[host] += router.stalls.mailbox.get(w, 0)
    mailbox = Metric("actord_mailbox_depth", "gauge",
                     "Messages not yet received by their process, summed per host.")
    for host, n in depth.items():
        mailbox.add(n, host=host)
    timeouts = Metric("actord_stats_timeouts", "gauge",
                      "Workers that did not answer this scrape's stats request in time.")
    timeouts.add(missed)

    routed = Metric("actord_messages_routed_total", "counter",
                    "Messages the router forwarded (sends within one worker skip it).")
    routed.add(router.routed)
    dead = Metric("actord_dead_letters_total", "counter",
                  "Messages the router dropped because the destination PID was not alive.")
    dead.add(router.dead_letters)
    exits = Metric("actord_exits_total", "counter", "Process ends by outcome.")
    for outcome in ("normal", "abnormal"):
        exits.add(router.exits.get(outcome, 0), outcome=outcome)

    svc_restarts = Metric("actord_service_restarts_total", "counter",
                          "Restarts of a service by its restart policy.")
    svc_state = Metric("actord_service_state", "gauge",
                       "1 for the state each service is in, 0 for the others.")
    for row in services.rows():
        svc_restarts.add(row["restarts"], service=row["name"])
        for state in ServiceState:
            svc_state.add(int(row["state"] == state.value), service=row["name"],
                          state=state.value)

    return [info, uptime, processes, workers, restarts, stalled, mailbox, local_dead, timeouts,
            routed, dead, exits, svc_restarts, svc_state]


# -- HTTP ------------------------------------------------------------------------------------------


class MetricsServer:
    """Serves ``/metrics`` for one node on its event loop."""

    def __init__(self, node: NodeView) -> None:
        self.node = node
        self.server: asyncio.Server | None = None

    async def start(self, host: str, port: int) -> None:
        """Listen on ``host:port``; an ``OSError`` names the config key and the address."""
        try:
            self.server = await asyncio.start_server(self._connection, host, port,
                                                     limit=MAX_REQUEST)
        except OSError as e:  # one clean line for ``actord run``: "... 127.0.0.1:9464: Address..."
            why = os.strerror(e.errno) if e.errno and e.errno > 0 else e.strerror or str(e)
            raise OSError(f"[daemon] metrics {_address(host, port)}: {why}") from None
        log.info("metrics on http://%s/metrics", _address(host, port))

    @property
    def addresses(self) -> list[tuple[str, int]]:
        """The bound ``(host, port)`` pairs."""
        if self.server is None:
            return []
        return [s.getsockname()[:2] for s in self.server.sockets]

    def close(self) -> None:
        """Stop accepting connections."""
        if self.server is not None:
            self.server.close()

    async def _connection(self, reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT):
                head = await reader.readuntil(b"\r\n\r\n")
            status, headers, body = await self._respond(head)
            writer.write(_response(status, headers, body))
            await writer.drain()
        except TimeoutError:
            with contextlib.suppress(ConnectionError):
                writer.write(_response("408 Request Timeout", {}, b"request timeout\n"))
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            with contextlib.suppress(ConnectionError):
                writer.write(_response("400 Bad Request", {}, b"bad request\n"))
        except ConnectionError:
            pass  # the client went away
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _respond(self, head: bytes) -> tuple[str, dict[str, str], bytes]:
        request = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ")
        if len(request) != 3 or not request[2].startswith("HTTP/1."):
            return "400 Bad Request", {}, b"bad request\n"
        method, target = request[0], request[1].split("?", 1)[0]
        if target not in ("/metrics", "/"):
            return "404 Not Found", {}, b"not found; try /metrics\n"
        if method != "GET":
            return "405 Method Not Allowed", {"Allow": "GET"}, b"GET only\n"
        if target == "/":
            body = b'<html><body><a href="/metrics">actord metrics</a></body></html>\n'
            return "200 OK", {"Content-Type": "text/html; charset=utf-8"}, body
        return "200 OK", {"Content-Type": CONTENT_TYPE}, render(await collect(self.node)).encode()


def _response(status: str, headers: dict[str, str], body: bytes) -> bytes:
    lines: Sequence[str] = [
        f"HTTP/1.1 {status}",
        *(f"{k}: {v}" for k, v in {"Content-Type": "text/plain; charset=utf-8", **headers}.items()),
        f"Content-Length: {len(body)}",
        "Connection: close",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
