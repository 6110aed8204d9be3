"""README "Run a cluster" on real machines, as far as one machine can check it: the systemd
units verify and are hardened, and the shipped NATS config with the README's certificates and
[cluster] table runs a NATS cluster of three TLS servers that three real nodes join."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
import tomllib
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from actord.testing import Daemon, stop_all, wait_for
from tests.cluster_support import (
    NATS_SERVER,
    accepts,
    free_port,
    kill_sender_while_receiver_stopped,
)
from tests.conftest import config_text
from tests.test_readme import BLOCKS
from tests.test_systemd import analyze, unit_settings

ROOT = Path(__file__).resolve().parent.parent
NODE_UNIT = ROOT / "systemd" / "actord-node.service"
NATS_UNIT = ROOT / "systemd" / "nats-server.service"
NATS_CONF = ROOT / "config" / "cluster" / "nats-server.conf"
NODES = ("n1", "n2", "n3")


def readme_block(lang: str, contains: str) -> str:
    """The one README block of ``lang`` whose text contains ``contains``."""
    found = [b.text for b in BLOCKS if b.lang == lang and contains in b.text]
    assert len(found) == 1, f"{len(found)} README {lang} blocks contain {contains!r}"
    return found[0]


def test_the_node_unit_is_the_daemon_unit_on_node_toml() -> None:
    """actord-node.service: actord.service's settings, on node.toml, after nats-server."""
    node = unit_settings(NODE_UNIT.read_text())
    single = unit_settings((ROOT / "systemd" / "actord.service").read_text())
    assert node["ExecStart"] == ["/usr/local/bin/actord run --config /etc/actord/node.toml"]
    assert "nats-server.service" in node["After"][0].split()
    assert node["Conflicts"] == ["actord.service"]
    different = {"ExecStart", "After", "Wants", "Conflicts", "Description"}
    assert {k: v for k, v in node.items() if k not in different} == {
        k: v for k, v in single.items() if k not in different}


def test_the_nats_unit_runs_the_shipped_config() -> None:
    """nats-server.service: the config path of the README, a clean stop, its store dir."""
    unit = unit_settings(NATS_UNIT.read_text())
    assert unit["ExecStart"] == ["/usr/local/bin/nats-server -c /etc/nats/nats-server.conf"]
    assert unit["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert unit["KillSignal"] == ["SIGTERM"] and unit["StateDirectory"] == ["nats"]
    assert "store_dir: /var/lib/nats/jetstream" in NATS_CONF.read_text()


@pytest.fixture
def installable(tmp_path: Path) -> list[Path]:
    """Both units with ExecStart naming binaries that exist here (skip without systemd)."""
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed (no systemd on this machine)")
    probe = tmp_path / "probe.service"
    probe.write_text("[Service]\nType=notify\nExecStart=/bin/true\n")
    if analyze("verify", str(probe)).returncode != 0:
        pytest.skip("systemd-analyze cannot verify units here")
    out = []
    for unit, binary in ((NODE_UNIT, Path(sys.executable).parent / "actord"),
                         (NATS_UNIT, Path(NATS_SERVER))):
        path = tmp_path / unit.name
        path.write_text(re.sub(r"(?m)^ExecStart=\S+", f"ExecStart={binary}", unit.read_text()))
        out.append(path)
    return out


def test_the_units_verify_and_are_hardened(installable: list[Path]) -> None:
    """`systemd-analyze verify` accepts both units; `security` rates each below 3.0 of 10."""
    for unit in installable:
        out = analyze("verify", str(unit))
        assert out.returncode == 0 and unit.name not in out.stdout + out.stderr, out.stderr
        sec = analyze("security", "--offline=true", str(unit))
        m = re.search(r"Overall exposure level for \S+: ([\d.]+)", sec.stdout + sec.stderr)
        if m is None:
            pytest.skip(f"systemd-analyze security --offline is unavailable: {sec.stderr}")
        assert float(m[1]) < 3.0, sec.stdout


# -- the NATS cluster of three, on loopback ----------------------------------------------------


def nats_conf(i: int, tls: Path, store: Path, ports: dict[str, list[int]]) -> str:
    """The shipped config for server ``i`` on this machine: loopback ports instead of the
    machines' names and ports, the test's certificates and store; nothing else changed."""
    text = NATS_CONF.read_text()
    text = text.replace("server_name: nats1", f"server_name: nats{i + 1}")
    text = text.replace("listen: 0.0.0.0:4222", f"listen: 127.0.0.1:{ports['client'][i]}")
    text = text.replace("http: 127.0.0.1:8222", f"http: 127.0.0.1:{ports['http'][i]}")
    text = text.replace("listen: 0.0.0.0:6222", f"listen: 127.0.0.1:{ports['route'][i]}")
    text = re.sub(r"nats-route://nats(\d)\.example\.net:6222",
                  lambda m: f"nats-route://localhost:{ports['route'][int(m[1]) - 1]}", text)
    text = text.replace("/var/lib/nats/jetstream", str(store))
    text = text.replace("/etc/nats/tls/server", str(tls / f"nats{i + 1}"))
    return text.replace("/etc/nats/tls/ca.pem", str(tls / "ca.pem"))


class TlsNats:
    """The README's certificates (made by its openssl block, the servers' names adapted to
    loopback) and three nats-servers on the shipped config, each started when asked."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.tls = tmp_path / "tls"
        self.tls.mkdir()
        script = readme_block("sh", "openssl req -x509").replace(
            "subjectAltName=DNS:%s.example.net",
            "subjectAltName=DNS:%s.example.net,DNS:localhost")
        out = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=self.tls,
                             capture_output=True, text=True, timeout=60, check=False)
        assert out.returncode == 0, out.stderr
        self.ports = {k: [free_port() for _ in range(3)] for k in ("client", "route", "http")}
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, i: int) -> None:
        """Check server ``i``'s config as the README does, run it, wait until it accepts."""
        conf = self.tmp / f"nats{i + 1}.conf"
        conf.write_text(nats_conf(i, self.tls, self.tmp / f"js{i + 1}", self.ports))
        check = subprocess.run([NATS_SERVER, "-t", "-c", str(conf)], capture_output=True,
                               text=True, timeout=30, check=False)
        assert check.returncode == 0 and "is valid" in check.stdout + check.stderr, check
        with open(self.tmp / f"nats{i + 1}.log", "wb") as log:
            self.procs.append(subprocess.Popen([NATS_SERVER, "-c", str(conf)], stdout=log,
                                               stderr=subprocess.STDOUT,
                                               env={"GOMAXPROCS": "1", "PATH": "/usr/bin:/bin"}))
        wait_for(lambda: accepts(self.ports["client"][i]), 10, what=f"nats{i + 1}")

    def wait_ready(self) -> None:
        """Each server routed to the other two, and JetStream's meta leader elected (on a new
        cluster this takes up to ~10 s here: until then no bucket can be made or bound)."""
        http = self.ports["http"]
        wait_for(lambda: all(routes(p) == {f"nats{k}" for k in (1, 2, 3)} - {f"nats{i + 1}"}
                             for i, p in enumerate(http)), 15,
                 what="each server routed to the other two")
        wait_for(lambda: all(meta_leader(p) for p in http), 30, what="a JetStream meta leader")

    def stop(self) -> None:
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


@pytest.fixture
def tls_servers(tmp_path: Path) -> Iterator[TlsNats]:
    """Three TLS nats-servers on the shipped config, none started yet."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    servers = TlsNats(tmp_path)
    try:
        yield servers
    finally:
        servers.stop()


@pytest.fixture
def tls_nats(tls_servers: TlsNats) -> tuple[Path, list[int]]:
    """The three servers running, routed to each other, JetStream ready."""
    for i in range(3):
        tls_servers.start(i)
    tls_servers.wait_ready()
    return tls_servers.tls, tls_servers.ports["client"]


def routes(http_port: int) -> set[str]:
    """The servers a server has routes to: its monitoring endpoint's ``remote_name``s (what
    the README's curl lists; a route pool has several connections per server)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/routez", timeout=2) as r:
        return {route["remote_name"] for route in json.load(r)["routes"]}


def meta_leader(http_port: int) -> str:
    """The JetStream meta leader a server knows of ("" while there is none)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/jsz", timeout=2) as r:
        return str(json.load(r).get("meta_cluster", {}).get("leader") or "")


def node_config(node: str, i: int, tls: Path, client_ports: list[int],
                hosts: dict[str, int] | None = None, only_own: bool = False) -> str:
    """A test daemon with the README's [cluster] table for ``node``: its own server first
    (``only_own``: alone), the test's certificate paths; nothing else changed."""
    table = tomllib.loads(readme_block("toml", "/etc/actord/node.toml"))["cluster"]
    assert table["servers"][0].startswith("tls://") and table["name"] == "prod"
    order = [client_ports[(i + k) % 3] for k in range(1 if only_own else 3)]
    servers = ", ".join(f'"tls://localhost:{p}"' for p in order)
    paths = {k: v.replace("/etc/actord/tls/n1", f"/etc/actord/tls/{node}")
             .replace("/etc/actord/tls", str(tls)) for k, v in table["tls"].items()}
    tls_line = ", ".join(f'{k} = "{v}"' for k, v in paths.items())
    processes = {"t:idle": "semantics_probes:idle", "r:holder": "remote_probes:name_holder",
                 "r:claim": "remote_probes:claim", "t:endless": "cluster_probes:endless_sender",
                 "t:watch": "cluster_probes:watch_stream", "t:tally": "cluster_probes:last_tally"}
    return config_text(processes, hosts=hosts or {"t:a": 1}, extra=(
        f'[cluster]\nnode = "{node}"\nservers = [{servers}]\nname = "{table["name"]}"\n'
        f'node_timeout = "{table["node_timeout"]}"\ntls = {{ {tls_line} }}\n'))


def test_three_nodes_join_through_a_tls_nats_cluster(
    tmp_path: Path, tls_nats: tuple[Path, list[int]]
) -> None:
    """Each node on its own server of the cluster, with its certificate: all see all up, a
    process of n1 is listed by ps --cluster on n3 and reached by a send from n2, a global:
    name claimed on n1 is held against n2 and reached from n3 (the users' permissions cover
    JetStream); a client that trusts the CA but has no certificate of its own is refused."""
    import asyncio
    import ssl

    import nats as nats_py

    tls, client_ports = tls_nats
    ds = [Daemon(tmp_path / n, node_config(n, i, tls, client_ports)) for i, n in enumerate(NODES)]
    try:
        for d in ds:
            d.start()
        wait_for(lambda: all({r["node"] for r in d.call("nodes") if r["state"] == "up"}
                             == set(NODES) for d in ds), 15, what="n1, n2, n3 up on each")
        pid = ds[0].call("spawn", id="t:idle", host="t:a")
        rows = ds[2].call("ps", cluster=True)
        assert rows["missing"] == [] and [r["pid"] for r in rows["processes"]] == [pid], rows
        dead = ds[0].call("status")["dead_letters"]
        assert ds[1].cli("send", pid, "hello").returncode == 0
        wait_for(lambda: {r["node"]: r for r in ds[0].call("nodes")}["n2"]["received"] == 1, 5,
                 what="n2's message received on n1")
        assert ds[0].call("status")["dead_letters"] == dead  # delivered to the live process
        ds[0].kill(pid)
        holder = ds[0].call("spawn", id="r:holder", host="t:a", args=["global:db"])
        wait_for(lambda: ds[1].call("registry").get("global:db") == holder, 10,
                 what="global:db on n2")
        assert ds[1].exec("r:claim", "t:a", "global:db") == "ALREADY_EXISTS"
        assert ds[2].cli("send", "global:db", "go", "1").returncode == 0
        wait_for(lambda: "global:db" not in ds[0].call("registry"), 10, what="the holder's end")

        async def bare() -> None:
            nc = await nats_py.connect(f"tls://localhost:{client_ports[0]}",
                                       tls=ssl.create_default_context(cafile=tls / "ca.pem"),
                                       allow_reconnect=False, connect_timeout=2)
            await nc.close()
        with pytest.raises(Exception):  # noqa: B017 - nats-py raises several kinds here
            asyncio.run(bare())
        for d in ds:
            assert "Traceback" not in d.log(), d.log()
    finally:
        stop_all(ds)


def test_global_names_come_up_once_the_nats_cluster_elects_its_leader(
    tmp_path: Path, tls_servers: TlsNats
) -> None:
    """A node connected to a NATS cluster that has no JetStream leader yet (one server of three
    up: no quorum) runs, says once that its name bucket is not there yet, and refuses a
    global: claim with a clear error after a bounded wait; once the other servers are up it
    binds the bucket by itself (no restart) and claims work."""
    tls_servers.start(0)
    d = Daemon(tmp_path / "n1", node_config("n1", 0, tls_servers.tls,
                                            tls_servers.ports["client"]))
    try:
        d.start()
        wait_for(lambda: "names: name bucket prod_names" in d.log(), 10,
                 what="the bucket's first failure logged")
        began = time.monotonic()
        assert d.exec("r:claim", "t:a", "global:db") == "ERROR"
        assert time.monotonic() - began < 10  # READY_WAIT (5 s), not forever
        for i in (1, 2):
            tls_servers.start(i)
        tls_servers.wait_ready()
        wait_for(lambda: "names: bucket prod_names ready" in d.log(), 30, what="the bucket bound")
        assert d.exec("r:claim", "t:a", "global:db") == "ok"
        assert d.call("registry").get("global:db") is None  # the claimer ended: released
        assert d.log().count("retrying while connected to NATS") == 1, d.log()
        assert "Traceback" not in d.log(), d.log()
    finally:
        stop_all([d])


def test_a_killed_workers_messages_cross_the_nats_cluster_before_its_exit(
    tmp_path: Path, tls_nats: tuple[Path, list[int]]
) -> None:
    """n1 on nats1 alone, n3 on nats3 alone: n1's messages to n3 cross a route. n1's
    streaming process S is SIGKILLed with its worker while the worker of its receiver W on
    n3 is SIGSTOPped: W still takes every message S had published before its last count
    reached a tally on n3's other worker, then S's EXIT (the "no responders" n3's worker
    waits for comes from nats3 after the route has carried S's worker's messages)."""
    tls, client_ports = tls_nats
    hosts = {"t:a": 1, "t:b": 1}
    n1, n3 = (Daemon(tmp_path / n, node_config(n, i, tls, client_ports, hosts, only_own=True))
              for n, i in (("n1", 0), ("n3", 2)))
    try:
        n1.start()
        n3.start()
        wait_for(lambda: all({r["node"] for r in d.call("nodes") if r["state"] == "up"}
                             == {"n1", "n3"} for d in (n1, n3)), 15, what="n1 and n3 up")
        r, last = kill_sender_while_receiver_stopped(n1, n3)
        assert r["in_order"] and r["exit"][2] == {"error": "worker crashed"}, r
        assert r["n"] >= last > 2000 and r["late"] == 0, (r, last)
        for d in (n1, n3):
            assert "Traceback" not in d.log(), d.log()
    finally:
        stop_all([n1, n3])
