"""The Prometheus endpoint (``[daemon] metrics``) of a real daemon, on 127.0.0.1 only.

One node serves most tests; each test reads counters before and after what it does, so the
tests do not depend on each other's order. Rendering and the config key are tested as pure
functions.
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

from actord.core import config as cfg
from actord.core import wire
from actord.errors import ConfigError
from actord.metrics import CONTENT_TYPE, Metric, render
from actord.testing import Daemon, wait_for
from tests.conftest import config_text

PROCESSES = {
    "t:deaf": "ops_probes:deaf",
    "t:obedient": "service_probes:obedient",
    "t:crasher": "service_probes:crasher",
    "t:add": "basics:add",
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
SAMPLE_RE = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)")
LABEL_RE = re.compile(r'([a-zA-Z_]\w*)="((?:[^"\\]|\\.)*)"')

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
    """The samples of a text exposition, keyed by (name, labels)."""
    out: Samples = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE_RE.fullmatch(line)
        assert m is not None, f"not a sample line: {line!r}"
        labels = frozenset(LABEL_RE.findall(m[2] or ""))
        out[(m[1], labels)] = float(m[3])
    return out


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
    """GET /metrics: 200, text format 0.0.4, HELP and TYPE before each family's samples."""
    status, headers, body = get(node.url)
    assert status == 200 and headers["Content-Type"] == CONTENT_TYPE
    assert body.endswith("\n")
    declared: dict[str, str] = {}
    for line in body.splitlines():
        if line.startswith("# HELP "):
            declared.setdefault(line.split()[2], "")
        elif line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            assert kind in ("counter", "gauge") and name in declared
            declared[name] = kind
        else:
            m = SAMPLE_RE.fullmatch(line)
            assert m is not None and declared.get(m[1]), line
    for name, kind in declared.items():
        assert name.startswith("actord_") and name.endswith("_total") == (kind == "counter"), name
    assert {
        "actord_processes", "actord_workers", "actord_worker_restarts_total",
        "actord_messages_routed_total", "actord_dead_letters_total", "actord_mailbox_depth",
        "actord_service_restarts_total", "actord_service_state", "actord_exits_total",
    } <= set(declared)


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


def test_render_escapes_and_formats() -> None:
    """Label values and help are escaped; whole numbers print as integers."""
    m = Metric("x_total", "counter", 'a "help"\\ line\nnext')
    m.add(3.0, name='q"uo\\te\n')
    m.add(0.25)
    assert render([m]) == (
        '# HELP x_total a "help"\\\\ line\\nnext\n'
        "# TYPE x_total counter\n"
        'x_total{name="q\\"uo\\\\te\\n"} 3\n'
        "x_total 0.25\n"
    )
