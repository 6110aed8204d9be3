"""Daemon shutdown and death (SPEC section 10): no OS process of the daemon's tree survives.

``descendants(daemon.pid)`` is taken while the node runs (workers, and ``sleep`` processes
that actor code started, some in their own session); after the daemon is gone none of
them may be alive. Exit and kill paths: SIGTERM, ``actord shutdown``, ``kill -9``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from actord.testing import Daemon, alive, descendants, wait_for
from tests.conftest import DaemonFactory

PROCESSES = {
    f"t:d.{name}": f"daemon_probes:{name}"
    for name in ("graceful", "stubborn", "start_sleeper", "orphan_maker", "blocker", "idle")
}


def populate(d: Daemon, stubborn: bool = True) -> list[int]:
    """Graceful (and stubborn) processes on every worker, and three ``sleep`` subprocesses.

    Returns the OS pids of the sleepers; each one is checked to be in the daemon's tree.
    """
    for host in ("t:a", "t:b", "t:b"):
        d.call("spawn", id="t:d.graceful", host=host, args=[])
        if stubborn:
            d.call("spawn", id="t:d.stubborn", host=host, args=[])
    sleepers = [d.exec("t:d.start_sleeper", host, detach)
                for host, detach in (("t:a", False), ("t:b", False), ("t:b", True))]
    tree = descendants(d.pid)
    assert set(sleepers) <= set(tree), (sleepers, tree)
    return sleepers


def assert_gone(pids: list[int]) -> None:
    """None of ``pids`` is alive (zombies count as gone: they are dead and get reaped)."""
    assert [p for p in pids if alive(p)] == []


def test_sigterm_cancels_waits_terminates_and_reaps(make_daemon: DaemonFactory) -> None:
    """SIGTERM: CANCEL all, wait shutdown_timeout for the stubborn, exit 0, nothing survives."""
    d = make_daemon(PROCESSES, shutdown_timeout="1.5s")
    populate(d)
    tree = descendants(d.pid)
    t0 = time.monotonic()
    assert d.stop(timeout=10) == 0
    elapsed = time.monotonic() - t0
    assert_gone(tree)
    assert 1.3 < elapsed < 1.5 + 3.0, elapsed  # waited for the stubborn ones, then no longer
    log = d.log()
    assert log.count("got pid.cancel") == 3, log  # graceful ones heard CANCEL and returned
    assert log.count("ignores pid.cancel") == 3, log
    assert not Path(d.socket).exists()


def test_shutdown_command_is_quick_when_everyone_returns(make_daemon: DaemonFactory) -> None:
    """`actord shutdown`: processes that return on CANCEL let the daemon exit 0 well before the
    timeout, and nothing of its tree survives."""
    d = make_daemon(PROCESSES, shutdown_timeout="10s")
    populate(d, stubborn=False)
    tree = descendants(d.pid)
    t0 = time.monotonic()
    r = d.cli("shutdown")
    assert r.returncode == 0, r.stderr
    assert d.proc is not None and d.proc.wait(timeout=10) == 0
    assert time.monotonic() - t0 < 5.0
    assert_gone(tree)
    assert d.log().count("got pid.cancel") == 3
    assert not Path(d.socket).exists()


def test_blocked_worker_is_killed_at_shutdown(make_daemon: DaemonFactory) -> None:
    """A worker whose event loop an actor blocks is SIGKILLed after the grace; exit is still 0."""
    d = make_daemon(PROCESSES, shutdown_timeout="1s")
    sleepers = populate(d, stubborn=False)
    d.call("spawn", id="t:d.blocker", host="t:b", args=[])
    tree = descendants(d.pid)
    assert d.stop(timeout=20) == 0
    assert_gone(tree + sleepers)
    assert "did not exit; killing it" in d.log()


def test_kill9_daemon_then_restart_on_same_socket(make_daemon: DaemonFactory) -> None:
    """kill -9 of the daemon: every worker and subprocess dies; a new daemon starts clean."""
    d = make_daemon(PROCESSES)
    populate(d)
    tree = descendants(d.pid)
    d.kill9()
    wait_for(lambda: not [p for p in tree if alive(p)], timeout=5.0,
             what=f"the daemon's tree to die: {[p for p in tree if alive(p)]}")
    assert Path(d.socket).exists()  # stale: nobody removed it
    assert d.cli("status").returncode == 3  # no daemon reachable
    again = Daemon(d.workdir, d.config_path.read_text())
    again.start()
    try:
        assert again.call("status")["os_pid"] == again.pid
        assert again.exec("t:d.start_sleeper", "t:a", False) > 0
    finally:
        assert again.stop() == 0


def test_second_daemon_on_live_socket_is_refused(make_daemon: DaemonFactory) -> None:
    """A second daemon on a live socket exits 1 with one clear line; the first keeps serving."""
    d = make_daemon(PROCESSES)
    before = descendants(d.pid)
    r = subprocess.run(
        [sys.executable, "-m", "actord", "run", "--config", str(d.config_path)],
        capture_output=True, text=True, timeout=30, check=False,
    )
    assert r.returncode == 1, (r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert lines == [f"actord: another actord daemon (pid {d.pid}) holds {d.socket}.lock"], lines
    assert d.call("status")["os_pid"] == d.pid
    assert descendants(d.pid) == before


def test_adopted_orphans_are_reaped_while_running(make_daemon: DaemonFactory) -> None:
    """An orphan left by actor code is adopted by the daemon and reaped when it dies (no zombie)."""
    d = make_daemon(PROCESSES)
    orphan = d.exec("t:d.orphan_maker", "t:b")
    stat = Path(f"/proc/{orphan}/stat").read_text()
    assert int(stat[stat.rfind(")") + 2 :].split()[1]) == d.pid  # adopted: we are subreaper
    os.kill(orphan, signal.SIGKILL)
    wait_for(lambda: not Path(f"/proc/{orphan}").exists(), timeout=5.0, what="orphan reaped")
    assert d.call("status")["os_pid"] == d.pid
