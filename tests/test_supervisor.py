"""actord.supervisor: OTP-style supervisors, through a real daemon.

Scenarios run inside the daemon as probe actors (``tests/actors/supervisor_probes.py``) that
return their observations; the supervisor under test is ``actord.supervisor:run`` used
directly as a config entry. The pure parts (child specs, the restart plan) are tested here
without a daemon.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from actord import ids
from actord.errors import InvalidError
from actord.supervisor import REASON_RESTART, REASON_SHUTDOWN, child_spec, restart_plan
from actord.testing import Daemon, wait_for
from tests.conftest import module_daemon

PROBES = ("child", "stubborn", "crasher", "bomb", "strategy_probe", "restart_types_probe",
          "group_probe", "intensity_probe", "cancel_probe", "terminated_probe",
          "linked_failure_probe", "backoff_probe", "which")
PROCESSES = {"sup:sup": "actord.supervisor:run",
             **{f"sup:{name}": f"supervisor_probes:{name}" for name in PROBES}}
#: a supervisor as a config service: two children on two hosts, restarted with it
SERVICE_CHILDREN = [
    {"id": "x", "process": "sup:child", "host": "t:a", "args": ["x"]},
    {"id": "y", "process": "sup:child", "host": "t:b", "args": ["y"]},
]


def toml_table(d: dict[str, Any]) -> str:
    """A TOML inline table of str keys and JSON-compatible values."""
    return "{ " + ", ".join(f"{k} = {json.dumps(v)}" for k, v in d.items()) + " }"


SERVICE = f"""
[services."sup:svc"]
process = "sup:sup"
host = "t:b"
name = "svc-sup"
restart = "permanent"
backoff = {{ initial = "10ms", max = "50ms" }}
args = [[{", ".join(toml_table(c) for c in SERVICE_CHILDREN)}], "one_for_all"]
"""
#: strategy -> the children that get new PIDs when b (the middle one) is terminated
RESTARTED = {"one_for_one": ["b"], "one_for_all": ["a", "b", "c"], "rest_for_one": ["b", "c"]}
#: (restart type, end) -> the child's entry afterwards
MATRIX = {
    "permanent": {"return": "restarted", "raise": "restarted", "kill": "restarted"},
    "transient": {"return": "kept", "raise": "restarted", "kill": "restarted"},
    "temporary": {"return": "gone", "raise": "gone", "kill": "gone"},
}


@pytest.fixture(scope="module")
def daemon(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Daemon]:
    # left at the end: only the service's three processes (the supervisor and its children)
    yield from module_daemon(request, tmp_path_factory, PROCESSES, left=3, extra=SERVICE)


def serial(pid: str) -> int:
    parsed = ids.parse_pid(pid)
    assert parsed is not None, pid
    return parsed[1]


def cancelled(log: list[list[Any]]) -> list[list[Any]]:
    """The ``cancelled`` reports of a log as ``[label, reason]``, in the order they happened."""
    rows = sorted((row for row in log if row[0] == "cancelled"), key=lambda row: row[4])
    return [[row[1], row[3]] for row in rows]


# -- pure parts ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("strategy", "ended", "stop", "start"),
    [
        ("one_for_one", "b", [], ["b"]),
        ("one_for_all", "b", ["c", "a"], ["a", "b", "c"]),
        ("rest_for_one", "b", ["c"], ["b", "c"]),
        ("rest_for_one", "a", ["c", "b"], ["a", "b", "c"]),
        ("rest_for_one", "c", [], ["c"]),
    ],
)
def test_restart_plan(strategy: str, ended: str, stop: list[str], start: list[str]) -> None:
    """Each strategy stops the right siblings last-to-first and starts its group in order."""
    assert restart_plan(strategy, ["a", "b", "c"], ended) == (stop, start)


@pytest.mark.parametrize(
    "bad",
    [
        {"process": "x:y", "host": "t:a"},
        {"id": "a", "process": "x:y", "host": "t:a", "colour": "red"},
        {"id": "", "process": "x:y", "host": "t:a"},
        {"id": "a", "process": "nocolon", "host": "t:a"},
        {"id": "a", "process": "x:y", "host": "t:a", "restart": "sometimes"},
        {"id": "a", "process": "x:y", "host": "t:a", "shutdown": "soon"},
        {"id": "a", "process": "x:y", "host": "t:a", "name": "{pid"},
        {"id": "a", "process": "x:y", "host": "t:a", "args": "notalist"},
        "a",
    ],
    ids=["no-id", "unknown-key", "empty-id", "bad-process", "bad-restart", "bad-shutdown",
         "bad-name", "bad-args", "not-a-dict"],
)
def test_bad_child_spec(bad: Any) -> None:
    """A child spec is checked once, when built: a bad one is INVALID."""
    with pytest.raises(InvalidError):
        child_spec(bad)


def test_child_spec_defaults() -> None:
    """Defaults are OTP's: permanent, 5 s shutdown; args become a tuple."""
    s = child_spec({"id": "a", "process": "x:y", "host": "t:a", "args": [1, 2]})
    assert (s.restart, s.shutdown_seconds, s.args, s.name) == ("permanent", 5.0, (1, 2), None)
    assert child_spec({"id": "a", "process": "x:y", "host": "t:a",
                       "shutdown": "brutal_kill"}).shutdown_seconds is None


# -- through a daemon ------------------------------------------------------------------------


@pytest.mark.parametrize("strategy", list(RESTARTED))
@pytest.mark.parametrize(
    ("sup_host", "hosts"),
    [("t:a", ["t:a", "t:a", "t:a"]), ("t:b", ["t:a", "t:b", "t:b"])],
    ids=["one-worker", "two-hosts"],
)
def test_strategy(daemon: Daemon, strategy: str, sup_host: str, hosts: list[str]) -> None:
    """Terminate the middle child: exactly the strategy's group gets new PIDs, in order."""
    expected = RESTARTED[strategy]
    out = daemon.exec("sup:strategy_probe", "t:a", strategy, sup_host, hosts, len(expected))
    before, after = out["before"], out["after"]
    assert [row[0] for row in before] == [row[0] for row in after] == ["a", "b", "c"]
    changed = [a[0] for a, b in zip(before, after, strict=True) if a[1] != b[1]]
    assert changed == expected
    new = [pid for label, pid in after if label in expected]
    assert [serial(p) for p in new] == sorted(serial(p) for p in new)  # started in order
    assert serial(new[0]) > max(serial(p) for _, p in before)
    assert sorted(row[2] for row in out["restart_log"] if row[0] == "up") == sorted(new)
    siblings = [label for label in reversed(expected) if label != "b"]
    assert cancelled(out["restart_log"]) == [[label, REASON_RESTART] for label in siblings]
    assert out["named"] == after[1][1]  # b's registered name follows the restart
    assert out["old_alive"] == [label not in expected for label, _ in before]
    assert out["new_alive"] == [True, True, True]
    # CANCEL: every child stopped, last to first, and the supervisor returns normally
    assert out["sup_exit"] == {"value": None}
    assert cancelled(out["stop_log"]) == [[c, REASON_SHUTDOWN] for c in ("c", "b", "a")]
    assert [row[0] for row in out["stop_log"]] == ["cancelled"] * 3
    assert out["alive_after_stop"] == [False, False, False]


@pytest.mark.parametrize("restart", list(MATRIX))
def test_restart_types(daemon: Daemon, restart: str) -> None:
    """permanent: always restarted; transient: after an abnormal end; temporary: forgotten."""
    out = daemon.exec("sup:restart_types_probe", "t:a", restart)
    assert out.pop("sup_exit") == {"value": None}
    assert out == MATRIX[restart]


@pytest.mark.parametrize("strategy", ["one_for_all", "rest_for_one"])
def test_group_restart_forgets_temporary_and_restarts_transient(
    daemon: Daemon, strategy: str
) -> None:
    """In a group restart a temporary sibling is stopped for good, a transient one restarted."""
    out = daemon.exec("sup:group_probe", "t:a", strategy)
    assert dict(map(tuple, out["tran_ended"]))["tran"] is None
    assert [row[0] for row in out["after"]] == ["p", "tran"]
    assert all(pid is not None for _, pid in out["after"])
    assert out["temp_alive"] is False
    assert cancelled(out["log"])[0] == ["temp", REASON_RESTART]
    assert out["sup_exit"] == {"value": None}


def test_intensity_exceeded(daemon: Daemon) -> None:
    """More restarts than intensity within period: children stopped, supervisor fails."""
    out = daemon.exec("sup:intensity_probe", "t:a")
    error = out["sup_exit"]["error"]
    assert error.startswith("SupervisorError: restart intensity exceeded"), error
    assert "RuntimeError: crash on start: b" in error
    ups = [row[1] for row in out["log"] if row[0] == "up"]
    assert ups.count("a") == 1 and ups.count("b") == 3  # started, then restarted twice
    assert cancelled(out["log"]) == [["a", REASON_SHUTDOWN]]
    assert out["a_alive"] is False


def test_cancel_stops_children_last_to_first(daemon: Daemon) -> None:
    """CANCEL: brutal_kill terminates, a child ignoring CANCEL is killed at its deadline."""
    out = daemon.exec("sup:cancel_probe", "t:a")
    assert out["exits"] == [
        ["c", {"error": "process terminated"}],
        ["b", {"error": "cancel deadline exceeded"}],
        ["a", {"value": "cancelled"}],
        ["sup", {"value": None}],
    ]
    assert [row[:2] + row[3:4] for row in out["log"] if row[0] != "up"] == [
        ["ignored", "b", REASON_SHUTDOWN], ["cancelled", "a", REASON_SHUTDOWN]]
    assert out["took"] >= 0.25  # b had its 300 ms


@pytest.mark.parametrize("host", ["t:a", "t:b"])
def test_terminated_supervisor_takes_its_children(daemon: Daemon, host: str) -> None:
    """A supervisor that is terminated takes its linked children down with it."""
    out = daemon.exec("sup:terminated_probe", "t:a", host)
    assert out["exits"] == {"sup": {"error": "process terminated"},
                            **{c: {"error": "linked process failed"} for c in "abc"}}
    assert [row[0] for row in out["log"]] == ["up"] * 3  # no CANCEL: killed through links


def test_linked_process_failure(daemon: Daemon) -> None:
    """A LINK_DOWN from a non-child stops the children and fails the supervisor."""
    out = daemon.exec("sup:linked_failure_probe", "t:a")
    assert out["sup_exit"] == {
        "error": f"SupervisorError: linked process failed ({out['bomb']}: RuntimeError: boom)"}
    assert cancelled(out["log"]) == [["b", REASON_SHUTDOWN], ["a", REASON_SHUTDOWN]]


def test_backoff_delays_the_restart(daemon: Daemon) -> None:
    """With a backoff, the restart waits its delay; meanwhile which_children shows None."""
    out = daemon.exec("sup:backoff_probe", "t:a")
    assert out["waiting"] == [["a", None]]
    assert out["after"] == [["a", out["new"]]]
    assert out["took"] >= 0.25
    assert out["sup_exit"] == {"value": None}


def test_bad_arguments_and_failed_start(daemon: Daemon) -> None:
    """Bad run() arguments end the supervisor with INVALID; a failed spawn with the reason."""
    ok = [{"id": "a", "process": "sup:child", "host": "t:a"}]
    for args, error in [
        ([ok, "one_for_some"], "InvalidError: bad strategy"),
        ([ok, "one_for_one", -1], "InvalidError: bad intensity"),
        ([ok, "one_for_one", 3, "0s"], "InvalidError: bad period"),
        ([ok * 2], "InvalidError: children: duplicate id"),
        ([ok, "one_for_one", 3, "5s", {"factor": 0.5}], "InvalidError: bad backoff"),
        ([[{"id": "a", "process": "sup:nope", "host": "t:a"}]],
         "SupervisorError: child 'a' failed to start: NOT_FOUND"),
        ([[{"id": "s", "process": "sup:stubborn", "host": "t:a", "shutdown": "100ms"},
           {"id": "z", "process": "sup:child", "host": "t:nope"}]],
         "SupervisorError: child 'z' failed to start: NOT_FOUND"),
    ]:
        result = daemon.call("exec", None, id="sup:sup", host="t:a", args=args, timeout=10)
        assert result.get("error", "").startswith(error), (args, result)
    # the child started before the failed one was stopped before the supervisor ended
    assert not [p for p in daemon.call("ps") if p["id"] == "sup:stubborn"]


def service_row(daemon: Daemon) -> dict[str, Any]:
    return next(r for r in daemon.call("services") if r["name"] == "sup:svc")


def service_children(daemon: Daemon, other_than: str | None = None) -> tuple[str, list[str]]:
    """(supervisor PID, its children's PIDs) once the service runs (not ``other_than``)."""
    row = wait_for(lambda: (r := service_row(daemon))["state"] == "running"
                   and r["pid"] not in (None, other_than) and r,
                   timeout=10, what="the supervisor service running")
    rows = daemon.exec("sup:which", "t:a", "svc-sup")
    assert [r[0] for r in rows] == ["x", "y"] and all(r[1] for r in rows), rows
    return row["pid"], [r[1] for r in rows]


def test_supervisor_as_a_config_service(daemon: Daemon) -> None:
    """A service restart (orderly) or kill (crash) of the supervisor renews all its children."""
    sup, kids = service_children(daemon)
    live = {p["pid"] for p in daemon.call("ps")}
    assert {sup, *kids} <= live
    daemon.call("restart", service="sup:svc")
    sup2, kids2 = service_children(daemon, other_than=sup)
    assert not {*kids} & {*kids2}
    assert not {sup, *kids} & {p["pid"] for p in daemon.call("ps")}  # stopped, not leaked
    assert daemon.cli("kill", "svc-sup").returncode == 0
    sup3, kids3 = service_children(daemon, other_than=sup2)
    assert service_row(daemon)["restarts"] == 1
    assert service_row(daemon)["last_error"] == "process terminated"
    wait_for(lambda: not {*kids2} & {p["pid"] for p in daemon.call("ps")}, timeout=5,
             what="the killed supervisor's children gone (linked process failed)")
    assert sup3 not in (sup, sup2) and not {*kids3} & {*kids, *kids2}

