"""What ``scripts/chaos.py`` and ``scripts/soak.py`` share: the chaos node and its daemon's life,
and the three-node cluster of ``scripts/chaos.py --nodes 3`` (:class:`Cluster`).

The node: host ``chaos:observer`` (one worker) for the observer and the watcher, and the
workload hosts (``chaos:a``, ``chaos:b``: two workers each), every role of
``scripts/chaos_actors/chaos_workload.py`` declared. :func:`daemon_session` starts its daemon
in a work directory and tears it down whatever happens; :class:`Node` is the harness's handle
on it (commands, the observer's answers, the table checks).

Importing this module puts ``scripts/chaos_actors`` and the repository root on ``sys.path``
(each script stays runnable as ``.venv/bin/python scripts/<name>.py``).
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ACTORS = HERE / "chaos_actors"
sys.path.insert(0, str(ACTORS))
sys.path.insert(0, str(HERE.parent))

from chaos_workload import OBSERVER, OBSERVER_HOST, WATCHER  # noqa: E402

from actord.testing import Daemon, alive, wait_for  # noqa: E402

WORKLOAD_HOSTS = {"chaos:a": 2, "chaos:b": 2}
ROLES = ("observer", "watcher", "receiver", "sender", "buddy", "ask", "echo", "heap")

__all__ = [
    "ACTORS", "CLUSTER_ROLES", "OBSERVER", "OBSERVER_HOST", "ROLES", "WATCHER", "WORKLOAD_HOSTS",
    "Cluster", "Node", "Session", "cluster_config_text", "config_text", "daemon_session", "say",
    "signal_pid",
]


def config_text(workload_hosts: dict[str, int] = WORKLOAD_HOSTS) -> str:
    """The node: the observer host and the workload hosts, every chaos role declared."""
    lines = [
        "[daemon]",
        'socket = "@SOCKET@"',
        f'python_path = ["{ACTORS}"]',
        'shutdown_timeout = "5s"',
    ]
    for name, workers in {OBSERVER_HOST: 1, **workload_hosts}.items():
        lines += [f'[hosts."{name}"]', f"workers = {workers}"]
    for role in ROLES:
        lines += [f'[processes."chaos:{role}"]', f'entry = "chaos_workload:{role}"']
    return "\n".join(lines) + "\n"


def say(*parts: Any) -> None:
    """Progress on stderr (stdout carries the report)."""
    print(*parts, file=sys.stderr, flush=True)


class Node:
    """The daemon under test and the harness's handles on it."""

    def __init__(self, daemon: Daemon, workload_hosts: dict[str, int]) -> None:
        self.d = daemon
        self.hosts = set(workload_hosts)
        self.observer_pid = ""
        self.watcher_pid = ""
        self.dump_path: Path | None = None
        self._alive_pids: list[str] = []  # the live set as of _alive_at (see random_alive)
        self._alive_at = -1e9

    def ask(self, dest: str, topic: str, value: Any = None) -> Any:
        """Send a command to an observer (from a process on its host); its reply."""
        r = self.d.call("exec", 90.0, id="chaos:ask", host=OBSERVER_HOST,
                        args=[dest, topic, value, 60.0], timeout=75.0)
        if "error" in r:
            raise RuntimeError(f"ask {dest} {topic}: {r['error']}")
        return r["value"]

    def start_observers(self, cfg: dict[str, Any]) -> None:
        """Spawn the watcher, then the observer (which names every PID to the watcher)."""
        self.watcher_pid = self.d.call("spawn", id="chaos:watcher", host=OBSERVER_HOST,
                                       args=[cfg.get("keep", True)], name=WATCHER)
        self.observer_pid = self.d.call("spawn", id="chaos:observer", host=OBSERVER_HOST,
                                        args=[cfg], name=OBSERVER)

    def workers(self, status: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """The workload hosts' worker slots."""
        st = status or self.d.call("status")
        return [{**w, "host": h["name"]} for h in st["hosts"] if h["name"] in self.hosts
                for w in h["workers"]]

    def alive(self) -> dict[str, list[str]]:
        """The observer's live set, by role."""
        return self.ask(OBSERVER, "alive")  # type: ignore[no-any-return]

    def random_alive(self, rng: random.Random, max_age: float) -> str | None:
        """A random live PID, from the observer's live set fetched at most ``max_age``
        seconds ago (asking for every pick would make the observer the bottleneck)."""
        now = time.monotonic()
        if now - self._alive_at > max_age:
            self._alive_pids = [p for pids in self.alive().values() for p in pids]
            self._alive_at = now
        return rng.choice(self._alive_pids) if self._alive_pids else None

    def summary(self) -> dict[str, Any]:
        return self.ask(OBSERVER, "summary")  # type: ignore[no-any-return]

    def check_tables(self, live: set[str]) -> list[str]:
        """``ps``, ``registry`` and ``status`` against the set of live processes."""
        problems = []
        ps = self.d.call("ps")
        st = self.d.call("status")
        reg = self.d.call("registry")
        pids = {row["pid"] for row in ps}
        if pids != live:
            problems.append(f"ps: extra {sorted(pids - live)[:5]}, "
                            f"missing {sorted(live - pids)[:5]}")
        if "processes" in st and st["processes"] != len(live):
            problems.append(f"status processes {st['processes']} != {len(live)} live")
        per_worker = sum(w["processes"] for h in st["hosts"] for w in h["workers"])
        if per_worker != len(live):
            problems.append(f"status: workers hold {per_worker} processes, {len(live)} live")
        for name, pid in reg.items():
            if pid not in live:
                problems.append(f"registry: {name} -> {pid}, not alive")
        return problems


def signal_pid(os_pid: int, sig: int) -> int | None:
    """Signal a worker through a pidfd (immune to PID reuse); the pidfd, or None if gone."""
    try:
        fd = os.pidfd_open(os_pid)
    except (ProcessLookupError, OSError):
        return None
    try:
        signal.pidfd_send_signal(fd, sig)
    except ProcessLookupError:
        os.close(fd)
        return None
    return fd


class Session:
    """One run's daemon, its node and its directory; set ``ok`` once the run has passed."""

    def __init__(self, workdir: Path, daemon: Daemon, node: Node) -> None:
        self.workdir = workdir
        self.daemon = daemon
        self.node = node
        self.ok = False


@contextlib.contextmanager
def daemon_session(workdir: str | None, prefix: str) -> Iterator[Session]:
    """Start the node's daemon in ``workdir`` (default: a new temporary directory whose name
    starts with ``prefix``) and wait for its workers. On the way out, whatever happened:
    SIGKILL the daemon if it still runs, and remove the temporary directory only if
    ``session.ok`` was set (a failed run's directory is kept, and so is a given ``workdir``)."""
    path = Path(workdir or tempfile.mkdtemp(prefix=prefix))
    daemon = Daemon(path, config_text())
    daemon.start()
    session = Session(path, daemon, Node(daemon, WORKLOAD_HOSTS))
    try:
        yield session
    finally:
        if daemon.proc is not None and daemon.proc.poll() is None:
            daemon.kill9()
        if session.ok and not workdir:
            shutil.rmtree(path, ignore_errors=True)


# -- the cluster (scripts/chaos.py --nodes 3) -----------------------------------------------------
#: process ids of the cluster workload (scripts/chaos_actors/cluster_workload.py)
CLUSTER_ROLES = {"chaos:ccollector": "cluster_workload:collector",
                 "chaos:cwatcher": "cluster_workload:watcher",
                 "chaos:creceiver": "cluster_workload:receiver",
                 "chaos:csender": "cluster_workload:sender",
                 "chaos:cprobe": "cluster_workload:probe",
                 "chaos:ask": "chaos_workload:ask"}


def cluster_config_text(node: str, nats_url: str, node_timeout: str, observer: bool) -> str:
    """One node of the chaos cluster: workload hosts chaos:a and chaos:b (one worker each),
    plus chaos:observer on the ``observer`` node."""
    hosts = {OBSERVER_HOST: 1} if observer else {}
    hosts.update({"chaos:a": 1, "chaos:b": 1})
    lines = [
        "[daemon]",
        'socket = "@SOCKET@"',
        f'python_path = ["{ACTORS}"]',
        'shutdown_timeout = "5s"',
    ]
    for name, workers in hosts.items():
        lines += [f'[hosts."{name}"]', f"workers = {workers}"]
    for pid, entry in CLUSTER_ROLES.items():
        lines += [f'[processes."{pid}"]', f'entry = "{entry}"']
    lines += ["[cluster]", f'node = "{node}"', f'servers = ["{nats_url}"]', 'name = "chaos"',
              f'node_timeout = "{node_timeout}"']
    return "\n".join(lines) + "\n"


class Cluster:
    """One nats-server and the nodes ``n1``..``nN`` in ``workdir`` (``n1`` holds the observer
    host and is never killed). Each node keeps its directory (and log) across restarts;
    ``runs[node]`` counts its runs, ``killed`` lists ``(node, run, wall time)`` of each
    kill -9, ``orphans`` the workers of a killed run still alive 10 s after the kill."""

    OBSERVER_NODE = "n1"

    def __init__(self, workdir: Path, nodes: int, node_timeout: str) -> None:
        from tests.cluster_support import NatsServer  # the tests' server: one way to start it

        self.workdir = workdir
        self.nats = NatsServer(workdir / "nats")
        self.names = [f"n{i + 1}" for i in range(nodes)]
        self.node_timeout = node_timeout
        self.daemons: dict[str, Daemon] = {}
        self.runs = dict.fromkeys(self.names, 0)
        self.killed: list[tuple[str, int, float]] = []
        self.orphans: list[int] = []
        self.up: dict[str, bool] = dict.fromkeys(self.names, False)

    def start(self) -> None:
        self.nats.start()
        for n in self.names:
            self.start_node(n, wait_mesh=False)
        self.wait_mesh()

    def start_node(self, node: str, wait_mesh: bool = True) -> None:
        """Start (or restart) ``node``; with ``wait_mesh``, wait until every live node and
        it see each other up with their current incarnations."""
        cfg = cluster_config_text(node, self.nats.url, self.node_timeout,
                                  observer=node == self.OBSERVER_NODE)
        d = Daemon(self.workdir / node, cfg)
        d.start(timeout=60)
        self.daemons[node] = d
        self.runs[node] += 1
        self.up[node] = True
        if wait_mesh:
            self.wait_mesh()

    def live(self) -> list[str]:
        return [n for n in self.names if self.up[n]]

    def mesh(self) -> bool:
        """True when every live node lists every live node up, with the same incarnation."""
        views = {}
        for n in self.live():
            views[n] = {r["node"]: r.get("incarnation") for r in self.daemons[n].call("nodes")
                        if r["state"] == "up"}
        want = views.get(self.live()[0], {}) if views else {}
        return all(set(v) >= set(self.live()) and all(v[m] == want.get(m) for m in self.live())
                   for v in views.values())

    def wait_mesh(self, timeout: float = 30.0) -> None:
        wait_for(self.mesh, timeout, interval=0.1, what="every live node sees the others up")

    def kill_node(self, node: str) -> float:
        """kill -9 the node's daemon; its wall time. Its workers must die with it."""
        d = self.daemons[node]
        workers = [w["os_pid"] for w in d.workers() if w.get("os_pid")]
        t = time.time()
        d.kill9()
        self.up[node] = False
        self.killed.append((node, self.runs[node], t))
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline and any(alive(p) for p in workers):
            time.sleep(0.05)
        self.orphans += [p for p in workers if alive(p)]
        return t

    def stop(self) -> dict[str, Any]:
        """Stop every live node (SIGTERM) and the server: exit codes, surviving workers."""
        codes: dict[str, int] = {}
        survivors: list[int] = []
        for n in self.live():
            d = self.daemons[n]
            pids = [w["os_pid"] for w in d.workers() if w.get("os_pid")]
            codes[n] = d.stop()
            self.up[n] = False
            survivors += [p for p in pids if alive(p)]
        self.nats.stop()
        return {"exit_codes": codes, "survivors": survivors}

    def teardown(self) -> None:
        """Whatever happened: SIGKILL what still runs."""
        for d in self.daemons.values():
            if d.proc is not None and d.proc.poll() is None:
                d.kill9()
        self.nats.stop()

    def logs(self) -> dict[str, str]:
        return {n: (self.workdir / n / "daemon.log").read_text(errors="replace")
                for n in self.names}

