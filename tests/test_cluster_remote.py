"""SPEC 11, third step: calls on another node's processes, and a node's end as its processes'.

Two real daemons (n1, n2) on a real nats-server with ``node_timeout = "1s"``; probes in
``tests/actors/remote_probes.py``. (The SPEC 3-6 semantics across nodes run in the API and
semantics tests' "other-node" placement; node kills, stalls and server restarts in
``tests/test_cluster_nodes.py``.)
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actord.client import Client
from actord.core import wire
from actord.core.batches import encode_batch
from actord.testing import Daemon, stop_all, wait_for
from tests.cluster_support import NatsServer, exec_in_thread, node_row, running_pair, up_nodes
from tests.conftest import config_text

PROCESSES = {f"r:{name}": f"remote_probes:{name}" for name in (
    "idle", "value", "crash", "watch_remote", "exec_remote", "exec_then_end",
    "calls_on", "name_holder", "claim", "watch_name", "monitor_of", "try_terminate", "as_scope")}
NODE_TIMEOUT = 1.0


def config(node: str, url: str, security: str = "") -> str:
    return config_text(PROCESSES, hosts={"t:a": 1, "t:b": 2}, extra=(
        f'[cluster]\nnode = "{node}"\nservers = ["{url}"]\nname = "t"\n'
        f'node_timeout = "{NODE_TIMEOUT}s"\n{security}'))


#: n1 strict: everything allowed but terminating a process of n2 (its PIDs' resource)
NO_REMOTE_KILL = """
[security]
mode = "strict"
[security.policies.all]
actions = ["process.*", "daemon.*"]
resources = ["*"]
effect = "allow"
[security.policies.no_remote_kill]
actions = ["process.terminate"]
resources = ["{n2@*"]
effect = "deny"
[security.scopes.s]
policies = ["all", "no_remote_kill"]
"""


@pytest.fixture
def pair(tmp_path: Path, nats: NatsServer) -> Iterator[tuple[Daemon, Daemon]]:
    """Nodes n1 and n2, each seeing the other up."""
    yield from running_pair(tmp_path, lambda n: config(n, nats.url))


up, row = up_nodes, node_row


def ps_ids(d: Daemon) -> dict[str, str]:
    return {p["pid"]: p["id"] for p in d.call("ps")}


def test_the_cli_spawns_kills_execs_and_cancels_on_another_node(
    pair: tuple[Daemon, Daemon]
) -> None:
    """`actord spawn ID n2@HOST` on n1 starts it on n2; `logs` and `restart-worker` of n2's
    are refused in one line; `kill` from n1 waits for its end there; `exec` on n2's host
    runs the child there and returns its value; `cancel` reaches it."""
    n1, n2 = pair
    spawned = n1.cli("spawn", "r:idle", "n2@t:b")
    assert spawned.returncode == 0, spawned.stderr
    pid = spawned.stdout.strip()
    assert pid.startswith("{n2@t:b|") and ps_ids(n2)[pid] == "r:idle"
    logs = n1.cli("logs", "--pid", pid)  # never an empty answer for another node's process
    assert (logs.returncode, logs.stderr) == (1, "actord: ERROR: logs of a process of another "
                                              "node (n2) are in that node's log: run actord "
                                              "logs on that node\n"), logs
    for argv in (("logs", "--host", "n2@t:b"), ("restart-worker", "n2@t:b", "0")):
        out = n1.cli(*argv)
        assert out.returncode == 1 and out.stderr == (
            f"actord: ERROR: {argv[0]} acts on this node only: run it on node n2\n"), out
    killed = n1.cli("kill", pid)
    assert killed.returncode == 0, killed.stderr
    assert pid not in ps_ids(n2)  # kill waited for the end
    done = n1.call("exec", id="r:value", host="n2@t:a", args=[{"x": [1, 2]}])
    assert done["value"] == {"x": [1, 2]} and done["pid"].startswith("{n2@t:a|"), done
    pid = n1.call("spawn", id="r:idle", host="n2@t:a")
    assert n1.cli("cancel", pid, "--deadline", "200ms").returncode == 0
    wait_for(lambda: pid not in ps_ids(n2), 5, what="the cancelled process gone")
    # our own node named is our own node
    local = n1.call("spawn", id="r:idle", host="n1@t:a")
    assert local.startswith("{n1@t:a|") and local in ps_ids(n1)
    n1.kill(local)


def test_a_trace_of_another_nodes_process_is_kept_by_its_node(
    pair: tuple[Daemon, Daemon]
) -> None:
    """`actord trace PID` on n1 of a process on n2: the session lives on n2 (its `status`
    counts it), the records of a message n1 sends it and of its end come back in order, the
    trace ends with it; a trace whose client goes is closed on n2 too."""
    n1, n2 = pair
    pid = n1.call("spawn", id="r:idle", host="n2@t:a")
    out: list[Any] = []
    reader = threading.Thread(target=lambda: out.append(
        n1.cli("trace", pid, "--json", "--limit", "10")), daemon=True)
    reader.start()
    wait_for(lambda: n2.call("status")["traces"]["sessions"] == 1, 10,
             what="the trace session on n2")
    assert n1.call("status")["traces"]["sessions"] == 0  # kept by n2, not here
    assert n1.cli("send", pid, "hello", "1").returncode == 0
    reader.join(20)
    assert out and out[0].returncode == 0, out
    records = [json.loads(line) for line in out[0].stdout.splitlines()]
    assert [r["kind"] for r in records] == ["receive", "exit"], records
    assert records[0]["topic"] == "hello" and records[0]["from"] == "", records
    wait_for(lambda: n2.call("status")["traces"]["sessions"] == 0, 5, what="n2's session gone")
    # a client that goes away: its session on n2 is closed (told at once, or by its lease)
    other = n1.call("spawn", id="r:idle", host="n2@t:a")
    with Client(n1.socket) as c:
        c.call("trace", None, dest=other, events=None, limit=10, duration=None)
        wait_for(lambda: n2.call("status")["traces"]["sessions"] == 1, 5, what="traced")
    wait_for(lambda: n2.call("status")["traces"]["sessions"] == 0, 5,
             what="the session closed on n2 when its client went")
    n2.kill(other)


def test_permissions_are_checked_for_remote_targets(tmp_path: Path, nats: NatsServer) -> None:
    """SPEC 7 across nodes: n1's scope `s` denies process.terminate on n2's PIDs; a process
    on n1 in that scope gets PERMISSION_DENIED for a target on n2, and may still terminate a
    local one."""
    n1 = Daemon(tmp_path / "n1", config("n1", nats.url, NO_REMOTE_KILL))
    n2 = Daemon(tmp_path / "n2", config("n2", nats.url))
    try:
        n1.start()
        n2.start()
        wait_for(lambda: len(up(n1)) == len(up(n2)) == 2, 5, what="n1 and n2 up")
        remote = n2.call("spawn", id="r:idle", host="t:a")
        local = n1.call("spawn", id="r:idle", host="t:b")
        assert n1.exec("r:as_scope", "t:a", "s", remote) == "PERMISSION_DENIED"
        assert remote in ps_ids(n2)
        assert n1.exec("r:as_scope", "t:a", "s", local) == "ok"
        assert n1.exec("r:try_terminate", "t:a", remote) == "ok"  # as admin: allowed
    finally:
        stop_all((n1, n2))


def test_unknown_node_or_host_is_not_found(pair: tuple[Daemon, Daemon]) -> None:
    """A host of a node nobody heard of, or an unknown host of a live node: NOT_FOUND
    (exit 1, one line saying which)."""
    n1, _ = pair
    for host, says in (("n9@t:a", "unknown node 'n9'"), ("n2@t:zz", "unknown host 't:zz'")):
        r = n1.cli("spawn", "r:idle", host)
        assert r.returncode == 1 and says in r.stderr and r.stderr.count("\n") == 1, r.stderr
    r = n1.cli("kill", "{n2@t:a|0x1a23c623d2300002}")
    assert r.returncode == 1 and "not alive" in r.stderr, r.stderr


def test_calls_across_nodes_and_exec_both_ways(pair: tuple[Daemon, Daemon]) -> None:
    """From a process on n1: monitor (twice: ALREADY_EXISTS), link, unlink, unmonitor and
    terminate a process on n2, after which no event arrives; a monitor of it, once it
    ended, is NOT_FOUND;
    exec on n2 returns the child's value, and its failure as ProcessFailedError."""
    n1, n2 = pair
    target = n2.call("spawn", id="r:idle", host="t:b")
    got = n1.exec("r:calls_on", "t:a", target)
    assert got == {"twice": "AlreadyExistsError", "extra": 0}, got
    wait_for(lambda: target not in ps_ids(n2), 5, what="the target ended")
    assert n1.exec("r:monitor_of", "t:a", target) == "NOT_FOUND"
    got = n1.exec("r:exec_remote", "t:a", "n2@t:b", [1, "x"])
    assert got == {"ok": [1, "x"], "failed": "RuntimeError: far"}, got


def test_an_exec_caller_that_ends_cancels_its_child_on_the_other_node(
    pair: tuple[Daemon, Daemon]
) -> None:
    """An exec caller on n1 terminated while its child runs on n2: the child is cancelled
    there (it ends), nothing is left on either node."""
    n1, n2 = pair
    before = set(ps_ids(n2))
    thread, out = exec_in_thread(n1, "r:exec_then_end", "n2@t:a", timeout=30)
    child = wait_for(lambda: next((p for p, i in ps_ids(n2).items()
                                   if i == "r:idle" and p not in before), None), 10,
                     what="the exec child running on n2")
    caller = next(p for p, i in ps_ids(n1).items() if i == "r:exec_then_end")
    n1.kill(caller)
    wait_for(lambda: child not in ps_ids(n2), 5, what="the child cancelled on n2")
    thread.join(10)
    assert out and out[0] == {"error": "process terminated", "pid": caller}, out


def test_kill_9_of_a_node_is_one_exit_and_one_link_down_per_child(
    pair: tuple[Daemon, Daemon], tmp_path: Path
) -> None:
    """A process on n1 linked to and monitoring 5 processes on n2 (trapping links): n2
    killed -9; exactly one EXIT and one LINK_DOWN per child, each "node down: n2", within
    node_timeout + 1 s, and nothing more."""
    n1, n2 = pair
    n = 5
    thread, out = exec_in_thread(n1, "r:watch_remote", "n2@t:b", n, timeout=30)
    wait_for(lambda: sum(1 for i in ps_ids(n2).values() if i == "r:idle") == n, 10,
             what="the children running on n2")
    killed_at = time.time()
    n2.kill9()
    thread.join(30)
    assert out, "no result"
    result = out[0]["value"]
    assert result["extra"] == 0, result
    kinds = sorted((k, f) for k, f, _, _ in result["events"])
    assert kinds == sorted([("pid.exit", c) for c in result["children"]]
                           + [("pid.link.down", c) for c in result["children"]]), result
    assert {e for _, _, e, _ in result["events"]} == {"node down: n2"}
    latest = max(t for *_, t in result["events"])
    assert latest - killed_at < NODE_TIMEOUT + 1.0, latest - killed_at


def test_global_names_are_claimed_once_in_the_cluster_and_released_before_the_exit(
    pair: tuple[Daemon, Daemon]
) -> None:
    """A process on n2 registers `global:db`: n1 resolves it (registry, CLI send by name);
    a claim from n1 is ALREADY_EXISTS; when the holder ends, a monitor on n1 finds the name
    released at its EXIT, and can claim it."""
    n1, n2 = pair
    holder = n2.call("spawn", id="r:name_holder", host="t:a", args=["global:db"])
    wait_for(lambda: n1.call("registry").get("global:db") == holder, 5,
             what="n1 resolving global:db")
    assert n2.call("registry")["global:db"] == holder
    assert n1.exec("r:claim", "t:a", "global:db") == "ALREADY_EXISTS"
    assert n1.exec("r:claim", "t:a", "global:db") == "ALREADY_EXISTS"
    got = n1.exec("r:watch_name", "t:a", "global:db")
    assert got == {"exit": ["pid.exit", True, {"value": "bye"}], "at_exit": None,
                   "claim": "ok"}, got
    # the claimer ended at once: released again, on both nodes
    wait_for(lambda: "global:db" not in n2.call("registry"), 5, what="released on n2")
    assert "global:db" not in n1.call("registry")


def test_a_node_going_down_releases_its_global_names(pair: tuple[Daemon, Daemon]) -> None:
    """kill -9 of the node holding `global:job`: released on the other node (within
    node_timeout + 1 s), which can then claim it."""
    n1, n2 = pair
    holder = n2.call("spawn", id="r:name_holder", host="t:a", args=["global:job"])
    wait_for(lambda: n1.call("registry").get("global:job") == holder, 5, what="n1 sees it")
    n2.kill9()
    wait_for(lambda: "global:job" not in n1.call("registry"), NODE_TIMEOUT + 1.5,
             what="released on n1")
    assert n1.exec("r:claim", "t:a", "global:job") == "ok"


_pid = st.sampled_from(["{n2@t:a|0x00001}", "{n1@t:a|0x00002}", "", "{n2@t:b|0x00003}",
                        "x", "{n3@t:a|0x00001}"])
_leaf = st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1), st.floats(),
                  st.text(max_size=12), st.binary(max_size=12), _pid)
_value = st.recursive(_leaf, lambda c: st.one_of(st.lists(c, max_size=4),
                                                 st.dictionaries(st.text(max_size=6), c,
                                                                 max_size=3)), max_leaves=10)
_op = st.sampled_from([wire.SEND, wire.EVENT, wire.EXITED, wire.CALL, wire.REPLY, 99])
_call = st.sampled_from(["spawn", "terminate", "cancel", "monitor", "unmonitor", "link",
                         "unlink", "register"])
_frame = st.one_of(
    st.tuples(_op, _pid, _pid, st.text(max_size=5), st.binary(max_size=8)).map(list),
    st.tuples(st.just(wire.CALL), st.integers(0, 9), _pid, _call,
              st.one_of(st.dictionaries(st.sampled_from(["dest", "deadline", "reason"]),
                                        _value, max_size=3), st.lists(_value, max_size=10),
                        _value)).map(list),
    st.tuples(st.just(wire.EVENT), _pid, st.sampled_from(["pid.cancel", "exec.exit", "x"]),
              _pid, _value, _value, _value).map(list),
    st.tuples(st.just(wire.EXITED), _pid, _value).map(list),
    st.tuples(st.just(wire.REPLY), st.integers(0, 9), _value, _value).map(list),
    st.lists(_value, max_size=6),
)


def test_frames_from_another_node_fuzzed_never_crash_the_router(
    pair: tuple[Daemon, Daemon], nats: NatsServer
) -> None:
    """Batches as n1 with any frames (hypothesis), published on n2's subject: n2's router
    never fails (it answers after each one, its workers keep their OS pids), malformed ones
    break the pair with n1 (counted, logged), and the real n1 and n2 still talk after."""
    import nats as nats_py

    n1, n2 = pair
    inc1, inc2 = row(n2, "n1")["incarnation"], row(n2, "n2")["incarnation"]
    workers = {w["os_pid"] for h in n2.call("status")["hosts"] for w in h["workers"]}
    loop = asyncio.new_event_loop()
    nc = loop.run_until_complete(nats_py.connect(nats.url))
    seqs = iter(range(10**9))

    @settings(max_examples=150, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
    @given(st.lists(_frame, max_size=4), st.integers(0, 3))
    def one(frames: list[Any], session: int) -> None:
        try:
            data = encode_batch("n1", inc1, inc2, session, next(seqs), frames)
        except (TypeError, ValueError, OverflowError):
            return
        loop.run_until_complete(nc.publish("t.node.n2", data))
        loop.run_until_complete(nc.flush())
        assert n2.call("ping") is not None

    try:
        one()
        loop.run_until_complete(nc.publish("t.node.n2", msgpack.packb(["n1", 1, 2])))
        loop.run_until_complete(nc.close())
    finally:
        loop.close()
    assert n2.proc is not None and n2.proc.poll() is None
    assert {w["os_pid"] for h in n2.call("status")["hosts"] for w in h["workers"]} == workers
    assert row(n2, "n2")["malformed"] > 0 and row(n2, "n1")["breaks"] > 0
    assert "Traceback" not in n2.log()
    # the real pair meets again: a call and its answer cross both ways
    assert n1.exec("r:value", "n2@t:a", 7) == 7
    assert n2.exec("r:value", "n1@t:a", 8) == 8
