"""Actors of the three-node chaos harness (``scripts/chaos.py --nodes 3``).

Roles (process ids ``chaos:c<role>``)::

    collector  node n1, host chaos:observer (never killed): keeps the last report of every
               workload process (``rstat`` of receivers, ``sstat`` of senders); the harness
               reads it through ``chaos:ask`` (``summary``, ``dump``).
    watcher    n1, chaos:observer: monitors every PID the harness names (``watch``), on any
               node, and records each EXIT it gets.
    receiver   checks the seq-numbered stream of every sender that writes to it: per sender
               ``n`` taken, ``exp`` next seq expected, ``gaps``/``miss`` (seqs skipped, and
               when: ``gap_t`` is the wall time of the first gap), ``dup``, ``reo``, the
               sender's own count ``fin`` with ``nfin`` taken when it came and ``late``
               seqs after it; with ``watch`` it also monitors each sender (``mon``,
               ``exits``, ``nx`` taken at the first, ``after``: seqs after it); with
               ``link`` it traps links and links to each sender there too (``lnk``,
               ``downs``: the LINK_DOWN results; an untrapped sender dies of the
               receiver's abnormal end or of a break of their pair); reports
               the streams that changed to the collector every ``interval`` seconds, and
               once more (``done``) on CANCEL.
    sender     sends seq-numbered messages (one sequence per receiver) to receivers on other
               nodes in bursts for ``life`` seconds, or until CANCEL; reports ``sent`` per
               receiver to the collector after the seqs it counts, every ``interval`` seconds;
               when it stops, a ``fin`` with the count to each receiver (the stream's end),
               then a last report with ``done``.

The harness spawns receivers and senders through each node's own control socket and hands
the PIDs around; receivers monitor and link their senders across nodes, as does the watcher.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable
from typing import Any

from chaos_workload import drain

from actord import channel, process
from actord.errors import NotFoundError, ProcessError

COLLECTOR = "chaos-collector"


async def collector() -> Any:
    """Keep the last report of every workload process (see the module docstring)."""
    inbox, events = process.inbox(), process.events()
    reports: dict[str, dict[str, Any]] = {}
    counts = {"rstat": 0, "sstat": 0}
    while True:
        ch, item = await channel.select(events, inbox)
        if ch is events:
            if item.kind == process.event.CANCEL:
                return counts
            continue
        topic = item.topic
        if topic == "rstat":  # a receiver reports the streams that changed since its last
            counts[topic] += 1
            rec = reports.setdefault(item.from_, {"kind": topic, "peers": {}})
            rec["peers"].update(item.payload["peers"])
            rec["done"], rec["t"] = item.payload["done"], item.payload["t"]
        elif topic == "sstat":
            counts[topic] += 1
            reports[item.from_] = {"kind": topic, **item.payload}
        elif topic == "summary":
            streams = [p for r in reports.values() if r["kind"] == "rstat"
                       for p in r["peers"].values()]
            got = sum(p["n"] for p in streams)
            counts_exits = sum(len(p["exits"]) for p in streams)
            sent = sum(sum(r["sent"].values()) for r in reports.values() if r["kind"] == "sstat")
            process.send(item.from_, "reply", {**counts, "received": got, "sent": sent,
                                               "exits": counts_exits,
                                               "reporters": len(reports)})
        elif topic == "dump":
            offset, limit = item.payload
            pids = sorted(reports)
            process.send(item.from_, "reply", {"total": len(pids), "reports": [
                [p, reports[p]] for p in pids[offset:offset + limit]]})


async def watcher() -> Any:
    """Monitor every PID named in a ``watch`` message; record ``mon`` and each EXIT result."""
    inbox, events = process.inbox(), process.events()
    recs: dict[str, dict[str, Any]] = {}
    while True:
        ch, item = await channel.select(events, inbox)
        if ch is events:
            if item.kind == process.event.CANCEL:
                return len(recs)
            rec = recs.setdefault(item.from_, {"mon": None, "exits": [], "stranger": True})
            rec["exits"].append([item.kind, item.result, round(time.time(), 3)])
            continue
        if item.topic == "watch":
            pid = item.payload
            try:
                await process.monitor(pid)
                ok: bool | str = True
            except NotFoundError:
                ok = False
            except ProcessError as e:  # e.g. no monitors across nodes on this build
                ok = f"{e.kind}: {e}"
            recs.setdefault(pid, {"exits": []})["mon"] = ok
        elif item.topic == "summary":
            process.send(item.from_, "reply", {"recs": len(recs), "exits": sum(
                len(r["exits"]) for r in recs.values())})
        elif item.topic == "dump":
            offset, limit = item.payload
            pids = sorted(recs)
            process.send(item.from_, "reply", {"total": len(pids), "recs": [
                [p, recs[p]] for p in pids[offset:offset + limit]]})


async def receiver(collector_pid: str, interval: float, watch: bool = False,
                   link: bool = False) -> dict[str, Any]:
    """Check each sender's stream; report it to the collector (module docstring). With
    ``watch``, monitor each sender at its first message (``mon``), record its EXITs
    (``exits``: results) and count seqs after its EXIT (``after``). With ``link``, trap
    links and link to each sender at its first message (``lnk``), record each LINK_DOWN
    (``downs``: results)."""
    inbox, events = process.inbox(), process.events()
    if link:
        process.set_options(trap_links=True)
    peers: dict[str, dict[str, Any]] = {}
    dirty: set[str] = set()
    next_report = time.monotonic() + interval

    def report(done: bool) -> None:
        process.send(collector_pid, "rstat", {"peers": {s: peers[s] for s in dirty},
                                               "done": done, "t": round(time.time(), 3)})
        dirty.clear()

    while True:
        now = time.monotonic()
        if now >= next_report:
            report(False)
            next_report = now + interval
        try:
            # inbox first: a message queued before an EXIT is taken before it (SPEC 4)
            ch, item = await channel.select(inbox, events, timeout=max(0.0, next_report - now))
        except TimeoutError:
            continue
        if ch is events:
            if item.kind == process.event.CANCEL:
                report(True)
                return {"senders": len(peers)}
            p = peers.get(item.from_)
            if p is None:  # an event of a sender it never watched: the verdict sees it
                p = peers[item.from_] = _stream()
            dirty.add(item.from_)
            if item.kind == process.event.LINK_DOWN:
                p["downs"].append(item.result)
                continue
            p["exits"].append(item.result)
            if p["nx"] is None:
                p["nx"] = p["n"]
            continue
        if item.topic not in ("seq", "fin"):
            continue
        seq = item.payload
        p = peers.get(item.from_)
        if p is None:
            p = peers[item.from_] = _stream()
            if watch:
                p["mon"] = await _alive(process.monitor(item.from_))
            if link:
                p["lnk"] = await _alive(process.link(item.from_))
        dirty.add(item.from_)
        if p["exits"]:
            p["after"] += 1
        if item.topic == "fin":
            p["fin"], p["nfin"] = seq, p["n"]
            continue
        if p["fin"] is not None:
            p["late"] += 1
        p["n"] += 1
        if seq == p["exp"]:
            p["exp"] = seq + 1
        elif seq > p["exp"]:
            p["gaps"] += 1
            p["miss"] += seq - p["exp"]
            if p["gap_t"] is None:
                p["gap_t"] = round(time.time(), 3)
            p["exp"] = seq + 1
        elif p["gaps"]:  # behind: one of the skipped seqs, late (or a duplicate of one)
            p["reo"] += 1
        else:
            p["dup"] += 1


async def _alive(call: Awaitable[None]) -> bool:
    """Await a monitor or link: True, or False when its target was gone (NOT_FOUND)."""
    try:
        await call
    except NotFoundError:
        return False
    return True


def _stream() -> dict[str, Any]:
    """A receiver's record of one sender's stream (module docstring)."""
    return {"n": 0, "exp": 0, "gaps": 0, "miss": 0, "dup": 0, "reo": 0, "gap_t": None,
            "fin": None, "nfin": None, "late": 0, "mon": None, "exits": [], "nx": None,
            "after": 0, "lnk": None, "downs": []}


async def sender(collector_pid: str, receivers: list[str], seed: int, burst: int,
                 pause: float, interval: float, life: float) -> dict[str, Any]:
    """Send seqs to ``receivers`` for ``life`` seconds or until CANCEL (module docstring)."""
    rng = random.Random(seed)
    events = process.events()
    sent = {r: 0 for r in receivers}
    end = time.monotonic() + life
    next_report = 0.0

    def report(done: bool) -> None:
        # after the seqs it counts: once the router has this, it has those
        if done:  # each stream's end, in the stream: its receiver checks the count itself
            for r, n in sent.items():
                process.send(r, "fin", n)
        process.send(collector_pid, "sstat", {"sent": sent, "done": done,
                                               "t": round(time.time(), 3)})

    while True:
        for ev in drain(events):
            if ev.kind == process.event.CANCEL:
                report(True)
                return {"sent": sent, "why": "cancel"}
        now = time.monotonic()
        if now >= end:
            report(True)
            return {"sent": sent, "why": "life"}
        for _ in range(rng.randint(1, burst)):
            r = receivers[rng.randrange(len(receivers))]
            process.send(r, "seq", sent[r])
            sent[r] += 1
        if now >= next_report:
            report(False)
            next_report = now + interval
        await asyncio.sleep(pause * rng.random() * 2)


async def probe(target: str) -> bool | str:
    """Monitor ``target`` (then unmonitor): True, or why not (the harness's build probe)."""
    try:
        await process.monitor(target)
    except ProcessError as e:
        return f"{e.kind}: {e}"
    await process.unmonitor(target)
    return True
