"""What ``scripts/chaos.py`` and ``scripts/soak.py`` share: the chaos node and its daemon's life.

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

from actord.testing import Daemon  # noqa: E402

WORKLOAD_HOSTS = {"chaos:a": 2, "chaos:b": 2}
ROLES = ("observer", "watcher", "receiver", "sender", "buddy", "ask", "echo", "heap")

__all__ = [
    "ACTORS", "OBSERVER", "OBSERVER_HOST", "ROLES", "WATCHER", "WORKLOAD_HOSTS", "Node",
    "Session", "config_text", "daemon_session", "say", "signal_pid",
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
