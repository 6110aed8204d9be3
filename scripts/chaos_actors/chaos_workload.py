"""Actors of the chaos and soak harnesses (``scripts/chaos.py``, ``scripts/soak.py``,
``tests/test_chaos.py``).

Roles (process ids ``chaos:<role>``)::

    observer   host chaos:observer (never killed or stopped). Keeps the workload population
               topped up, spawning every workload process with spawn_linked_monitored and
               trap_links, so it gets one EXIT for every end and one LINK_DOWN for every
               abnormal end. Records every event in arrival order (``order``: the router's
               order of ends), the workload's reports, and checks at each EXIT that the
               process's name is already released. The harness asks it things (``ask``).
    watcher    chaos:observer. A second monitor of every workload process (plain monitor()).
    receiver   counts seq-numbered messages per sender; on a sender's first message it
               monitors it, then links to it (trap_links), so it can check that no message
               of a sender comes after that sender's EXIT and that the EXIT carries the
               sender's own count of what it sent (normal ends return it).
    sender     monitors a few receivers, then sends them seq-numbered messages (one sequence
               per receiver) in bursts; traps links; on CANCEL returns what it sent and the
               events it got; ends by itself once all its receivers are gone.
    buddy      untrapped, links itself to one sender: must die iff that sender ends
               abnormally (failure spreads along links, a normal end does not).

Every record is plain msgpack data; ``scripts/chaos_actors/chaos_check.py`` turns the
observer's records into the harness's verdict. ``keep=False`` (soak) makes observer, watcher
and receivers verify and forget ended processes, so their memory stays flat.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import deque
from typing import Any

from actord import channel, ids, process
from actord.errors import NotFoundError, ProcessError

OBSERVER = "chaos-observer"
WATCHER = "chaos-watcher"
OBSERVER_HOST = "chaos:observer"

#: seconds between two population top-ups of the observer
TICK = 0.05
#: soak mode: seconds after an EXIT before a record is verified and dropped
FORGET_AFTER = 2.0
#: every wait of a probe is bounded (seconds)
WAIT = 30.0


def serial(pid: str) -> int:
    """The node-wide serial number of a PID."""
    parsed = ids.parse_pid(pid)
    return parsed[1] if parsed is not None else -1


def drain(ch: channel.Channel) -> list[Any]:
    """Everything queued in ``ch`` now, without waiting."""
    out = []
    while True:
        try:
            out.append(ch.receive_nowait())
        except channel.Empty:
            return out


class Seen:
    """A compact set of PID serials (a bitmap): the ended processes of a soak run."""

    def __init__(self) -> None:
        self.bits = bytearray()

    def add(self, pid: str) -> bool:
        """Mark ``pid``; False when it was marked already."""
        n = serial(pid)
        if n < 0:
            return False
        byte, bit = divmod(n, 8)
        if byte >= len(self.bits):
            self.bits.extend(bytes(byte - len(self.bits) + 1024))
        if self.bits[byte] & (1 << bit):
            return False
        self.bits[byte] |= 1 << bit
        return True


# -- the harness's handle -------------------------------------------------------------------------
async def ask(dest: str, topic: str, value: Any = None, timeout: float = WAIT) -> Any:
    """Send ``topic``/``value`` to ``dest`` and return the payload of its reply."""
    process.send(dest, topic, value)
    msg = (await channel.select(process.inbox(), timeout=timeout))[1]
    return msg.payload


async def echo(value: Any) -> Any:
    """Return ``value`` (soak: an exec round trip)."""
    return value


# -- workload -------------------------------------------------------------------------------------
async def receiver(keep: bool, interval: float) -> dict[str, Any]:
    """Check every sender's stream; report to the observer every ``interval`` seconds.

    Per sender ``S`` (key of ``peers``): ``n`` messages taken, ``exp`` next seq expected,
    ``miss`` seqs skipped by a gap, ``gap``/``dup``/``reo`` anomalies, ``mon``/``lnk`` whether
    monitor/link succeeded, ``exit`` the EXIT result and ``nx`` the count at that EXIT,
    ``exits``/``downs`` events received, ``late`` messages after the EXIT, ``sent`` the
    sender's own count for us (normal ends) and ``short``/``extra`` its difference.
    """
    process.set_options(trap_links=True)
    me = process.pid()
    inbox, events = process.inbox(), process.events()
    peers: dict[str, dict[str, Any]] = {}
    dirty: set[str] = set()
    totals = {"msgs": 0, "bad": 0, "verified": 0}
    examples: list[list[Any]] = []
    recently_ended: deque[str] = deque(maxlen=2000)  # soak: pruned senders, for late messages
    ended_set: set[str] = set()
    pending_prune: deque[tuple[float, str]] = deque()
    next_report = time.monotonic() + interval

    def bad(kind: str, sender: str, *detail: Any) -> None:
        totals["bad"] += 1
        if len(examples) < 20:
            examples.append([kind, sender, *detail])

    def report(final: bool = False) -> dict[str, Any]:
        stat: dict[str, Any] = {**totals, "examples": examples}
        if keep:
            stat["peers"] = peers if final else {s: peers[s] for s in dirty if s in peers}
        dirty.clear()
        return stat

    while True:
        now = time.monotonic()
        if now >= next_report:
            process.send(OBSERVER, "rstat", report())
            next_report = now + interval
            while pending_prune and pending_prune[0][0] <= now:
                pruned = pending_prune.popleft()[1]
                if pruned in peers:
                    del peers[pruned]
                    if len(recently_ended) == recently_ended.maxlen:
                        ended_set.discard(recently_ended[0])
                    recently_ended.append(pruned)
                    ended_set.add(pruned)
        try:
            ch, item = await channel.select(inbox, events, timeout=max(0.0, next_report - now))
        except TimeoutError:
            continue
        if ch is inbox:
            if item.topic != "seq":
                continue
            sender, seq = item.from_, item.payload
            totals["msgs"] += 1
            p = peers.get(sender)
            if p is None:
                if sender in ended_set:
                    bad("late", sender, seq)
                    continue
                p = peers[sender] = {
                    "n": 0, "exp": 0, "miss": [], "gap": 0, "dup": 0, "reo": 0,
                    "mon": None, "lnk": None, "exit": None, "nx": None, "exits": 0,
                    "downs": 0, "late": 0,
                }
                # (the sender began with seq 0 while we were alive: a first seq > 0 is a gap)
                try:  # monitor first: link succeeding after a failed monitor is impossible
                    await process.monitor(sender)
                    p["mon"] = True
                except NotFoundError:
                    p["mon"] = False
                if p["mon"]:
                    try:
                        await process.link(sender)
                        p["lnk"] = True
                    except NotFoundError:
                        p["lnk"] = False
                else:
                    p["lnk"] = False
                    if not keep:  # the sender is dead: forget it once its messages are in
                        pending_prune.append((time.monotonic() + 5.0, sender))
            dirty.add(sender)
            p["n"] += 1
            if p["exit"] is not None:
                p["late"] += 1
                bad("message after EXIT", sender, seq)
            exp = p["exp"]
            if seq == exp:
                p["exp"] = seq + 1
            elif seq > exp:
                p["gap"] += 1
                bad("gap", sender, exp, seq)
                if len(p["miss"]) < 1000:
                    p["miss"].extend(range(exp, min(seq, exp + 1000)))
                p["exp"] = seq + 1
            elif seq in p["miss"]:
                p["miss"].remove(seq)
                p["reo"] += 1
                bad("reordered", sender, seq, exp)
            else:
                p["dup"] += 1
                bad("duplicated", sender, seq, exp)
            continue
        # events
        if item.kind == process.event.CANCEL:
            # the full record goes ahead of the EXIT (same stream); the EXIT stays small
            process.send(OBSERVER, "rstat", report(final=True))
            return dict(totals)
        sender = item.from_
        p = peers.get(sender)
        if p is None:
            bad("event from a stranger", sender, item.kind)
            continue
        dirty.add(sender)
        if item.kind == process.event.EXIT:
            p["exits"] += 1
            if p["exits"] > 1:
                bad("second EXIT", sender)
                continue
            p["exit"], p["nx"] = item.result, p["n"]
            value = item.result.get("value") if isinstance(item.result, dict) else None
            if isinstance(value, dict) and isinstance(value.get("sent"), dict):
                sent = value["sent"].get(me, 0)
                p["sent"] = sent
                if sent > p["n"]:
                    p["short"] = sent - p["n"]
                    bad("lost at EXIT", sender, sent, p["n"])
                elif sent < p["n"]:
                    p["extra"] = p["n"] - sent
                    bad("extra at EXIT", sender, sent, p["n"])
            totals["verified"] += 1
            if not keep:  # its LINK_DOWN, if any, is right behind the EXIT
                pending_prune.append((time.monotonic() + 5.0, sender))
        elif item.kind == process.event.LINK_DOWN:
            p["downs"] += 1
            if p["downs"] > 1 or not p["lnk"] or p["exit"] is None or p["exit"] != item.result:
                bad("unexpected LINK_DOWN", sender, p["downs"], p["lnk"])


async def sender(
    keep: bool, receivers: list[str], seed: int, burst: int, pause: float, interval: float
) -> dict[str, Any]:
    """Monitor ``receivers``, then send them seq-numbered messages until CANCEL.

    Returns (and reports every ``interval`` seconds) ``sent`` per receiver, ``mon`` whether
    each monitor succeeded, and ``exits``/``downs``: the results of every EXIT / LINK_DOWN
    received, per PID. Ends by itself (``"why": "no receivers"``) when every receiver is gone.
    """
    process.set_options(trap_links=True)
    rng = random.Random(seed)
    events = process.events()
    sent: dict[str, int] = {}
    mon: dict[str, bool] = {}
    exits: dict[str, list[Any]] = {}
    downs: dict[str, list[Any]] = {}
    targets: list[str] = []
    for r in receivers:
        try:
            await process.monitor(r)
            mon[r] = True
            targets.append(r)
            sent[r] = 0
        except NotFoundError:
            mon[r] = False

    def stat(why: str | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {"sent": sent, "mon": mon, "exits": exits, "downs": downs}
        if why:
            out["why"] = why
        return out

    next_report = 0.0
    while True:
        for ev in drain(events):
            if ev.kind == process.event.CANCEL:
                return stat("cancel")
            book = exits if ev.kind == process.event.EXIT else downs
            book.setdefault(ev.from_, []).append(ev.result)
            if ev.from_ in targets:
                targets.remove(ev.from_)
        if not targets:
            return stat("no receivers")
        for _ in range(rng.randint(1, burst)):
            r = targets[rng.randrange(len(targets))]
            process.send(r, "seq", sent[r])
            sent[r] += 1
        now = time.monotonic()
        if now >= next_report:
            # after the seqs it counts: whoever sees this report, the router forwarded those
            process.send(OBSERVER, "sstat", stat())
            next_report = now + interval
        await asyncio.sleep(pause * rng.random() * 2)


async def buddy(partner: str) -> str:
    """Link to ``partner`` (untrapped), confirm it to the observer, then idle forever."""
    try:
        await process.link(partner)
    except NotFoundError:
        process.send(OBSERVER, "linked", partner, False)
        return "partner gone"
    process.send(OBSERVER, "linked", partner, True)
    inbox = process.inbox()
    while True:
        await inbox.receive()


# -- observers ------------------------------------------------------------------------------------
async def watcher(keep: bool) -> Any:
    """Monitor every PID the observer names (``watch``); record each EXIT it gets."""
    inbox, events = process.inbox(), process.events()
    recs: dict[str, dict[str, Any]] = {}
    ended = Seen()
    totals = {"watched": 0, "exits": 0, "bad": 0}
    examples: list[Any] = []
    while True:
        ch, item = await channel.select(events, inbox)
        if ch is events:
            if item.kind == process.event.CANCEL:
                return totals
            totals["exits"] += 1
            rec = recs.get(item.from_)
            if rec is None or not rec["mon"]:
                totals["bad"] += 1
                examples.append(["EXIT of an unmonitored pid", item.from_])
                continue
            rec["exits"].append(item.result)
            if not keep:
                del recs[item.from_]
                if not ended.add(item.from_):
                    totals["bad"] += 1
                    examples.append(["second EXIT", item.from_])
            continue
        if item.topic == "watch":
            totals["watched"] += 1
            try:
                await process.monitor(item.payload)
                ok = True
            except NotFoundError:
                ok = False
            if keep or ok:
                recs[item.payload] = {"mon": ok, "exits": []}
        elif item.topic == "dump":
            process.send(item.from_, "reply", {"recs": recs, "totals": totals,
                                               "examples": examples[:20]})
        elif item.topic == "summary":
            process.send(item.from_, "reply", {**totals, "examples": examples[:20]})


class Observer:
    """State of the observer process (see the module docstring)."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        self.cfg = cfg
        self.keep: bool = cfg.get("keep", True)
        self.rng = random.Random(cfg.get("seed", 0))
        self.hosts: list[str] = cfg["hosts"]
        self.want = {"receiver": cfg.get("receivers", 6), "sender": cfg.get("senders", 8)}
        self.running = False
        self.recs: dict[str, dict[str, Any]] = {}
        self.alive: dict[str, set[str]] = {"receiver": set(), "sender": set(), "buddy": set()}
        self.order = 0  # EXITs received so far: the router's order of ends
        self.spawned = 0
        self.spawn_failures: dict[str, int] = {}
        self.names = 0
        self.violations: list[list[Any]] = []
        self.bad = 0
        self.buddy_of: dict[str, str] = {}  # sender -> its buddy
        self.forget: deque[tuple[float, str]] = deque()
        self.ended = Seen()
        self.totals = {"exits": 0, "downs": 0, "checked_events": 0, "msgs": 0, "recv_bad": 0,
                       "recv_verified": 0, "ended": {"normal": 0, "abnormal": 0}}
        self.rstats: dict[str, dict[str, Any]] = {}  # soak: last report of live receivers

    def violation(self, *what: Any) -> None:
        self.bad += 1
        if len(self.violations) < 50:
            self.violations.append(list(what))

    # -- spawning ------------------------------------------------------------------------------
    async def spawn(self, role: str, host: str, args: list[Any], **rec: Any) -> str | None:
        builder = process.SpawnBuilder()
        name = None
        if role == "receiver":
            self.names += 1
            name = f"rcv-{self.names}"
            builder = builder.with_name(name)
        try:
            pid = await builder.spawn_linked_monitored(f"chaos:{role}", host, *args)
        except ProcessError as e:
            key = f"{role}: {e.kind}"
            self.spawn_failures[key] = self.spawn_failures.get(key, 0) + 1
            return None
        self.spawned += 1
        self.recs[pid] = {"role": role, "host": host, "i": self.spawned, "name": name,
                          "exits": [], "downs": [], "order": None, "stale": None, **rec}
        self.alive[role].add(pid)
        process.send(WATCHER, "watch", pid)
        return pid

    async def top_up(self) -> None:
        cfg = self.cfg
        while len(self.alive["receiver"]) < self.want["receiver"]:
            if await self.spawn("receiver", self.rng.choice(self.hosts),
                                [self.keep, cfg.get("report", 0.2)]) is None:
                return
        while len(self.alive["sender"]) < self.want["sender"]:
            pool = sorted(self.alive["receiver"], key=serial)
            targets = self.rng.sample(pool, min(len(pool), self.rng.randint(2, 4)))
            pid = await self.spawn(
                "sender", self.rng.choice(self.hosts),
                [self.keep, targets, self.rng.randrange(2**31), cfg.get("burst", 10),
                 cfg.get("pause", 0.01), cfg.get("report", 0.2)],
                targets=targets, stat=None)
            if pid is None:
                return
            b = await self.spawn("buddy", self.rng.choice(self.hosts), [pid],
                                 partner=pid, linked=None)
            if b is not None:
                self.buddy_of[pid] = b

    # -- events --------------------------------------------------------------------------------
    async def on_event(self, ev: Any) -> None:
        pid = ev.from_
        rec = self.recs.get(pid)
        if rec is None:
            self.violation("event for an unknown pid", ev.kind, pid)
            return
        if ev.kind == process.event.EXIT:
            self.order += 1
            self.totals["exits"] += 1
            rec["exits"].append(ev.result)
            if len(rec["exits"]) > 1:
                self.violation("second EXIT", pid, ev.result)
                return
            rec["order"] = self.order
            if rec["name"] is not None:  # SPEC 4.4: names are released before any EXIT
                try:
                    holder = process.registry.lookup(rec["name"])
                except NotFoundError:
                    holder = None
                rec["stale"] = holder == pid
                if holder == pid:
                    self.violation("name still points at the dead pid", rec["name"], pid)
            self.alive[rec["role"]].discard(pid)
            abnormal = "error" in ev.result
            self.totals["ended"]["abnormal" if abnormal else "normal"] += 1
            if rec["role"] == "sender":
                stat = ev.result.get("value")
                if isinstance(stat, dict):
                    rec["stat"] = stat
                b = self.buddy_of.pop(pid, None)
                if not abnormal and b is not None and b in self.alive["buddy"]:
                    # the buddy survived a normal end as it must; it has no more use
                    with contextlib.suppress(NotFoundError):
                        await process.terminate(b)
            elif rec["role"] == "receiver":
                self.fold_receiver(pid)
            if not self.keep:
                self.forget.append((time.monotonic() + FORGET_AFTER, pid))
        elif ev.kind == process.event.LINK_DOWN:
            self.totals["downs"] += 1
            rec["downs"].append(ev.result)
            if len(rec["downs"]) > 1 or rec["exits"] != [ev.result]:
                self.violation("LINK_DOWN without a matching EXIT", pid, rec["exits"],
                               rec["downs"])
        else:
            self.violation("unexpected event", ev.kind, pid)

    def receiver_stat(self, pid: str, rec: dict[str, Any], stat: dict[str, Any]) -> None:
        stat = dict(stat)
        peers = stat.pop("peers", None)
        if self.keep:
            if peers:
                rec.setdefault("peers", {}).update(peers)
            rec["stat"] = stat
        else:
            self.rstats[pid] = stat

    def fold_receiver(self, pid: str) -> None:
        stat = self.rstats.pop(pid, None) if not self.keep else self.recs[pid].get("stat")
        if stat:
            self.totals["msgs"] += stat.get("msgs", 0)
            self.totals["recv_bad"] += stat.get("bad", 0)
            self.totals["recv_verified"] += stat.get("verified", 0)
            for ex in stat.get("examples", [])[:5]:
                if stat.get("bad"):
                    self.violation("receiver", pid, ex)

    def expire(self) -> None:
        """Soak: verify and drop the records of processes that ended a while ago."""
        now = time.monotonic()
        while self.forget and self.forget[0][0] <= now:
            pid = self.forget.popleft()[1]
            rec = self.recs.pop(pid)
            if not self.ended.add(pid):
                self.violation("pid ended twice", pid)
            result = rec["exits"][0]
            want = [result] if "error" in result else []
            if rec["downs"] != want:
                self.violation("LINK_DOWNs", pid, result, rec["downs"])
            self.totals["checked_events"] += 1 + len(rec["downs"])

    # -- commands ------------------------------------------------------------------------------
    def command(self, topic: str, value: Any, sender: str) -> Any:
        if topic == "start":
            self.running = True
            return "ok"
        if topic == "quiesce":
            self.running = False
            return "ok"
        if topic == "alive":
            return {role: sorted(pids, key=serial) for role, pids in self.alive.items()}
        if topic == "summary":
            return {
                "order": self.order, "spawned": self.spawned, "running": self.running,
                "alive": {role: len(p) for role, p in self.alive.items()},
                "spawn_failures": self.spawn_failures, "bad": self.bad,
                "violations": self.violations[:20], "totals": self.totals,
                "live_msgs": sum(s.get("msgs", 0) for s in self.rstats.values()),
                "records": len(self.recs),
            }
        if topic == "dump":
            offset, limit = value
            pids = sorted(self.recs, key=lambda p: self.recs[p]["i"])
            return {"total": len(pids), "recs": [[p, self.recs[p]] for p in
                                                 pids[offset:offset + limit]]}
        if topic in ("sstat", "rstat", "linked"):
            rec = self.recs.get(sender)
            if rec is None or rec["exits"]:  # never before its spawn returned: see top_up
                self.violation("report after the EXIT of its sender", topic, sender)
                return None
            if topic == "sstat":
                if self.keep:
                    rec["stat"] = value
            elif topic == "rstat":
                self.receiver_stat(sender, rec, value)
            else:
                rec["linked"] = value[1]
            return None
        return {"error": f"unknown command {topic!r}"}


async def observer(cfg: dict[str, Any]) -> Any:
    """Run the workload and record what happens to it (see the module docstring)."""
    process.set_options(trap_links=True)
    obs = Observer(cfg)
    inbox, events = process.inbox(), process.events()
    next_tick = time.monotonic()
    while True:
        now = time.monotonic()
        if now >= next_tick:
            if obs.running:
                await obs.top_up()
            if not obs.keep:
                obs.expire()
            next_tick = time.monotonic() + TICK
        try:
            # inbox first: a process's last report is queued before its EXIT arrives, and
            # must be taken before it (a report after the EXIT is a violation)
            ch, item = await channel.select(inbox, events,
                                            timeout=max(0.0, next_tick - time.monotonic()))
        except TimeoutError:
            continue
        if ch is events:
            if item.kind == process.event.CANCEL:
                return obs.command("summary", None, "")
            await obs.on_event(item)
            continue
        reply = obs.command(item.topic, item.payload, item.from_)
        if reply is not None:
            process.send(item.from_, "reply", reply)


# -- diagnostics ---------------------------------------------------------------------------------
_heap_baseline: list[Any] = []
_type_baseline: list[dict[str, int]] = []


async def heap(top: int = 12, trim: bool = False, collect: bool = False) -> dict[str, Any]:
    """This worker's heap: RSS, allocated blocks, gc objects, and (when the daemon runs with
    ``PYTHONTRACEMALLOC``) the source lines that grew most since the previous call. With
    ``collect``, what a full ``gc.collect()`` frees; with ``trim``, RSS again after glibc's
    ``malloc_trim(0)`` (memory freed but kept by malloc)."""
    import ctypes
    import gc
    import os
    import sys
    import tracemalloc

    def rss() -> int:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))

    out: dict[str, Any] = {"os_pid": os.getpid(), "rss_kib": rss(),
                           "blocks": sys.getallocatedblocks(), "objects": len(gc.get_objects())}
    if collect:
        out["gc_counts"] = list(gc.get_count())
        out["collected"] = gc.collect()
        out["objects_after_collect"] = len(gc.get_objects())
        out["rss_after_collect_kib"] = rss()
    if trim:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        out["rss_after_trim_kib"] = rss()
    counts: dict[str, int] = {}
    for obj in gc.get_objects():
        name = type(obj).__qualname__
        counts[name] = counts.get(name, 0) + 1
    if _type_baseline:
        base = _type_baseline[0]
        grew = sorted(((n - base.get(k, 0), k) for k, n in counts.items()), reverse=True)
        out["types_grew"] = [[k, d] for d, k in grew[:top] if d > 0]
    _type_baseline[:] = [counts]
    if tracemalloc.is_tracing():
        snap = tracemalloc.take_snapshot().filter_traces(
            [tracemalloc.Filter(False, tracemalloc.__file__)])
        if _heap_baseline:
            stats = snap.compare_to(_heap_baseline[0], "lineno")
            out["grew"] = [[str(s.traceback[0]), s.size_diff, s.count_diff]
                           for s in stats[:top]]
        _heap_baseline[:] = [snap]
        out["traced_kib"] = tracemalloc.get_traced_memory()[0] // 1024
    return out
