"""SPEC section 3: spawn*, terminate, cancel, monitor, link, options, exec, and process ends."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from actord.testing import Daemon
from tests.api_support import PLACEMENTS, processes
from tests.cluster_support import module_cluster
from tests.conftest import module_daemon

PROCESSES = processes(
    "api_probes_life", "self_terminator", "self_canceller", "graceful", "with_helper_task",
    "custom_crasher", "sys_exit", "bad_result", "huge_result", "exec_in_task", "exec_waiter",
    "spawn_errors",
    "spawn_variants", "terminate_probe", "cancel_probe", "monitor_probe", "link_probe",
    "options_probe", "exec_probe", "ending_probe",
)
TERMINATED = {"error": "process terminated"}
LINK_FAILED = {"error": "linked process failed"}


@pytest.fixture(scope="module")
def single(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Daemon]:
    yield from module_daemon(request, tmp_path_factory, PROCESSES, left=0)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Daemon]]:
    """Nodes n1, n2, n3 for the other-node cases (started only if one runs)."""
    yield from module_cluster(tmp_path_factory, PROCESSES, left=0)


def end_of(daemon: Daemon, id: str, *args: Any) -> dict[str, Any]:
    """The raw exec result (``{"value": v}`` or ``{"error": s}``) of a run from the CLI side."""
    result = daemon.call("exec", None, id=id, host="t:a", args=list(args), timeout=10)
    return {k: v for k, v in result.items() if k != "pid"}


@PLACEMENTS
def test_spawn_errors(daemon: Daemon, probe_host: str, host: str) -> None:
    """Every spawn variant: NOT_FOUND for an unknown id or host, INVALID for bad arguments."""
    out = daemon.exec("api:spawn_errors", probe_host, host)
    for name in ("spawn", "spawn_monitored", "spawn_linked", "spawn_linked_monitored"):
        assert out[name] == ["NOT_FOUND", "NOT_FOUND", "INVALID", "INVALID"], name


@PLACEMENTS
def test_spawn_variants_install_edges_before_the_child_runs(
    daemon: Daemon, probe_host: str, host: str
) -> None:
    """A child that fails at once still reaches its spawn_monitored/linked caller."""
    out = daemon.exec("api:spawn_variants", probe_host, host)
    assert out["plain_host"]
    assert out["monitored"] == [["pid.exit", True, {"error": "ValueError: m"}]]
    assert out["linked"] == [["pid.link.down", True, {"error": "ValueError: l"}]]
    assert out["linked_monitored"] == [
        ["pid.exit", True, {"error": "ValueError: b"}],
        ["pid.link.down", True, {"error": "ValueError: b"}],
    ]


@PLACEMENTS
def test_terminate(daemon: Daemon, probe_host: str, host: str) -> None:
    """terminate ends the target with "process terminated", by PID, by name, or itself."""
    out = daemon.exec("api:terminate_probe", probe_host, host)
    assert out["ok"] is None and out["exit"] == TERMINATED
    assert out["dead"] == "NOT_FOUND" and out["unknown_name"] == "NOT_FOUND"
    if "@" in host:  # names are node-local: no by-name case for another node's process
        assert "by_name" not in out
    else:
        assert out["by_name"] is None and out["by_name_exit"] == TERMINATED
    assert out["self"] == TERMINATED
    assert out["self_ran_on"] is None


@PLACEMENTS
def test_cancel(daemon: Daemon, probe_host: str, host: str) -> None:
    """cancel: fields, ignorable without deadline, deadline enforced (str and int ms), checks."""
    out = daemon.exec("api:cancel_probe", probe_host, host)
    me = out["me"]
    for label in ("word", "unit", "neg", "bool", "list"):
        assert out[f"bad_{label}"] == "INVALID", label
    assert out["bad_reason"] == "INVALID"
    assert out["plain"] == {"kind": "pid.cancel", "from": me, "result": None, "deadline": None,
                            "reason": "r1"}
    assert out["alive_after_plain"]
    dl = out["with_deadline"]
    assert dl["kind"] == "pid.cancel" and dl["reason"] == "r2" and dl["from"] == me
    assert isinstance(dl["deadline"], float)
    assert out["deadline_exit"] == {"error": "cancel deadline exceeded"}
    assert out["deadline_waited"]
    assert out["int_ms_exit"] == {"error": "cancel deadline exceeded"}
    assert out["dead"] == out["unknown_name"] == "NOT_FOUND"
    assert out["graceful_exit"] == {"value": "stopped"}
    self_ev = out["self"]
    assert self_ev["kind"] == "pid.cancel" and self_ev["from"] == self_ev["me"]
    assert self_ev["reason"] == "me" and self_ev["deadline"] is None


@PLACEMENTS
def test_monitor(daemon: Daemon, probe_host: str, host: str) -> None:
    """monitor: twice ALREADY_EXISTS, dead NOT_FOUND; unmonitor idempotent, final, keeps queued."""
    out = daemon.exec("api:monitor_probe", probe_host, host)
    assert out["first"] is None and out["twice"] == "ALREADY_EXISTS"
    assert out["unmonitor"] is None and out["unmonitor_again"] is None
    # no EXIT of the unmonitored child before its witness's EXIT
    assert out["after_unmonitor"] == [["pid.exit", out["pids"]["witness"], LINK_FAILED]]
    assert out["dead"] == "NOT_FOUND" and out["unmonitor_dead"] is None
    assert out["unknown_name"] == "NOT_FOUND"
    if "@" in host:  # names are node-local: no by-name case for another node's process
        assert "by_name" not in out
    else:
        assert out["by_name"] is None and out["by_name_exit"] == TERMINATED
    assert out["queued_stays"] == ["pid.exit", True, TERMINATED]
    assert out["unmonitor_unknown_name"] == "NOT_FOUND"


@PLACEMENTS
def test_link(daemon: Daemon, probe_host: str, host: str) -> None:
    """link twice is a no-op (one LINK_DOWN), dead NOT_FOUND; unlink is idempotent and final."""
    out = daemon.exec("api:link_probe", probe_host, host)
    pids = out["pids"]
    assert out["link"] is None and out["link_again"] is None
    assert out["linked_twice"] == [
        ["pid.link.down", pids["a"], TERMINATED],
        ["pid.exit", pids["w"], LINK_FAILED],
    ]
    assert out["dead"] == "NOT_FOUND" and out["unlink_dead"] is None
    assert out["unlink"] is None and out["unlink_again"] is None
    assert out["after_unlink"] == [["pid.exit", pids["w2"], LINK_FAILED]]
    assert out["unknown_name"] == out["unlink_unknown_name"] == "NOT_FOUND"


def test_options(daemon: Daemon) -> None:
    """get_options/set_options(trap_links=...); unknown option or non-bool value is INVALID."""
    out = daemon.exec("api:options_probe", "t:a")
    assert out["default"] == {"trap_links": False}
    assert out["set"] == out["unchanged"] == {"trap_links": True}
    assert out["unknown"] == out["not_bool"] == "INVALID"
    assert out["reset"] == {"trap_links": False}


@PLACEMENTS
def test_exec(daemon: Daemon, probe_host: str, host: str) -> None:
    """exec: value, ProcessFailedError, TimeoutError; an abandoned child always gets CANCEL
    (timeout, cancelled wait, caller returned, caller terminated)."""
    out = daemon.exec("api:exec_probe", probe_host, host)
    me = out["me"]
    assert out["value"] == [1, "x"]
    assert out["failed"] == {"kind": "FAILED", "pid_host": True, "error": "ValueError: exec failed"}
    assert out["unknown_id"] == out["unknown_host"] == "NOT_FOUND"
    assert out["bad_timeout"] == "INVALID"
    for key, reason in (("timeout", "exec timeout"), ("cancelled", "exec cancelled")):
        assert out[key]["kind"] == "pid.cancel" and out[key]["from"] == me, key
        assert out[key]["reason"] == reason and out[key]["deadline"] is None, key
    assert out["caller_returned"] == {"value": "returned"}
    assert out["caller_ended"]["kind"] == "pid.cancel"
    assert out["caller_ended"]["from"] != me
    assert out["caller_ended"]["reason"] == "exec cancelled"
    # a caller terminated while it waits: the router CANCELs the child on the caller's end
    assert out["caller_terminated"]["kind"] == "pid.cancel"
    assert out["caller_terminated"]["from"] == out["waiter"]
    assert out["caller_terminated"]["reason"] == "exec cancelled"


def test_escaped_exception_is_an_abnormal_end(daemon: Daemon) -> None:
    """An escaped exception ends the process with "ExcType: message"."""
    assert end_of(daemon, "api:crasher", "boom") == {"error": "ValueError: boom"}
    assert end_of(daemon, "api:custom_crasher") == {"error": "CustomError: it broke: badly"}


def test_sys_exit_ends_only_that_process(daemon: Daemon) -> None:
    """SystemExit escaping an actor ends it abnormally; its worker and neighbours live on."""
    neighbour = daemon.call("spawn", id="api:waiter", host="t:a")
    worker = daemon.workers()[0]
    assert end_of(daemon, "api:sys_exit") == {"error": "SystemExit: 3"}
    assert [p["pid"] for p in daemon.call("ps", host="t:a")] == [neighbour]
    assert daemon.workers()[0]["os_pid"] == worker["os_pid"]
    daemon.call("kill", dest=neighbour)


def test_non_msgpack_result_is_an_abnormal_end(daemon: Daemon) -> None:
    """A result that is not a msgpack value ends the process abnormally, with a clear error."""
    for id in ("api:bad_result", "api:huge_result"):
        result = end_of(daemon, id)
        assert result["error"].startswith("InvalidError: result"), result


def test_returning_cancels_other_tasks(daemon: Daemon) -> None:
    """Returning ends the process normally and cancels the other tasks it started."""
    out = daemon.exec("api:ending_probe", "t:a")
    assert out == {"result": {"value": "done"}, "helper": "cancelled"}

