"""``actord trace`` (SPEC 12, README "Trace a process"): one process's sends, receives, calls,
events and end through the real CLI against one real strict-mode daemon; its bounds, a reader
that stops reading, and the ``process.trace`` permission."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import msgpack
import pytest

from actord.testing import Daemon, wait_for
from tests.test_logs import Follower
from tests.test_security import NOBODY, _as_uid, client_grants, strict_daemon

PROCESSES = {f"t:{n}": f"trace_probes:{n}" for n in (
    "idle", "echo", "exchange", "sender", "doer", "pinger", "measure", "odd_topic")}
#: strict mode; uid NOBODY may trace, uid NOBODY - 1 may only read the status
SECURITY = client_grants({NOBODY: ["daemon.status", "process.trace"],
                          NOBODY - 1: ["daemon.status"]})


@pytest.fixture(scope="module")
def daemon() -> Iterator[Daemon]:
    """A strict-mode daemon whose socket other uids may reach."""
    yield from strict_daemon("actord-trace-", PROCESSES, SECURITY)


def traces(d: Daemon) -> dict[str, int]:
    """The daemon's trace counts: sessions open, processes traced, TRACE frames read."""
    counts: dict[str, int] = d.call("status")["traces"]
    return counts


def start_trace(d: Daemon, *args: str) -> subprocess.Popen[str]:
    """``actord trace ARGS`` running, once its session is open (stdout piped)."""
    before = traces(d)["sessions"]
    proc = subprocess.Popen([sys.executable, "-m", "actord", "trace", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "ACTORD_SOCKET": d.socket})
    wait_for(lambda: traces(d)["sessions"] > before, what="the trace session open")
    return proc


def finished(proc: subprocess.Popen[str]) -> tuple[int, list[str]]:
    """The exit code and stdout lines of a trace that ends by itself."""
    out, err = proc.communicate(timeout=20)
    assert "Traceback" not in err, err
    return proc.returncode, out.splitlines()


def packed(value: Any) -> int:
    return len(msgpack.packb(value, use_bin_type=True))


def test_a_known_exchange_in_order(daemon: Daemon) -> None:
    """Three messages of known topics and sizes to a traced echo and its three answers: six
    records in order, the right kinds, peer, topics and payload sizes, times increasing; the
    trace stops at its limit (exactly 6 lines, exit 0) and is off after."""
    echo = daemon.call("spawn", id="t:echo", host="t:a")
    cli = start_trace(daemon, echo, "--json", "--limit", "6")
    values = [["a", "abc"], ["bb", b"\x00" * 300], ["c", [1, 2, 3]]]
    probe = daemon.exec("t:exchange", "t:b", echo, values)
    code, lines = finished(cli)
    assert code == 0 and len(lines) == 6, lines
    got = [json.loads(line) for line in lines]
    expected = []
    for topic, value in values:
        size = packed(value)
        expected += [{"kind": "receive", "from": probe, "topic": topic, "bytes": size},
                     {"kind": "send", "to": probe, "topic": "re:" + topic, "bytes": size}]
    assert [{k: v for k, v in r.items() if k != "ts"} for r in got] == expected
    stamps = [r["ts"] for r in got]
    assert stamps == sorted(stamps) and len(set(stamps)) == 6
    assert abs(stamps[0] - time.time()) < 60
    assert traces(daemon)["traced"] == 0
    daemon.kill(echo)


def test_calls_events_and_the_end(daemon: Daemon) -> None:
    """spawn, link, unlink, monitor, unmonitor, the EXIT event, an exec's spawn and the
    process's end, as text and JSON; a second trace of the same process with --events gets
    only those kinds; both end with the process (exit 0)."""
    doer = daemon.call("spawn", id="t:doer", host="t:a")
    full = start_trace(daemon, doer, "--json")
    some = start_trace(daemon, doer, "--events", "spawn,exit")
    daemon.call("send", dest=doer, topic="go")
    code, lines = finished(full)
    assert code == 0, lines
    records = [json.loads(line) for line in lines]
    child = records[1]["pid"]
    assert [r["kind"] for r in records] == ["receive", "spawn", "link", "unlink", "monitor",
                                            "unmonitor", "monitor", "event", "spawn", "exit"]
    assert records[0] == {**records[0], "from": "", "topic": "go", "bytes": 1}
    assert records[1] == {**records[1], "id": "t:idle", "host": "t:b", "link": False,
                          "monitor": False}
    assert all(r["pid"] == child for r in records[2:7])
    assert records[7] == {**records[7], "event": "pid.exit", "from": child,
                          "error": "process terminated", "reason": None}
    assert records[8] == {**records[8], "id": "t:sender", "host": "t:b", "link": False,
                          "monitor": False}
    assert records[9] == {**records[9], "error": None}
    code, lines = finished(some)
    assert code == 0 and len(lines) == 3, lines
    assert lines[0].split()[1:] == ["spawn", child, "t:idle", "on", "t:b"]
    assert lines[1].split()[1:] == ["spawn", records[8]["pid"], "t:sender", "on", "t:b"]
    assert lines[2].split()[1:] == ["exit", "-", "normal"]


def test_a_cancel_deadline_ends_the_trace(daemon: Daemon) -> None:
    """A CANCEL with a deadline to a traced process that ignores it: the event with its
    reason, then the end the deadline makes; the trace ends with it (exit 0)."""
    idle = daemon.call("spawn", id="t:idle", host="t:a")
    cli = start_trace(daemon, idle, "--json")
    daemon.call("cancel", dest=idle, deadline="100ms", reason="bye")
    code, lines = finished(cli)
    assert code == 0, lines
    assert [(r["kind"], r.get("event"), r.get("reason"), r["error"])
            for r in map(json.loads, lines)] == [
        ("event", "pid.cancel", "bye", None), ("exit", None, None, "cancel deadline exceeded")]


def test_a_topic_msgpack_cannot_carry(daemon: Daemon) -> None:
    """A topic with a lone surrogate (it can only pass between two processes of one worker)
    is shown escaped, and the trace goes on."""
    idle = daemon.call("spawn", id="t:idle", host="t:a")  # t:a has one worker
    cli = start_trace(daemon, idle, "--json", "--limit", "2")
    daemon.exec("t:odd_topic", "t:a", idle)
    code, lines = finished(cli)
    assert code == 0 and [json.loads(ln)["topic"] for ln in lines] == ["odd\\ud800", "m"]
    daemon.kill(idle)


def test_limit_stops_exactly(daemon: Daemon) -> None:
    """--limit 5 on a process that receives 50 messages: exactly 5 lines, exit 0, and the
    trace switched off in the worker."""
    idle = daemon.call("spawn", id="t:idle", host="t:a")
    cli = start_trace(daemon, idle, "--limit", "5")
    daemon.exec("t:sender", "t:b", idle, 50)
    code, lines = finished(cli)
    assert code == 0 and len(lines) == 5, lines
    assert [ln.split()[1:] for ln in lines] == [
        ["receive", lines[0].split()[2], "m", f"{packed(i)}", "bytes"] for i in range(5)]
    assert traces(daemon) == {**traces(daemon), "sessions": 0, "traced": 0}
    daemon.kill(idle)


def test_duration_stops(daemon: Daemon) -> None:
    """--duration 0.5 on an idle process: no line, exit 0, after half a second."""
    idle = daemon.call("spawn", id="t:idle", host="t:a")
    started = time.monotonic()
    cli = start_trace(daemon, idle, "--duration", "0.5")
    code, lines = finished(cli)
    took = time.monotonic() - started
    assert code == 0 and lines == [] and 0.5 <= took < 10, (code, lines, took)
    assert traces(daemon)["traced"] == 0
    daemon.kill(idle)


def test_a_stuck_reader_does_not_slow_the_process(daemon: Daemon) -> None:
    """A trace whose CLI is stopped (SIGSTOP) while its process makes runs of 1500 round
    trips: the process's best rate stays within 2x of an untraced twin's, measured in turns
    with it (and is printed beside its own rate before the trace); the CLI, continued, prints
    how many events it missed; once it is gone the worker sends no more TRACE frames."""
    pinger, twin = (daemon.call("spawn", id="t:pinger", host="t:a") for _ in range(2))
    echo = daemon.call("spawn", id="t:echo", host="t:b")
    n, turns = 1500, 4

    def rate(who: str) -> float:
        value: float = daemon.exec("t:measure", "t:b", who, echo, n)
        return value

    rate(pinger)  # warm-up
    before = rate(pinger)
    f = Follower(daemon, pinger, "--json", "--limit", "1000000", command=("trace",))
    try:
        wait_for(lambda: traces(daemon)["traced"] == 1, what="the trace on")
        os.kill(f.proc.pid, signal.SIGSTOP)
        try:
            runs = []
            for turn in range(turns):  # in turns, each first every other time (order shows)
                if turn % 2:
                    traced = rate(pinger)
                    runs.append((rate(twin), traced))
                else:
                    runs.append((rate(twin), rate(pinger)))
        finally:
            os.kill(f.proc.pid, signal.SIGCONT)
        untraced, stuck = (max(r[i] for r in runs) for i in (0, 1))
        print(f"\nround trips/s of runs of {n}: {before:.0f} before the trace; with a stopped "
              f"reader tracing it {stuck:.0f}, its untraced twin meanwhile {untraced:.0f} "
              f"({stuck / untraced:.2f}x)")
        assert stuck >= 0.5 * untraced, runs
        missed = json.loads(f.expect(lambda ln: ln.startswith('{"missed"')))["missed"]
        print(f"the reader, continued, missed {missed} of {2 * n * turns} events")
        assert 0 < missed < 2 * n * turns
    finally:
        f.proc.kill()
        f.proc.wait()
    wait_for(lambda: traces(daemon)["traced"] == 0, what="the trace off")
    frames = traces(daemon)["frames"]
    after = rate(pinger)
    print(f"after the reader went: {after:.0f}/s, TRACE frames {frames} -> "
          f"{traces(daemon)['frames']}")
    assert traces(daemon) == {"sessions": 0, "traced": 0, "frames": frames}
    daemon.kill(pinger, twin, echo)


def test_needs_the_process_trace_permission(daemon: Daemon) -> None:
    """Strict mode: a client without process.trace is denied (one line from the CLI, exit
    1); one with it may trace."""
    if os.geteuid() != 0:
        pytest.skip("needs root to act as another uid")
    idle = daemon.call("spawn", id="t:idle", host="t:a")
    kind, message = _as_uid(daemon.socket, NOBODY - 1, "trace", True, dest=idle)
    assert (kind, str(message).split(":")[0]) == ("error", "PERMISSION_DENIED"), message
    assert "process.trace" in str(message)
    kind, value = _as_uid(daemon.socket, NOBODY, "trace", dest=idle)
    assert kind == "ok" and isinstance(value, dict) and value["pid"] == idle, value
    wait_for(lambda: traces(daemon)["sessions"] == 0, what="the allowed client's trace closed")
    daemon.kill(idle)


def test_bad_requests(daemon: Daemon) -> None:
    """A dead process is NOT_FOUND (exit 1); an unknown kind or a bad bound is a usage error
    (exit 2); each one line, no trace left open."""
    idle = daemon.call("spawn", id="t:idle", host="t:a")
    daemon.kill(idle)
    out = daemon.cli("trace", idle)
    assert out.returncode == 1 and out.stderr.startswith("actord: NOT_FOUND"), out.stderr
    for args in (["--events", "send,nope"], ["--limit", "0"], ["--duration", "-1"]):
        out = daemon.cli("trace", idle, *args)
        assert out.returncode == 2 and len(out.stderr.splitlines()) == 1, (args, out.stderr)
    assert traces(daemon)["sessions"] == 0


def test_the_worker_dies(daemon: Daemon) -> None:
    """The traced process's worker is killed (restart-worker): the trace ends with its
    "worker crashed" end (exit 0), and nothing is left traced."""
    idle = daemon.call("spawn", id="t:idle", host="t:b")
    index = next(r["worker"] for r in daemon.call("ps") if r["pid"] == idle)
    cli = start_trace(daemon, idle, "--json")
    daemon.call("restart-worker", host="t:b", index=index)
    code, lines = finished(cli)
    assert code == 0 and [json.loads(ln)["error"] for ln in lines] == ["worker crashed"], lines
    assert traces(daemon) == {**traces(daemon), "sessions": 0, "traced": 0}
