"""The chaos verdict: the observer's and watcher's records in, counts and violations out.

Pure (no actord, no I/O): ``verify`` takes what ``scripts/chaos.py`` collected and checks
SPEC 4.1 and 4.4-4.6 on it. ``order`` is the observer's arrival number of a process's EXIT;
every EXIT reaches the observer over one router stream, so it is the router's order of ends:
a partner ``P`` linked to ``S`` sends ``S`` a LINK_DOWN iff ``P`` ends abnormally while ``S``
is alive, i.e. ``order(P) < order(S)``. ``e0`` is the order when the final phase began
(chaos over, quiet); ``final_senders``/``final_receivers`` ended by the final phase's CANCEL,
after every sender had ended, so their own records are complete and exact.

What counts (each a separate total, all must be zero):

- lost: a seq skipped in a stream (only a gap-free prefix may be missing, and only after
  the sender or receiver died); fewer messages than the sender's own count (exact when it
  ended normally, else at least what it last reported: that report left after them).
- duplicated / reordered: a seq seen twice / after a later one.
- violations: any other broken rule, by kind (EXIT count per monitor, LINK_DOWN per link
  partner, results that differ between observers, messages after an EXIT, names).
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

LINKED_FAILED = {"error": "linked process failed"}


class Verdict:
    """Running totals and examples of what broke."""

    def __init__(self) -> None:
        self.events = 0
        self.messages = 0
        self.lost = 0
        self.duplicated = 0
        self.reordered = 0
        self.exact = 0  # streams whose length was checked against the sender's exact count
        self.floor = 0  # ... against a lower bound (the sender's last report)
        self.violations: Counter[str] = Counter()
        self.examples: list[list[Any]] = []

    def bad(self, kind: str, *detail: Any) -> None:
        self.violations[kind] += 1
        if len(self.examples) < 40:
            self.examples.append([kind, *detail])

    def as_dict(self) -> dict[str, Any]:
        return {
            "events_checked": self.events,
            "messages_checked": self.messages,
            "lost": self.lost,
            "duplicated": self.duplicated,
            "reordered": self.reordered,
            "streams_exact": self.exact,
            "streams_floor": self.floor,
            "violations": dict(self.violations),
            "examples": self.examples,
        }


def verify(
    recs: dict[str, dict[str, Any]],
    watch: dict[str, dict[str, Any]],
    e0: int,
    final_senders: set[str],
    final_receivers: set[str],
) -> dict[str, Any]:
    """Check every record; see the module docstring."""
    v = Verdict()

    def result(pid: str) -> dict[str, Any] | None:
        rec = recs.get(pid)
        return rec["exits"][0] if rec is not None and rec["exits"] else None

    def abnormal(pid: str) -> bool:
        r = result(pid)
        return r is not None and "error" in r

    def order(pid: str) -> int:
        rec = recs.get(pid)
        o = rec["order"] if rec is not None else None
        return o if o is not None else 1 << 62  # still alive: ends after everything seen

    _observer(recs, v)
    _watcher(recs, watch, v)
    for pid, rec in recs.items():
        ended_by_final = not abnormal(pid) and result(pid) is not None
        if rec["role"] == "receiver":
            complete = ended_by_final and pid in final_receivers
            _receiver(pid, rec, recs, complete, result, v)
        elif rec["role"] == "sender":
            complete = ended_by_final and pid in final_senders
            _sender(pid, rec, recs, complete, e0, result, abnormal, order, v)
        elif rec["role"] == "buddy":
            _buddy(pid, rec, e0, result, abnormal, order, v)
    return v.as_dict()


def _observer(recs: dict[str, dict[str, Any]], v: Verdict) -> None:
    """The observer monitors and (trapping) links every process: one EXIT each, one
    LINK_DOWN per abnormal end, none per normal end; names released before the EXIT."""
    for pid, rec in recs.items():
        exits, downs = rec["exits"], rec["downs"]
        v.events += len(exits) + len(downs)
        if len(exits) != 1:
            v.bad("observer: EXIT count != 1", pid, len(exits))
            continue
        want = [exits[0]] if "error" in exits[0] else []
        if downs != want:
            v.bad("observer: LINK_DOWN count", pid, exits[0], downs)
        if rec.get("stale"):
            v.bad("name pointed at a dead pid at its EXIT", pid, rec.get("name"))


def _watcher(recs: dict[str, dict[str, Any]], watch: dict[str, dict[str, Any]],
             v: Verdict) -> None:
    """A second, plain monitor: one EXIT iff monitor() succeeded, with the same result."""
    for pid, rec in recs.items():
        w = watch.get(pid)
        if w is None:
            v.bad("watcher: never told of pid", pid)
            continue
        v.events += len(w["exits"])
        if w["mon"]:
            if w["exits"] != rec["exits"][:1]:
                v.bad("watcher: EXITs differ from the observer's", pid, w["exits"], rec["exits"])
        elif w["exits"]:
            v.bad("watcher: EXIT without a monitor", pid, w["exits"])
    for pid in set(watch) - set(recs):
        v.bad("watcher: pid the observer never spawned", pid)


def _count_check(got: int, sender_rec: dict[str, Any], receiver: str, result: Any,
                 v: Verdict, where: str) -> None:
    """``got`` messages from a sender that ended with ``result``, checked against its counts."""
    value = result.get("value") if isinstance(result, dict) else None
    if isinstance(value, dict) and isinstance(value.get("sent"), dict):
        sent = value["sent"].get(receiver, 0)
        v.exact += 1
        if got < sent:
            v.lost += sent - got
            v.bad(f"lost ({where})", sender_rec.get("i"), receiver, sent, got)
        elif got > sent:
            v.duplicated += got - sent
            v.bad(f"more than sent ({where})", sender_rec.get("i"), receiver, sent, got)
        return
    stat = sender_rec.get("stat") or {}
    floor = (stat.get("sent") or {}).get(receiver, 0)
    v.floor += 1
    if got < floor:
        v.lost += floor - got
        v.bad(f"lost, below the sender's last report ({where})", receiver, floor, got)


def _receiver(me: str, rec: dict[str, Any], recs: dict[str, dict[str, Any]], complete: bool,
              result: Any, v: Verdict) -> None:
    """Each stream a gap-free prefix, in order, no duplicate, nothing after the EXIT; the
    receiver's monitor got one EXIT (same result), its link one LINK_DOWN iff abnormal."""
    peers: dict[str, dict[str, Any]] = rec.get("peers") or {}
    for s, p in peers.items():
        srec = recs.get(s)
        if srec is None or srec["role"] != "sender":
            v.bad("receiver: messages from a non-sender", me, s)
            continue
        v.messages += p["n"]
        v.lost += len(p["miss"])
        v.duplicated += p["dup"]
        v.reordered += p["reo"]
        if p["gap"] or p["dup"] or p["reo"]:
            v.bad("receiver: stream anomaly", me, s, p["gap"], p["dup"], p["reo"], p["miss"][:5])
        if p["late"]:
            v.bad("receiver: message after the sender's EXIT", me, s, p["late"])
        if p["exits"] > 1:
            v.bad("receiver: second EXIT", me, s, p["exits"])
        sres = result(s)
        if p["exit"] is not None:
            v.events += 1 + p["downs"]
            if not p["mon"]:
                v.bad("receiver: EXIT without a monitor", me, s)
            if p["exit"] != sres:
                v.bad("receiver: EXIT result differs from the observer's", me, s, p["exit"], sres)
            want = 1 if p["lnk"] and "error" in p["exit"] else 0
            if p["downs"] > want or (complete and p["downs"] != want):
                v.bad("receiver: LINK_DOWN count", me, s, p["exit"], p["downs"], want)
            _count_check(p["nx"], srec, me, p["exit"], v, "at the sender's EXIT")
            continue
        if p["downs"]:
            v.bad("receiver: LINK_DOWN before any EXIT", me, s)
        if complete and sres is not None:
            if p["mon"]:  # alive and monitoring until long after the sender ended
                v.bad("receiver: monitor got no EXIT", me, s, sres, p,
                      {"order": [rec["order"], srec["order"]], "i": [rec["i"], srec["i"]]})
            else:  # the sender was dead at its first message: the rest was in flight
                _count_check(p["n"], srec, me, sres, v, "at the end")
    if complete:  # alive through the whole life of every sender that picked it
        for s, srec in recs.items():
            if srec["role"] == "sender" and me in srec.get("targets", ()) and s not in peers:
                sres = result(s)
                if sres is not None:
                    _count_check(0, srec, me, sres, v, "never arrived")


def _sender(me: str, rec: dict[str, Any], recs: dict[str, dict[str, Any]], complete: bool,
            e0: int, result: Any, abnormal: Any, order: Any, v: Verdict) -> None:
    """The sender's monitors got one EXIT per receiver that ended while it lived; its
    (trapped) links one LINK_DOWN per partner that ended abnormally while it lived."""
    stat = rec.get("stat")
    if not isinstance(stat, dict):
        return  # it died before its first report
    targets = set(rec.get("targets", ()))
    for kind, book in (("EXIT", stat.get("exits", {})), ("LINK_DOWN", stat.get("downs", {}))):
        for p, results in book.items():
            v.events += len(results)
            prec = recs.get(p)
            partner = prec is not None and (p in targets or prec.get("partner") == me)
            if not partner:
                v.bad(f"sender: {kind} from a stranger", me, p)
                continue
            if len(results) > 1:
                v.bad(f"sender: more than one {kind}", me, p, results)
            if results[0] != result(p):
                v.bad(f"sender: {kind} result differs from the observer's", me, p, results,
                      result(p))
            if kind == "EXIT" and not stat.get("mon", {}).get(p):
                v.bad("sender: EXIT without a monitor", me, p)
            if kind == "LINK_DOWN" and not abnormal(p):
                v.bad("sender: LINK_DOWN for a normal end", me, p, results)
            if order(p) > order(me):
                v.bad(f"sender: {kind} of a process that ended after it", me, p)
    if not complete:
        return
    exits, downs = stat.get("exits", {}), stat.get("downs", {})
    for r, ok in stat.get("mon", {}).items():
        if ok and order(r) <= e0 and len(exits.get(r, ())) != 1:
            v.bad("sender: monitor got no EXIT", me, r, result(r))
    partners = [p for p, prec in recs.items()
                if (prec["role"] == "buddy" and prec.get("partner") == me and prec.get("linked"))
                or (prec["role"] == "receiver"
                    and ((prec.get("peers") or {}).get(me) or {}).get("lnk"))]
    for p in partners:
        if abnormal(p) and order(p) <= e0 and len(downs.get(p, ())) != 1:
            v.bad("sender: link partner's abnormal end brought no LINK_DOWN", me, p, result(p))


def _buddy(me: str, rec: dict[str, Any], e0: int, result: Any, abnormal: Any, order: Any,
           v: Verdict) -> None:
    """An untrapped link partner dies iff its partner ends abnormally before it."""
    partner = rec["partner"]
    mine = result(me)
    if mine == LINKED_FAILED and not (abnormal(partner) and order(partner) < order(me)):
        v.bad("buddy: died of a link without an abnormal partner end", me, partner,
              result(partner))
    died = mine is not None and "error" in mine and order(me) <= e0
    if rec.get("linked") is True and abnormal(partner) and order(partner) <= e0 and not died:
        v.bad("buddy: survived its link partner's abnormal end", me, partner, mine)
    if rec.get("linked") is False and (result(partner) is None or order(partner) > order(me)
                                       or mine != {"value": "partner gone"}):
        v.bad("buddy: link refused while its partner was alive", me, partner, mine)


# -- three nodes (scripts/chaos.py --nodes 3) -----------------------------------------------------
#: seconds before a sender's spawn from which a break of its pair of nodes still cuts its
#: streams (a node may log a break a moment after the harness saw the mesh whole)
BREAK_SLACK = 2.0


def verify_cluster(
    procs: dict[str, dict[str, Any]],
    reports: dict[str, dict[str, Any]],
    watch: dict[str, dict[str, Any]],
    killed: list[list[Any]],
    breaks: list[list[Any]],
    watcher_node: str = "n1",
) -> dict[str, Any]:
    """The verdict of a cluster run. A stream is the seqs sender ``S`` (node ``A``, run ``a``)
    sends receiver ``R`` (node ``B`` != ``A``, run ``b``).

    ``procs``: every workload process the harness spawned (``role``, ``node``, ``run``, ``t``
    its spawn's wall time, ``gone`` the wall time of the first ``ps`` of its node without it,
    or of its node's kill, ``targets`` of a sender); ``reports``: the collector's last report
    of each (``done`` when it was the last one: a sender stopped by CANCEL or at the end of
    its life, a receiver by the final CANCEL); ``watch``: the watcher's records by PID;
    ``killed``: ``[node, run, t]`` of every node kill -9; ``breaks``: ``[node, node, t, line]``
    of every pair break a node logged (``node X down``, ``pair with X broken``, ``gap from
    X``, ``frames to X lost``, ``NATS connection lost`` with ``*`` for the other node).

    The **cut** of a stream is the first of: the end of ``S`` (worker kill, node kill, its
    CANCEL or the end of its life), the end of ``R``, a break of the pair ``{A, B}`` logged
    while the stream could carry frames: from ``t(S) - BREAK_SLACK`` to the first ``gone`` of
    the two + ``BREAK_SLACK`` (its last frames may still be on their way). Judged:

    - always: no seq twice (duplicated), none after a later one (reordered), none after the
      sender's ``fin`` (the count it sends each receiver when it stops by itself);
    - a gap (seqs skipped) is lost unless the pair ``{A, B}`` broke (then it is the cut);
    - if the pair never broke and ``R`` got the ``fin``: exactly that many seqs before it;
    - else if the pair never broke and ``R`` got ``S``'s EXIT (not a ``node down``): at least
      the count of ``S``'s last report before that EXIT (its router had those seqs first),
      and no normal end (which sends the ``fin`` first);
    - else if the pair never broke and ``R`` ended by the final CANCEL (``done``): ``R`` got
      exactly ``S``'s own count when ``S`` stopped by itself (``done``) on a run that was never
      killed, at least its last report when ``S``'s worker was killed (the router holding that
      report held the seqs before it), and nothing is checked beyond the prefix when ``S``'s
      node was killed (frames not yet published died with it);
    - a sender whose stream to ``R`` never arrived is judged as one of 0 messages.

    Monitors (the watcher, on ``watcher_node``, never killed, of every PID it was told):
    exactly one EXIT each; an EXIT ``node down: X`` names the target's own node, another than
    the watcher's, and comes only when that run was killed or the pair ``{watcher_node, X}``
    broke between the target's spawn and that EXIT; the EXIT of a target on a killed run is
    ``node down: <node>`` unless it came less than 2 s after the kill (it had ended before).
    A receiver's monitor of a sender (when the build monitors across nodes): at most one
    EXIT, exactly one if the receiver lived to the final CANCEL, no seq after it unless it
    is a ``node down`` (a sender still alive after a break goes on sending as a fresh
    member); a ``node down`` names the sender's node, whose run was killed or whose pair
    with the receiver's broke; any other result is the watcher's.
    A receiver's link to a sender (trapped; the sender does not trap): at most one LINK_DOWN
    and none without a link; a ``node down`` is one of a cut, as for monitors; any other is
    an abnormal end, the same result as the watcher's EXIT of the sender (when the watcher
    saw the end itself, not a ``node down``); a receiver that lived to the final CANCEL got
    one when the watcher saw the sender end abnormally (LINK_DOWN only on abnormal ends).
    """
    v = Verdict()
    extra = {"streams_prefix": 0, "streams_cut_by_break": 0, "tolerated_missing": 0,
             "monitored": 0, "node_down_exits": 0, "monitors_refused": 0,
             "receiver_monitors": 0, "receiver_links": 0, "link_downs": 0,
             "link_node_downs": 0}
    killed_runs = {(k[0], k[1]) for k in killed}

    def broke(s: dict[str, Any], r: dict[str, Any]) -> bool:
        since = s["t"] - BREAK_SLACK
        until = min(s.get("gone") or math.inf, r.get("gone") or math.inf) + BREAK_SLACK
        pair = {s["node"], r["node"]}
        return any(since <= t <= until and (x in pair if y == "*" else {x, y} == pair)
                   for x, y, t, *_ in breaks)

    for rpid, rrec in procs.items():
        if rrec["role"] != "receiver":
            continue
        rep = reports.get(rpid) or {}
        peers: dict[str, dict[str, Any]] = rep.get("peers") or {}
        r_done = bool(rep.get("done"))
        for spid, p in peers.items():
            srec = procs.get(spid)
            if srec is None or srec["role"] != "sender":
                v.bad("receiver: messages from a stranger", rpid, spid)
                continue
            _cluster_stream(rpid, rrec, spid, srec, p, r_done, reports.get(spid), killed_runs,
                            broke(srec, rrec), v, extra)
        if r_done:  # streams that never arrived
            for spid, srec in procs.items():
                if srec["role"] == "sender" and rpid in srec.get("targets", ()) and \
                        spid not in peers:
                    _cluster_stream(rpid, rrec, spid, srec, None, True, reports.get(spid),
                                    killed_runs, broke(srec, rrec), v, extra)
    _cluster_monitors(procs, watch, killed, killed_runs, breaks, watcher_node, v, extra)
    _receiver_monitors(procs, reports, watch, killed_runs, breaks, v, extra)
    _receiver_links(procs, reports, watch, killed_runs, breaks, v, extra)
    return {**v.as_dict(), **extra}


def _cluster_stream(rpid: str, rrec: dict[str, Any], spid: str, srec: dict[str, Any],
                    p: dict[str, Any] | None, r_done: bool, srep: dict[str, Any] | None,
                    killed_runs: set[tuple[str, int]], broken: bool, v: Verdict,
                    extra: dict[str, int]) -> None:
    """One stream, by the rules of :func:`verify_cluster`."""
    got = 0
    if p is not None:
        got = p["n"]
        v.messages += got
        v.duplicated += p["dup"]
        v.reordered += p["reo"]
        if p["dup"] or p["reo"]:
            v.bad("stream: duplicated or reordered", spid, rpid, p)
        if p["late"]:
            v.bad("stream: seqs after the sender's fin", spid, rpid, p)
        if p["gaps"]:
            if broken:
                extra["tolerated_missing"] += p["miss"]
            else:
                v.lost += p["miss"]
                v.bad("stream: gap without a pair break", spid, rpid, p)
    where = f"{srec['node']}->{rrec['node']}"
    if p is not None and p["fin"] is not None and not broken:
        v.exact += 1
        _exact(p["nfin"], p["fin"], spid, rpid, v, f"at the fin, {where}")
        return
    first = p["exits"][0] if p is not None and p.get("exits") else None
    if first is not None and not broken and srep is not None and not _node_down(first):
        # the sender's own EXIT came after every seq its router had: its last report's
        v.floor += 1
        floor = (srep.get("sent") or {}).get(rpid, 0)
        if isinstance(first, dict) and "error" not in first:  # a normal end sends the fin first
            v.lost += 1
            v.bad(f"stream: the fin lost before the sender's EXIT ({where})", spid, rpid, first)
        if p is not None and p["nx"] < floor:
            v.lost += floor - p["nx"]
            v.bad(f"stream: below the sender's last report at its EXIT ({where})", spid, rpid,
                  floor, p["nx"])
        return
    if not r_done or (srec["node"], srec["run"]) in killed_runs or srep is None:
        extra["streams_prefix"] += 1
        return
    if broken:
        extra["streams_cut_by_break"] += 1
        return
    sent = (srep.get("sent") or {}).get(rpid, 0)
    if srep.get("done"):
        v.exact += 1
        _exact(got, sent, spid, rpid, v, where)
    else:
        v.floor += 1
        if got < sent:
            v.lost += sent - got
            v.bad(f"stream: below the sender's last report ({where})", spid, rpid, sent, got)


def _node_down(result: Any) -> bool:
    err = result.get("error") if isinstance(result, dict) else None
    return isinstance(err, str) and err.startswith("node down: ")


def _exact(got: int, sent: int, spid: str, rpid: str, v: Verdict, where: str) -> None:
    if got < sent:
        v.lost += sent - got
        v.bad(f"stream: lost ({where})", spid, rpid, sent, got)
    elif got > sent:
        v.duplicated += got - sent
        v.bad(f"stream: more than sent ({where})", spid, rpid, sent, got)


def _cluster_monitors(procs: dict[str, dict[str, Any]], watch: dict[str, dict[str, Any]],
                      killed: list[list[Any]], killed_runs: set[tuple[str, int]],
                      breaks: list[list[Any]], watcher_node: str, v: Verdict,
                      extra: dict[str, int]) -> None:
    """The watcher's records, by the rules of :func:`verify_cluster`."""
    kill_t = {(k[0], k[1]): k[2] for k in killed}
    for pid, w in watch.items():
        rec = procs.get(pid)
        if rec is None or w.get("stranger"):
            v.bad("watcher: EXIT of a PID it never monitored", pid, w)
            continue
        if w.get("mon") is not True:
            extra["monitors_refused"] += 1
            if w["exits"]:
                v.bad("watcher: EXIT without a monitor", pid, w)
            continue
        extra["monitored"] += 1
        exits = w["exits"]
        v.events += len(exits)
        if len(exits) != 1:
            v.bad("watcher: EXIT count != 1", pid, rec["node"], len(exits), exits)
            continue
        kind, result, t = exits[0]
        if kind != "pid.exit":
            v.bad("watcher: event that is no EXIT", pid, exits[0])
        err = result.get("error") if isinstance(result, dict) else None
        if isinstance(err, str) and err.startswith("node down: "):
            extra["node_down_exits"] += 1
            node = err.removeprefix("node down: ")
            pair = {watcher_node, node}
            cut = (rec["node"], rec["run"]) in killed_runs or any(
                rec["t"] - BREAK_SLACK <= tb <= t + BREAK_SLACK
                and (x in pair if y == "*" else {x, y} == pair) for x, y, tb, *_ in breaks)
            if node != rec["node"] or node == watcher_node or not cut:
                v.bad("watcher: node down without a cut of that node", pid, rec["node"],
                      rec["run"], result)
        elif (rec["node"], rec["run"]) in kill_t and t > kill_t[(rec["node"], rec["run"])] + 2.0:
            v.bad("watcher: a target on a killed node ended otherwise", pid, rec["node"], result)


def _receiver_monitors(procs: dict[str, dict[str, Any]], reports: dict[str, dict[str, Any]],
                       watch: dict[str, dict[str, Any]], killed_runs: set[tuple[str, int]],
                       breaks: list[list[Any]], v: Verdict, extra: dict[str, int]) -> None:
    """Receivers' monitors of their senders, by the rules of :func:`verify_cluster`."""
    for rpid, rrec in procs.items():
        rep = reports.get(rpid) or {}
        for spid, p in (rep.get("peers") or {}).items():
            exits = p.get("exits") or []
            if p.get("mon") is not True:
                if exits:
                    v.bad("receiver: EXIT without a monitor", rpid, spid, exits)
                continue
            srec = procs.get(spid)
            if srec is None:
                continue  # reported as a stranger's stream
            extra["receiver_monitors"] += 1
            v.events += len(exits)
            if len(exits) > 1:
                v.bad("receiver: EXIT count != 1", rpid, spid, exits)
            if not exits:
                if rep.get("done"):
                    v.bad("receiver: monitor got no EXIT", rpid, spid)
                continue
            result = exits[0]
            err = result.get("error") if isinstance(result, dict) else None
            node_down = isinstance(err, str) and err.startswith("node down: ")
            if p.get("after") and not node_down:  # (a sender alive past a break goes on)
                v.bad("receiver: seq after the sender's EXIT", rpid, spid, p["after"])
            if isinstance(err, str) and node_down:
                if not _down_of_a_cut(err, srec, rrec, killed_runs, breaks):
                    v.bad("receiver: node down without a cut of that node", rpid, spid, result)
                continue
            w = (watch.get(spid) or {}).get("exits") or []
            if w and w[0][1] != result and not str(w[0][1].get("error", "")).startswith(
                    "node down: "):
                v.bad("receiver: EXIT differs from the watcher's", rpid, spid, result, w[0][1])


def _down_of_a_cut(err: str, srec: dict[str, Any], rrec: dict[str, Any],
                   killed_runs: set[tuple[str, int]], breaks: list[list[Any]]) -> bool:
    """Whether a ``node down: X`` a receiver got of sender ``srec`` names the sender's node,
    whose run was killed or whose pair with the receiver's broke since the sender's spawn."""
    node = err.removeprefix("node down: ")
    pair = {node, rrec["node"]}
    return node == srec["node"] and ((srec["node"], srec["run"]) in killed_runs or any(
        tb >= srec["t"] - BREAK_SLACK and (x in pair if y == "*" else {x, y} == pair)
        for x, y, tb, *_ in breaks))


def _receiver_links(procs: dict[str, dict[str, Any]], reports: dict[str, dict[str, Any]],
                    watch: dict[str, dict[str, Any]], killed_runs: set[tuple[str, int]],
                    breaks: list[list[Any]], v: Verdict, extra: dict[str, int]) -> None:
    """Receivers' links to their senders (trapped), by the rules of :func:`verify_cluster`."""
    for rpid, rrec in procs.items():
        rep = reports.get(rpid) or {}
        for spid, p in (rep.get("peers") or {}).items():
            downs = p.get("downs") or []
            srec = procs.get(spid)
            if p.get("lnk") is not True or srec is None:
                if downs:
                    v.bad("receiver: LINK_DOWN without a link", rpid, spid, downs)
                continue
            extra["receiver_links"] += 1
            extra["link_downs"] += len(downs)
            v.events += len(downs)
            w = (watch.get(spid) or {}).get("exits") or []
            end = w[0][1] if len(w) == 1 else None  # the sender's end, as the watcher saw it
            end_err = end.get("error") if isinstance(end, dict) else None
            end_known = end is not None and not str(end_err or "").startswith("node down: ")
            if len(downs) > 1:
                v.bad("receiver: LINK_DOWN count > 1", rpid, spid, downs)
            if not downs:
                if rep.get("done") and end_known and end_err is not None:
                    v.bad("receiver: link partner's abnormal end brought no LINK_DOWN", rpid,
                          spid, end)
                continue
            down = downs[0]
            err = down.get("error") if isinstance(down, dict) else None
            if isinstance(err, str) and err.startswith("node down: "):
                extra["link_node_downs"] += 1
                if not _down_of_a_cut(err, srec, rrec, killed_runs, breaks):
                    v.bad("receiver: link's node down without a cut of that node", rpid, spid,
                          down)
            elif err is None:
                v.bad("receiver: LINK_DOWN of a normal end", rpid, spid, down)
            elif end_known and end != down:
                v.bad("receiver: LINK_DOWN differs from the watcher's EXIT", rpid, spid, down,
                      end)
