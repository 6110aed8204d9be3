"""Worker death and bad peers (SPEC 4.6, section 10): a real daemon, real ``kill -9``.

A worker of host ``t:b`` (two workers) is killed while processes on it are monitored and
linked from host ``t:a``; the rest of the node must not notice beyond rule 4. Bad frames from
a control client or from a worker never take the daemon down.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from typing import Any

import msgpack
import pytest

from actord import ids
from actord.core import wire
from actord.testing import Daemon, wait_for
from tests.conftest import DaemonFactory

PROCESSES = {
    f"t:d.{name}": f"daemon_probes:{name}"
    for name in ("ask", "recorder", "idle", "os_pid", "saboteur", "chatty", "exec_waiter",
                 "cancel_echo")
}


def ask(daemon: Daemon, dest: str, topic: str, value: Any = None, host: str = "t:a") -> Any:
    """Send a command to a probe (from a process on ``host``) and return its reply."""
    return daemon.exec("t:d.ask", host, dest, topic, value)


def ps(daemon: Daemon) -> dict[str, dict[str, Any]]:
    """Live processes by PID."""
    return {row["pid"]: row for row in daemon.call("ps")}


def worker(daemon: Daemon, host: str, index: int) -> dict[str, Any]:
    """One worker slot of ``status``."""
    return next(w for w in daemon.workers() if w["host"] == host and w["index"] == index)


def serial(pid: str) -> int:
    parsed = ids.parse_pid(pid)
    assert parsed is not None, pid
    return parsed[1]


def test_kill9_worker(make_daemon: DaemonFactory) -> None:
    """kill -9 of a worker: rule 4 for its processes, names gone, slot refilled, node serves."""
    d = make_daemon(PROCESSES, shutdown_timeout="1s")
    mon = d.call("spawn", id="t:d.recorder", host="t:a", args=[False], name="mon")
    trap = d.call("spawn", id="t:d.recorder", host="t:a", args=[True], name="trap")
    plain = d.call("spawn", id="t:d.recorder", host="t:a", args=[False])
    assert ask(d, "mon", "exec", ["t:d.idle", "t:b"]) == "ok"
    exec_child = wait_for(lambda: next(
        (p for p, r in ps(d).items() if r["id"] == "t:d.idle"), None), what="exec child")
    victims = [exec_child] + [
        d.call("spawn", id="t:d.idle", host="t:b", args=[], name=f"v{i}") for i in range(1, 4)]
    rows = ps(d)
    doomed_index = rows[exec_child]["worker"]
    doomed = [v for v in victims if rows[v]["worker"] == doomed_index]
    survivors = [v for v in victims if v not in doomed]
    assert len(doomed) == 2 and len(survivors) == 2, rows  # least-loaded placement
    names = {v: [f"v{i}"] for i, v in enumerate(victims) if i}
    assert any(v in names for v in doomed)
    assert ask(d, "mon", "watch", names) == "ok"
    for v in [*victims, plain]:
        assert ask(d, "mon", "monitor", v) == "ok"
    for v in doomed:
        assert ask(d, "trap", "link", v) == "ok"
    assert ask(d, plain, "link", doomed[0]) == "ok"  # untrapped: must die with the worker

    before = worker(d, "t:b", doomed_index)
    os.kill(before["os_pid"], signal.SIGKILL)

    def exits() -> list[dict[str, Any]]:
        return [e for e in ask(d, "mon", "report") if e["kind"] in ("pid.exit", "exec")]

    wait_for(lambda: {e["from"] for e in exits()} >= {*doomed, plain}
             and any(e["kind"] == "exec" for e in exits()), what="EXITs")
    assert ask(d, "mon", "fence") == "ok" and ask(d, "trap", "fence") == "ok"
    seen = exits()
    crashed = {"error": "worker crashed"}
    for v in doomed:
        mine = [e for e in seen if e["from"] == v and e["kind"] == "pid.exit"]
        assert [e["result"] for e in mine] == [crashed], mine
        assert set(mine[0]["names"].values()) <= {None}  # released before the EXIT
    assert [e["result"] for e in seen if e["kind"] == "exec"] == [crashed]
    assert [e["result"] for e in seen if e["from"] == plain] == [
        {"error": "linked process failed"}]
    assert not [e for e in seen if e["from"] in survivors]
    link_downs = ask(d, "trap", "report")
    assert sorted(e["from"] for e in link_downs) == sorted(doomed)
    assert all(e["kind"] == "pid.link.down" and e["result"] == crashed for e in link_downs)

    survivor_names = {n for v in survivors for n in names.get(v, ())}
    assert set(d.call("registry")) == {"mon", "trap"} | survivor_names
    alive = ps(d)
    assert all(v in alive for v in survivors) and not any(v in alive for v in doomed)

    wait_for(lambda: worker(d, "t:b", doomed_index)["up"]
             and worker(d, "t:b", doomed_index)["os_pid"] != before["os_pid"],
             what="replacement worker")
    after = worker(d, "t:b", doomed_index)
    assert after["restarts"] == before["restarts"] + 1
    assert len([w for w in d.workers() if w["host"] == "t:b"]) == 2
    # the node keeps serving, on the new worker too, and never reuses a PID
    new = [d.call("spawn", id="t:d.idle", host="t:b", args=[]) for _ in range(2)]
    assert min(map(serial, new)) > max(map(serial, [mon, trap, plain, *victims]))
    assert {ps(d)[p]["worker"] for p in new} == {doomed_index}  # the emptied slot fills first
    assert d.exec("t:d.os_pid", "t:b") in {w["os_pid"] for w in d.workers()}
    assert d.stop() == 0


def test_exec_caller_worker_killed_cancels_child(make_daemon: DaemonFactory) -> None:
    """An exec caller whose worker is kill -9'd waits no more: the router CANCELs its child on
    another host ("exec cancelled", from the dead caller) instead of leaving it running."""
    d = make_daemon(PROCESSES, shutdown_timeout="1s")
    rec = d.call("spawn", id="t:d.recorder", host="t:b", args=[False], name="rec")
    caller = d.call("spawn", id="t:d.exec_waiter", host="t:a", args=["t:d.cancel_echo", "t:b"])
    child = wait_for(lambda: next(
        (p for p, r in ps(d).items() if r["id"] == "t:d.cancel_echo"), None), what="exec child")
    assert ask(d, rec, "monitor", child, "t:b") == "ok"
    os.kill(worker(d, "t:a", 0)["os_pid"], signal.SIGKILL)

    def child_exit() -> list[Any]:
        return [e["result"] for e in ask(d, rec, "report", host="t:b")
                if e["kind"] == "pid.exit" and e["from"] == child]

    assert wait_for(child_exit, what="exec child's end") == [
        {"value": {"reason": "exec cancelled", "from": caller}}]
    assert d.stop() == 0


def test_cli_exec_cancels_child_when_client_goes(make_daemon: DaemonFactory) -> None:
    """``actord exec`` interrupted (Ctrl-C): the client stops waiting, so its child gets a
    CANCEL ("exec cancelled", from ``""``: the CLI is no process) instead of running on."""
    d = make_daemon(PROCESSES, shutdown_timeout="1s")
    rec = d.call("spawn", id="t:d.recorder", host="t:a", args=[False], name="rec")
    cli = subprocess.Popen(
        [sys.executable, "-m", "actord", "exec", "t:d.cancel_echo", "t:b"],
        env={**os.environ, "ACTORD_SOCKET": d.socket},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        child = wait_for(lambda: next(
            (p for p, r in ps(d).items() if r["id"] == "t:d.cancel_echo"), None),
            what="exec child")
        assert ask(d, rec, "monitor", child) == "ok"
        cli.send_signal(signal.SIGINT)
        cli.wait(timeout=10)
    finally:
        if cli.poll() is None:
            cli.kill()

    def child_exit() -> list[Any]:
        return [e["result"] for e in ask(d, rec, "report")
                if e["kind"] == "pid.exit" and e["from"] == child]

    assert wait_for(child_exit, what="exec child's end") == [
        {"value": {"reason": "exec cancelled", "from": ""}}]
    assert d.stop() == 0


@pytest.mark.parametrize("how", ["kill9", "bad-frame"])
def test_spawn_right_after_crash_notice(make_daemon: DaemonFactory, how: str) -> None:
    """Whoever hears of a crash can spawn on that host at once: the slot is already refilled."""
    d = make_daemon(PROCESSES, shutdown_timeout="1s")
    rec = d.call("spawn", id="t:d.recorder", host="t:b", args=[False], name="rec")
    for round_ in range(3):
        victim = d.call("spawn", id="t:d.idle", host="t:a", args=[])
        assert ask(d, "rec", "monitor", victim, "t:b") == "ok"
        assert ask(d, "rec", "respawn", [victim, "t:d.idle", "t:a"], "t:b") == "ok"
        if how == "kill9":
            os.kill(worker(d, "t:a", 0)["os_pid"], signal.SIGKILL)
        else:
            d.call("spawn", id="t:d.saboteur", host="t:a", args=["garbage"])

        def respawned(v: str = victim) -> list[Any]:
            return [e["result"] for e in ask(d, rec, "report", host="t:b")
                    if e["kind"] == "respawn" and e["from"] == v]

        outcome = wait_for(respawned, what="respawn")
        assert "value" in outcome[0], (round_, outcome)
    assert d.stop() == 0


# -- bad frames ---------------------------------------------------------------------------------
def _raw_client(d: Daemon) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(d.socket)
    return s


def _dropped(s: socket.socket) -> bool:
    """True when the daemon closed this connection (EOF or reset)."""
    try:
        while True:
            data = s.recv(65536)
            if not data:
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False


BAD_CONTROL_FRAMES = {
    "garbage": b"\xc1\xc1\xc1\xc1",
    "not-a-frame": msgpack.packb({"op": 30}),
    "unknown-op": msgpack.packb([7, 1, "status", {}]),
    "short-request": msgpack.packb([wire.CTL_REQUEST, 1]),
    "unhashable-key": b"\x94\x1e\x01\xa6status\x81\x91\x01\x02",
    "deep-nesting": b"\x91" * 100_000,
    # over max_frame (8 MiB) + the decoders' 1 MiB of slack (wire.FRAME_ENVELOPE + READ_SLACK)
    "oversized": msgpack.packb([wire.CTL_REQUEST, 1, "status", {"x": b"\0" * (10 << 20)}]),
}


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from tests.conftest import config_text

    d = Daemon(tmp_path_factory.mktemp("crash"), config_text(PROCESSES, shutdown_timeout="1s"))
    d.start()
    yield d
    if d.proc is not None and d.proc.poll() is None:
        assert d.stop() == 0, d.log()


@pytest.mark.parametrize("kind", list(BAD_CONTROL_FRAMES))
def test_bad_control_frame_drops_only_that_client(shared: Daemon, kind: str) -> None:
    """A malformed or oversized control frame drops that client; the daemon keeps serving."""
    bystander = _raw_client(shared)
    bystander.sendall(wire.encode([wire.CTL_REQUEST, 1, "status", {}]))
    s = _raw_client(shared)
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        s.sendall(BAD_CONTROL_FRAMES[kind])  # may be dropped while still sending: fine
    assert _dropped(s)
    s.close()
    assert shared.call("status")["os_pid"] == shared.pid
    assert shared.exec("t:d.os_pid", "t:a") > 0
    # a client connected before is untouched: it got its reply and still works
    dec = wire.FrameDecoder()
    bystander.sendall(wire.encode([wire.CTL_REQUEST, 2, "registry", {}]))
    replies: list[Any] = []
    while len(replies) < 2:
        replies += dec.feed(bystander.recv(65536))
    assert [r[1] for r in replies] == [1, 2] and all(r[2] is None for r in replies)
    bystander.close()
    assert "control client dropped" in shared.log()
    assert "Traceback" not in shared.log()


@pytest.mark.parametrize(
    "kind", ["garbage", "not-a-frame", "unknown-op", "short-send", "unhashable-key"])
def test_bad_worker_frame_replaces_that_worker(shared: Daemon, kind: str) -> None:
    """A worker that sends a bad frame is dropped and replaced; the daemon keeps serving."""
    before = worker(shared, "t:a", 0)
    result = shared.call("exec", id="t:d.saboteur", host="t:a", args=[kind], timeout=20)
    assert result["error"] == "worker crashed", result
    wait_for(lambda: worker(shared, "t:a", 0)["up"]
             and worker(shared, "t:a", 0)["os_pid"] != before["os_pid"], what="replacement")
    assert worker(shared, "t:a", 0)["restarts"] == before["restarts"] + 1
    assert shared.exec("t:d.os_pid", "t:a") == worker(shared, "t:a", 0)["os_pid"]
    assert "t:a/0" in shared.log() and "Traceback" not in shared.log()


def test_actor_logs_reach_daemon_log(shared: Daemon) -> None:
    """An actor's logging.info record reaches the daemon's log tagged host/worker and PID."""
    for host in ("t:a", "t:b"):
        token = f"token-{host}-{os.getpid()}"
        pid = shared.exec("t:d.chatty", host, token)
        line = wait_for(lambda t=token: next(
            (ln for ln in shared.log().splitlines() if t in ln), None), what="log line")
        assert "INFO" in line and f"[{host}/" in line and pid in line, line
        assert "probe.daemon" in line, line
