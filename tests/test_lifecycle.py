"""One daemon per socket (README "Operations"): the lock, the socket's owner, and a
``shutdown`` that waits until the daemon is gone.

The shutdown window is held open deterministically: a process that ignores CANCEL and a
``shutdown_timeout`` of 60 s keep the old daemon stopping until the test SIGKILLs that
process's worker (its processes then end as "worker crashed" and the shutdown goes on).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from actord.cli.daemon import _wait_exit
from actord.testing import Daemon, alive, descendants, wait_for
from tests.conftest import DaemonFactory

PROCESSES = {f"t:d.{name}": f"daemon_probes:{name}" for name in ("stubborn", "blocker")}
HOSTS = {"t:a": 1}


def run_second(d: Daemon) -> subprocess.CompletedProcess[str]:
    """``actord run`` on ``d``'s config, in the foreground (bounded)."""
    return subprocess.run(
        [sys.executable, "-m", "actord", "run", "--config", str(d.config_path)],
        capture_output=True, text=True, timeout=30, check=False,
    )


def worker_pids(daemon_pid: int) -> list[int]:
    """The live worker processes directly below ``daemon_pid``."""
    out = []
    for pid in descendants(daemon_pid):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"actord.worker" in cmd and alive(pid):
            out.append(pid)
    return out


def test_second_run_during_a_slow_shutdown_is_refused(make_daemon: DaemonFactory) -> None:
    """`shutdown --no-wait`, then at once `run` on the same config: the second run exits 1
    naming the holder, starts nothing, and the old daemon removes only its own socket."""
    d = make_daemon(PROCESSES, hosts=HOSTS, shutdown_timeout="60s")
    d.call("spawn", id="t:d.stubborn", host="t:a", args=[])
    [worker] = worker_pids(d.pid)
    started = time.monotonic()
    r = d.cli("shutdown", "--no-wait", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"ok": True, "os_pid": d.pid, "exited": False}
    assert time.monotonic() - started < 10.0
    wait_for(lambda: "stopping: shutdown command" in d.log(), what="the daemon stopping")

    second = run_second(d)
    assert second.returncode == 1, (second.stdout, second.stderr)
    lines = second.stderr.strip().splitlines()
    assert lines == [f"actord: another actord daemon (pid {d.pid}) holds {d.socket}.lock"]
    assert alive(d.pid)  # the window was open the whole time: the stubborn one is still there
    assert worker_pids(d.pid) == [worker]  # one daemon's workers only

    # someone else's socket now sits at the path: the old daemon must leave it alone
    os.unlink(d.socket)
    squatter = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    squatter.bind(d.socket)
    squatter.listen()
    try:
        os.kill(worker, signal.SIGKILL)  # ends the stubborn process: the shutdown goes on
        assert d.proc is not None and d.proc.wait(timeout=30) == 0
        assert Path(d.socket).exists(), "the old daemon removed a socket it did not create"
        assert "no longer the socket this daemon created" in d.log()
    finally:
        squatter.close()
        os.unlink(d.socket)

    again = Daemon(d.workdir, d.config_path.read_text()).start()  # the survivor is reachable
    try:
        assert again.call("status")["os_pid"] == again.pid
        assert len(worker_pids(again.pid)) == 1
    finally:
        assert again.stop() == 0


def test_shutdown_waits_until_the_daemon_is_gone(make_daemon: DaemonFactory) -> None:
    """`actord shutdown` returns only after the daemon's PID exited, with progress on stderr:
    here a process ignoring CANCEL (1 s) and then a blocked worker to SIGKILL (5 s more)."""
    d = make_daemon(PROCESSES, hosts={"t:a": 1, "t:b": 1}, shutdown_timeout="1s")
    d.call("spawn", id="t:d.stubborn", host="t:a", args=[])
    d.call("spawn", id="t:d.blocker", host="t:b", args=[])
    started = time.monotonic()
    r = d.cli("shutdown")
    assert r.returncode == 0, r.stderr
    assert d.proc is not None and d.proc.poll() == 0  # already exited when the CLI returned
    assert time.monotonic() - started >= 1.0 + 5.0  # the stubborn process, the blocked worker
    assert "did not exit; killing it" in d.log()
    assert r.stderr.count(".") >= 5 + 3  # "..." then a dot a second
    assert r.stderr.startswith(f"waiting for the daemon (pid {d.pid}) to exit...")
    assert r.stderr.rstrip().endswith("exited") and r.stdout == "stopped\n"
    assert not Path(d.socket).exists()


def test_shutdown_json_waits_without_progress(make_daemon: DaemonFactory) -> None:
    """`actord shutdown --json`: waits too, prints one JSON object, nothing on stderr."""
    d = make_daemon(PROCESSES, hosts=HOSTS, shutdown_timeout="1s")
    d.call("spawn", id="t:d.stubborn", host="t:a", args=[])
    r = d.cli("shutdown", "--json")
    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert json.loads(r.stdout) == {"ok": True, "os_pid": d.pid, "exited": True}
    assert d.proc is not None and d.proc.poll() == 0


def test_wait_exit_is_bounded() -> None:
    """The CLI's wait gives up after its bound while the process lives, and sees its end."""
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        started = time.monotonic()
        assert _wait_exit(sleeper.pid, 0.3) is False
        assert 0.3 <= time.monotonic() - started < 5.0
        sleeper.kill()
        assert _wait_exit(sleeper.pid, 10.0) is True  # a zombie has ended
    finally:
        sleeper.kill()
        sleeper.wait()
    assert _wait_exit(sleeper.pid, 1.0) is True  # reaped: no such process
