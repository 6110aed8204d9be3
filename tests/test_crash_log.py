"""Failures are visible in the log: crash reports, log level, print(), one-line records.

One daemon at ``log_level = "debug"`` serves most tests; host ``t:storm`` (its own worker, so
its rate limit is its own) takes the crash storm. A record is a line that does not start with
``CONTINUATION``, plus the continuation lines (its traceback) that follow it.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator

import pytest

from actord.daemon import CONTINUATION
from actord.testing import Daemon, wait_for
from actord.worker.runtime import CRASH_REPORTS_PER_SECOND
from tests.conftest import DaemonFactory, config_text

PROCESSES = {
    **{f"t:c.{n}": f"crash_probes:{n}"
       for n in ("raiser", "idle", "logs", "prints", "storm", "service_crasher", "linker",
                 "upgrader")},
    "t:c.import_boom": "crash_import_boom:main",
    "t:c.missing": "crash_no_such_module:main",
}
HOSTS = {"t:a": 1, "t:storm": 1}
SERVICE = """[services."svc:crash"]
process = "t:c.service_crasher"
host = "t:a"
restart = "temporary"
name = "crash-svc"
"""
#: how a record starts: the daemon's timestamp
RECORD_START = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ ")
_tokens = itertools.count()

Record = tuple[str, list[str]]


def token(what: str) -> str:
    return f"{what}-{next(_tokens)}"


@pytest.fixture(scope="module")
def debug(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """A daemon at log_level debug, with one service that crashes on demand."""
    text = config_text(PROCESSES, hosts=HOSTS, extra=SERVICE)
    text = text.replace("[daemon]\n", '[daemon]\nlog_level = "debug"\n', 1)
    d = Daemon(tmp_path_factory.mktemp("daemon"), text)
    d.start()
    yield d
    if d.proc is not None and d.proc.poll() is None:
        assert d.stop() == 0, d.log()


def wait_record(d: Daemon, *parts: str) -> Record:
    """The first record whose first line holds every one of ``parts`` (bounded wait)."""
    return wait_for(lambda: next(
        (r for r in d.records() if all(p in r[0] for p in parts)), None),
        what=f"a log record with {parts}\n{d.log()}")


def fence(d: Daemon, host: str) -> None:
    """Wait until a later record of ``host``'s worker is in the log (what came before is in)."""
    t = token("fence")
    d.exec("t:c.logs", host, t)
    wait_record(d, f"{t}-info")


def mentioning(d: Daemon, text: str) -> list[Record]:
    return [r for r in d.records() if text in r[0]]


def test_exception_is_one_record_with_traceback(debug: Daemon) -> None:
    """A process that raises: one ERROR record with PID, id, error and its traceback."""
    t = token("boom")
    pid = debug.call("spawn", id="t:c.raiser", host="t:a", args=[t])
    head, tb = wait_record(debug, pid, "actord.crash")
    fence(debug, "t:a")
    assert " ERROR actord.worker: " in head, head
    assert head.endswith(f"[t:a/0] {pid} actord.crash: process t:c.raiser crashed: "
                         f"ValueError: {t}"), head
    assert tb[0] == "Traceback (most recent call last):", tb
    assert any("in raiser" in ln for ln in tb) and any("in _explode_deep_inside" in ln
                                                       for ln in tb), tb
    assert not any("in _run" in ln for ln in tb), tb  # starts in actor code
    assert tb[-1] == f"ValueError: {t}", tb
    assert len(mentioning(debug, t)) == 1, mentioning(debug, t)


@pytest.mark.parametrize(("id", "error", "in_traceback"), [
    ("t:c.import_boom", "RuntimeError: boom at import time", "crash_import_boom.py"),
    ("t:c.missing", "ModuleNotFoundError: No module named 'crash_no_such_module'",
     "import_module"),
])
def test_import_failure_is_reported(debug: Daemon, id: str, error: str, in_traceback: str
                                    ) -> None:
    """A module that raises at import or does not exist: a crash report with traceback."""
    pid = debug.call("spawn", id=id, host="t:a", args=[])
    head, tb = wait_record(debug, pid, "actord.crash")
    fence(debug, "t:a")
    assert head.endswith(f"{pid} actord.crash: process {id} crashed: {error}"), head
    assert " ERROR " in head and tb[-1] == error, (head, tb)
    assert any(in_traceback in ln for ln in tb), tb
    assert len(mentioning(debug, pid)) == 1


@pytest.mark.parametrize(("how", "level", "error"), [
    ("kill", "INFO", "process terminated"),
    ("cancel", "WARNING", "cancel deadline exceeded"),
])
def test_terminate_and_deadline_are_one_line(debug: Daemon, how: str, level: str, error: str
                                             ) -> None:
    """Terminate and a missed cancel deadline: one line each, with PID, id and error."""
    pid = debug.call("spawn", id="t:c.idle", host="t:a", args=[])
    if how == "kill":
        debug.call("kill", dest=pid)
    else:
        debug.call("cancel", dest=pid, deadline="0s")
    head, tb = wait_record(debug, pid, "actord.crash")
    fence(debug, "t:a")
    assert f" {level} " in head and head.endswith(
        f"{pid} actord.crash: process t:c.idle ended: {error}"), head
    assert tb == []
    assert len(mentioning(debug, pid)) == 1


def test_linked_and_failed_upgrade_are_one_line(debug: Daemon) -> None:
    """An untrapped LINK_DOWN (INFO) and a failed upgrade (ERROR): one line each."""
    target = debug.call("spawn", id="t:c.idle", host="t:a", args=[])
    linked = debug.call("spawn", id="t:c.linker", host="t:a", args=[target])
    wait_record(debug, f"{linked} probe.crash: linked {target}")
    debug.call("kill", dest=target)
    head, tb = wait_record(debug, linked, "actord.crash")
    assert " INFO " in head and head.endswith(
        f"{linked} actord.crash: process t:c.linker ended: linked process failed"), head
    upgrader = debug.call("spawn", id="t:c.upgrader", host="t:a", args=["t:c.missing"])
    up_head, up_tb = wait_record(debug, upgrader, "actord.crash")
    fence(debug, "t:a")
    assert " ERROR " in up_head and up_head.endswith(
        f"{upgrader} actord.crash: process t:c.upgrader ended: upgrade: ModuleNotFoundError: "
        "No module named 'crash_no_such_module'"), up_head
    assert tb == up_tb == []
    assert len(mentioning(debug, f"{linked} actord.crash")) == 1
    assert len(mentioning(debug, upgrader)) == 1


def test_service_crash_has_its_traceback_once(debug: Daemon) -> None:
    """A service's crash: the crash report holds the traceback, the service line the error."""
    t = token("svc")
    pid = next(r["pid"] for r in debug.call("services") if r["name"] == "svc:crash")
    debug.call("send", dest="crash-svc", topic="raise", values=[f"{t}\nsecond line"])
    error = f"RuntimeError: service asked to fail: {t}\\nsecond line"
    report = wait_record(debug, pid, "actord.crash")
    service_line = wait_record(debug, f"service svc:crash: {pid} ended abnormally: {error}")
    wait_record(debug, "service svc:crash: running -> failed")
    assert report[0].endswith(f"process t:c.service_crasher crashed: {error}"), report
    assert report[1][-2:] == [f"RuntimeError: service asked to fail: {t}", "second line"]
    assert service_line[1] == []
    with_traceback = [r for r in debug.records() if any(t in ln for ln in r[1])]
    assert with_traceback == [report]


def test_debug_level_reaches_actor_code(debug: Daemon, make_daemon: DaemonFactory) -> None:
    """log_level debug shows an actor's logger.debug; the default (info) hides it."""
    t = token("lvl")
    pid = debug.exec("t:c.logs", "t:a", t)
    head, _ = wait_record(debug, f"{t}-debug")
    assert " DEBUG " in head and head.endswith(f"[t:a/0] {pid} probe.crash: {t}-debug"), head
    info = make_daemon({"t:c.logs": "crash_probes:logs"}, hosts={"t:a": 1})
    pid = info.exec("t:c.logs", "t:a", t)
    wait_record(info, f"{pid} probe.crash: {t}-info")  # the debug record would come first
    assert mentioning(info, f"{t}-debug") == []


def test_print_is_tagged_with_the_pid(debug: Daemon) -> None:
    """print() to stdout and stderr (from the loop or a thread) reaches the log as records
    tagged with the PID."""
    t = token("print")
    pid = debug.exec("t:c.prints", "t:a", t)
    out, _ = wait_record(debug, f"{t}-out")
    assert " INFO " in out and out.endswith(f"[t:a/0] {pid} stdout: {t}-out-tail"), out
    err, _ = wait_record(debug, f"{t}-err")
    assert " WARNING " in err and err.endswith(f"[t:a/0] {pid} stderr: {t}-err"), err
    partial, _ = wait_record(debug, f"{t}-partial")
    assert partial.endswith(f"[t:a/0] {pid} stdout: {t}-partial"), partial
    thread, _ = wait_record(debug, f"{t}-thread")
    assert thread.endswith(f"[t:a/0] {pid} stdout: {t}-thread"), thread


def test_control_characters_never_split_a_line(debug: Daemon) -> None:
    """An exception message with a newline and a tab: escaped in the record's first line,
    marked continuation lines in its traceback; every line of the log starts a record or is
    marked."""
    t = token("nl")
    pid = debug.call("spawn", id="t:c.raiser", host="t:a", args=[f"{t}\nforged line\tx\r"])
    head, tb = wait_record(debug, pid, "actord.crash")
    assert head.endswith(f"crashed: ValueError: {t}\\nforged line\\tx\\r"), head
    assert tb[-2:] == [f"ValueError: {t}", "forged line\\tx"], tb
    fence(debug, "t:a")
    for line in debug.log().splitlines():
        assert RECORD_START.match(line) or line.startswith(CONTINUATION), line


def test_crash_storm_is_rate_limited(debug: Daemon) -> None:
    """Hundreds of crashes on one worker: at most the limit a second are reported, the rest
    counted in 'N crash reports suppressed' lines; reports + suppressed = crashes."""
    count = 200
    pids = debug.exec("t:c.storm", "t:storm", count)
    assert len(pids) == count

    def tally() -> tuple[int, int] | None:
        reports = sum(1 for pid in pids for r in mentioning(debug, f"{pid} actord.crash:"))
        suppressed = [int(m.group(1)) for m in (
            re.search(r"\[t:storm/0\]  actord\.crash: (\d+) crash reports suppressed", r[0])
            for r in debug.records()) if m]
        if reports + sum(suppressed) == count:
            return reports, len(suppressed)
        return None

    reports, summaries = wait_for(tally, what=f"reports and suppressed counts\n{debug.log()}")
    assert summaries >= 1
    # each summary closes a one-second window that logged exactly the limit
    assert reports <= CRASH_REPORTS_PER_SECOND * (summaries + 1)
