"""``actord info`` and the true ``state`` of ``ps`` (SPEC 12) against one real daemon: the
links and monitors shown are the router's after each change and after a worker's kill -9,
states are what the process is doing, counts and stack are the worker's."""

from __future__ import annotations

import contextlib
import json
import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from actord.client import CommandError
from actord.security import command_permissions
from actord.testing import Daemon, wait_for
from tests.conftest import ACTORS, module_daemon

PROCESSES = {"t:agent": "info_probes:agent", "t:idle": "info_probes:idle",
             "t:holder": "info_probes:holder"}
KEYS = ["pid", "id", "host", "worker", "state", "names", "parent", "links", "monitors",
        "monitored_by", "trap_links", "mailbox", "sent", "received", "started", "stack"]


@pytest.fixture(scope="module")
def daemon(request: pytest.FixtureRequest,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    yield from module_daemon(request, tmp_path_factory, PROCESSES, left=0)


@pytest.fixture
def spawn(daemon: Daemon) -> Iterator[Callable[..., str]]:
    """Spawn processes for one test; every one still alive is killed at its end."""
    pids: list[str] = []

    def start(id: str = "t:agent", host: str = "t:a", name: str | None = None) -> str:
        pids.append(str(daemon.call("spawn", id=id, host=host, name=name)))
        return pids[-1]

    yield start
    for pid in pids:
        with contextlib.suppress(CommandError):
            daemon.call("kill", dest=pid)


def info(d: Daemon, dest: str) -> dict[str, Any]:
    return d.call("info", dest=dest)  # type: ignore[no-any-return]


def command(d: Daemon, pid: str, topic: str, arg: Any = None) -> None:
    """Tell an ``agent`` to do ``topic`` (see tests/actors/info_probes.py)."""
    d.call("send", dest=pid, topic=topic, values=[arg])


def edges(d: Daemon, pid: str) -> tuple[list[str], list[str], list[str]]:
    r = info(d, pid)
    return r["links"], r["monitors"], r["monitored_by"]


def until(d: Daemon, pid: str, wanted: Callable[[dict[str, Any]], bool], what: str
          ) -> dict[str, Any]:
    """``info`` of ``pid`` once ``wanted`` holds for it (10 s at most)."""
    seen: list[dict[str, Any]] = []

    def check() -> bool:
        seen[:] = [info(d, pid)]
        return wanted(seen[0])

    try:
        wait_for(check, timeout=10, what=what)
    except TimeoutError:
        raise AssertionError(f"{what}: last info {seen}") from None
    return seen[0]


def marked_line(marker: str) -> int:
    """The line of tests/actors/info_probes.py that carries ``# marker``."""
    lines = (Path(ACTORS) / "info_probes.py").read_text().splitlines()
    return next(i for i, line in enumerate(lines, 1) if line.endswith(f"# {marker}"))


def test_links_and_monitors_both_ways(daemon: Daemon, spawn: Callable[..., str]) -> None:
    """Link, monitor, unlink, unmonitor: each end shows the router's edges at every step."""
    a, b = spawn(host="t:a"), spawn(host="t:b")
    assert edges(daemon, a) == ([], [], []) and edges(daemon, b) == ([], [], [])
    command(daemon, a, "link", b)
    until(daemon, a, lambda r: r["links"] == [b], "a linked")
    assert edges(daemon, b) == ([a], [], [])
    command(daemon, a, "monitor", b)
    until(daemon, a, lambda r: r["monitors"] == [b], "a monitors b")
    assert edges(daemon, a) == ([b], [b], []) and edges(daemon, b) == ([a], [], [a])
    command(daemon, b, "monitor", a)
    until(daemon, a, lambda r: r["monitored_by"] == [b], "b monitors a")
    assert edges(daemon, b) == ([a], [a], [a])
    command(daemon, a, "unlink", b)
    command(daemon, a, "unmonitor", b)
    until(daemon, a, lambda r: r["links"] == [] and r["monitors"] == [], "a's edges removed")
    assert edges(daemon, a) == ([], [], [b]) and edges(daemon, b) == ([], [a], [])
    command(daemon, b, "unmonitor", a)
    until(daemon, b, lambda r: r["monitors"] == [], "b's monitor removed")
    assert edges(daemon, a) == ([], [], []) and edges(daemon, b) == ([], [], [])
    # a child spawned linked: its parent and the link, on both sides
    command(daemon, a, "spawn_linked", ["t:idle", "t:b"])
    child = wait_for(lambda: daemon.call("registry").get(f"child-of-{a}"), what="child named")
    r = info(daemon, child)
    assert (r["parent"], r["links"], r["names"]) == (a, [a], [f"child-of-{a}"])
    assert edges(daemon, a) == ([child], [], [])
    assert info(daemon, a)["parent"] is None  # spawned by the CLI
    daemon.call("kill", dest=child)  # untrapped: its LINK_DOWN ends a too
    wait_for(lambda: not any(r["pid"] == a for r in daemon.call("ps")), what="a ended")


def test_worker_kill_leaves_only_the_living_edges(daemon: Daemon,
                                                 spawn: Callable[..., str]) -> None:
    """kill -9 of a partner's worker: the survivor shows only its edges to living processes,
    and the EXIT and LINK_DOWN it trapped as held events."""
    a, q, p = spawn(host="t:a"), spawn(host="t:a"), spawn(host="t:b")
    command(daemon, a, "trap")
    for step, dest in (("link", p), ("monitor", p), ("link", q)):
        command(daemon, a, step, dest)
    command(daemon, p, "monitor", a)
    command(daemon, q, "monitor", a)
    until(daemon, a, lambda r: (r["links"], r["monitors"], sorted(r["monitored_by"]))
          == ([p, q], [p], sorted([p, q])), "every edge installed")
    assert info(daemon, a)["trap_links"] is True
    where = info(daemon, p)
    assert where["host"] == "t:b"
    os_pid = next(w["os_pid"] for w in daemon.workers()
                  if w["host"] == "t:b" and w["index"] == where["worker"])
    os.kill(os_pid, signal.SIGKILL)
    r = until(daemon, a, lambda r: r["links"] == [q], "the dead partner's edges gone")
    assert (r["monitors"], r["monitored_by"]) == ([], [q])
    # its EXIT and its LINK_DOWN ("worker crashed"), sent before the edges went
    assert r["mailbox"]["held_events"] == 2, json.dumps(r)
    assert edges(daemon, q) == ([a], [a], [])
    with pytest.raises(CommandError) as e:
        info(daemon, p)
    assert e.value.kind == "NOT_FOUND"
    wait_for(lambda: all(w["up"] for w in daemon.workers()), what="the worker restarted")


def test_states_are_true(daemon: Daemon, spawn: Callable[..., str]) -> None:
    """Waiting on the inbox, on a select, sleeping, busy, in an exec, cancelling: info and
    ps say so, and the stack names the line the process waits at."""
    waiting, sleeping, busy, calling, selecting, cancelling = (spawn() for _ in range(6))
    command(daemon, sleeping, "sleep")
    command(daemon, busy, "busy")
    command(daemon, calling, "exec", ["t:idle", "t:b"])
    command(daemon, selecting, "select")
    daemon.call("cancel", dest=cancelling, deadline="60s")
    wanted = {waiting: "waiting:inbox", sleeping: "sleeping", busy: "running",
              calling: "calling:exec", selecting: "waiting:listen:jobs|events|mine",
              cancelling: "cancelling"}
    for pid, state in wanted.items():
        until(daemon, pid, lambda r, state=state: r["state"] == state, f"{pid} {state}")
    rows = {r["pid"]: r["state"] for r in daemon.call("ps")}
    assert {pid: rows[pid] for pid in wanted} == wanted
    text = daemon.cli("ps", "--state", "sleeping")
    assert text.returncode == 0 and sleeping in text.stdout and waiting not in text.stdout
    text = daemon.cli("ps", "--state", "waiting")  # any channel
    assert waiting in text.stdout and selecting in text.stdout and sleeping not in text.stdout
    [row] = [line.split() for line in daemon.cli("ps").stdout.splitlines() if selecting in line]
    assert row[4:6] == ["waiting:listen:jobs|events|mine", "0"]  # one column, however long
    stack = info(daemon, waiting)["stack"]
    assert stack[-2:] == [f"info_probes.py:{marked_line('WAIT-INBOX')} in agent",
                          f"channel.py:{stack[-1].split(':')[1].split()[0]} in receive"]
    stack = info(daemon, sleeping)["stack"]
    assert f"info_probes.py:{marked_line('WAIT-SLEEP')} in _command" in stack
    assert stack[-1].endswith(" in sleep")


def test_counts_and_mailbox_per_channel(daemon: Daemon, spawn: Callable[..., str]) -> None:
    """A known exchange: the sender's sent, the receiver's received, and where the
    receiver's unread messages wait (held, or queued in its listen channel)."""
    a, h = spawn(), spawn(id="t:holder", host="t:b")
    command(daemon, a, "send", [h, "keep", 3])
    command(daemon, a, "send", [h, "other", 2])
    r = until(daemon, h, lambda r: r["received"] == 5, "five delivered")
    assert (r["sent"], r["state"]) == (0, "waiting:events")
    assert r["mailbox"] == {"held": 2, "held_events": 0, "listen:keep": 3, "events": 0}
    ra = info(daemon, a)
    assert (ra["sent"], ra["received"]) == (5, 2)  # its two commands
    assert ra["mailbox"] == {"held": 0, "held_events": 0, "inbox": 0}
    mbox = {row["pid"]: row["mailbox"] for row in daemon.call("ps")}
    assert mbox[h] == 5


def test_cli_text_and_json(daemon: Daemon, spawn: Callable[..., str]) -> None:
    """``info NAME --json`` is one object with exactly SPEC's keys; the text is one field a
    line."""
    pid = spawn(name="info-named")
    out = daemon.cli("info", "info-named", "--json")
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout)
    assert list(r) == KEYS
    assert (r["pid"], r["id"], r["names"], r["state"]) == (
        pid, "t:agent", ["info-named"], "waiting:inbox")
    text = daemon.cli("info", pid)
    assert text.returncode == 0, text.stderr
    fields = {line.split()[0]: line.split(None, 1)[1] for line in text.stdout.splitlines()
              if line and not line.startswith(" ")}
    assert list(fields) == KEYS
    assert (fields["pid"], fields["names"], fields["links"]) == (pid, "info-named", "-")
    assert fields["mailbox"].startswith("0  (held 0, held_events 0, inbox 0)")


def test_unknown_dest(daemon: Daemon, spawn: Callable[..., str]) -> None:
    """An unknown name, a dead PID and a malformed PID: one line on stderr, exit 1."""
    dead = spawn()
    daemon.call("kill", dest=dead)
    for dest, kind in (("no-such-name", "NOT_FOUND"), (dead, "NOT_FOUND"),
                       ("{bad", "INVALID")):
        out = daemon.cli("info", dest)
        assert out.returncode == 1 and out.stdout == ""
        assert out.stderr.count("\n") == 1 and out.stderr.startswith(f"actord: {kind}")


def test_info_is_permitted_as_ps() -> None:
    """``info`` is a read, checked as ``ps`` is (``daemon.status`` on ``"daemon"``)."""
    assert command_permissions("info", {"dest": "x"}) == command_permissions("ps", {})
