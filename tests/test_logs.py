"""``actord logs`` (README "Read the logs"): the daemon's log ring read and followed through
the real CLI against one real daemon, in strict mode, with ``log_format = "json"`` and the
smallest ring (``log_ring = 100``), so every property is seen on the same node."""

from __future__ import annotations

import itertools
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from actord.logring import MAX_BYTES, Filter, LogRing
from actord.testing import Daemon, wait_for
from tests.test_security import NOBODY, _as_uid, client_grants, strict_daemon

PROCESSES = {"t:talk": "log_probes:talker", "t:burst": "log_probes:burst"}
RING = 100
#: strict mode; uid NOBODY may read status only, uid NOBODY - 1 may read the logs too
SECURITY = client_grants({NOBODY: ["daemon.status"],
                          NOBODY - 1: ["daemon.status", "daemon.logs"]})
_tokens = itertools.count()


def token(what: str) -> str:
    return f"{what}-{next(_tokens)}"


@pytest.fixture(scope="module")
def daemon() -> Iterator[Daemon]:
    """A strict-mode daemon (socket reachable by other uids) logging JSON, ring of 100."""
    yield from strict_daemon("actord-logs-", PROCESSES, SECURITY,
                             f'log_format = "json"\nlog_ring = {RING}\n')


class Follower:
    """``actord logs -f ARGS`` (or another ``command``) running; its stdout lines collected
    by a thread."""

    def __init__(self, d: Daemon, *args: str, command: tuple[str, ...] = ("logs", "-f")) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "actord", *command, *args], stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, env={**os.environ, "ACTORD_SOCKET": d.socket})
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def expect(self, wanted: Callable[[str], bool], timeout: float = 15.0) -> str:
        """The next line ``wanted`` selects (the lines before it kept in ``seen``)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise TimeoutError(f"no such line within {timeout}s; seen {self.seen}") from None
            self.seen.append(line)
            if wanted(line):
                return line

    def stop(self) -> tuple[int, str]:
        """Ctrl-C (SIGINT); its exit code and stderr."""
        self.proc.send_signal(signal.SIGINT)
        code = self.proc.wait(10)
        assert self.proc.stderr is not None
        return code, self.proc.stderr.read()


@pytest.fixture
def follow(daemon: Daemon) -> Iterator[Callable[..., Follower]]:
    """Start followers; each is stopped at the test's end."""
    started: list[Follower] = []

    def start(*args: str) -> Follower:
        started.append(Follower(daemon, *args))
        return started[-1]

    yield start
    for f in started:
        if f.proc.poll() is None:
            f.proc.kill()
            f.proc.wait()


def logs_json(d: Daemon, *args: str) -> list[dict[str, Any]]:
    out = d.cli("logs", "--json", *args)
    assert out.returncode == 0, out.stderr
    return [json.loads(line) for line in out.stdout.splitlines()]


def talker(d: Daemon, host: str, name: str | None = None) -> str:
    return str(d.call("spawn", id="t:talk", host=host, name=name))


def test_follow_pid_shows_its_records_as_made_and_its_crash(
        daemon: Daemon, follow: Callable[..., Follower]) -> None:
    """`logs -f --pid P`: P's records one by one as P logs them, then its crash report with
    the traceback, in order; another process's records never, not even those of the next
    holder of the name P was followed by."""
    t = token("follow")
    pid, other = talker(daemon, "t:b", name=t), talker(daemon, "t:b")
    assert daemon.call("logs", pid=t, lines=0)["pid"] == pid  # a follower keeps the PID
    f = follow("--pid", t)
    daemon.call("send", dest=pid, topic="info", values=[f"{t} first"])
    f.expect(lambda ln: f"{t} first" in ln)  # now following: what P logs next is new
    for n, level in enumerate(("info", "warning", "error")):
        daemon.call("send", dest=other, topic="info", values=[f"{t} other {n}"])
        sent = time.monotonic()
        daemon.call("send", dest=pid, topic=level, values=[f"{t} line {n}"])
        line = f.expect(lambda ln, n=n: f"{t} line {n}" in ln)
        print(f"record {n} shown {time.monotonic() - sent:.3f}s after the send")
        assert f" {level.upper()} [t:b/" in line and f"{pid} probe.logs: " in line
    daemon.call("send", dest=pid, topic="raise", values=[f"{t} boom"])
    crash = f.expect(lambda ln: "actord.crash" in ln)
    assert f"{pid} actord.crash: process t:talk crashed: RuntimeError: {t} boom" in crash
    tb = [f.expect(lambda _: True) for _ in range(6)]
    assert tb[0] == "  | Traceback (most recent call last):"
    assert all(ln.startswith("  | ") for ln in tb)
    assert any("in _fail_deep_inside" in ln for ln in tb)
    assert tb[-1] == f"  | RuntimeError: {t} boom"
    wait_for(lambda: t not in daemon.call("registry"), what="the name released")
    heir = talker(daemon, "t:b", name=t)
    daemon.call("send", dest=heir, topic="info", values=[f"{t} heir"])
    daemon.call("send", dest=pid, topic="info", values=[f"{t} to the dead"])  # a dead letter
    daemon.call("send", dest=other, topic="raise", values=[f"{t} other boom"])
    wait_for(lambda: any(f"{t} other boom" in r["message"] for r in logs_json(daemon)),
             what="the other's crash logged")
    lines = [ln for ln in f.seen if t in ln and not ln.startswith("  | ")]
    assert [ln.split(t)[1] for ln in lines] == [
        " first", " line 0", " line 1", " line 2", " boom"]
    assert f.stop() == (0, "")
    assert not any("heir" in ln for ln in f.seen + list(f.lines.queue))
    daemon.kill(heir)


def test_filters_by_host_worker_and_level(daemon: Daemon) -> None:
    """--host (a host or one worker) and --level select the records; the JSON has every
    field."""
    t = token("filter")
    on_a, on_b = talker(daemon, "t:a"), talker(daemon, "t:b")
    for pid in (on_a, on_b):
        for level in ("info", "warning"):
            daemon.call("send", dest=pid, topic=level, values=[f"{t} {level}"])
    mine = lambda rows: [r for r in rows if t in r["message"]]  # noqa: E731
    wait_for(lambda: len(mine(logs_json(daemon))) == 4, what="the four records")
    rows = mine(logs_json(daemon, "--host", "t:a"))
    assert [(r["pid"], r["host"], r["worker"], r["level"]) for r in rows] == [
        (on_a, "t:a", "t:a/0", "INFO"), (on_a, "t:a", "t:a/0", "WARNING")]
    assert set(rows[0]) == {"seq", "ts", "level", "logger", "message", "pid", "host",
                            "worker", "traceback"}
    worker_b = next(r["worker"] for r in mine(logs_json(daemon)) if r["pid"] == on_b)
    assert [r["pid"] for r in mine(logs_json(daemon, "--host", worker_b))] == [on_b, on_b]
    rows = mine(logs_json(daemon, "--level", "WARNING"))
    assert sorted((r["pid"], r["level"]) for r in rows) == [(on_a, "WARNING"), (on_b, "WARNING")]
    assert all(r["level"] in ("WARNING", "ERROR", "CRITICAL")
               for r in logs_json(daemon, "--level", "warning", "--lines", "1000"))
    daemon.kill(on_a, on_b)


def test_ring_is_bounded_and_counts_what_it_dropped(daemon: Daemon) -> None:
    """After 3 x log_ring records the ring holds log_ring, the newest; `dropped` counts the
    rest."""
    t = token("ring")
    before = daemon.call("logs", lines=0)["dropped"]
    assert daemon.exec("t:burst", "t:a", t, 3 * RING) == 3 * RING
    reply = daemon.call("logs", lines=1000)
    assert len(reply["records"]) == RING
    assert reply["dropped"] - before >= 2 * RING
    burst = [r["message"] for r in reply["records"] if r["message"].startswith(t)]
    assert burst[-1] == f"{t} {3 * RING - 1}"
    assert f"{t} {2 * RING - 1}" not in burst  # older than the ring's reach
    seqs = [r["seq"] for r in reply["records"]]
    assert seqs == list(range(seqs[0], seqs[0] + RING))


def test_a_stopped_follower_is_told_what_it_missed(
        daemon: Daemon, follow: Callable[..., Follower]) -> None:
    """A follower SIGSTOPped while 3 x log_ring records are logged: on SIGCONT it prints
    "missed N" and goes on from the newest; the records it shows plus N cover the burst."""
    t = token("slow")
    f = follow("--host", "t:a", "--lines", "5")
    pid = talker(daemon, "t:a")
    daemon.call("send", dest=pid, topic="info", values=[f"{t} mark"])
    f.expect(lambda ln: f"{t} mark" in ln)
    os.kill(f.proc.pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        daemon.exec("t:burst", "t:a", t, 3 * RING)
        print(f"burst of {3 * RING} records with a stopped follower: "
              f"{time.monotonic() - started:.3f}s")
    finally:
        os.kill(f.proc.pid, signal.SIGCONT)
    missed_line = f.expect(lambda ln: ln.startswith("-- missed "))
    missed = int(missed_line.split()[2])
    f.expect(lambda ln: f"{t} {3 * RING - 1}" in ln)
    shown = [ln for ln in f.seen if f"{t} " in ln and "mark" not in ln]
    assert len(shown) < 3 * RING <= len(shown) + missed
    daemon.kill(pid)


def test_logs_need_the_daemon_logs_permission(daemon: Daemon) -> None:
    """Strict mode: a client without daemon.logs is denied; one with it reads the records."""
    if os.geteuid() != 0:
        pytest.skip("needs root to act as another uid")
    assert _as_uid(daemon.socket, NOBODY, "status")[0] == "ok"
    assert _as_uid(daemon.socket, NOBODY, "logs", lines=5) == ("error", "PERMISSION_DENIED")
    kind, value = _as_uid(daemon.socket, NOBODY - 1, "logs", lines=5)
    assert kind == "ok" and isinstance(value, dict) and len(value["records"]) == 5


def test_json_log_format_lines_parse(daemon: Daemon) -> None:
    """log_format = "json": every line on the daemon's stderr is one JSON object with the
    ring's fields; a crash report's traceback is in its record."""
    t = token("json")
    pid = talker(daemon, "t:b")
    daemon.call("send", dest=pid, topic="raise", values=[f"{t} boom"])

    def crash() -> dict[str, Any] | None:
        rows = [json.loads(line) for line in daemon.log().splitlines()]
        return next((r for r in rows if t in r["message"]), None)

    row = wait_for(crash, what="the crash report on stderr")
    assert (row["level"], row["logger"], row["pid"], row["worker"][:4]) == (
        "ERROR", "actord.crash", pid, "t:b/")
    assert row["traceback"].endswith(f"RuntimeError: {t} boom")
    assert set(row) == {"ts", "level", "logger", "message", "pid", "host", "worker",
                        "traceback"}


def test_bad_arguments_are_refused(daemon: Daemon) -> None:
    """A bad level is a usage error (exit 2); an unknown name is NOT_FOUND (exit 1)."""
    out = daemon.cli("logs", "--level", "loud")
    assert out.returncode == 2 and "loud" in out.stderr
    out = daemon.cli("logs", "--pid", "no-such-name")
    assert out.returncode == 1 and "NOT_FOUND" in out.stderr


def test_ring_bounds_its_text_and_counts_what_a_cursor_missed() -> None:
    """The ring itself: at most MAX_BYTES of text however few records; a cursor learns
    exactly how many records after it were dropped; a reply stays within its budget."""
    ring = LogRing(1000)
    big = "x" * (1 << 20)  # a 1 MiB traceback
    for i in range(40):
        ring.append((float(i), "ERROR", 40, "big", f"m{i}", None, "t:a/0", big))
    assert ring.size <= MAX_BYTES and len(ring.entries) < 40
    assert ring.dropped == 40 - len(ring.entries) and ring.first() == ring.dropped + 1
    records, cursor, missed = ring.after(5, Filter(), budget=3 << 20)
    assert missed == ring.dropped - 5  # seqs 6 .. first-1 were dropped after the cursor
    assert [r["seq"] for r in records] == [ring.first(), ring.first() + 1]  # the budget
    assert cursor == ring.first() + 1
    assert records[0]["host"] == "t:a" and records[0]["message"] == f"m{ring.first() - 1}"
    assert len(ring.tail(Filter(host="t:b"), 10, 1 << 30)) == 0
    assert len(ring.tail(Filter(host="t:a/0", level="error"), 10, 1 << 30)) == 10
