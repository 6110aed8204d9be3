"""Walking skeleton: a real daemon, spawn + send + receive, ps, exec, shutdown."""

from __future__ import annotations

import json

import pytest

from actord.testing import Daemon
from tests.conftest import module_daemon

PROCESSES = {"t:echo": "basics:echo", "t:add": "basics:add", "t:ping": "basics:ping",
             "t:gc": "basics:gc_objects"}


@pytest.fixture(scope="module")
def daemon(request, tmp_path_factory):
    yield from module_daemon(request, tmp_path_factory, PROCESSES)


def test_exec_returns_value(daemon: Daemon) -> None:
    """exec of a process returns its result."""
    assert daemon.exec("t:add", "t:a", 2, 3) == 5


@pytest.mark.parametrize("host", ["t:a", "t:b"])
def test_ping_pong_same_and_other_worker(daemon: Daemon, host: str) -> None:
    """A process spawns an echo (same worker or another host) and gets its reply."""
    assert daemon.exec("t:ping", "t:a", host) == ["reply", [1, 2], True]


def test_cli_spawn_ps_send(daemon: Daemon) -> None:
    """`actord spawn` prints a PID that `actord ps --json` lists with its name."""
    r = daemon.cli("spawn", "t:echo", "t:b", "--name", "skeleton-echo")
    assert r.returncode == 0, r.stderr
    pid = r.stdout.strip()
    rows = json.loads(daemon.cli("ps", "--json").stdout)
    row = next(r for r in rows if r["pid"] == pid)
    assert row["id"] == "t:echo" and row["host"] == "t:b" and row["names"] == ["skeleton-echo"]
    assert set(row) >= {"pid", "id", "host", "worker", "state", "names", "mailbox"}
    assert daemon.cli("send", "skeleton-echo", "hello", "1").returncode == 0
    assert daemon.cli("kill", pid).returncode == 0


def test_cli_exit_codes(daemon: Daemon, tmp_path) -> None:
    """Exit codes: 1 for a failed operation, 2 for usage, 3 for no daemon."""
    r = daemon.cli("spawn", "t:nope", "t:a")
    assert r.returncode == 1 and "NOT_FOUND" in r.stderr
    assert daemon.cli("spawn").returncode == 2
    r = daemon.cli("status", "--socket", str(tmp_path / "none.sock"))
    assert r.returncode == 3


def test_cli_spawn_refuses_a_pid_like_name(daemon: Daemon) -> None:
    """A name that looks like a PID is INVALID on the CLI path too (never registered)."""
    r = daemon.cli("spawn", "t:echo", "t:a", "--name", "{bad")
    assert r.returncode == 1 and "INVALID" in r.stderr
    assert "{bad" not in daemon.call("registry")


def test_ended_processes_are_freed_at_once(daemon: Daemon) -> None:
    """An ended process leaves nothing for the (lazy) cyclic GC: no proc/task/context cycle."""
    before = daemon.exec("t:gc", "t:a")
    for i in range(300):
        daemon.exec("t:add", "t:a", i, 1)
    assert daemon.exec("t:gc", "t:a") - before < 100  # was ~8 objects per ended process


def test_a_single_node_has_no_cluster(daemon: Daemon) -> None:
    """Without [cluster]: status's cluster is null, `nodes` lists nothing, PIDs stay plain."""
    assert daemon.call("status")["cluster"] is None
    r = daemon.cli("nodes", "--json")
    assert r.returncode == 0 and json.loads(r.stdout) == [], r.stderr
    r = daemon.cli("nodes")
    assert r.returncode == 0 and r.stdout.strip() == (
        "not in a cluster (the config has no [cluster] table)"), r
    pid = daemon.call("spawn", id="t:echo", host="t:a")
    assert "@" not in pid and pid.startswith("{t:a|0x")
    daemon.kill(pid)
