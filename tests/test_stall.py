"""Stalled workers (a blocked event loop): detected by heartbeat, shown, logged, restartable.

One daemon with ``stall_timeout = "1s"`` serves the module: host ``t:s`` (one worker) is the
one whose loop a probe blocks (``stall_probes.block_until``: ``time.sleep`` until the test
creates a file, bounded), host ``t:m`` runs the observers. Each test ends with ``t:s``
running again and its own processes gone.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from actord.core import config as cfg
from actord.errors import ConfigError
from actord.router import WorkerLink
from actord.router.stall import StallWatch
from actord.security import command_permissions
from actord.testing import CommandError, Daemon, alive, wait_for
from actord.transport import FrameProtocol
from tests.conftest import config_text
from tests.test_metrics import free_port, get, parse, with_metrics
from tests.test_systemd import NotifyListener

STALL_TIMEOUT = 1.0
#: the promised detection bound: stall_timeout + 1 s
BOUND = STALL_TIMEOUT + 1.0
#: the longest a probe may block its worker if a test fails before releasing it
LIMIT = 20.0
PROCESSES = {
    "t:block": "stall_probes:block_until",
    "t:deaf": "ops_probes:deaf",
    "t:ask": "daemon_probes:ask",
    "t:recorder": "daemon_probes:recorder",
}
HOSTS = {"t:s": 1, "t:m": 1, "t:p": 2}
_release = itertools.count()


class Node:
    """The daemon under test, its metrics URL and a directory for release files."""

    def __init__(self, daemon: Daemon, port: int, tmp: Path) -> None:
        self.d = daemon
        self.url = f"http://127.0.0.1:{port}/metrics"
        self.tmp = tmp
        self.blocks: list[Path] = []

    def worker(self) -> dict[str, Any]:
        """The one worker of host t:s, from ``status``."""
        return next(w for w in self.d.workers() if w["host"] == "t:s")

    def state(self) -> str:
        """t:s/0's state in ``status``."""
        return str(self.worker()["state"])

    def metric(self, name: str, **labels: str) -> float:
        """One sample of a fresh scrape (NaN if absent)."""
        status, _, body = get(self.url)
        assert status == 200, body
        return parse(body).get((name, frozenset(labels.items())), float("nan"))

    def block(self, host: str = "t:s") -> Path:
        """Block the loop of a worker of ``host`` until the returned path is created (at most
        LIMIT seconds); returns once the block began."""
        path = self.tmp / f"release-{next(_release)}"
        self.blocks.append(path)
        self.d.call("spawn", id="t:block", host=host, args=[str(path), LIMIT])
        began = path.with_name(path.name + ".blocked")
        wait_for(began.exists, timeout=10, what="the block began")
        return path

    def release(self, path: Path) -> None:
        """End a block and wait (bounded) until t:s/0 is running again."""
        path.touch()
        wait_for(lambda: self.state() == "running", timeout=10, what="t:s/0 running again")

    def ask(self, dest: str, topic: str, value: Any = None) -> Any:
        """A command to a recorder probe, from a process on t:m."""
        result = self.d.call("exec", None, id="t:ask", host="t:m", args=[dest, topic, value],
                             timeout=15)
        assert "value" in result, result
        return result["value"]


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    """One daemon: stall_timeout 1s, metrics on a free loopback port."""
    port = free_port()
    text = config_text(PROCESSES, hosts=HOSTS, shutdown_timeout="2s").replace(
        "[daemon]\n", f'[daemon]\nstall_timeout = "{STALL_TIMEOUT:g}s"\n', 1)
    d = Daemon(tmp_path_factory.mktemp("stall"), with_metrics(text, f"127.0.0.1:{port}"))
    d.start()
    n = Node(d, port, tmp_path_factory.mktemp("release"))
    yield n
    for path in n.blocks:  # whatever a failed test left blocked ends now
        path.touch()
    if d.proc is not None and d.proc.poll() is None:
        assert d.stop() == 0, d.log()


def stall_lines(node: Node, word: str) -> list[str]:
    """The daemon's log lines saying t:s/0 ``word`` (stalled or recovered)."""
    return [line for line in node.d.log().splitlines() if f"worker t:s/0 {word}:" in line]


def test_stall_shown_everywhere_then_recovered(node: Node) -> None:
    """A blocked loop: logged and in status, ps (promptly) and metrics within the bound; then
    the recovery is logged and everything shows it running again."""
    d = node.d
    bystander = d.call("spawn", id="t:deaf", host="t:s", name="bystander")
    for i in range(3):
        d.call("send", dest="bystander", topic="unread", values=[i])
    # a scrape t:s/0 answers records its depth (one may miss the 1 s on a loaded machine)
    depth = wait_for(lambda: node.metric("actord_mailbox_depth", host="t:s") >= 3 and
                     node.metric("actord_mailbox_depth", host="t:s"), what="depth recorded")
    assert node.metric("actord_worker_stalled", host="t:s", worker="0") == 0
    stalled_before, recovered_before = len(stall_lines(node, "stalled")), len(
        stall_lines(node, "recovered"))

    release = node.block()
    try:
        wait_for(lambda: node.state() == "stalled", timeout=BOUND, interval=0.05,
                 what="status: t:s/0 stalled")
        wait_for(lambda: len(stall_lines(node, "stalled")) > stalled_before,
                 timeout=BOUND, what="the stall logged")
        line = stall_lines(node, "stalled")[-1]
        assert "no heartbeat for" in line and "(its event loop is blocked); 2 processes" in line

        assert node.worker()["stalled_for"] >= STALL_TIMEOUT
        started = time.monotonic()
        rows = {r["pid"]: r for r in d.call("ps")}
        assert time.monotonic() - started < 1.0  # a known-stalled worker is not waited for
        assert rows[bystander] == {"pid": bystander, "id": "t:deaf", "host": "t:s", "worker": 0,
                                   "state": "stalled", "names": ["bystander"], "mailbox": None}
        on_s = [r for r in rows.values() if r["host"] == "t:s"]
        assert len(on_s) == node.worker()["processes"] == 2  # ps and status agree

        assert node.metric("actord_worker_stalled", host="t:s", worker="0") == 1
        assert node.metric("actord_worker_stalled", host="t:m", worker="0") == 0
        assert node.metric("actord_mailbox_depth", host="t:s") == depth  # last known, not 0

        out = d.cli("ps")
        assert out.returncode == 0, out.stderr
        [text] = [line for line in out.stdout.splitlines() if bystander in line]
        assert text.split()[4:7] == ["stalled", "-", "bystander"], text
        out = d.cli("status")
        assert out.returncode == 0 and "STALLED for" in out.stdout, out
    finally:
        node.release(release)

    wait_for(lambda: len(stall_lines(node, "recovered")) > recovered_before,
             timeout=5, what="the recovery logged")
    assert "heartbeat again after" in stall_lines(node, "recovered")[-1]
    assert node.worker()["stalled_for"] is None
    row = next(r for r in d.call("ps") if r["pid"] == bystander)
    assert (row["state"], row["mailbox"]) == ("waiting:events", 3)
    assert node.metric("actord_worker_stalled", host="t:s", worker="0") == 0
    d.call("kill", dest=bystander)


def test_ps_while_a_stall_begins(node: Node) -> None:
    """A worker SIGSTOPped just before ps: ps stops waiting for it once it is marked stalled
    (not after its full 3 s) and lists its processes as stalled; SIGCONT: running again."""
    d = node.d
    pid = d.call("spawn", id="t:deaf", host="t:s")
    os_pid = node.worker()["os_pid"]
    os.kill(os_pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        rows = {r["pid"]: r for r in d.call("ps")}
        assert time.monotonic() - started < BOUND
        assert (rows[pid]["state"], rows[pid]["mailbox"]) == ("stalled", None)
    finally:
        os.kill(os_pid, signal.SIGCONT)
    wait_for(lambda: node.state() == "running", timeout=5, what="running after SIGCONT")
    assert d.cli("kill", pid).returncode == 0


def test_spawn_avoids_a_stalled_worker(node: Node) -> None:
    """Spawns on a host with a stalled worker go to its other worker, however loaded."""
    d = node.d
    release = node.block("t:p")
    try:
        wait_for(lambda: [w["index"] for w in d.workers()
                          if w["host"] == "t:p" and w["state"] == "stalled"],
                 timeout=BOUND, interval=0.05, what="a t:p worker stalled")
        [stuck] = [w["index"] for w in d.workers() if w["state"] == "stalled"]
        pids = [d.call("spawn", id="t:deaf", host="t:p") for _ in range(3)]
        rows = {r["pid"]: r for r in d.call("ps", host="t:p")}
        assert {rows[p]["worker"] for p in pids} == {1 - stuck}
        # runnable (not run yet) or waiting on its events: not stalled
        assert {rows[p]["state"] for p in pids} <= {"running", "waiting:events"}
    finally:
        release.touch()
    wait_for(lambda: all(w["state"] == "running" for w in d.workers()), timeout=10,
             what="t:p running again")
    for pid in pids:
        d.call("kill", dest=pid)


def test_kill_on_stalled_worker(node: Node) -> None:
    """kill of a process on a blocked worker: exit 1 and one line naming the stall and the
    way out, also when the stall is detected only while kill waits (--no-wait: exit 0 at
    once); the process ends once the loop runs again. On a running worker kill returns after
    the EXIT."""
    d = node.d
    victim = d.call("spawn", id="t:deaf", host="t:s", name="victim")
    release = node.block()
    try:
        started = time.monotonic()
        with pytest.raises(CommandError) as err:
            d.call("kill", dest="victim")  # the stall is not detected yet: kill waits for it
        assert time.monotonic() - started < BOUND + 0.5
        assert str(err.value).startswith(f"process {victim} is on worker t:s/0, stalled for ")
        assert d.call("registry")["victim"] == victim  # still alive: its KILL waits too
        started = time.monotonic()
        with pytest.raises(CommandError):
            d.call("kill", dest="victim")  # known stalled: at once
        assert time.monotonic() - started < 0.5
        out = d.cli("kill", "victim")
        assert out.returncode == 1, out
        [line] = out.stderr.splitlines()
        assert line.startswith(f"actord: ERROR: process {victim} is on worker t:s/0, stalled "
                               f"for "), line
        assert line.endswith("it ends when that loop runs again; to end it now: "
                             "actord restart-worker t:s 0"), line
        started = time.monotonic()
        assert d.call("kill", dest="victim", no_wait=True) is None  # --no-wait: sent, done
        assert time.monotonic() - started < 0.5
        out = d.cli("kill", "--no-wait", "victim")
        assert (out.returncode, out.stderr) == (0, ""), out
    finally:
        node.release(release)
    wait_for(lambda: "victim" not in d.call("registry"), timeout=5, what="victim ended")

    other = d.call("spawn", id="t:deaf", host="t:s", name="other")
    assert d.cli("kill", "other").returncode == 0
    assert "other" not in d.call("registry")  # kill returned after the EXIT
    assert all(r["pid"] != other for r in d.call("ps"))


def test_restart_worker(node: Node) -> None:
    """restart-worker of a stalled worker: its processes end "worker crashed" (a monitor gets
    exactly one EXIT), the old OS process is gone and the slot serves again."""
    d = node.d
    before = node.worker()
    rec = d.call("spawn", id="t:recorder", host="t:m", args=[False])
    victim = d.call("spawn", id="t:deaf", host="t:s", name="stuck")
    assert node.ask(rec, "monitor", victim) == "ok"
    release = node.block()
    try:
        wait_for(lambda: node.state() == "stalled", timeout=BOUND, interval=0.05,
                 what="t:s/0 stalled")
        out = d.cli("restart-worker", "t:s", "0")
        assert out.returncode == 0, out
        after = node.worker()
        assert out.stdout.strip() == (f"worker t:s/0 restarted: os pid {before['os_pid']} -> "
                                      f"{after['os_pid']}, 2 processes ended (worker crashed)")
    finally:
        release.touch()
    assert not alive(before["os_pid"])
    assert after["state"] == "running" and after["restarts"] == before["restarts"] + 1
    assert all(r["host"] != "t:s" for r in d.call("ps"))
    assert "stuck" not in d.call("registry")

    def exits() -> list[dict[str, Any]]:
        return [e for e in node.ask(rec, "report") if e["kind"] == "pid.exit"]

    wait_for(exits, timeout=5, what="EXIT at the monitor")
    assert exits() == [{"kind": "pid.exit", "from": victim, "result": {"error": "worker crashed"},
                        "names": {}}]
    assert "restarted on request" in d.log()

    fresh = d.call("spawn", id="t:deaf", host="t:s")  # the slot serves again
    assert d.cli("kill", fresh).returncode == 0
    d.call("kill", dest=rec)


@pytest.mark.parametrize(("args", "code", "message"), [
    (("nope:x", "0"), 1, "actord: NOT_FOUND: unknown host 'nope:x'"),
    (("t:s", "5"), 1, "actord: NOT_FOUND: host 't:s' has no worker 5 (0..0)"),
    (("t:s", "-1"), 2, None),
    (("t:s", "x"), 2, None),
])
def test_restart_worker_refused(node: Node, args: tuple[str, str], code: int,
                                message: str | None) -> None:
    """restart-worker of a slot that does not exist: one line, exit 1; bad index: usage, 2."""
    before = node.worker()
    out = node.d.cli("restart-worker", *args)
    assert out.returncode == code, out
    assert "Traceback" not in out.stderr
    if message is not None:
        assert out.stderr.strip() == message
    assert node.worker()["os_pid"] == before["os_pid"]


def test_restart_worker_permission() -> None:
    """restart-worker needs daemon.worker on the host."""
    assert command_permissions("restart-worker", {"host": "t:s", "index": 0}) == [
        ("daemon.worker", "t:s")]


def test_config_stall_timeout() -> None:
    """[daemon] stall_timeout: a duration, default 3s, at least 500ms."""
    assert cfg.parse("[daemon]\n", "/etc/a.toml").daemon.stall_timeout == 3.0
    assert cfg.parse('[daemon]\nstall_timeout = "10s"\n', "/a.toml").daemon.stall_timeout == 10
    assert cfg.parse("[daemon]\nstall_timeout = 750\n", "/a.toml").daemon.stall_timeout == 0.75
    for value, problem in (('"100ms"', "must be at least 500ms, got '100ms'"),
                           ('"soon"', "bad duration 'soon'"),
                           ("1.5", "bad duration 1.5")):
        with pytest.raises(ConfigError) as err:
            cfg.parse(f"[daemon]\nstall_timeout = {value}\n", "/a.toml")
        assert str(err.value).startswith(f"/a.toml: daemon.stall_timeout: {problem}"), err.value


def test_silence_the_router_caused_is_no_stall() -> None:
    """StallWatch: the router's own loop blocked past stall_timeout, or a worker parked by flow
    control, is no stall; a worker that really goes silent is marked, and recovers."""
    async def run() -> tuple[bool, bool, bool, bool, bool]:
        loop = asyncio.get_running_loop()
        links, peers = [], []
        for index in range(3):
            ours, theirs = socket.socketpair()
            peers.append(theirs)
            _, conn = await loop.connect_accepted_socket(
                lambda: FrameProtocol(lambda f: None), ours)
            links.append(WorkerLink("t:x", index, conn, 0))
        talking, parked, silent = links
        parked.conn.block_reading_on(talking.conn)  # flow control: the router stops reading it
        watch = StallWatch(0.5)  # checks every 0.125 s
        for link in links:
            watch.heard(link)
        time.sleep(1.0)  # the router's loop itself blocked (the thing under test)
        await asyncio.sleep(0.01)  # the overdue check runs before this timer, and before any
        # frame the workers sent meanwhile could have been read (uvloop runs timers first)
        after_block = any(watch.is_stalled(link) for link in links)
        deadline = time.monotonic() + 5.0
        while not watch.is_stalled(silent) and time.monotonic() < deadline:
            watch.heard(talking)  # its heartbeats keep coming
            await asyncio.sleep(0.05)
        seen = watch.is_stalled(silent)
        watch.heard(silent)
        for link, peer in zip(links, peers, strict=True):
            link.conn.close()
            peer.close()
        return (after_block, watch.is_stalled(talking), watch.is_stalled(parked), seen,
                watch.is_stalled(silent))

    assert asyncio.run(run()) == (False, False, False, True, False)


def test_systemd_status_names_stalled_workers(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """systemd's STATUS= line names a stalled worker (here SIGSTOPped) until it runs again."""
    listener = NotifyListener(str(tmp_path / "notify.sock"))
    monkeypatch.setenv("NOTIFY_SOCKET", listener.address)
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    text = config_text({}, hosts={"t:s": 1}).replace(
        "[daemon]\n", f'[daemon]\nstall_timeout = "{STALL_TIMEOUT:g}s"\n', 1)
    d = Daemon(tmp_path / "d", text).start()
    try:
        os_pid = d.workers()[0]["os_pid"]
        os.kill(os_pid, signal.SIGSTOP)
        try:
            listener.until(lambda m: m.fields.get("STATUS", "").endswith(
                "; stalled workers t:s/0"))
        finally:
            os.kill(os_pid, signal.SIGCONT)
        listener.until(lambda m: m.fields.get("STATUS", "").startswith("running:")
                       and "stalled" not in m.fields["STATUS"])
    finally:
        assert d.stop() == 0, d.log()
        listener.close()


def test_ps_lists_an_unresponsive_worker(tmp_path: Path) -> None:
    """A worker silent for ps's whole 3 s but not yet past stall_timeout (here 10s): its
    processes are listed as unresponsive, mailbox unknown, never left out."""
    text = config_text({"t:deaf": "ops_probes:deaf"}, hosts={"t:s": 1}).replace(
        "[daemon]\n", '[daemon]\nstall_timeout = "10s"\n', 1)
    d = Daemon(tmp_path / "d", text).start()
    try:
        pid = d.call("spawn", id="t:deaf", host="t:s")
        os_pid = d.workers()[0]["os_pid"]
        os.kill(os_pid, signal.SIGSTOP)
        try:
            rows = d.call("ps")
        finally:
            os.kill(os_pid, signal.SIGCONT)
        assert rows == [{"pid": pid, "id": "t:deaf", "host": "t:s", "worker": 0,
                         "state": "unresponsive", "names": [], "mailbox": None}]
    finally:
        assert d.stop() == 0, d.log()
