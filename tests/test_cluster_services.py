"""SPEC 11 "wherever a host is taken": a service of n1 on a host of n2 (``host = "n2@t:a"``).

Two real daemons on a real nats-server (``node_timeout = "1s"``): n1 supervises a service
whose process runs on n2; it starts only once its entry runs there, restarts when it ends
there (and when n2 goes away, once n2 is back), stops there, and a start whose entry cannot
load there fails with the load error, as a local service does (tests/test_service_start.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from actord.configfile import load
from actord.errors import ConfigError
from actord.testing import Daemon, stop_all, wait_for
from tests.cluster_support import NatsServer, cluster_config, up_nodes
from tests.conftest import config_text

PROCESSES = {"r:idle": "remote_probes:idle", "r:broken": "remote_probes:no_such_entry"}
SERVICES = """
[services."s:far"]
process = "r:idle"
host = "n2@t:a"
restart = "permanent"

[services."s:broken"]
process = "r:broken"
host = "n2@t:a"
auto_start = false
"""


@pytest.fixture
def pair(tmp_path: Path, nats: NatsServer) -> Iterator[tuple[Daemon, Daemon]]:
    """n2 first, then n1 with the services (its auto_start one runs on n2 before n1 is
    ready)."""
    n2 = Daemon(tmp_path / "n2", cluster_config("n2", [nats.url], PROCESSES))
    n1 = Daemon(tmp_path / "n1", cluster_config("n1", [nats.url], PROCESSES) + SERVICES)
    try:
        n2.start()
        n1.start()
        wait_for(lambda: len(up_nodes(n1)) == len(up_nodes(n2)) == 2, 5, what="both up")
        yield n1, n2
    finally:
        stop_all([n1, n2])


def service(d: Daemon, name: str) -> dict[str, Any]:
    return {r["name"]: r for r in d.call("services")}[name]


def pids(d: Daemon) -> set[str]:
    return {p["pid"] for p in d.call("ps")}


def test_a_service_on_another_nodes_host_starts_restarts_and_stops_there(
    pair: tuple[Daemon, Daemon]
) -> None:
    """The auto_start service runs on n2 when n1 is ready; killed there, n1 restarts it
    there; `stop` ends it there; `start` runs it again; n2 stopped, then killed -9: each
    time n1 sees it end (the second as "node down: n2"), waits for n2, and starts it on
    n2's next run."""
    n1, n2 = pair
    row = service(n1, "s:far")
    assert row["state"] == "running" and row["host"] == "n2@t:a", row
    first = row["pid"]
    assert first.startswith("{n2@t:a|") and first in pids(n2)
    n2.kill(first)
    wait_for(lambda: service(n1, "s:far")["restarts"] == 1
             and service(n1, "s:far")["state"] == "running", 10, what="restarted on n2")
    second = service(n1, "s:far")["pid"]
    assert second != first and second in pids(n2) and first not in pids(n2)
    assert "process terminated" in (service(n1, "s:far")["last_error"] or "")
    stopped = n1.cli("stop", "s:far")
    assert stopped.returncode == 0, stopped.stderr
    assert service(n1, "s:far")["state"] == "stopped" and second not in pids(n2)
    started = n1.cli("start", "s:far")
    assert started.returncode == 0, started.stderr
    third = service(n1, "s:far")["pid"]
    assert third.startswith("{n2@t:a|") and third in pids(n2)
    n2.stop()  # its processes end (CANCEL); then it is down
    wait_for(lambda: service(n1, "s:far")["state"] == "starting", 10,
             what="the service waiting for n2")
    n2.start()
    wait_for(lambda: service(n1, "s:far")["state"] == "running", 15, what="running on n2 again")
    fourth = service(n1, "s:far")["pid"]
    assert fourth.startswith("{n2@t:a|") and fourth in pids(n2) and fourth != third
    n2.kill9()  # its end comes as the break's "node down: n2", an abnormal end: restarted
    wait_for(lambda: service(n1, "s:far")["state"] == "starting", 10,
             what="the service waiting for n2 after its kill -9")
    assert service(n1, "s:far")["last_error"] == "node down: n2", service(n1, "s:far")
    n2.start()
    wait_for(lambda: service(n1, "s:far")["state"] == "running", 15, what="running on n2 again")
    fifth = service(n1, "s:far")["pid"]
    assert fifth.startswith("{n2@t:a|") and fifth in pids(n2) and fifth != fourth
    assert "Traceback" not in n1.log()


def test_a_start_whose_entry_cannot_load_on_the_other_node_fails_with_why(
    pair: tuple[Daemon, Daemon]
) -> None:
    """`start s:broken`: its entry cannot load on n2; n1's start exits 1 with n2's load
    error in one line, the service is failed (could not start, not retried)."""
    n1, n2 = pair
    out = n1.cli("start", "s:broken")
    assert out.returncode == 1, (out.stdout, out.stderr)
    assert out.stderr.startswith("actord: service s:broken failed: NotFoundError: entry "
                                 "'remote_probes:no_such_entry': module has no"), out.stderr
    assert out.stderr.count("\n") == 1, out.stderr
    row = service(n1, "s:broken")
    assert (row["state"], row["reason"], row["restarts"], row["pid"]) == (
        "failed", "could not start", 0, None), row
    assert not any(p["id"] == "r:broken" for p in n2.call("ps"))


def test_the_config_takes_another_nodes_host_only_in_a_cluster(tmp_path: Path) -> None:
    """`n2@t:a` is checked by n2 (any host name is taken on n1), but needs [cluster];
    n1's own prefix names its own hosts, checked as any."""
    def build(text: str) -> Any:
        path = tmp_path / "actord.toml"
        path.write_text(text.replace("@SOCKET@", str(tmp_path / "s.sock")))
        return load(path)

    clustered = cluster_config("n1", ["nats://127.0.0.1:4222"], PROCESSES)
    assert build(clustered + SERVICES).services["s:far"].host == "n2@t:a"
    own = SERVICES.replace('"n2@t:a"\nrestart', '"n1@t:a"\nrestart')
    assert build(clustered + own).services["s:far"].host == "t:a"
    with pytest.raises(ConfigError, match=r'services\."s:far"\.host: unknown host "n1@t:zz"\Z'):
        build(clustered + own.replace("n1@t:a", "n1@t:zz"))
    with pytest.raises(ConfigError, match=r'"n2@t:a" names a host of node "n2": '
                                          r"that needs a \[cluster\] table"):
        build(config_text(PROCESSES, hosts={"t:a": 1}) + SERVICES)
