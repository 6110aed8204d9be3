"""SPEC section 3 registry calls and section 6: context, the immutable SpawnBuilder, with_name,
with_message."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from actord.testing import Daemon
from tests.api_support import LOCAL_PLACEMENTS, PLACEMENTS, processes
from tests.cluster_support import module_cluster
from tests.conftest import module_daemon

PROCESSES = {
    **processes(
        "api_probes_ctx", "self_register", "own_name", "ctx_parent", "registry_probe",
        "registry_causality", "context_probe", "builder_probe", "with_message_probe",
        "with_name_probe",
    ),
    # must never run: a with_name spawn whose name is taken starts no child
    "api:named_marker": "api_probes:waiter",
}


@pytest.fixture(scope="module")
def single(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Daemon]:
    yield from module_daemon(request, tmp_path_factory, PROCESSES, left=0)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Daemon]]:
    """Nodes n1, n2, n3 for the other-node cases (started only if one runs)."""
    yield from module_cluster(tmp_path_factory, PROCESSES, left=0)


@LOCAL_PLACEMENTS  # names are node-local (SPEC 11): no other-node case
def test_registry(daemon: Daemon, probe_host: str, host: str) -> None:
    """register (default caller, no-op, ALREADY_EXISTS, NOT_FOUND), lookup, unregister."""
    out = daemon.exec("api:registry_probe", probe_host, host)
    assert out["register"] is None and out["lookup_self"]
    assert out["again_same"] is None
    assert out["taken"] == "ALREADY_EXISTS"
    assert out["for_other"] is None and out["lookup_other"]
    assert [row[:1] + row[2:] for row in out["delivered"]] == [["via-name", 1]]
    assert out["unregister"] is True and out["unregister_again"] is False
    assert out["lookup_gone"] == out["send_gone"] == "NOT_FOUND"
    assert out["dead_pid"] == "NOT_FOUND" and out["unknown"] == "NOT_FOUND"
    for label in ("empty", "pid_like", "int"):
        assert out[f"register_{label}"] == out[f"lookup_{label}"] == "INVALID", label
        assert out[f"unregister_{label}"] == "INVALID", label
    assert out["register_bad_pid"] == "INVALID"
    assert out["me_still"]


@LOCAL_PLACEMENTS  # names are node-local (SPEC 11): no other-node case
def test_registry_causality_and_release(daemon: Daemon, probe_host: str, host: str) -> None:
    """A name resolves as soon as its registrant says so, and is released when it ends."""
    out = daemon.exec("api:registry_causality", probe_host, host)
    assert out == {"resolved": True, "released": "NOT_FOUND"}


@PLACEMENTS
def test_context_get_all_and_inheritance(daemon: Daemon, probe_host: str, host: str) -> None:
    """ctx.get/ctx.all see with_context values; children inherit them and may extend them."""
    out = daemon.exec("api:context_probe", probe_host, host)
    assert out["mine"] == {"request_id": "123", "n": 1}
    assert out["get"] == "123"
    assert out["child"] == {"all": {"request_id": "123", "n": 1}, "missing": "NOT_FOUND"}
    assert out["extended"]["all"] == {"request_id": "123", "n": 2, "extra": True}
    assert out["none"] == {"all": {}, "missing": "NOT_FOUND"}


def test_spawn_builder_is_immutable(daemon: Daemon) -> None:
    """Each with_* returns a new builder and leaves the old one as it was; bad input INVALID."""
    out = daemon.exec("api:builder_probe", "t:a", "t:b")
    assert out["distinct"] and out["frozen"]
    assert out["base"] == out["base_again"] == {"a": 1}
    assert out["more"] == {"a": 1, "b": 2}
    assert out["override"] == {"a": 9, "b": 2}
    assert out["invalid"] == dict.fromkeys(out["invalid"], "INVALID")
    assert len(out["invalid"]) == 12


@PLACEMENTS
def test_with_message(daemon: Daemon, probe_host: str, host: str) -> None:
    """Queued messages arrive first, in order, with from_ "" and the usual payload shapes."""
    out = daemon.exec("api:with_message_probe", probe_host, host)
    assert out["rows"] == [
        ["q1", "", 1],
        ["q2", "", [2, [3]]],
        ["q3", "", None],
        ["live", out["me"], 4],
    ]


@LOCAL_PLACEMENTS  # with_name claims a node-local name: no other-node case
def test_with_name_spawn_or_signal(daemon: Daemon, probe_host: str, host: str) -> None:
    """with_name claims first, or starts nothing and signals/monitors/links the holder."""
    out = daemon.exec("api:with_name_probe", probe_host, host)
    assert out["claimed_before_run"] and out["holder_named"]
    assert out["same_pid"] and out["monitored_same"]
    assert out["holder_got"] == [["q", "", 7], ["r", "", None], ["after", out["me"], 8]]
    terminated = {"error": "process terminated"}
    assert out["events"] == [["pid.exit", True, terminated], ["pid.link.down", True, terminated]]
    assert not [p for p in daemon.call("ps") if p["id"] == "api:named_marker"]

