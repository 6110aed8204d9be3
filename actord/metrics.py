"""The optional Prometheus endpoint (``[daemon] metrics = "host:port"``).

``GET /metrics`` answers in the Prometheus text exposition format (version 0.0.4), made by
``prometheus_client``: one :class:`~prometheus_client.CollectorRegistry` per endpoint holding
custom collectors whose ``collect()`` reads the router's and the service manager's tables at
scrape time; nothing is cached, so there is no second set of counters to keep in sync. Only
what the workers hold (mailbox depths, per-worker message counters) is asked from them, in
one STATS round trip per scrape, bounded by ``STATS_TIMEOUT`` and made before the registry is
rendered (``collect()`` cannot wait). A worker that does not answer in time is counted in
``actord_stats_timeouts``, and a stalled one is not asked: either counts with the depth of its
last answer, kept by the router's :class:`~actord.router.stall.StallWatch`, and has no
message-counter samples in that scrape.

The HTTP side is a minimal HTTP/1.1 server on the daemon's event loop
(``asyncio.start_server``): one request per connection, GET only, a bounded request head
and a deadline to send it, then ``Connection: close``. No thread, and not prometheus_client's
HTTP server: the handler renders with ``generate_latest``.

Invariant: a scrape never changes daemon state (it only records each worker's last mailbox
depth), and nothing a client sends can raise out of the connection handler.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

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
#: what ``generate_latest`` writes: the text format 0.0.4
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

StatsAnswers = list[tuple["WorkerLink", dict[str, Any]]]


# -- collectors (read at scrape time) --------------------------------------------------------------


class NodeCollector(Collector):
    """The node, its hosts and worker slots, and the router's counters."""

    def __init__(self, node: NodeView) -> None:
        self.node = node

    def collect(self) -> Iterator[Metric]:
        """Every family read from the router's tables now."""
        node, router = self.node, self.node.router
        info = GaugeMetricFamily("actord_info", "The node; always 1.", labels=["node"])
        info.add_metric([node.node], 1)
        yield info
        yield GaugeMetricFamily("actord_uptime_seconds", "Seconds since the daemon started.",
                                value=round(time.time() - node.started_at, 3))
        processes = GaugeMetricFamily("actord_processes", "Live processes per host.",
                                      labels=["host"])
        workers = GaugeMetricFamily("actord_workers", "Running worker OS processes per host.",
                                    labels=["host"])
        restarts = CounterMetricFamily("actord_worker_restarts_total",
                                       "Times a worker slot was refilled after its worker died.",
                                       labels=["host", "worker"])
        stalled = GaugeMetricFamily("actord_worker_stalled", "1 while a worker's event loop is "
                                    "blocked (no heartbeat for stall_timeout).",
                                    labels=["host", "worker"])
        for host, slots in router.hosts.items():
            processes.add_metric([host], sum(len(w.pids) for w in slots))
            workers.add_metric([host], sum(1 for w in slots if w.up))
            for w in slots:
                restarts.add_metric([host, str(w.index)], w.restarts)
                if w.up:
                    stalled.add_metric([host, str(w.index)], int(router.stalls.is_stalled(w)))
        yield from (processes, workers, restarts, stalled)
        yield CounterMetricFamily("actord_messages_routed_total", "Messages the router "
                                  "forwarded (sends within one worker skip it).",
                                  value=router.routed)
        yield CounterMetricFamily("actord_dead_letters_total", "Messages the router dropped "
                                  "because the destination PID was not alive.",
                                  value=router.dead_letters)
        exits = CounterMetricFamily("actord_exits_total", "Process ends by outcome.",
                                    labels=["outcome"])
        for outcome in ("normal", "abnormal"):
            exits.add_metric([outcome], router.exits.get(outcome, 0))
        yield exits


class WorkerCollector(Collector):
    """What the workers answered to this scrape's STATS request: mailboxes and counters.

    ``answers`` is set by :meth:`MetricsServer.scrape` just before it renders the registry
    and cleared after, with no ``await`` between: concurrent scrapes never see each other's.
    """

    def __init__(self, node: NodeView) -> None:
        self.node = node
        self.answers: StatsAnswers = []
        self.missed = 0

    def collect(self) -> Iterator[Metric]:
        """Mailbox depths per host and per worker, per-worker counters, late workers."""
        router = self.node.router
        labels = ["host", "worker"]
        mailbox = GaugeMetricFamily("actord_worker_mailbox_depth", "Messages not yet received "
                                    "by the processes of one worker.", labels=labels)
        sent = CounterMetricFamily("actord_worker_messages_sent_total", "Messages the processes "
                                   "of a worker sent (resets with the worker).", labels=labels)
        received = CounterMetricFamily("actord_worker_messages_received_total", "Messages put in "
                                       "the mailboxes of a worker's processes (resets with the "
                                       "worker).", labels=labels)
        dead = CounterMetricFamily("actord_worker_dead_letters_total", "Messages that reached a "
                                   "worker after their process ended (resets with the worker).",
                                   labels=labels)
        depth = dict.fromkeys(router.hosts, 0)
        answered: set[WorkerLink] = set()
        for link, stats in self.answers:
            answered.add(link)
            router.stalls.mailbox[link] = n = int(stats.get("mailbox", 0))
            depth[link.host] = depth.get(link.host, 0) + n
            worker = [link.host, str(link.index)]
            mailbox.add_metric(worker, n)
            if "sent" in stats:  # not the empty answer of a worker that went down meanwhile
                sent.add_metric(worker, int(stats["sent"]))
                received.add_metric(worker, int(stats["received"]))
                dead.add_metric(worker, int(stats["dead_letters"]))
        for host, slots in router.hosts.items():
            for w in slots:
                if w.up and w not in answered:  # stalled or late: its last known depth, not 0
                    n = router.stalls.mailbox.get(w, 0)
                    depth[host] += n
                    mailbox.add_metric([host, str(w.index)], n)
        host_depth = GaugeMetricFamily("actord_mailbox_depth", "Messages not yet received by "
                                       "their process, summed per host.", labels=["host"])
        for host, n in depth.items():
            host_depth.add_metric([host], n)
        yield from (host_depth, mailbox, sent, received, dead)
        yield GaugeMetricFamily("actord_stats_timeouts", "Workers that did not answer this "
                                "scrape's stats request in time.", value=self.missed)


class ServiceCollector(Collector):
    """The services: restarts and state."""

    def __init__(self, node: NodeView) -> None:
        self.node = node

    def collect(self) -> Iterator[Metric]:
        """Each service's restarts and a 0/1 sample per state."""
        restarts = CounterMetricFamily("actord_service_restarts_total",
                                       "Restarts of a service by its restart policy.",
                                       labels=["service"])
        state = GaugeMetricFamily("actord_service_state",
                                  "1 for the state each service is in, 0 for the others.",
                                  labels=["service", "state"])
        for row in self.node.services.rows():
            restarts.add_metric([row["name"]], row["restarts"])
            for s in ServiceState:
                state.add_metric([row["name"], s.value], int(row["state"] == s.value))
        yield from (restarts, state)


class ClusterCollector(Collector):
    """The cluster link's counters per other node (SPEC 11); nothing on a single node."""

    def __init__(self, node: NodeView) -> None:
        self.node = node

    def collect(self) -> Iterator[Metric]:
        """Per other node: up, frames sent and received, gaps, stale batches and breaks of
        the pair; for this node: batches dropped as malformed, frames lost or too large."""
        cluster = self.node.router.cluster
        if cluster is None:
            return
        rows = cluster.rows()
        up = GaugeMetricFamily("actord_cluster_node_up", "1 while another node is up.",
                               labels=["node"])
        per_node = [
            (key, CounterMetricFamily(f"actord_cluster_{key}_total", text, labels=["node"]))
            for key, text in (
                ("sent", "Frames published to a node."),
                ("received", "Frames delivered from a node."),
                ("gaps", "Batches from a node that skipped a sequence number (the pair broke)."),
                ("stale", "Batches from a node dropped as stale (an earlier session)."),
                ("breaks", "Times the pair with a node broke (its links and monitors fired)."),
            )
        ]
        for row in rows:
            if row["node"] == cluster.node:
                for key, text in (
                    ("malformed", "Batches from other nodes dropped as malformed."),
                    ("lost", "Frames whose publish failed (their pair broke)."),
                    ("too_large", "Frames over NATS's max_payload."),
                ):
                    yield CounterMetricFamily(f"actord_cluster_{key}_total", text,
                                              value=row[key])
                continue
            up.add_metric([row["node"]], int(row["state"] == "up"))
            for key, family in per_node:
                family.add_metric([row["node"]], row[key])
        yield up
        for _, family in per_node:
            yield family


# -- HTTP ------------------------------------------------------------------------------------------


class MetricsServer:
    """Serves ``/metrics`` for one node on its event loop."""

    def __init__(self, node: NodeView) -> None:
        self.node = node
        self.server: asyncio.Server | None = None
        self.workers = WorkerCollector(node)
        self.registry = CollectorRegistry(auto_describe=False)
        for collector in (NodeCollector(node), self.workers, ServiceCollector(node),
                          ClusterCollector(node)):
            self.registry.register(collector)

    async def scrape(self) -> bytes:
        """The exposition text of the node now: the workers' STATS first, then the registry."""
        answers, missed = await self.node.router.worker_stats(STATS_TIMEOUT)
        self.workers.answers, self.workers.missed = answers, missed
        try:  # no await until cleared: a concurrent scrape never renders these answers
            return generate_latest(self.registry)
        finally:
            self.workers.answers = []

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
        return "200 OK", {"Content-Type": CONTENT_TYPE}, await self.scrape()


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
