"""SPEC sections 8-10: supervised services against a real daemon.

Most tests share one node whose services each belong to one test; tests that kill a worker
or stop the daemon get their own. Backoffs are milliseconds, so restarts are quick.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from actord import ids
from actord.services import IllegalTransitionError, ServiceState, transition
from actord.testing import Daemon, wait_for
from tests.conftest import DaemonFactory, module_daemon

PROCESSES = {f"s:{name}": f"service_probes:{name}"
             for name in ("obedient", "stubborn", "crasher", "needs")}
FAST = 'backoff = { initial = "10ms", max = "50ms", factor = 2.0, jitter = 0.1 }'
RESTARTS = ("permanent", "transient", "temporary")
ENDS = ("return", "exception", "kill")
#: restart type x how the process ended -> what the service does
MATRIX = {
    ("permanent", "return"): "restarted",
    ("permanent", "exception"): "restarted",
    ("permanent", "kill"): "restarted",
    ("transient", "return"): "exited",
    ("transient", "exception"): "restarted",
    ("transient", "kill"): "restarted",
    ("temporary", "return"): "exited",
    ("temporary", "exception"): "failed",
    ("temporary", "kill"): "failed",
}
ROW_KEYS = {"name", "state", "pid", "restarts", "last_error"}


def service(name: str, process: str = "s:obedient", *, host: str = "t:b",
            restart: str = "transient", registered: str | None = None,
            args: list[Any] | None = None, backoff: str = FAST, **keys: str) -> str:
    """One ``[services."name"]`` table; ``keys`` are extra TOML values, written as given."""
    lines = [f'[services."{name}"]', f'process = "{process}"', f'host = "{host}"',
             f'restart = "{restart}"', backoff]
    if registered:
        lines.append(f'name = "{registered}"')
    if args is not None:
        lines.append(f"args = {json.dumps(args)}")
    lines += [f"{k} = {v}" for k, v in keys.items()]
    return "\n".join(lines) + "\n"


def matrix_name(restart: str, end: str) -> str:
    return f"m-{restart}-{end}"


NODE_SERVICES = "".join(
    [service(f"m:{r}-{e}", restart=r, registered=matrix_name(r, e))
     for r in RESTARTS for e in ENDS]
    + [
        service("i:crashloop", "s:crasher", restart="permanent",
                intensity='{ max_restarts = 2, period = "10s" }'),
        service("n:named", restart="permanent", registered="named"),
        # listed before its dependency: only depends_on can make it start second
        service("d:second", "s:needs", restart="temporary", args=["first"],
                depends_on='["d:first"]'),
        service("d:first", registered="first", host="t:a"),
        service("c:ctl", restart="permanent", registered="ctl"),
        service("c:manual", registered="manual", auto_start="false"),
        service("c:stubborn", "s:stubborn", registered="stubborn", stop_timeout='"300ms"'),
        service("c:squatted", restart="temporary", registered="squat", auto_start="false"),
        service("c:slow", "s:crasher", restart="permanent",
                backoff='backoff = { initial = "1m", max = "1m" }'),
    ]
)


_S = ServiceState
LEGAL = {
    (_S.STOPPED, _S.STARTING), (_S.STARTING, _S.STARTING), (_S.STARTING, _S.RUNNING),
    (_S.STARTING, _S.STOPPED), (_S.STARTING, _S.STOPPING), (_S.STARTING, _S.FAILED),
    (_S.RUNNING, _S.STARTING),
    (_S.RUNNING, _S.STOPPING), (_S.RUNNING, _S.FAILED), (_S.RUNNING, _S.EXITED),
    (_S.STOPPING, _S.STOPPED), (_S.FAILED, _S.STARTING), (_S.EXITED, _S.STARTING),
}


@pytest.mark.parametrize(
    ("old", "new"), [pytest.param(a, b, id=f"{a.value}-{b.value}") for a in _S for b in _S]
)
def test_state_transitions(old: ServiceState, new: ServiceState) -> None:
    """The state machine allows exactly the moves of the diagram in actord/services.py."""
    if (old, new) in LEGAL:
        assert transition(old, new) is new
    else:
        with pytest.raises(IllegalTransitionError):
            transition(old, new)


@pytest.fixture(scope="module")
def node(request: pytest.FixtureRequest,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    yield from module_daemon(request, tmp_path_factory, PROCESSES, extra=NODE_SERVICES)


def row(d: Daemon, name: str) -> dict[str, Any]:
    """The service's row from ``services``."""
    return next(r for r in d.call("services") if r["name"] == name)


def wait_row(d: Daemon, name: str, check: Callable[[dict[str, Any]], bool],
             what: str) -> dict[str, Any]:
    """Poll the service's row until ``check`` holds; return that row."""
    def probe() -> dict[str, Any] | None:
        r = row(d, name)
        return r if check(r) else None
    return wait_for(probe, what=f"{name}: {what}")


def running(d: Daemon, name: str, other_than: str | None = None) -> dict[str, Any]:
    """Wait until the service runs a process (other than ``other_than``)."""
    return wait_row(d, name, lambda r: r["state"] == "running" and r["pid"] is not None
                    and r["pid"] != other_than, f"running, pid not {other_than}")


def cli_json(d: Daemon, *args: str) -> Any:
    """``actord ARGS --json``, asserting exit 0; its parsed output."""
    out = d.cli(*args, "--json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@pytest.mark.parametrize(
    ("restart", "end"), [pytest.param(r, e, id=f"{r}-{e}") for r in RESTARTS for e in ENDS]
)
def test_restart_matrix(node: Daemon, restart: str, end: str) -> None:
    """Each restart type after each kind of end: restarted, exited or failed as OTP does."""
    name, registered = f"m:{restart}-{end}", matrix_name(restart, end)
    first = running(node, name)
    assert node.call("registry")[registered] == first["pid"]
    if end == "kill":
        out = node.cli("kill", registered)
        assert out.returncode == 0, out.stderr
    else:
        node.call("send", dest=registered, topic="raise" if end == "exception" else "return",
                  values=["bye"])
    expected = MATRIX[restart, end]
    if expected == "restarted":
        after = wait_row(node, name, lambda r: r["state"] == "running" and r["restarts"] == 1,
                         "restarted once")
        assert after["pid"] not in (None, first["pid"])
        assert node.call("registry")[registered] == after["pid"]
    else:
        after = wait_row(node, name, lambda r: r["state"] == expected, expected)
        assert after["pid"] is None and after["restarts"] == 0
        assert registered not in node.call("registry")
    error = {"return": None, "exception": "RuntimeError: asked to fail: bye",
             "kill": "process terminated"}[end]
    assert after["last_error"] == error


def test_intensity_exceeded_marks_the_service_failed(node: Daemon) -> None:
    """A crash loop is restarted max_restarts times, then failed with its last error kept."""
    r = wait_row(node, "i:crashloop", lambda r: r["state"] == "failed", "failed")
    assert r["restarts"] == 2 and r["pid"] is None
    assert r["last_error"] == "RuntimeError: crash on start"
    assert "intensity" in r["reason"]
    listed = cli_json(node, "services")
    assert {"i:crashloop"} <= {s["name"] for s in listed if s["state"] == "failed"}
    [line] = [ln for ln in node.cli("services").stdout.splitlines() if "i:crashloop" in ln]
    assert "failed" in line and "RuntimeError: crash on start" in line


def test_name_is_reregistered_after_restart(node: Daemon) -> None:
    """After a restart the registered name resolves to the new PID, and messages reach it."""
    first = running(node, "n:named")
    assert node.cli("kill", "named").returncode == 0
    second = running(node, "n:named", other_than=first["pid"])
    assert node.call("registry")["named"] == second["pid"]
    [proc] = [p for p in node.call("ps") if p["pid"] == second["pid"]]
    assert proc["names"] == ["named"]
    node.call("send", dest="named", topic="raise", values=["via name"])
    r = running(node, "n:named", other_than=second["pid"])
    assert r["restarts"] == 2 and r["last_error"] == "RuntimeError: asked to fail: via name"


def test_depends_on_orders_the_start(node: Daemon) -> None:
    """A service starts after its dependency: spawned later and able to resolve its name."""
    first, second = running(node, "d:first"), running(node, "d:second")
    serial = {r["name"]: ids.parse_pid(r["pid"])[1] for r in (first, second)}  # type: ignore[index]
    assert serial["d:first"] < serial["d:second"]
    assert second["restarts"] == 0 and second["last_error"] is None


def test_stop_start_restart_cli(node: Daemon) -> None:
    """stop ends the process without a restart, start and restart run a new one."""
    first = running(node, "c:ctl")
    stopped = cli_json(node, "stop", "c:ctl")
    assert stopped["state"] == "stopped" and stopped["pid"] is None
    assert stopped["last_error"] is None  # it returned on CANCEL: a normal end
    assert "ctl" not in node.call("registry")
    assert row(node, "c:ctl")["state"] == "stopped"  # permanent, yet not restarted
    assert cli_json(node, "stop", "c:ctl")["state"] == "stopped"  # idempotent
    started = cli_json(node, "start", "c:ctl")
    assert started["state"] == "running" and started["pid"] not in (None, first["pid"])
    assert node.call("registry")["ctl"] == started["pid"]
    restarted = cli_json(node, "restart", "c:ctl")
    assert restarted["state"] == "running" and restarted["pid"] != started["pid"]
    assert restarted["restarts"] == 0  # operator actions are not policy restarts
    text = node.cli("services")
    assert text.returncode == 0 and "c:ctl" in text.stdout and restarted["pid"] in text.stdout


def test_auto_start_false_waits_for_start(node: Daemon) -> None:
    """A service with auto_start = false stays stopped until started."""
    assert row(node, "c:manual")["state"] == "stopped"
    assert "manual" not in node.call("registry")
    out = node.cli("start", "c:manual")
    assert out.returncode == 0, out.stderr
    assert "running" in out.stdout
    assert node.call("registry")["manual"] == row(node, "c:manual")["pid"]


def test_unknown_service_and_usage_errors(node: Daemon) -> None:
    """An unknown service is NOT_FOUND (exit 1); a missing argument is a usage error (exit 2)."""
    for command in ("start", "stop", "restart"):
        out = node.cli(command, "no:such")
        assert out.returncode == 1 and "NOT_FOUND" in out.stderr, out.stderr
        assert node.cli(command).returncode == 2


def test_stop_timeout_terminates_a_process_ignoring_cancel(node: Daemon) -> None:
    """A process that ignores CANCEL is ended by the cancel deadline after stop_timeout."""
    running(node, "c:stubborn")
    started = time.monotonic()
    stopped = cli_json(node, "stop", "c:stubborn")
    elapsed = time.monotonic() - started
    assert stopped["state"] == "stopped" and stopped["pid"] is None
    assert stopped["last_error"] == "cancel deadline exceeded"
    assert elapsed >= 0.25


def test_stop_during_backoff_cancels_the_restart(node: Daemon) -> None:
    """A service waiting out its backoff stops at once and is not restarted."""
    wait_row(node, "c:slow", lambda r: r["state"] == "starting" and r["last_error"] is not None,
             "waiting for its restart")
    stopped = cli_json(node, "stop", "c:slow")
    assert stopped["state"] == "stopped" and stopped["pid"] is None
    assert stopped["restarts"] == 0


def test_start_failure_is_reported(node: Daemon) -> None:
    """A start whose registered name is held elsewhere fails: exit 1, last_error says why."""
    holder = node.call("spawn", id="s:obedient", host="t:a", args=[], name="squat")
    out = node.cli("start", "c:squatted", "--json")
    assert out.returncode == 1
    r = json.loads(out.stdout)
    assert r["state"] == "failed" and r["pid"] is None
    assert "ALREADY_EXISTS" in r["last_error"] and holder in r["last_error"]
    assert node.call("registry")["squat"] == holder
    node.call("kill", dest=holder)


def test_services_json_and_status_shape(node: Daemon) -> None:
    """services --json rows have the SPEC keys and states; status --json includes them."""
    rows = cli_json(node, "services")
    assert [r["name"] for r in rows][:2] == ["m:permanent-return", "m:permanent-exception"]
    states = {"starting", "running", "stopping", "stopped", "failed", "exited"}
    for r in rows:
        assert set(r) >= ROW_KEYS and r["state"] in states
        assert isinstance(r["restarts"], int)
    status = cli_json(node, "status")
    assert {r["name"] for r in status["services"]} == {r["name"] for r in rows}


# -- tests with their own daemon ------------------------------------------------------------


def test_worker_crash_restarts_the_service(make_daemon: DaemonFactory) -> None:
    """A service whose worker is killed ends with "worker crashed" and restarts on the new one."""
    extra = (service("w:transient", host="t:a", registered="wt")
             + service("w:temporary", host="t:a", restart="temporary", registered="wtemp"))
    d = make_daemon(PROCESSES, hosts={"t:a": 1}, extra=extra)
    first = running(d, "w:transient")
    running(d, "w:temporary")
    [worker] = d.workers()
    os.kill(worker["os_pid"], signal.SIGKILL)
    after = running(d, "w:transient", other_than=first["pid"])
    assert after["restarts"] == 1 and after["last_error"] == "worker crashed"
    assert d.call("registry")["wt"] == after["pid"]
    temp = wait_row(d, "w:temporary", lambda r: r["state"] == "failed", "failed")
    assert temp["last_error"] == "worker crashed"
    assert d.workers()[0]["restarts"] == 1


def test_shutdown_stops_services_in_reverse_dependency_order(
    make_daemon: DaemonFactory, tmp_path: Path
) -> None:
    """At shutdown services get CANCEL "service stop" dependents first, before all else."""
    record = tmp_path / "stops.txt"
    extra = "".join(
        service(f"o:{label}", args=[label, str(record)], registered=label, **deps)
        for label, deps in (
            ("top", {"depends_on": '["o:middle"]'}),
            ("base", {}),
            ("middle", {"depends_on": '["o:base"]'}),
        )
    ) + service("o:stubborn", "s:stubborn", stop_timeout='"200ms"')
    d = make_daemon(PROCESSES, extra=extra)
    for label in ("top", "base", "middle"):
        running(d, f"o:{label}")
    running(d, "o:stubborn")
    assert d.stop() == 0, d.log()
    assert record.read_text().splitlines() == [
        "top service stop", "middle service stop", "base service stop"]
    assert "service o:stubborn: stopping -> stopped" in d.log()
