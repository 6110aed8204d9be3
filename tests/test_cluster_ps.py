"""SPEC 11: ``actord ps --cluster`` asks every up node over NATS request-reply (node_queries.py).

One real nats-server and three real daemons for the module, ``node_timeout = "8s"`` so a
node SIGSTOPped for a few seconds stays up (it must be asked, and not answer). Other nodes'
misbehaviour is played from the test with nats-py: a fake node that heartbeats and answers
its query subject with garbage, or with a cut answer; garbage requests to a real node.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actord import ids
from actord.control.node_queries import (
    REPLY_WAIT,
    check_info_reply,
    check_reply,
    check_request,
    check_top_reply,
    check_trace_reply,
    pack_reply,
)
from actord.core.nodes import new_incarnation
from actord.testing import Daemon, wait_for
from tests.cluster_support import NatsServer, cluster_config
from tests.conftest import config_text

PROCESSES = {"t:idle": "semantics_probes:idle"}
NODES = ("n1", "n2", "n3")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    """One nats-server for the module."""
    s = NatsServer(tmp_path_factory.mktemp("nats")).start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory,
            server: NatsServer) -> Iterator[dict[str, Daemon]]:
    """n1, n2, n3 all up, each running one idle process (stopped cleanly at the end)."""
    base = tmp_path_factory.mktemp("cluster")
    ds = {n: Daemon(base / n, cluster_config(n, [server.url], PROCESSES, node_timeout="8s"))
          for n in NODES}
    try:
        for d in ds.values():
            d.start()
        wait_for(lambda: all(up(d) == set(NODES) for d in ds.values()), 10, what="all up")
        pids = {n: d.call("spawn", id="t:idle", host="t:a") for n, d in ds.items()}
        yield ds
        for n, d in ds.items():
            d.kill(pids[n])  # it ignores CANCEL: the stop would wait shutdown_timeout for it
            assert "Traceback" not in d.log(), d.log()
    finally:
        for d in ds.values():
            if d.proc is not None and d.proc.poll() is None:
                assert d.stop() == 0, d.log()


def up(d: Daemon) -> set[str]:
    return {r["node"] for r in d.call("nodes") if r["state"] == "up"}


def ps_cluster(d: Daemon, *args: str) -> tuple[list[dict[str, Any]], str, float]:
    """``actord ps --cluster --json ARGS`` on ``d``: rows, stderr and seconds taken."""
    t0 = time.monotonic()
    out = d.cli("ps", "--cluster", "--json", *args)
    took = time.monotonic() - t0
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout), out.stderr, took


class FakeNode:
    """A node played by the test: heartbeats as ``node`` and answers its query subject
    with ``answer(request_bytes)``, on its own NATS connection in a thread."""

    def __init__(self, url: str, node: str, answer: Callable[[bytes], bytes]) -> None:
        self.url, self.node, self.answer = url, node, answer
        self.stop = threading.Event()
        self.asked = 0
        self.thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    async def _run(self) -> None:
        import nats as nats_py

        nc = await nats_py.connect(self.url)

        async def on_request(msg: Any) -> None:
            self.asked += 1
            await msg.respond(self.answer(msg.data))

        await nc.subscribe(f"t.ctl.{self.node}", cb=on_request)
        inc = new_incarnation(time.time())
        while not self.stop.is_set():
            await nc.publish("t.hb", msgpack.packb(
                {"node": self.node, "incarnation": inc, "processes": 1, "ts": time.time()}))
            await asyncio.sleep(0.2)
        await nc.close()

    def __enter__(self) -> FakeNode:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(10)


def publish(url: str, subject: str, *datas: bytes, reply: bool = False) -> int:
    """Publish raw bytes to ``subject`` (as requests when ``reply``); how many got an answer
    within 0.3 s."""
    import nats as nats_py

    async def run() -> int:
        nc = await nats_py.connect(url)
        answered = 0
        for data in datas:
            if reply:
                try:
                    await nc.request(subject, data, timeout=0.3)
                    answered += 1
                except Exception:  # timeout: not answered
                    pass
            else:
                await nc.publish(subject, data)
        await nc.flush()
        await nc.close()
        return answered

    return asyncio.run(run())


def test_every_node_lists_every_nodes_processes(cluster: dict[str, Daemon]) -> None:
    """From any node: the processes of all three, each row's node naming its PID's node;
    filters apply across nodes; the text output has a NODE column."""
    for name, d in cluster.items():
        rows, err, _ = ps_cluster(d)
        assert err == "", err
        assert sorted(r["node"] for r in rows) == list(NODES), rows
        assert all(r["pid"].startswith("{" + r["node"] + "@") for r in rows), rows
        assert all(set(r) >= {"pid", "id", "host", "worker", "state", "names", "mailbox"}
                   for r in rows), rows
        assert rows[0]["node"] == name  # its own first
    rows, _, _ = ps_cluster(cluster["n1"], "--host", "t:a", "--id", "t:*", "--state", "waiting")
    assert sorted(r["node"] for r in rows) == list(NODES), rows
    rows, _, _ = ps_cluster(cluster["n1"], "--host", "t:none")
    assert rows == []
    text = cluster["n2"].cli("ps", "--cluster")
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert lines[0].startswith("NODE ") and len(lines) == 4, text.stdout
    assert [ln.split()[0] for ln in lines[1:]] == ["n2", "n1", "n3"], text.stdout
    plain = cluster["n1"].call("ps")
    assert len(plain) == 1 and "node" not in plain[0]  # a plain ps is unchanged


def test_ps_of_another_nodes_host(cluster: dict[str, Daemon]) -> None:
    """`ps --host n2@t:a` on n1 lists n2's processes of that host (rows with "node"); an
    unknown host on n2 or an unknown node is NOT_FOUND (exit 1); n1@t:a on n1 is local."""
    n1 = cluster["n1"]
    out = n1.cli("ps", "--host", "n2@t:a", "--json")
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    assert [r["node"] for r in rows] == ["n2"] and rows[0]["pid"].startswith("{n2@t:a|"), rows
    rows, err, _ = ps_cluster(n1, "--host", "n3@t:a")
    assert [r["node"] for r in rows] == ["n3"] and err == "", (rows, err)
    for host, why in (("n2@t:none", "unknown host 't:none' on node 'n2'"),
                      ("n9@t:a", "node 'n9' is unknown")):
        out = n1.cli("ps", "--host", host)
        assert out.returncode == 1 and "NOT_FOUND" in out.stderr and why in out.stderr, out
    local = n1.call("ps", host="n1@t:a")
    assert [r["pid"][:4] for r in local] == ["{n1@"] and "node" not in local[0]


def test_info_of_another_nodes_process_is_asked_of_its_node(
    cluster: dict[str, Daemon]
) -> None:
    """`info` of n2's process on n1 is n2's own answer (SPEC 12's keys, the true state, its
    edges), in JSON and as text; a PID n2 does not have, or of a node nobody knows, is
    NOT_FOUND in one line."""
    n1, n2 = cluster["n1"], cluster["n2"]
    [row] = n2.call("ps")
    there, here = n2.call("info", dest=row["pid"]), n1.call("info", dest=row["pid"])
    assert list(here) == list(there) == [
        "pid", "id", "host", "worker", "state", "names", "parent", "links", "monitors",
        "monitored_by", "trap_links", "mailbox", "sent", "received", "started", "stack"]
    same = ("pid", "id", "host", "worker", "state", "names", "parent", "links", "monitors",
            "monitored_by", "trap_links", "mailbox", "started")
    assert {k: here[k] for k in same} == {k: there[k] for k in same}
    assert (here["state"], here["links"], here["host"]) == ("waiting:inbox", [], "t:a"), here
    out = n1.cli("info", row["pid"])
    assert out.returncode == 0 and row["pid"] in out.stdout and "waiting:inbox" in out.stdout
    host, serial = ids.parse_pid(row["pid"]) or ("", 0)
    dead = ids.format_pid(host, serial + 2**20)  # a serial n2 has not given yet
    for pid, why in ((dead, "is not alive"), ("{n9@t:a|0x00001}", "node 'n9' is unknown")):
        out = n1.cli("info", pid)
        assert out.returncode == 1 and out.stdout == "" and out.stderr.count("\n") == 1, out
        assert "NOT_FOUND" in out.stderr and why in out.stderr, out


def test_top_of_another_nodes_host_is_that_nodes_sample(cluster: dict[str, Daemon]) -> None:
    """`top --host n2@t:a` on n1 is n2's own sample (its node line, its worker's OS pid, its
    process), through the JSON and the CLI; an unknown host there, or an unknown node, is
    NOT_FOUND in one line; a bad sort is refused before anything is asked."""
    n1, n2 = cluster["n1"], cluster["n2"]
    [row] = n2.call("ps")
    sample = n1.call("top", host="n2@t:a", sort="mailbox", limit=5)
    assert sample["node"]["os_pid"] == n2.pid and sample["sort"] == "mailbox", sample
    [h] = sample["hosts"]
    workers = [w for hh in n2.call("status")["hosts"] if hh["name"] == "t:a"
               for w in hh["workers"]]
    assert h["name"] == "t:a" and [w["os_pid"] for w in h["workers"]] == [
        w["os_pid"] for w in workers], (h, workers)
    assert [p["pid"] for p in sample["processes"]] == [row["pid"]], sample
    out = n1.cli("top", "--once", "--json", "--host", "n2@t:a")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["node"]["os_pid"] == n2.pid
    for host, why in (("n2@t:zz", "unknown host 't:zz' on node 'n2'"),
                      ("n9@t:a", "node 'n9' is unknown")):
        out = n1.cli("top", "--once", "--json", "--host", host)
        assert out.returncode == 1 and out.stderr.count("\n") == 1, out
        assert "NOT_FOUND" in out.stderr and why in out.stderr, out
    out = n1.cli("top", "--once", "--json", "--host", "n2@t:a", "--sort", "size")
    assert out.returncode != 0 and out.stdout == "", out


def test_a_node_that_does_not_answer_is_named_and_never_waited_for_long(
    cluster: dict[str, Daemon]
) -> None:
    """n3 SIGSTOPped (still up: shorter than node_timeout): n1's ps --cluster returns in
    about REPLY_WAIT with n1's and n2's rows and n3 missing; after SIGCONT n3 answers again
    and nothing was declared down. (The CLI's stderr line for a missing node: below.)"""
    n1, n3 = cluster["n1"], cluster["n3"]
    os.kill(n3.pid, signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        answer = n1.call("ps", cluster=True)
        took = time.monotonic() - t0
    finally:
        os.kill(n3.pid, signal.SIGCONT)
    assert sorted(r["node"] for r in answer["processes"]) == ["n1", "n2"], answer
    assert answer["missing"] == ["n3"] and answer["wait"] == REPLY_WAIT, answer
    assert REPLY_WAIT - 0.1 < took < REPLY_WAIT + 3, took
    wait_for(lambda: sorted(r["node"] for r in ps_cluster(n1)[0]) == list(NODES), 10,
             what="n3 answering again")
    assert "node n3 down" not in n1.log()


def test_malformed_requests_are_dropped_and_counted(
    cluster: dict[str, Daemon], server: NatsServer
) -> None:
    """Garbage on n2's query subject: no answer, counted, logged once; n2 keeps answering."""
    n2 = cluster["n2"]
    before = n2.call("status")["cluster"]["queries"]
    bad = [b"\xc1", msgpack.packb([1, 2]), msgpack.packb({"op": "kill", "from": "x"}),
           msgpack.packb({"op": "ps"}), msgpack.packb({"op": "ps", "from": "x", "host": 7}),
           msgpack.packb({"op": "ps", "from": "x", "host": "h" * 300})]
    assert publish(server.url, "t.ctl.n2", *bad, reply=True) == 0
    good = msgpack.packb({"op": "ps", "from": "x", "host": None})
    assert publish(server.url, "t.ctl.n2", good) == 0  # no reply subject: nobody to answer
    after = wait_for(lambda: (q := n2.call("status")["cluster"]["queries"])["malformed"]
                     == before["malformed"] + len(bad) + 1 and q, 5, what="7 counted")
    assert after["answered"] == before["answered"]
    assert n2.log().count("malformed query on t.ctl.n2 dropped") == 1
    assert publish(server.url, "t.ctl.n2", good, reply=True) == 1
    assert sorted(r["node"] for r in ps_cluster(cluster["n1"])[0]) == list(NODES)


def test_malformed_or_cut_answers_from_a_node(
    cluster: dict[str, Daemon], server: NatsServer
) -> None:
    """A node answering garbage is reported missing (the reply counted); a node whose answer
    was cut has its rows listed and the cut said on stderr."""
    n1 = cluster["n1"]
    row = {"pid": "{n8@t:a|0x00001}", "id": "t:x", "host": "t:a", "worker": 0,
           "state": "running", "names": ["x"], "mailbox": 0}
    cut = msgpack.packb({"node": "n8", "incarnation": 1, "processes": [row], "omitted": 5})
    bad_before = n1.call("status")["cluster"]["queries"]["bad_replies"]
    with FakeNode(server.url, "n8", lambda _: cut) as n8, \
            FakeNode(server.url, "n9", lambda _: msgpack.packb({"node": "n9",
                                                                "processes": [{"pid": 1}]})):
        wait_for(lambda: {"n8", "n9"} <= up(n1), 5, what="n8 and n9 up on n1")
        rows, err, _ = ps_cluster(n1)
        assert n8.asked >= 1
    assert sorted(r["node"] for r in rows) == [*NODES, "n8"], rows
    assert [r for r in rows if r["node"] == "n8"] == [dict(row, node="n8")]
    assert err.splitlines() == [
        f"actord: node n9 did not answer within {REPLY_WAIT}s: its processes are not listed",
        "actord: node n8: 5 processes not listed (its answer was cut to NATS's max_payload)",
    ], err
    assert n1.call("status")["cluster"]["queries"]["bad_replies"] == bad_before + 1


def test_a_single_node_lists_its_own(tmp_path: Path) -> None:
    """Without [cluster], ps --cluster lists this node's processes, tagged with its name."""
    with Daemon(tmp_path, config_text(PROCESSES, hosts={"t:a": 1})) as d:
        pid = d.call("spawn", id="t:idle", host="t:a")
        rows, err, _ = ps_cluster(d)
        assert err == "" and [r["pid"] for r in rows] == [pid]
        assert rows[0]["node"] == d.call("status")["node"]
        d.kill(pid)


def test_answers_are_cut_to_fit_and_checked() -> None:
    """pack_reply cuts rows to the limit and counts them; check_reply and check_request refuse
    malformed bytes and never raise."""
    rows = [{"pid": f"{{n2@t:a|0x{i:05x}}}", "id": "t:idle", "host": "t:a", "worker": 0,
             "state": "running", "names": [], "mailbox": 0} for i in range(2000)]
    data = pack_reply("n2", 7, rows, 10_000)
    assert len(data) <= 10_000
    got, omitted, known = check_reply(data, "n2") or ([], -1, False)
    assert 0 < len(got) < 2000 and len(got) + omitted == 2000 and known
    assert [r["pid"] for r in got] == [r["pid"] for r in rows[:len(got)]]
    assert check_reply(pack_reply("n2", 7, rows, 1 << 20), "n2") == (
        [dict(r, node="n2") for r in rows], 0, True)
    assert check_reply(pack_reply("n2", 7, None, 1 << 20), "n2") == ([], 0, False)
    assert check_reply(data, "n3") is None  # another node's answer
    for bad in (b"", b"\xc1", msgpack.packb(None), msgpack.packb({"node": "n2"}),
                msgpack.packb({"node": "n2", "processes": [dict(rows[0], worker=True)]}),
                msgpack.packb({"node": "n2", "processes": [dict(rows[0], names=[1])]}),
                msgpack.packb({"node": "n2", "processes": [], "omitted": -1}),
                msgpack.packb({"node": "n2", "processes": [], "known": 1})):
        assert check_reply(bad, "n2") is None, bad
    assert check_request(msgpack.packb({"op": "ps", "from": "n1", "host": "t:a"})) == (
        "ps", "t:a")
    assert check_request(msgpack.packb({"op": "info", "from": "n1", "pid": "{n2@t:a|0x00001}"})
                         ) == ("info", "{n2@t:a|0x00001}")
    for bad in (b"\x00", msgpack.packb({"op": "info", "from": "n1", "pid": 3}),
                msgpack.packb({"op": "kill", "from": "n1"}), msgpack.packb({"op": "ps"})):
        assert check_request(bad) is None, bad
    info = {"pid": "{n2@t:a|0x00001}", "id": "t:idle", "host": "t:a", "worker": 0,
            "state": "waiting:inbox", "names": [], "parent": None, "links": [], "monitors": [],
            "monitored_by": [], "trap_links": False, "mailbox": {"held": 0}, "sent": 0,
            "received": 1, "started": 1.5, "stack": ["x.py:1 in main"]}
    assert check_info_reply(msgpack.packb({"node": "n2", "info": info}), "n2") == (info,)
    assert check_info_reply(msgpack.packb({"node": "n2", "info": None}), "n2") == (None,)
    for bad_info in ({**info, "worker": -1}, {**info, "links": [1]}, {**info, "sent": True},
                     {**info, "mailbox": {"inbox": "1"}}, {**info, "extra": 1},
                     {k: v for k, v in info.items() if k != "stack"}):
        assert check_info_reply(msgpack.packb({"node": "n2", "info": bad_info}), "n2") is None
    assert check_info_reply(msgpack.packb({"node": "n3", "info": info}), "n2") is None
    assert check_request(msgpack.packb({"op": "top", "from": "n1", "host": "t:a",
                                        "sort": "rate", "limit": 5})) == (
        "top", {"host": "t:a", "sort": "rate", "limit": 5})
    for bad_top in ({"sort": "size"}, {"limit": 501}, {"limit": -1}, {"host": None}):
        assert check_request(msgpack.packb({"op": "top", "from": "n1", "host": "t:a",
                                            "sort": "rate", "limit": 5, **bad_top})) is None
    sample = {"ts": 12.5, "sort": "mailbox",
              "node": {"node": "n2", "uptime": 3.0, "os_pid": 10, "cpu_seconds": 0.5,
                       "rss": 1000, "processes": 1, "routed": 2, "dead_letters": 0},
              "hosts": [{"name": "t:a", "workers": [
                  {"index": 0, "os_pid": 11, "state": "running", "processes": 1, "restarts": 0,
                   "cpu_seconds": None, "rss": None, "sent": 1, "received": 2, "mailbox": 0,
                   "dead_letters": 0}]}],
              "processes": [{"pid": "{n2@t:a|0x00001}", "id": "t:idle", "mailbox": 0, "sent": 1,
                             "received": 2, "rate": None, "host": "t:a", "worker": 0,
                             "names": ["x"]}]}
    assert check_top_reply(msgpack.packb({"node": "n2", "sample": sample}), "n2") == (sample,)
    assert check_top_reply(msgpack.packb({"node": "n2", "sample": None}), "n2") == (None,)
    worker = sample["hosts"][0]["workers"][0]  # type: ignore[index]
    for bad_sample in ({**sample, "sort": "size"}, {**sample, "extra": 1},
                       {**sample, "node": {**sample["node"], "rss": 1.5}},  # type: ignore[dict-item]
                       {**sample, "hosts": [{"name": "t:a", "workers": [{**worker, "rss": "1"}]}]},
                       {**sample, "processes": [{"pid": 1}]}):
        assert check_top_reply(msgpack.packb({"node": "n2", "sample": bad_sample}), "n2") is None
    assert check_top_reply(msgpack.packb({"node": "n3", "sample": sample}), "n2") is None
    start = {"op": "trace", "from": "n1", "pid": "{n2@t:a|0x00001}", "events": ["send"],
             "limit": 5, "duration": None}
    assert check_request(msgpack.packb(start)) == ("trace", {
        "from": "n1", "pid": "{n2@t:a|0x00001}", "kinds": frozenset({"send"}), "limit": 5,
        "duration": None})
    read = {"op": "trace_read", "from": "n1", "pid": "{n2@t:a|0x00001}", "session": 3,
            "wait": 1.0, "stop": False}
    assert check_request(msgpack.packb(read))[0] == "trace_read"  # type: ignore[index]
    for bad in ({**start, "events": ["eat"]}, {**start, "limit": 0},
                {**start, "duration": float("inf")}, {**read, "wait": 11},
                {**read, "session": "3"}, {**read, "stop": 1}):
        assert check_request(msgpack.packb(bad)) is None, bad
    records = {"records": [{"ts": 1.5, "kind": "send", "to": "x"}], "missed": 0, "end": None}
    assert check_trace_reply(msgpack.packb({"node": "n2", "read": records}), "n2") == (
        "read", records)
    assert check_trace_reply(msgpack.packb({"node": "n2", "session": 4}), "n2") == ("session", 4)
    assert check_trace_reply(msgpack.packb({"node": "n2", "error": ["NOT_FOUND", "gone"]}),
                             "n2") == ("error", ("NOT_FOUND", "gone"))
    for bad_read in ({**records, "missed": -1}, {**records, "records": [{"ts": 1, "kind": "x"}]},
                     {**records, "end": 3}, {"records": []}):
        assert check_trace_reply(msgpack.packb({"node": "n2", "read": bad_read}), "n2") is None
    assert check_trace_reply(msgpack.packb({"node": "n3", "session": 4}), "n2") is None


_leaf = st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1), st.floats(),
                  st.text(max_size=12), st.binary(max_size=12),
                  st.sampled_from(["ps", "info", "n2", "t:a", "pid", "node", "processes",
                                   "omitted"]))
_value = st.recursive(_leaf, lambda c: st.lists(c, max_size=5)
                      | st.dictionaries(st.sampled_from(
                          ["op", "from", "host", "node", "processes", "omitted", "known", "pid",
                           "id", "worker", "state", "names", "mailbox", "info"]), c, max_size=8),
                      max_leaves=25)


@settings(max_examples=150, deadline=None)
@given(st.one_of(st.binary(max_size=200), _value.map(msgpack.packb)))
def test_checks_of_peer_bytes_never_raise(data: bytes) -> None:
    """Any bytes another node may send as a request or an answer: a checked value or None,
    never an exception; a checked answer's rows have exactly the ps keys."""
    req = check_request(data)
    assert req is None or (req[0] == "info" and isinstance(req[1], str)) or (
        req[0] == "ps" and (req[1] is None or isinstance(req[1], str))) or (
        req[0] == "top" and set(req[1]) == {"host", "sort", "limit"}) or (
        req[0] in ("trace", "trace_read") and isinstance(req[1]["pid"], str))
    info = check_info_reply(data, "n2")
    assert info is None or info[0] is None or len(info[0]) == 16
    traced = check_trace_reply(data, "n2")
    assert traced is None or traced[0] in ("session", "read", "error")
    top = check_top_reply(data, "n2")
    assert top is None or top[0] is None or set(top[0]) == {"ts", "sort", "node", "hosts",
                                                            "processes"}
    answer = check_reply(data, "n2")
    if answer is not None:
        assert all(set(r) == {"pid", "id", "host", "worker", "state", "names", "mailbox",
                              "node"} for r in answer[0])
