"""Fault tolerance under chaos (SPEC 4.1, 4.4-4.6, section 10): ``scripts/chaos.py``, short.

The run: senders and receivers on two hosts exchange seq-numbered messages, with monitors
and links between them and to observers on a host that is never touched, while the harness
``kill -9``s at least 20 workers, SIGSTOPs and resumes workers, and cancels and terminates
random processes. The verdict must be clean: one EXIT per monitor, one LINK_DOWN per link
partner of an abnormal end, nothing lost, duplicated or reordered between live processes,
no name on a dead PID, no leaked table entry, no traceback. The first tests check that the
verdict itself catches each kind of violation, on hand-made records.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts" / "chaos_actors"))

import chaos_check  # noqa: E402

R, S, B = "{chaos:a|0x00001}", "{chaos:b|0x00002}", "{chaos:a|0x00003}"
SENT = {"value": {"sent": {R: 5}, "mon": {R: True}, "exits": {}, "downs": {},
                  "why": "cancel"}}
TERMINATED = {"error": "process terminated"}
CRASHED = {"error": "worker crashed"}


def _records() -> dict[str, Any]:
    """A clean history: S sends 5 messages to R, then S, R and S's buddy B end in order."""
    peer = {"n": 5, "exp": 5, "miss": [], "gap": 0, "dup": 0, "reo": 0, "mon": True,
            "lnk": True, "exit": SENT, "nx": 5, "exits": 1, "downs": 0, "late": 0}
    recs = {
        S: {"role": "sender", "i": 2, "name": None, "exits": [SENT], "downs": [], "order": 1,
            "stale": None, "targets": [R], "stat": SENT["value"]},
        B: {"role": "buddy", "i": 3, "name": None, "exits": [TERMINATED],
            "downs": [TERMINATED], "order": 2, "stale": None, "partner": S, "linked": True},
        R: {"role": "receiver", "i": 1, "name": "rcv-1", "exits": [{"value": {}}],
            "downs": [], "order": 3, "stale": False, "stat": {}, "peers": {S: peer}},
    }
    watch = {pid: {"mon": True, "exits": list(rec["exits"])} for pid, rec in recs.items()}
    return {"recs": recs, "watch": watch, "e0": 0, "final_senders": {S},
            "final_receivers": {R}}


def _verify(h: dict[str, Any]) -> dict[str, Any]:
    return chaos_check.verify(h["recs"], h["watch"], h["e0"], h["final_senders"],
                              h["final_receivers"])


def test_verdict_of_a_clean_history_is_clean() -> None:
    """The hand-made history passes, and its events and messages are counted."""
    v = _verify(_records())
    assert (v["lost"], v["duplicated"], v["reordered"], v["violations"]) == (0, 0, 0, {})
    assert v["messages_checked"] == 5 and v["streams_exact"] == 1 and v["events_checked"] > 6


def _peer(h: dict[str, Any]) -> dict[str, Any]:
    return h["recs"][R]["peers"][S]  # type: ignore[no-any-return]


def _lost_at_exit(h: dict[str, Any]) -> None:
    _peer(h).update(n=4, exp=4, nx=4)


def _gap(h: dict[str, Any]) -> None:
    _peer(h).update(gap=1, miss=[2])


def _buddy_survives(h: dict[str, Any]) -> None:
    recs = h["recs"]
    recs[S]["exits"] = [CRASHED]
    recs[S]["downs"] = [CRASHED]
    _peer(h).update(exit=CRASHED, downs=1)
    h["watch"][S]["exits"] = [CRASHED]
    h["e0"] = 1  # S crashed before the final phase; B was only terminated in it


MUTATIONS: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "lost at EXIT": (_lost_at_exit, "lost"),
    "gap": (_gap, "lost"),
    "duplicate": (lambda h: _peer(h).update(dup=1), "duplicated"),
    "reorder": (lambda h: _peer(h).update(reo=1), "reordered"),
    "message after EXIT": (lambda h: _peer(h).update(late=1),
                           "receiver: message after the sender's EXIT"),
    "second EXIT": (lambda h: h["recs"][S]["exits"].append(SENT),
                    "observer: EXIT count != 1"),
    "missing LINK_DOWN": (lambda h: h["recs"][B].update(downs=[]),
                          "observer: LINK_DOWN count"),
    "watcher EXIT lost": (lambda h: h["watch"][S].update(exits=[]),
                          "watcher: EXITs differ from the observer's"),
    "stale name": (lambda h: h["recs"][R].update(stale=True),
                   "name pointed at a dead pid at its EXIT"),
    "receiver monitor silent": (lambda h: _peer(h).update(exit=None, nx=None, exits=0),
                                "receiver: monitor got no EXIT"),
    "never arrived": (lambda h: h["recs"][R].update(peers={}), "lost"),
    "buddy survived": (_buddy_survives, "buddy: survived its link partner's abnormal end"),
}


@pytest.mark.parametrize("name", list(MUTATIONS))
def test_verdict_catches(name: str) -> None:
    """Each kind of broken rule, planted in the clean history, is reported."""
    history = copy.deepcopy(_records())
    mutate, expect = MUTATIONS[name]
    mutate(history)
    v = _verify(history)
    assert v.get(expect) or expect in v["violations"], v


# -- three nodes -----------------------------------------------------------------------------------
CS, CR = "{n1@chaos:a|0x1}", "{n2@chaos:a|0x2}"  # S -> R, S stops by itself: a fin
CS2, CR2 = "{n2@chaos:b|0x3}", "{n1@chaos:b|0x4}"  # S2 -> R2, S2 cancelled at the end
CS3 = "{n1@chaos:b|0x5}"  # S3 -> R2, S3's worker killed: a floor
CK = "{n3@chaos:a|0x6}"  # K -> R, K's node killed at 110


def _stream(n: int, fin: int | None = None) -> dict[str, Any]:
    return {"n": n, "exp": n, "gaps": 0, "miss": 0, "dup": 0, "reo": 0, "gap_t": None,
            "fin": fin, "nfin": None if fin is None else n, "late": 0, "mon": None,
            "exits": [], "nx": None, "after": 0, "lnk": None, "downs": []}


WORKER_KILLED = {"error": "worker exited"}


def _cluster_records() -> dict[str, Any]:
    """A clean three-node history (the PIDs above), n3 killed at 110 and the pairs
    {n1, n3} and {n2, n3} broken by it. R links S (normal end: no LINK_DOWN) and K (node
    down); R2 links S3 (worker killed: one LINK_DOWN, the watcher's result)."""
    procs = {
        CS: {"role": "sender", "node": "n1", "run": 1, "t": 100.0, "gone": 105.0,
             "targets": [CR]},
        CR: {"role": "receiver", "node": "n2", "run": 1, "t": 99.0, "gone": 120.0},
        CS2: {"role": "sender", "node": "n2", "run": 1, "t": 101.0, "gone": 119.0,
              "targets": [CR2]},
        CR2: {"role": "receiver", "node": "n1", "run": 1, "t": 99.5, "gone": 121.0},
        CS3: {"role": "sender", "node": "n1", "run": 1, "t": 102.0, "gone": 108.0,
              "targets": [CR2]},
        CK: {"role": "sender", "node": "n3", "run": 1, "t": 103.0, "gone": 110.0,
             "targets": [CR]},
    }
    reports = {
        CS: {"kind": "sstat", "sent": {CR: 5}, "done": True},
        CS2: {"kind": "sstat", "sent": {CR2: 4}, "done": True},
        CS3: {"kind": "sstat", "sent": {CR2: 6}, "done": False},
        CK: {"kind": "sstat", "sent": {CR: 2}, "done": False},
        CR: {"kind": "rstat", "done": True, "peers": {
            CS: {**_stream(5, fin=5), "mon": True, "exits": [{"value": {}}], "nx": 5,
                 "lnk": True},
            CK: {**_stream(3), "mon": True, "exits": [{"error": "node down: n3"}], "nx": 3,
                 "lnk": True, "downs": [{"error": "node down: n3"}]}}},
        CR2: {"kind": "rstat", "done": True, "peers": {
            CS2: _stream(4), CS3: {**_stream(7), "lnk": True, "downs": [WORKER_KILLED]}}},
    }
    watch = {
        CS: {"mon": True, "exits": [["pid.exit", {"value": {}}, 105.0]]},
        CS3: {"mon": True, "exits": [["pid.exit", WORKER_KILLED, 108.0]]},
        CR2: {"mon": True, "exits": [["pid.exit", {"value": {}}, 121.0]]},
        CK: {"mon": True, "exits": [["pid.exit", {"error": "node down: n3"}, 111.2]]},
    }
    return {"procs": procs, "reports": reports, "watch": watch, "killed": [["n3", 1, 110.0]],
            "breaks": [["n1", "n3", 111.0, "node n3 down"], ["n2", "n3", 111.1, "node n3 down"]]}


def _verify_cluster(h: dict[str, Any]) -> dict[str, Any]:
    return chaos_check.verify_cluster(h["procs"], h["reports"], h["watch"], h["killed"],
                                      h["breaks"])


def _clean(v: dict[str, Any]) -> bool:
    return (v["lost"], v["duplicated"], v["reordered"], v["violations"]) == (0, 0, 0, {})


def test_cluster_verdict_of_a_clean_history_is_clean() -> None:
    """The three-node history passes: streams judged exactly (fin, final count), against a
    floor, as a prefix (the killed node's), the watcher's and a receiver's EXITs incl. node
    downs."""
    v = _verify_cluster(_cluster_records())
    assert _clean(v), v
    assert (v["streams_exact"], v["streams_floor"], v["streams_prefix"]) == (2, 1, 1), v
    assert v["messages_checked"] == 19 and v["node_down_exits"] == 1 and v["monitored"] == 4
    assert v["receiver_monitors"] == 2 and v["events_checked"] == 8, v
    assert (v["receiver_links"], v["link_downs"], v["link_node_downs"]) == (3, 2, 1), v


def test_cluster_verdict_tolerates_seqs_after_a_node_down_exit_only() -> None:
    """Seqs after a sender's EXIT: fine after a ``node down`` (a sender alive past a break
    goes on), a violation after any other EXIT."""
    h = _cluster_records()
    _cpeer(h, CR, CK).update(after=2)
    assert _clean(_verify_cluster(h))
    _cpeer(h, CR, CK).update(exits=[{"error": "worker crashed"}])
    assert "receiver: seq after the sender's EXIT" in _verify_cluster(h)["violations"]


def test_cluster_verdict_tolerates_a_gap_only_where_the_pair_broke() -> None:
    """A gap in the killed node's stream (its pair broke) is tolerated and counted; the same
    gap once that break is gone from the logs is lost."""
    h = _cluster_records()
    h["reports"][CR]["peers"][CK].update(gaps=1, miss=2, exp=5)
    v = _verify_cluster(h)
    assert _clean(v) and v["tolerated_missing"] == 2, v
    h["breaks"] = [b for b in h["breaks"] if b[0] != "n2"]
    v = _verify_cluster(h)
    assert v["lost"] == 2 and "stream: gap without a pair break" in v["violations"], v


def _cpeer(h: dict[str, Any], r: str, s: str) -> dict[str, Any]:
    return h["reports"][r]["peers"][s]  # type: ignore[no-any-return]


def _exits(pid: str, *results: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(h: dict[str, Any]) -> None:  # 3 s after n3's kill
        h["watch"][pid]["exits"] = [["pid.exit", r, 113.0] for r in results]
    return mutate


CLUSTER_MUTATIONS: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "gap": (lambda h: _cpeer(h, CR, CS).update(gaps=1, miss=1), "lost"),
    "duplicate": (lambda h: _cpeer(h, CR, CS).update(dup=1), "duplicated"),
    "reorder": (lambda h: _cpeer(h, CR2, CS2).update(reo=1), "reordered"),
    "lost before the fin": (lambda h: _cpeer(h, CR, CS).update(nfin=4), "lost"),
    "fin lost before the EXIT": (lambda h: _cpeer(h, CR, CS).update(fin=None, nfin=None),
                                 "stream: the fin lost before the sender's EXIT (n1->n2)"),
    "seq after the fin": (lambda h: _cpeer(h, CR, CS).update(late=1),
                          "stream: seqs after the sender's fin"),
    "lost at the end": (lambda h: _cpeer(h, CR2, CS2).update(n=3), "lost"),
    "more than sent": (lambda h: _cpeer(h, CR2, CS2).update(n=5), "duplicated"),
    "below the floor": (lambda h: _cpeer(h, CR2, CS3).update(n=5), "lost"),
    "below the floor at the EXIT": (
        lambda h: _cpeer(h, CR2, CS3).update(mon=True, exits=[{"error": "worker crashed"}],
                                             nx=5), "lost"),
    "never arrived": (lambda h: h["reports"][CR2]["peers"].pop(CS2), "lost"),
    "second EXIT": (_exits(CS, {"value": {}}, {"value": {}}), "watcher: EXIT count != 1"),
    "no EXIT": (_exits(CR2), "watcher: EXIT count != 1"),
    "node down of another node": (_exits(CK, {"error": "node down: n2"}),
                                  "watcher: node down without a cut of that node"),
    "node down without a cut": (_exits(CS, {"error": "node down: n1"}),
                                "watcher: node down without a cut of that node"),
    "killed node's target ends otherwise": (
        _exits(CK, {"error": "process terminated"}),
        "watcher: a target on a killed node ended otherwise"),
    "receiver: second EXIT": (lambda h: _cpeer(h, CR, CS)["exits"].append({"value": {}}),
                              "receiver: EXIT count != 1"),
    "receiver: seq after EXIT": (lambda h: _cpeer(h, CR, CS).update(after=1),
                                 "receiver: seq after the sender's EXIT"),
    "receiver: no EXIT": (lambda h: _cpeer(h, CR, CS).update(exits=[]),
                          "receiver: monitor got no EXIT"),
    "receiver: node down without a cut": (
        lambda h: _cpeer(h, CR, CS).update(exits=[{"error": "node down: n1"}]),
        "receiver: node down without a cut of that node"),
    "receiver: EXIT differs": (
        lambda h: _cpeer(h, CR, CS).update(exits=[{"error": "process terminated"}]),
        "receiver: EXIT differs from the watcher's"),
    "receiver: second LINK_DOWN": (
        lambda h: _cpeer(h, CR2, CS3)["downs"].append(WORKER_KILLED),
        "receiver: LINK_DOWN count > 1"),
    "receiver: no LINK_DOWN at an abnormal end": (
        lambda h: _cpeer(h, CR2, CS3).update(downs=[]),
        "receiver: link partner's abnormal end brought no LINK_DOWN"),
    "receiver: LINK_DOWN at a normal end": (
        lambda h: _cpeer(h, CR, CS).update(downs=[{"value": {}}]),
        "receiver: LINK_DOWN of a normal end"),
    "receiver: LINK_DOWN the watcher saw as a normal end": (
        lambda h: _cpeer(h, CR, CS).update(downs=[WORKER_KILLED]),
        "receiver: LINK_DOWN differs from the watcher's EXIT"),
    "receiver: LINK_DOWN without a link": (
        lambda h: _cpeer(h, CR2, CS2).update(downs=[WORKER_KILLED]),
        "receiver: LINK_DOWN without a link"),
    "receiver: link's node down without a cut": (
        lambda h: _cpeer(h, CR2, CS3).update(downs=[{"error": "node down: n1"}]),
        "receiver: link's node down without a cut of that node"),
    "EXIT of a stranger": (
        lambda h: h["watch"].update({"{n2@chaos:a|0x99}": {"mon": None, "stranger": True,
                                                           "exits": [["pid.exit", {}, 1.0]]}}),
        "watcher: EXIT of a PID it never monitored"),
}


@pytest.mark.parametrize("name", list(CLUSTER_MUTATIONS))
def test_cluster_verdict_catches(name: str) -> None:
    """Each kind of broken rule, planted in the clean three-node history, is reported."""
    history = copy.deepcopy(_cluster_records())
    mutate, expect = CLUSTER_MUTATIONS[name]
    mutate(history)
    v = _verify_cluster(history)
    assert v.get(expect) or expect in v["violations"], v


@pytest.mark.timeout(300)
def test_chaos_short_run(tmp_path: Path) -> None:
    """~20 s of chaos with 10 worker kills: zero lost, duplicated or reordered, no violation.
    (20 s, not 45: the suite's time went to the three-node minute below and the observer's
    tests; an 18 s run still has ~6 SIGSTOPs, ~45 cancels and terminates, 150+ processes,
    50k+ messages; scripts/chaos.py runs as long as asked.)"""
    out = tmp_path / "chaos.json"
    r = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "chaos.py"), "--duration", "18",
         "--kills", "10", "--json", str(out), "--workdir", str(tmp_path / "daemon")],
        capture_output=True, text=True, timeout=280, check=False, cwd=ROOT,
    )
    assert r.returncode == 0, f"stdout:\n{r.stdout}\nstderr:\n{r.stderr[-4000:]}"
    report = json.loads(out.read_text())
    v = report["verdict"]
    assert report["kills"] >= 9 and report["restarts"] == report["kills"], report
    assert report["unexplained_worker_deaths"] == [], r.stdout
    assert report["stops"] >= 2 and report["cancels"] > 15 and report["terminates"] > 15
    assert (v["lost"], v["duplicated"], v["reordered"]) == (0, 0, 0), r.stdout
    assert v["violations"] == {} and report["leaks"] == [], r.stdout
    assert report["tracebacks"] == 0 and report["workers_up"], r.stdout
    assert v["messages_checked"] > 10_000 and v["streams_exact"] > 10, r.stdout
    assert report["processes_ended"] == report["processes_started"] > 100, r.stdout


@pytest.mark.timeout(300)
def test_chaos_three_nodes(tmp_path: Path) -> None:
    """~60 s on three nodes and a real nats-server, >= 3 node kill -9s (each restarted),
    >= 10 worker kill -9s and worker SIGSTOPs: nothing lost, duplicated or reordered, one
    EXIT per monitor, LINK_DOWN once and only at abnormal ends, no leaked entry, every daemon
    stopped with exit 0."""
    out = tmp_path / "chaos3.json"
    r = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "chaos.py"), "--nodes", "3", "--duration", "60",
         "--kills", "12", "--node-kills", "3", "--json", str(out),
         "--workdir", str(tmp_path / "cluster")],
        capture_output=True, text=True, timeout=280, check=False, cwd=ROOT,
    )
    assert r.returncode == 0, f"stdout:\n{r.stdout}\nstderr:\n{r.stderr[-4000:]}"
    report = json.loads(out.read_text())
    v = report["verdict"]
    assert report["node_kills"] >= 3 and report["worker_kills"] >= 10, r.stdout
    assert report["stops"] >= 8, r.stdout  # workers SIGSTOPped past node_timeout too
    assert (v["lost"], v["duplicated"], v["reordered"]) == (0, 0, 0), r.stdout
    assert v["violations"] == {} and report["leaks"] == [], r.stdout
    assert report["unexplained_worker_deaths"] == [], r.stdout
    assert set(report["exit_codes"].values()) == {0} and len(report["exit_codes"]) == 3
    assert not any(report["tracebacks"].values()), r.stdout
    assert v["messages_checked"] > 5_000 and v["streams_exact"] > 20, r.stdout
    assert v["monitored"] > 10, r.stdout
    # monitors across nodes: the watcher on n1 saw the killed nodes' processes go
    assert report["remote_monitors"], r.stdout
    assert v["node_down_exits"] >= 3 and v["receiver_monitors"] > 20, r.stdout
    # links across nodes: LINK_DOWNs of worker kills and of node downs were judged
    assert report["links"] and v["receiver_links"] > 20, r.stdout
    assert v["link_downs"] > v["link_node_downs"] > 0, r.stdout
