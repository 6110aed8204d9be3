"""SPEC section 3: identity, send and payload shapes, listen, channels, Message and Event."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from actord.testing import Daemon, wait_for
from tests.api_support import PLACEMENTS, probe_pid_host, processes
from tests.cluster_support import module_cluster
from tests.conftest import module_daemon

PROCESSES = processes(
    "api_probes", "identity", "identity_leaf", "payload_shapes", "send_errors",
    "listen_routing", "channels", "message_event_attrs",
)
PID_RE = re.compile(r"^\{(?P<host>[^|]+)\|0x[0-9a-f]{5,}\}$")


@pytest.fixture(scope="module")
def single(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Daemon]:
    yield from module_daemon(request, tmp_path_factory, PROCESSES)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Daemon]]:
    """Nodes n1, n2, n3 for the other-node cases (started only if one runs)."""
    yield from module_cluster(tmp_path_factory, PROCESSES)


@PLACEMENTS
def test_pid_id_and_channels_identity(daemon: Daemon, probe_host: str, host: str) -> None:
    """pid() is a PID of the caller's host, id() its process id, inbox()/events() are stable."""
    out = daemon.exec("api:identity", probe_host, host)
    m = PID_RE.match(out["pid"])
    assert m and m["host"] == probe_pid_host(probe_host, host)
    assert out["id"] == "api:identity"
    assert out["inbox_same"] and out["events_same"]
    child_pid, child_id = out["child"]
    m = PID_RE.match(child_pid)
    assert m and m["host"] == host and child_pid != out["pid"]
    assert child_id == "api:identity_leaf"


def test_event_constants(daemon: Daemon) -> None:
    """process.event.CANCEL/EXIT/LINK_DOWN are the SPEC strings."""
    out = daemon.exec("api:identity", "t:a", "t:a")
    assert out["events"] == ["pid.cancel", "pid.exit", "pid.link.down"]


@PLACEMENTS
def test_payload_shapes(daemon: Daemon, probe_host: str, host: str) -> None:
    """No values -> None, one -> the value, several -> a list; tuples, bytes, int keys."""
    out = daemon.exec("api:payload_shapes", probe_host, host)
    me = out["me"]
    assert out["rows"] == [
        ["none", me, None],
        ["one", me, 1],
        ["many", me, [1, "a", None]],
        ["tuple", me, [1, 2]],
        ["bytes", me, b"\x00\xff"],
        ["intkeys", me, {1: "one", 2: [True, 1.5]}],
        ["nested", me, {"l": [[1], {"b": b"x"}]}],
    ]
    assert out["bytes_is_bytes"]
    assert out["args"] == [[1, 2], b"\x01", {3: "three"}, None]
    assert out["args_bytes_is_bytes"] and out["args_int_key"]


@PLACEMENTS
def test_send_errors_and_dead_letters(
    daemon: Daemon, target: Daemon, probe_host: str, host: str
) -> None:
    """Bad topics, values, PIDs and names are INVALID, unknown names NOT_FOUND, dead PIDs
    silent (a dead letter where the PID lived), and every spelling of a live PID reaches it."""
    before = target.call("status")["dead_letters"]
    out = daemon.exec("api:send_errors", probe_host, host)
    for label in ("empty", "at", "int", "none"):
        assert out[f"topic_{label}"] == "INVALID", label
        assert out[f"listen_{label}"] == "INVALID", label
    assert out["value_set"] == out["value_object"] == out["value_nested"] == "INVALID"
    assert out["spawn_arg_set"] == "INVALID"
    assert out["unknown_name"] == "NOT_FOUND"
    assert out["bad_dest"] == "INVALID"
    for label in ("garbage", "empty", "nohex", "long"):  # malformed PIDs: INVALID, not dropped
        assert out[f"pid_{label}_send"] == out[f"pid_{label}_monitor"] == "INVALID", label
    assert out["name_newline"] == out["name_long"] == "INVALID"
    assert out["name_max"] is None
    assert out["pong_short"] and out["pong_upper"] and out["pong_zeros"]  # one PID, any spelling
    assert out["lookup_noncanonical"] == "ALREADY_EXISTS"  # the same monitored child
    assert out["ok"] is None and out["pong"]
    assert out["dead_pid"] is None
    wait_for(lambda: target.call("status")["dead_letters"] >= before + 1, 5,
             what="the dead letter counted")


@PLACEMENTS
def test_listen_routing(daemon: Daemon, probe_host: str, host: str) -> None:
    """listen() takes its topic (payloads or Messages), the inbox the rest, unlisten() undoes."""
    out = daemon.exec("api:listen_routing", probe_host, host)
    assert out["held"] == "early"
    assert out["raw"] == [1, [4, 5]]
    assert out["full"] == ["full", True, 3]
    assert out["other"] == [2, True]
    assert out["dup_listen"] == "ALREADY_EXISTS"
    assert out["closed_after_unlisten"] is True
    assert out["unlisten_twice"] == out["unlisten_inbox"] == "INVALID"
    assert out["after_unlisten"] == [6, True]


def test_channels_in_a_process(daemon: Daemon) -> None:
    """select (order, timeout), receive_nowait (Empty), len, close (Closed), async for."""
    out = daemon.exec("api:channels", "t:a")
    assert out["timeout"] is True
    assert out["empty"] is True
    assert out["select_order"] == [True, 2, True, 1]
    assert out["len"] == 3
    assert out["after_close"] == [0, 1, 2]
    assert out["closed"] is True
    assert out["async_for"] == [0, 1, 2]
    assert out["select_bad"] == "INVALID"


@PLACEMENTS
def test_message_and_event_attributes(daemon: Daemon, probe_host: str, host: str) -> None:
    """Message: topic/from_/payload; Event: kind/from_/result/deadline/reason for each kind."""
    out = daemon.exec("api:message_event_attrs", probe_host, host)
    pids, me = out["pids"], out["me"]
    assert out["message"] == ["hello", True, ["w", 1]]
    assert out["exit_value"] == {"kind": "pid.exit", "from": pids["ok"], "result": {"value": ["v"]},
                                 "deadline": None, "reason": None}
    assert out["exit_error"] == {"kind": "pid.exit", "from": pids["bad"],
                                 "result": {"error": "ValueError: bad thing"},
                                 "deadline": None, "reason": None}
    assert out["link_down"] == {"kind": "pid.link.down", "from": pids["linked"],
                                "result": {"error": "ValueError: linked thing"},
                                "deadline": None, "reason": None}
    cancel = out["cancel"]
    assert cancel["kind"] == "pid.cancel" and cancel["from"] == me
    assert cancel["result"] is None and cancel["reason"] == "why"
    assert isinstance(cancel["deadline"], float) and cancel["deadline_ok"]
    assert out["cancel_plain"] == {"kind": "pid.cancel", "from": me, "result": None,
                                   "deadline": None, "reason": None}
