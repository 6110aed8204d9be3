"""``actord top`` (SPEC 12, README "Watch it live"): one sample as JSON, and the live screen in
a real pseudo-terminal (resized, sorted by key, quit by q and by Ctrl-C), against one real
daemon whose t:a worker streams 200 messages a second to a process on t:b that never reads
them (its mailbox grows: the busiest process by mailbox)."""

from __future__ import annotations

import fcntl
import json
import os
import re
import select
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from actord.client import CommandError
from actord.testing import Daemon
from tests.conftest import module_daemon

PROCESSES = {"t:deaf": "ops_probes:deaf", "t:stream": "top_probes:stream"}
RATE = 200  # messages a second from the streamer
SINK = "top-sink"
CSI = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]")
HOME = b"\x1b[H"  # rich's Live (screen mode) starts each frame here


@pytest.fixture(scope="module")
def daemon(request: pytest.FixtureRequest,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """The module's daemon (t:a one worker, t:b two), with the streamer and its sink running
    for the whole module."""
    for d in module_daemon(request, tmp_path_factory, PROCESSES, left=0):
        sink = d.call("spawn", id="t:deaf", host="t:b", name=SINK)
        stream = d.call("spawn", id="t:stream", host="t:a", args=[sink, RATE])
        yield d
        d.kill(stream, sink)


def top_json(d: Daemon, *args: str) -> dict[str, Any]:
    out = d.cli("top", "--once", "--json", *args)
    assert out.returncode == 0, out.stderr
    sample: dict[str, Any] = json.loads(out.stdout)
    return sample


def workers(sample: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f"{h['name']}/{w['index']}": w for h in sample["hosts"] for w in h["workers"]}


def test_once_json_has_workers_busiest_process_and_rates(daemon: Daemon) -> None:
    """--once --json: every worker with its OS pid (as status has it), CPU and RSS; the sink
    first by mailbox with its depth (between ps's before and after); rates > 0 where the
    stream flows (routed, t:a's out, the sink's worker's in) and none where it does not."""
    sink = daemon.call("registry")[SINK]
    small = daemon.call("spawn", id="t:deaf", host="t:b")
    for i in range(3):
        daemon.call("send", dest=small, topic="unread", values=[i])
    depth = lambda: next(r["mailbox"] for r in daemon.call("ps") if r["pid"] == sink)  # noqa: E731
    low = depth()
    sample = top_json(daemon)
    high = depth()
    status = {f"{w['host']}/{w['index']}": w["os_pid"] for w in daemon.workers()}
    rows = workers(sample)
    assert {tag: w["os_pid"] for tag, w in rows.items()} == status
    for w in rows.values():
        assert w["state"] == "running" and w["rss"] > 1 << 20 and w["cpu"] >= 0, w
    first, *rest = sample["processes"]
    assert (first["pid"], first["id"], first["names"], first["host"]) == (
        sink, "t:deaf", [SINK], "t:b")
    assert low <= first["mailbox"] <= high, (low, first["mailbox"], high)
    mine = next(p for p in rest if p["pid"] == small)
    assert mine["mailbox"] == 3 and rest.index(mine) == 0  # the next busiest
    node = sample["node"]
    assert node["routed_rate"] > RATE / 4 and node["processes"] == 3, node
    assert rows["t:a/0"]["out_rate"] > RATE / 4 and rows["t:a/0"]["in_rate"] == 0
    sink_worker = rows[f"t:b/{first['worker']}"]
    assert sink_worker["in_rate"] > RATE / 4 and sink_worker["mailbox"] >= first["mailbox"]
    daemon.kill(small)


def test_sort_host_limit_and_bad_input(daemon: Daemon) -> None:
    """--sort rate gives every process its rate (the streamer's near its send rate); --host keeps
    one host; the daemon sends only ``limit`` rows, the busiest; a bad sort is a usage error,
    an unknown host NOT_FOUND, another node's host refused, and the live view wants a
    terminal."""
    sample = top_json(daemon, "--sort", "rate", "--host", "t:a")
    assert sample["sort"] == "rate" and [h["name"] for h in sample["hosts"]] == ["t:a"]
    assert [p["id"] for p in sample["processes"]] == ["t:stream"]
    stream = sample["processes"][0]
    assert stream["rate"] > RATE / 4 and stream["sent"] > 0, stream  # per-process counts
    [row] = daemon.call("top", limit=1)["processes"]
    assert row["pid"] == daemon.call("registry")[SINK]
    for args, kind, words in (({"host": "t:nope"}, "NOT_FOUND", "t:nope"),
                              ({"host": "n2@t:a"}, "NOT_FOUND", "unknown node"),
                              ({"sort": "cpu"}, "INVALID", "bad sort"),
                              ({"limit": -1}, "INVALID", "bad limit")):
        with pytest.raises(CommandError) as e:
            daemon.call("top", **args)
        assert e.value.kind == kind and words in str(e.value), (args, e.value)
    out = daemon.cli("top", "--once", "--sort", "cpu")
    assert out.returncode == 2 and "cpu" in out.stderr
    out = daemon.cli("top")  # stdout is a pipe here: the live view needs a terminal
    assert out.returncode == 2 and "--once" in out.stderr


def test_once_screen_fits_80_columns(daemon: Daemon) -> None:
    """--once (not a terminal: 80 columns) prints one screen: the node, every worker, the
    sink first; no line over 80 columns."""
    out = daemon.cli("top", "--once")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("actord@") and "routed" in lines[0]
    assert all(len(line) <= 80 for line in lines), out.stdout
    assert sum(line.split()[:1] in (["t:a/0"], ["t:b/0"], ["t:b/1"]) for line in lines) == 3
    sink = daemon.call("registry")[SINK]
    header = next(i for i, line in enumerate(lines) if line.startswith("PID "))
    assert lines[header + 1].startswith(sink) and SINK in lines[header + 1]


# -- the live view in a pseudo-terminal ------------------------------------------------------------


class Terminal:
    """``actord top`` on a new pty (its controlling terminal), ``rows`` x ``cols``; all it
    writes kept in ``out``."""

    def __init__(self, d: Daemon, rows: int, cols: int) -> None:
        self.master, self.slave = os.openpty()
        self.resize(rows, cols)
        self.mode = termios.tcgetattr(self.slave)
        env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
        env.update(ACTORD_SOCKET=d.socket, TERM="xterm-256color")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "actord", "top"], stdin=self.slave, stdout=self.slave,
            stderr=self.slave, env=env, start_new_session=True,
            preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0))  # ^C reaches it
        self.out = b""

    def resize(self, rows: int, cols: int) -> None:
        """Set the window size: the kernel sends SIGWINCH to the terminal's processes."""
        fcntl.ioctl(self.slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    def read(self, wanted: Callable[[], bool], timeout: float = 15.0, what: str = "") -> None:
        """Read the output until ``wanted()`` (bounded)."""
        deadline = time.monotonic() + timeout
        while not wanted():
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{what} within {timeout}s; screen: {self.frames()[-1:]}")
            if select.select([self.master], [], [], left)[0]:
                self.out += os.read(self.master, 65536)

    def frames(self, since: int = 0, complete: bool = True) -> list[list[str]]:
        """The frames begun at byte ``since`` or later, as lines of text without escape
        codes; only the complete ones (followed by the next one's start) if ``complete``."""
        chunks = self.out[since:].split(HOME)[1:-1 if complete else None]
        frames = [CSI.sub(b"", c).decode("utf-8", "replace").split("\r\n") for c in chunks]
        return [f for f in frames if any(line.startswith("WORKER") for line in f)]

    def exit_code(self, timeout: float = 5.0) -> int:
        """Its exit code (bounded), the rest of its output read."""
        code = self.proc.wait(timeout)
        self.read(lambda: not select.select([self.master], [], [], 0)[0], what="drained")
        return code

    def restored(self) -> bool:
        """The screen and cursor given back (rich left the alternate screen, showed the
        cursor) and the terminal in the mode it had before (canonical, echoing)."""
        return (self.out.endswith(b"\x1b[?25h\x1b[?1049l")
                and termios.tcgetattr(self.slave) == self.mode)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        os.close(self.master)
        os.close(self.slave)


@pytest.fixture
def terminal(daemon: Daemon) -> Iterator[Callable[[int, int], Terminal]]:
    """Start ``actord top`` on ptys; each is closed at the test's end."""
    started: list[Terminal] = []

    def start(rows: int, cols: int) -> Terminal:
        started.append(Terminal(daemon, rows, cols))
        return started[-1]

    yield start
    for t in started:
        t.close()


def shows(frame: list[str], *texts: str) -> bool:
    return all(any(text in line for line in frame) for text in texts)


def test_live_screen_resizes_sorts_and_quits_on_q(
        daemon: Daemon, terminal: Callable[[int, int], Terminal]) -> None:
    """In a 120-column pty: the workers and the sink (with its growing mailbox) on 120-column
    lines; resized to 80 columns, every later frame's lines fit 80 and still show them; r
    sorts by rate; q exits 0 with the screen, cursor and terminal mode restored."""
    sink = daemon.call("registry")[SINK]
    term = terminal(40, 120)
    wanted = ("t:a/0", "t:b/0", "t:b/1", sink, SINK, "RECEIVED")
    term.read(lambda: any(shows(f, *wanted) for f in term.frames()), what="workers and sink")
    wide = next(f for f in term.frames() if shows(f, *wanted))
    assert max(len(line) for line in wide) == 120
    row = next(line for line in wide if line.startswith(sink))
    assert int(row.split()[4]) > 0, row  # its mailbox: PID ID NAME WORKER MAILBOX ...

    resized_at = len(term.out)
    started = time.monotonic()
    term.resize(40, 80)
    term.read(lambda: any(len(f) > 1 and len(f[0]) == 80
                          for f in term.frames(resized_at, complete=False)),
              what="a frame at 80 columns")
    print(f"redrawn at 80 columns {time.monotonic() - started:.3f}s after the resize")
    # the first frame begun after the resize may have been drawn just before it
    term.read(lambda: len(term.frames(resized_at)) >= 2, what="two frames after the resize")
    for frame in term.frames(resized_at)[1:]:
        assert max(len(line) for line in frame) <= 80, frame
        assert shows(frame, "t:a/0", "t:b/0", "t:b/1", sink, SINK), frame
        assert not shows(frame, "RECEIVED")  # the totals need 110 columns

    os.write(term.master, b"r")
    term.read(lambda: any(shows(f, "sort: rate") for f in term.frames(resized_at)),
              what="sorted by rate")
    quit_at = time.monotonic()
    os.write(term.master, b"q")
    assert term.exit_code() == 0
    print(f"exited {time.monotonic() - quit_at:.3f}s after q")
    assert term.restored(), term.out[-80:]


def test_live_screen_quits_on_ctrl_c(
        daemon: Daemon, terminal: Callable[[int, int], Terminal]) -> None:
    """Ctrl-C typed on the terminal (SIGINT from the line discipline) ends it with exit 0,
    no traceback, and the terminal restored."""
    term = terminal(24, 80)
    term.read(lambda: bool(term.frames()), what="a first frame")
    os.write(term.master, b"\x03")
    assert term.exit_code() == 0
    assert term.restored(), term.out[-80:]
    assert b"Traceback" not in term.out


def test_needs_daemon_status_permission() -> None:
    """The top command is checked like status (daemon.status on "daemon")."""
    from actord.security import command_permissions

    assert command_permissions("top", {}) == command_permissions("status", {}) == [
        ("daemon.status", "daemon")]
