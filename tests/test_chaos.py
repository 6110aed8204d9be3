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


@pytest.mark.timeout(300)
def test_chaos_short_run(tmp_path: Path) -> None:
    """~45 s of chaos with 24 worker kills: zero lost, duplicated or reordered, no violation."""
    out = tmp_path / "chaos.json"
    r = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "chaos.py"), "--duration", "42",
         "--kills", "24", "--json", str(out), "--workdir", str(tmp_path / "daemon")],
        capture_output=True, text=True, timeout=280, check=False, cwd=ROOT,
    )
    assert r.returncode == 0, f"stdout:\n{r.stdout}\nstderr:\n{r.stderr[-4000:]}"
    report = json.loads(out.read_text())
    v = report["verdict"]
    assert report["kills"] >= 20 and report["restarts"] == report["kills"], report
    assert report["unexplained_worker_deaths"] == [], r.stdout
    assert report["stops"] >= 5 and report["cancels"] > 20 and report["terminates"] > 20
    assert (v["lost"], v["duplicated"], v["reordered"]) == (0, 0, 0), r.stdout
    assert v["violations"] == {} and report["leaks"] == [], r.stdout
    assert report["tracebacks"] == 0 and report["workers_up"], r.stdout
    assert v["messages_checked"] > 10_000 and v["streams_exact"] > 10, r.stdout
    assert report["processes_ended"] == report["processes_started"] > 100, r.stdout
