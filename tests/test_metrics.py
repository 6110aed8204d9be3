"""The Prometheus endpoint (``[daemon] metrics``) of a real daemon, on 127.0.0.1 only.

One node serves most tests; each test reads counters before and after what it does, so the
tests do not depend on each other's order. Every scrape is parsed by prometheus_client's own
text parser. The config key is tested as a pure function; the cluster counters on two nodes
over a real nats-server.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from actord.core import config as cfg
from actord.core import wire
from actord.errors import ConfigError
from actord.metrics import CONTENT_TYPE
from actord.testing import Daemon, wait_for
from tests.cluster_support import NatsServer, cluster_config
from tests.conftest import config_text

PROCESSES = {
    "t:deaf": "ops_probes:deaf",
    "t:obedient": "service_probes:obedient",
    "t:crasher": "service_probes:crasher",
    "t:add": "basics:add",
    "t:ponger": "flood_probes:ponger",
    "t:pinger": "flood_probes:pinger",
}
HOSTS = {"t:a": 1, "t:b": 2}
SERVICE = """
[services."t:svc"]
process = "t:obedient"
host = "t:a"
name = "svc"
restart = "permanent"
backoff = { initial = "10ms", max = "50ms" }
"""
OLD_NAMES = {  # the families of the hand-written exposition: users' queries name them
    "actord_info": "gauge", "actord_uptime_seconds": "gauge", "actord_processes": "gauge",
    "actord_workers": "gauge", "actord_worker_restarts_total": "counter",
    "actord_worker_stalled": "gauge", "actord_mailbox_depth": "gauge",
    "actord_worker_dead_letters_total": "counter", "actord_stats_timeouts": "gauge",
    "actord_messages_routed_total": "counter", "actord_dead_letters_total": "counter",
    "actord_exits_total": "counter", "actord_service_restarts_total": "counter",
    "actord_service_state": "gauge",
}

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def with_metrics(text: str, address: str) -> str:
    """``text`` (a config) with ``[daemon] metrics = address``."""
    return text.replace("[daemon]\n", f'[daemon]\nmetrics = "{address}"\n', 1)


def get(url: str) -> tuple[int, dict[str, str], str]:
    """Status, headers and body of a GET (errors included)."""
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, dict(r.headers), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read().decode()


def parse(text: str) -> Samples:
    """The samples of a text exposition (prometheus_client's parser), keyed by (name, labels)."""
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def worker_values(samples: Samples, name: str, host: str) -> dict[str, float]:
    """``name``'s samples of ``host``'s workers: worker index -> value."""
    return {dict(k[1])["worker"]: v for k, v in samples.items()
            if k[0] == name and ("host", host) in k[1]}


class Node:
    """The daemon under test and its metrics URL."""

    def __init__(self, daemon: Daemon, port: int) -> None:
        self.d = daemon
        self.url = f"http://127.0.0.1:{port}/metrics"

    def scrape(self) -> Samples:
        """GET /metrics, parsed."""
        status, _, body = get(self.url)
        assert status == 200, body
        return parse(body)

    def value(self, name: str, **labels: str) -> float:
        """One sample of a fresh scrape (NaN if absent)."""
        return self.scrape().get((name, frozenset(labels.items())), float("nan"))


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    """One daemon with metrics on 127.0.0.1 and a free port."""
    port = free_port()
    text = with_metrics(config_text(PROCESSES, hosts=HOSTS, extra=SERVICE, shutdown_timeout="2s"),
                        f"127.0.0.1:{port}")
    d = Daemon(tmp_path_factory.mktemp("metrics"), text).start()
    yield Node(d, port)
    if d.proc is not None and d.proc.poll() is None:
        assert d.stop() == 0, d.log()


def spawn(node: Node, host: str, id: str = "t:deaf") -> str:
    """Spawn ``id`` on ``host`` from the CLI side; its PID."""
    return str(node.d.call("spawn", id=id, host=host))


def gone(node: Node, pid: str) -> bool:
    """True once ``pid`` is not in ``ps``."""
    return all(r["pid"] != pid for r in node.d.call("ps"))


# -- the exposition -------------------------------------------------------------------------------


def test_exposition_is_prometheus_text(node: Node) -> None:
    """GET /metrics: 200, text 0.0.4 that prometheus_client parses, every old family there with
    its type, HELP and TYPE lines, counters named *_total; a single node has no cluster family."""
    status, headers, body = get(node.url)
    assert status == 200 and headers["Content-Type"] == CONTENT_TYPE
    assert body.endswith("\n")
    families = list(text_string_to_metric_families(body))
    declared: dict[str, str] = {}
    for family in families:
        assert family.type in ("counter", "gauge") and family.documentation, family
        for sample in family.samples:
            assert sample.name.startswith("actord_"), sample
            assert sample.name.endswith("_total") == (family.type == "counter"), sample
            declared[sample.name] = family.type
    for name, kind in OLD_NAMES.items():
        assert f"# TYPE {name} {kind}\n" in body and f"# HELP {name} " in body, name
    assert {name: declared.get(name) for name in OLD_NAMES} == OLD_NAMES
    assert not any(name.startswith("actord_cluster_") for name in declared)


def test_http_errors(node: Node) -> None:
    """Other paths are 404, other methods 405, a malformed request 400; the node goes on."""
    base = node.url.removesuffix("/metrics")
    assert get(base + "/nope")[0] == 404
    post = urllib.request.Request(node.url, data=b"x", method="POST")
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(post, timeout=10)
    assert err.value.code == 405
    port = int(base.rsplit(":", 1)[1])
    for request in (b"hello\r\n\r\n", b"GET /metrics HTTP/1.1\r\nX: " + b"y" * 20000):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(request)
            assert s.recv(100).startswith(b"HTTP/1.1 400 "), request[:20]
    assert node.scrape()


# -- the values -----------------------------------------------------------------------------------


def test_workers_and_processes_per_host(node: Node) -> None:
    """actord_workers and actord_processes count per host, from the router's tables."""
    before = node.scrape()
    assert before[("actord_workers", frozenset({("host", "t:a")}))] == 1
    assert before[("actord_workers", frozenset({("host", "t:b")}))] == 2
    pids = [spawn(node, "t:b") for _ in range(3)]
    key = ("actord_processes", frozenset({("host", "t:b")}))
    assert node.scrape()[key] == before[key] + 3
    for pid in pids:
        node.d.call("kill", dest=pid)
    wait_for(lambda: node.scrape()[key] == before[key], what="processes back")


def test_routed_and_dead_letters(node: Node) -> None:
    """A message to a live PID is routed; one to a dead PID is a dead letter (and no error)."""
    pid = spawn(node, "t:a")
    before = node.scrape()
    routed = before[("actord_messages_routed_total", frozenset())]
    dead = before[("actord_dead_letters_total", frozenset())]
    node.d.call("send", dest=pid, topic="hello", values=[1])
    assert node.value("actord_messages_routed_total") == routed + 1
    node.d.call("kill", dest=pid)
    wait_for(lambda: gone(node, pid), what="process gone")
    node.d.call("send", dest=pid, topic="hello", values=[2])
    after = node.scrape()
    assert after[("actord_dead_letters_total", frozenset())] == dead + 1
    assert after[("actord_messages_routed_total", frozenset())] == routed + 1


def test_mailbox_depth(node: Node) -> None:
    """Messages a process has not received count in its host's actord_mailbox_depth."""
    before = node.value("actord_mailbox_depth", host="t:a")
    pid = spawn(node, "t:a")
    for i in range(5):
        node.d.call("send", dest=pid, topic="unread", values=[i])
    # each DELIVER precedes the STATS request on the worker's FIFO socket: no waiting needed
    assert node.value("actord_mailbox_depth", host="t:a") == before + 5
    node.d.call("cancel", dest=pid)
    wait_for(lambda: gone(node, pid), what="process gone")
    assert node.value("actord_mailbox_depth", host="t:a") == before


def test_exits_by_outcome(node: Node) -> None:
    """A normal end counts outcome="normal", an exception outcome="abnormal"."""
    def exits() -> tuple[float, float]:
        s = node.scrape()
        return tuple(s[("actord_exits_total", frozenset({("outcome", o)}))]  # type: ignore[return-value]
                     for o in ("normal", "abnormal"))

    normal, abnormal = exits()
    assert node.d.call("exec", None, id="t:add", host="t:b", args=[1, 2])["value"] == 3
    assert exits() == (normal + 1, abnormal)
    assert wire.is_abnormal(node.d.call("exec", None, id="t:crasher", host="t:b"))
    assert exits() == (normal + 1, abnormal + 1)


def test_service_restarts_and_state(node: Node) -> None:
    """A service that failed and was restarted: restarts_total + 1, state running, then stopped."""
    def state(s: dict[Any, float]) -> dict[str, float]:
        return {dict(k[1])["state"]: v for k, v in s.items()
                if k[0] == "actord_service_state" and ("service", "t:svc") in k[1]}

    key = ("actord_service_restarts_total", frozenset({("service", "t:svc")}))
    before = node.scrape()
    assert state(before)["running"] == 1 and sum(state(before).values()) == 1
    old = node.d.call("registry")["svc"]
    node.d.call("send", dest="svc", topic="raise", values=["boom"])
    wait_for(lambda: node.d.call("registry").get("svc") not in (None, old), what="restart")
    after = node.scrape()
    assert after[key] == before[key] + 1
    assert state(after)["running"] == 1
    node.d.call("stop", service="t:svc")
    stopped = state(node.scrape())
    assert stopped["stopped"] == 1 and sum(stopped.values()) == 1
    node.d.call("start", service="t:svc")


def test_worker_restarts(node: Node) -> None:
    """kill -9 of a worker: its slot's actord_worker_restarts_total + 1, workers back to 2."""
    labels = {"host": "t:b", "worker": "1"}
    before = node.value("actord_worker_restarts_total", **labels)
    [victim] = [w for w in node.d.workers() if w["host"] == "t:b" and w["index"] == 1]
    os.kill(victim["os_pid"], signal.SIGKILL)
    wait_for(lambda: node.value("actord_worker_restarts_total", **labels) == before + 1
             and node.value("actord_workers", host="t:b") == 2, what="worker replaced")


# -- start-up and config --------------------------------------------------------------------------


def test_taken_port_refuses_start(tmp_path: Path) -> None:
    """A metrics port in use: `actord run` exits 1 with one line naming the key; no socket left."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        sock = tmp_path / "actord.sock"
        conf = tmp_path / "actord.toml"
        conf.write_text(with_metrics(config_text({}, hosts={"t:a": 1}), f"127.0.0.1:{port}")
                        .replace("@SOCKET@", str(sock)))
        out = subprocess.run([sys.executable, "-m", "actord", "run", "--config", str(conf)],
                             capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 1, out.stderr
    last = out.stderr.strip().splitlines()[-1]
    assert last == f"actord: [daemon] metrics 127.0.0.1:{port}: Address already in use", last
    assert not sock.exists()


@pytest.mark.parametrize(("value", "expected"), [
    ("127.0.0.1:9464", ("127.0.0.1", 9464)),
    ("[::1]:9464", ("::1", 9464)),
    (":9464", ("127.0.0.1", 9464)),
    ("localhost:80", ("localhost", 80)),
    ("0.0.0.0:9464", ("0.0.0.0", 9464)),
])
def test_config_metrics_address(value: str, expected: tuple[str, int]) -> None:
    """[daemon] metrics is "host:port"; a missing host is loopback."""
    assert cfg.parse(f'[daemon]\nmetrics = "{value}"\n', "/etc/a.toml").daemon.metrics == expected


@pytest.mark.parametrize(("value", "problem"), [
    ('"9464"', '"9464" is not "host:port"'),
    ('"host"', '"host" is not "host:port"'),
    ('"::1:9464"', '"::1:9464" is not "host:port"'),
    ('"127.0.0.1:0"', "port must be 1..65535, got 0"),
    ('"127.0.0.1:70000"', "port must be 1..65535, got 70000"),
    ("9464", "expected string, got integer"),
])
def test_config_metrics_refused(value: str, problem: str) -> None:
    """A bad [daemon] metrics is one ConfigError naming the file, the key and the problem."""
    with pytest.raises(ConfigError) as err:
        cfg.parse(f"[daemon]\nmetrics = {value}\n", "/etc/a.toml")
    assert str(err.value).startswith(f"/etc/a.toml: daemon.metrics: {problem}"), str(err.value)


def test_config_metrics_off_by_default() -> None:
    """Without the key there is no metrics endpoint."""
    assert cfg.parse("[daemon]\n", "/etc/a.toml").daemon.metrics is None


# -- per-worker messages and mailboxes ------------------------------------------------------------


def test_worker_message_counters(node: Node) -> None:
    """N round trips between t:b and t:a's worker move each side's sent and received by N and
    the router's count by 2N; N between two processes of t:a's one worker count there twice
    and skip the router."""
    rounds = 20
    sent, received = "actord_worker_messages_sent_total", "actord_worker_messages_received_total"
    routed = ("actord_messages_routed_total", frozenset())

    def totals(s: Samples, host: str) -> tuple[float, float]:
        return sum(worker_values(s, sent, host).values()), sum(
            worker_values(s, received, host).values())

    ponger = spawn(node, "t:a", "t:ponger")
    before = node.scrape()
    assert len(node.d.exec("t:pinger", "t:b", ponger, rounds)) == rounds
    after = node.scrape()
    for name in (sent, received):  # t:a has one worker: the ponger's
        assert worker_values(after, name, "t:a")["0"] == worker_values(before, name, "t:a")["0"] \
            + rounds, name
    assert totals(after, "t:b") == tuple(v + rounds for v in totals(before, "t:b"))
    assert after[routed] == before[routed] + 2 * rounds

    assert len(node.d.exec("t:pinger", "t:a", ponger, rounds)) == rounds  # same worker
    local = node.scrape()
    assert totals(local, "t:a") == tuple(v + 2 * rounds for v in totals(after, "t:a"))
    assert totals(local, "t:b") == totals(after, "t:b") and local[routed] == after[routed]
    node.d.call("kill", dest=ponger)


def test_worker_mailbox_depth(node: Node) -> None:
    """A receiver that never reads: its worker's actord_worker_mailbox_depth holds the queue,
    and the per-worker depths of a host add up to its actord_mailbox_depth."""
    pid = spawn(node, "t:b")
    [worker] = [str(r["worker"]) for r in node.d.call("ps") if r["pid"] == pid]
    before = worker_values(node.scrape(), "actord_worker_mailbox_depth", "t:b")
    for i in range(7):
        node.d.call("send", dest=pid, topic="unread", values=[i])
    after = node.scrape()
    depths = worker_values(after, "actord_worker_mailbox_depth", "t:b")
    assert depths[worker] == before[worker] + 7
    assert sum(depths.values()) == after[("actord_mailbox_depth", frozenset({("host", "t:b")}))]
    node.d.call("cancel", dest=pid)
    wait_for(lambda: gone(node, pid), what="process gone")
    assert worker_values(node.scrape(), "actord_worker_mailbox_depth", "t:b")[worker] == (
        before[worker])


# -- a cluster ------------------------------------------------------------------------------------


def test_cluster_counters(tmp_path: Path) -> None:
    """Two nodes: n1 shows n2 up and counts the frames it published to n2; n2 counts them
    received from n1; messages to a process on n2 move both."""
    nats = NatsServer(tmp_path / "nats").start()
    started: list[tuple[Daemon, Node]] = []
    try:
        for name in ("n1", "n2"):
            port = free_port()
            text = with_metrics(cluster_config(name, [nats.url], PROCESSES), f"127.0.0.1:{port}")
            d = Daemon(tmp_path / name, text).start()
            started.append((d, Node(d, port)))
        (d1, n1), (_, n2) = started
        wait_for(lambda: all(n.value("actord_cluster_node_up", node=other) == 1
                             for n, other in ((n1, "n2"), (n2, "n1"))), 20, what="both nodes up")
        pid = str(d1.call("spawn", id="t:deaf", host="n2@t:a"))
        out = n1.value("actord_cluster_sent_total", node="n2")
        got = n2.value("actord_cluster_received_total", node="n1")
        for i in range(5):
            d1.call("send", dest=pid, topic="unread", values=[i])
        wait_for(lambda: n2.value("actord_mailbox_depth", host="t:a") >= 5, what="delivered")
        assert n1.value("actord_cluster_sent_total", node="n2") >= out + 5
        assert n2.value("actord_cluster_received_total", node="n1") >= got + 5
        s = n1.scrape()
        for key in ("gaps", "stale", "breaks"):
            assert s[(f"actord_cluster_{key}_total", frozenset({("node", "n2")}))] == 0, key
        for key in ("malformed", "lost", "too_large"):
            assert s[(f"actord_cluster_{key}_total", frozenset())] == 0, key
    finally:
        for d, _ in started:
            if d.proc is not None and d.proc.poll() is None:
                d.stop()
        nats.stop()


def test_bench_metrics_smoke() -> None:
    """`scripts/bench_metrics.py` on a few processes exits 0 and prints its timing line."""
    script = Path(__file__).resolve().parent.parent / "scripts" / "bench_metrics.py"
    out = subprocess.run([sys.executable, str(script), "--processes", "20", "--scrapes", "3"],
                         capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    assert re.fullmatch(r"20 processes, 3 scrapes: median [\d.]+ ms, p90 [\d.]+ ms, "
                        r"min [\d.]+ ms, body \d+ bytes\n", out.stdout), out.stdout
