#!/usr/bin/env python3
"""Chaos harness: a messaging workload on a real daemon while workers die, stall and are cut.

Hosts: ``chaos:observer`` (one worker, never touched) runs the observer and the watcher
(see ``scripts/chaos_actors/chaos_workload.py``); ``chaos:a`` and ``chaos:b`` (two workers
each) run receivers, senders and buddies, which the observer keeps topped up. For
``--duration`` seconds the harness, driven by ``random.Random(--seed)``:

    kill -9s a random worker of chaos:a/chaos:b, ``--kills`` times, spread over the run
    SIGSTOPs a worker every 2-5 s and SIGCONTs it 0.2-1.5 s later
    CANCELs random workload processes (30% with a 100ms deadline), terminates others

Then the final phase: resume everything, let the node go quiet, check that ``ps``,
``registry`` and ``status`` agree with the observer's live set, CANCEL every sender, then
every receiver, terminate the buddies, check the node holds nothing but the observer and
watcher, fetch every record and verify it (``scripts/chaos_actors/chaos_check.py``):
one EXIT per monitor, one LINK_DOWN per link partner of an abnormal end, streams complete,
in order and without duplicates, no name pointing at a dead PID, no leaked entry. Finally
stop the daemon (exit 0, no worker left) and count tracebacks in its log.

Run:  .venv/bin/python scripts/chaos.py --duration 180 --kills 90 --seed 7 --json out.json
Exit status 0 iff no violation; the daemon's directory is kept (and printed) on failure.

With ``--nodes 3``: a nats-server and three clustered nodes, senders and receivers on
different nodes, worker kill -9s, worker SIGSTOPs (as above) and node kill -9s (each node
restarted; never n1, which holds the collector and the watcher), judged by
``chaos_check.verify_cluster`` (whose docstring defines each stream's cut). See
:class:`ClusterChaos` and README "Chaos on three nodes".
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from harness_common import (  # first: it puts chaos_actors and the repo root on sys.path
    OBSERVER,
    OBSERVER_HOST,
    WATCHER,
    WORKLOAD_HOSTS,
    Cluster,
    Node,
    daemon_session,
    say,
    signal_pid,
)

# isort: split
import chaos_check

from actord.testing import CommandError, Daemon, wait_for


class Pauser:
    """SIGSTOPs one worker at a time and SIGCONTs it 0.2-1.5 s later, from a timer thread
    (the harness's own loop may wait on the stopped worker meanwhile: a ``ps`` waits for a
    stopped worker until the stall rule gives up on it); one killed while stopped is fine:
    the pidfd names that process only. Its counts go in the report."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.log: list[dict[str, Any]] = []
        self.stops = 0
        self.resumes = 0
        self._lock = threading.Lock()
        self._stopped: tuple[int, threading.Timer] | None = None  # pidfd, its resume

    @property
    def idle(self) -> bool:
        return self._stopped is None

    def stop(self, os_pid: int, **where: Any) -> None:
        """SIGSTOP ``os_pid`` (``where`` goes in the log) and arm its SIGCONT."""
        with self._lock:
            assert self._stopped is None
            fd = signal_pid(os_pid, signal.SIGSTOP)
            if fd is None:
                return
            self.stops += 1
            self.log.append({"t": round(time.time(), 3), "os_pid": os_pid, **where})
            timer = threading.Timer(self.rng.uniform(0.2, 1.5), self.resume)
            timer.daemon = True
            self._stopped = (fd, timer)
            timer.start()

    def resume(self) -> None:
        """SIGCONT the stopped worker now, if any."""
        with self._lock:
            if self._stopped is None:
                return
            fd, timer = self._stopped
            timer.cancel()
            with contextlib.suppress(ProcessLookupError):  # killed while stopped: fine
                signal.pidfd_send_signal(fd, signal.SIGCONT)
                self.resumes += 1
            os.close(fd)
            self._stopped = None


class Chaos:
    """The chaos schedule (module docstring) and its counters."""

    def __init__(self, node: Node, rng: random.Random) -> None:
        self.node = node
        self.rng = rng
        self.kills: list[dict[str, Any]] = []
        self.pauser = Pauser(rng)
        self.cancels = 0
        self.terminates = 0
        self.missed = 0  # cancel/terminate of a process that had just ended

    def run(self, duration: float, kills: int) -> None:
        rng = self.rng
        t0 = time.monotonic()
        kill_at = [t0 + (i + rng.uniform(0.1, 0.9)) * duration / max(kills, 1)
                   for i in range(kills)]
        next_stop = t0 + rng.uniform(1.0, 3.0)
        next_cancel = t0 + rng.uniform(0.1, 0.5)
        next_terminate = t0 + rng.uniform(0.1, 0.5)
        next_progress = t0 + 5.0
        while True:
            now = time.monotonic()
            elapsed = now - t0
            if elapsed >= duration and not kill_at:
                break
            if elapsed > duration + 60:
                raise RuntimeError(f"only {len(self.kills)} of {kills} kills in {elapsed:.0f}s")
            if kill_at and now >= kill_at[0] and self._kill():
                kill_at.pop(0)
            if elapsed < duration:
                if now >= next_stop and self.pauser.idle:
                    self._stop()
                    next_stop = now + rng.uniform(2.0, 5.0)
                if now >= next_cancel:
                    self._cancel()
                    next_cancel = now + rng.uniform(0.1, 0.5)
                if now >= next_terminate:
                    self._terminate()
                    next_terminate = now + rng.uniform(0.15, 0.6)
            if now >= next_progress:
                s = self.node.summary()
                say(f"[{elapsed:5.1f}s] kills {len(self.kills)} stops {self.pauser.stops} "
                    f"cancels {self.cancels} terminates {self.terminates} | "
                    f"spawned {s['spawned']} ended {s['order']} alive {s['alive']} "
                    f"observer violations {s['bad']}")
                next_progress = now + 5.0
            time.sleep(0.01)
        self.pauser.resume()

    def _candidates(self, min_uptime: float) -> list[dict[str, Any]]:
        return [w for w in self.node.workers()
                if w["up"] and w.get("uptime", min_uptime) >= min_uptime]

    def _kill(self) -> bool:
        workers = self._candidates(0.3)
        if self.kills:  # spread the kills over the slots
            last = (self.kills[-1]["host"], self.kills[-1]["index"])
            workers = [w for w in workers if (w["host"], w["index"]) != last] or workers
        if not workers:
            return False
        w = self.rng.choice(workers)
        fd = signal_pid(w["os_pid"], signal.SIGKILL)
        if fd is None:
            return False
        os.close(fd)
        self.kills.append({"t": round(time.time(), 3), "host": w["host"], "index": w["index"],
                           "os_pid": w["os_pid"], "processes": w["processes"]})
        return True

    def _stop(self) -> None:
        workers = self._candidates(0.3)
        if not workers:
            return
        w = self.rng.choice(workers)
        self.pauser.stop(w["os_pid"], host=w["host"], index=w["index"])

    def _target(self) -> str | None:
        return self.node.random_alive(self.rng, 0.5)

    def _cancel(self) -> None:
        pid = self._target()
        if pid is None:
            return
        args: dict[str, Any] = {"dest": pid, "reason": "chaos"}
        if self.rng.random() < 0.3:
            args["deadline"] = "100ms"
        try:
            self.node.d.call("cancel", **args)
            self.cancels += 1
        except CommandError as e:
            if e.kind != "NOT_FOUND":
                raise
            self.missed += 1

    def _terminate(self) -> None:
        pid = self._target()
        if pid is None:
            return
        try:
            # no wait: the worker may be SIGSTOPped by this very thread
            self.node.d.call("kill", dest=pid, no_wait=True)
            self.terminates += 1
        except CommandError as e:
            if e.kind != "NOT_FOUND":
                raise
            self.missed += 1


def _wait_role_gone(node: Node, role: str, timeout: float = 60.0) -> None:
    wait_for(lambda: not node.alive()[role], timeout, interval=0.2, what=f"every {role} ended")


def _quiet(node: Node, timeout: float = 60.0) -> dict[str, Any]:
    """Wait until no process ended or started for a second; the observer's summary."""
    deadline = time.monotonic() + timeout
    prev = node.summary()
    while True:
        time.sleep(1.0)
        cur = node.summary()
        if (cur["order"], cur["spawned"]) == (prev["order"], prev["spawned"]):
            return cur
        if time.monotonic() > deadline:
            raise TimeoutError("the node never went quiet")
        prev = cur


def final_phase(node: Node) -> dict[str, Any]:
    """Stop the workload in order and collect everything (module docstring)."""
    d = node.d
    wait_for(lambda: all(w["up"] for w in node.workers()), 60, interval=0.1,
             what="every worker up")
    node.ask(OBSERVER, "quiesce")
    quiet = _quiet(node)
    e0 = quiet["order"]
    alive = node.alive()
    observers = {node.observer_pid, node.watcher_pid}
    live = {p for pids in alive.values() for p in pids} | observers
    leaks = [f"while running: {p}" for p in node.check_tables(live)]
    receiver_names = {pid for name, pid in d.call("registry").items() if name.startswith("rcv-")}
    if receiver_names != set(alive["receiver"]):
        leaks.append(f"while running: receiver names {len(receiver_names)} != "
                     f"{len(alive['receiver'])} live receivers")

    def stop_all(role: str, how: str) -> set[str]:
        done = set()
        for pid in alive[role]:
            try:
                if how == "cancel":
                    d.call("cancel", dest=pid, reason="final")
                else:
                    d.call("kill", dest=pid)
                done.add(pid)
            except CommandError as e:
                if e.kind != "NOT_FOUND":
                    raise
        _wait_role_gone(node, role)
        return done

    final_senders = stop_all("sender", "cancel")
    final_receivers = stop_all("receiver", "cancel")
    stop_all("buddy", "terminate")
    summary = _quiet(node)
    leaks += [f"after the workload: {p}" for p in node.check_tables(observers)]
    registry = d.call("registry")
    if set(registry) != {OBSERVER, WATCHER}:
        leaks.append(f"after the workload: registry {sorted(registry)[:8]}")

    recs: dict[str, dict[str, Any]] = {}
    while True:
        page = node.ask(OBSERVER, "dump", [len(recs), 100])
        recs.update((pid, rec) for pid, rec in page["recs"])
        if len(recs) >= page["total"] or not page["recs"]:
            break
    watch = node.ask(WATCHER, "dump")
    if node.dump_path is not None:  # the raw records, for a post-mortem
        node.dump_path.write_text(json.dumps({"e0": e0, "recs": recs, "watch": watch,
                                              "final_senders": sorted(final_senders),
                                              "final_receivers": sorted(final_receivers)}))
    verdict = chaos_check.verify(recs, watch["recs"], e0, final_senders, final_receivers)
    for kind, n in {"observer": summary["bad"], "watcher": watch["totals"]["bad"]}.items():
        if n:
            verdict["violations"][f"seen live by the {kind}"] = n
            verdict["examples"] += (summary["violations"] if kind == "observer"
                                    else watch["examples"])[:10]

    for pid in observers:
        d.call("cancel", dest=pid, reason="done")
    wait_for(lambda: d.call("status").get("processes", 0) == 0 and not d.call("ps"), 30,
             interval=0.1, what="no process left")
    if d.call("registry"):
        leaks.append(f"at the end: registry {d.call('registry')}")
    return {"e0": e0, "summary": summary, "verdict": verdict, "leaks": leaks,
            "processes_started": len(recs),
            "processes_ended": sum(1 for r in recs.values() if r["exits"]),
            "ended": summary["totals"]["ended"], "spawn_failures": summary["spawn_failures"]}


def run(args: argparse.Namespace) -> dict[str, Any]:
    """One chaos run; the report."""
    rng = random.Random(args.seed)
    with daemon_session(args.workdir, "actord-chaos-") as session:
        daemon, node = session.daemon, session.node
        node.dump_path = args.dump
        report: dict[str, Any] = {"seed": args.seed, "duration": args.duration,
                                  "workdir": str(session.workdir)}
        cfg = {"keep": True, "seed": rng.randrange(2**31), "hosts": sorted(WORKLOAD_HOSTS),
               "receivers": args.receivers, "senders": args.senders, "burst": args.burst,
               "pause": args.pause, "report": 0.2}
        node.start_observers(cfg)
        node.ask(OBSERVER, "start")
        wait_for(lambda: node.summary()["alive"]["sender"] >= args.senders, 30, interval=0.1,
                 what="the workload up")
        chaos = Chaos(node, rng)
        t0 = time.monotonic()
        chaos.run(args.duration, args.kills)
        report["chaos_seconds"] = round(time.monotonic() - t0, 1)
        say("chaos over; final phase")
        report.update(final_phase(node))
        workers = node.workers()
        restarts = sum(w["restarts"] for w in workers)
        report.update({
            "kills": len(chaos.kills), "restarts": restarts,
            "workers_up": all(w["up"] for w in workers),
            "stops": chaos.pauser.stops, "resumes": chaos.pauser.resumes,
            "cancels": chaos.cancels,
            "terminates": chaos.terminates, "missed": chaos.missed,
        })
        report["kill_log"], report["stop_log"] = chaos.kills, chaos.pauser.log
        if restarts < len(chaos.kills):
            report["leaks"].append(f"{len(chaos.kills)} kills but {restarts} worker restarts")
        worker_pids = [w["os_pid"] for w in daemon.workers()]
        st = daemon.call("status")
        report["routed"], report["dead_letters"] = st.get("routed"), st.get("dead_letters")
        code = daemon.stop()
        if code != 0:
            report["leaks"].append(f"daemon exit code {code}")
        survivors = [p for p in worker_pids if Path(f"/proc/{p}").exists()]
        if survivors:
            report["leaks"].append(f"workers alive after the daemon stopped: {survivors}")
        log = daemon.log()
        report["tracebacks"] = log.count("Traceback")
        killed = {k["os_pid"] for k in chaos.kills}
        unexplained = [line for line in log.splitlines() if " exited with " in line
                       and int(line.split("(os pid ")[1].split(")")[0]) not in killed]
        # a worker death the harness did not cause is a runtime bug (this is how the
        # past-deadline CANCEL crash was found): reported on its own line, and a failure
        report["unexplained_worker_deaths"] = unexplained
        if restarts != len(chaos.kills) + len(unexplained):
            report["leaks"].append(
                f"{restarts} worker restarts for {len(chaos.kills)} kills and "
                f"{len(unexplained)} unexplained deaths"
            )
        session.ok = report_ok(report)
    return report


def report_ok(report: dict[str, Any]) -> bool:
    v = report.get("verdict", {})
    return bool(v) and not (v["lost"] or v["duplicated"] or v["reordered"] or v["violations"]
                            or report["leaks"] or report["tracebacks"]
                            or report.get("unexplained_worker_deaths")
                            or not report["workers_up"])


def print_report(report: dict[str, Any]) -> None:
    v = report["verdict"]
    ended = report["ended"]
    rows = [
        ("seed", report["seed"]),
        ("chaos duration (s)", report["chaos_seconds"]),
        ("worker kills survived", f"{report['kills']} ({report['restarts']} restarts, "
                                  f"all up: {report['workers_up']})"),
        ("SIGSTOP / SIGCONT", f"{report['stops']} / {report['resumes']} "
                              f"({report['stops'] - report['resumes']} killed while stopped)"),
        ("cancels / terminates", f"{report['cancels']} / {report['terminates']} "
                                 f"(+{report['missed']} on just-ended processes)"),
        ("processes started / ended", f"{report['processes_started']} / "
                                      f"{report['processes_ended']} (normal {ended['normal']}, "
                                      f"abnormal {ended['abnormal']})"),
        ("events checked (EXIT, LINK_DOWN)", v["events_checked"]),
        ("messages checked", v["messages_checked"]),
        ("streams checked: exact / lower bound", f"{v['streams_exact']} / {v['streams_floor']}"),
        ("lost", v["lost"]),
        ("duplicated", v["duplicated"]),
        ("reordered", v["reordered"]),
        ("other violations", sum(v["violations"].values())),
        ("leaks", len(report["leaks"])),
        ("worker deaths the harness did not cause",
         len(report.get("unexplained_worker_deaths", []))),
        ("daemon tracebacks", report["tracebacks"]),
    ]
    print_findings(rows, v, report["leaks"])
    verdict = "PASS" if report_ok(report) else f"FAIL (daemon dir {report['workdir']})"
    print(f"verdict: {verdict}")


# -- three nodes (--nodes 3) ----------------------------------------------------------------------
WORKLOAD_IDS = {"chaos:creceiver": "receiver", "chaos:csender": "sender"}
LOG_BREAKS = [  # a line in node N's log that breaks the pair {N, group 1} ("*": every pair)
    re.compile(r"node (\S+) down"),
    re.compile(r"cluster: pair with (\S+) broken"),
    re.compile(r"cluster: gap from (\S+):"),
    re.compile(r"cluster: \d+ frames to (\S+) lost"),
    re.compile(r"cluster: (NATS) connection lost"),
]


class ClusterChaos:
    """The three-node run (``--nodes``): the workload, the kill schedule and the final phase.

    Every receiver and sender is spawned by the harness through its node's own control socket
    (receivers first, then senders aimed at 1-3 receivers on other nodes, alive at the last
    ``ps``), so the harness knows each PID's node, run and spawn time; the watcher on n1 is
    told every PID (only n1's when the build has no monitors across nodes). With ``--links``
    (the default) each receiver also traps links and links to its senders: a sender dies of
    its receiver's abnormal end or of a break of their pair, as an Erlang process would."""

    def __init__(self, cluster: Cluster, rng: random.Random, args: argparse.Namespace) -> None:
        self.c = cluster
        self.rng = rng
        self.args = args
        self.procs: dict[str, dict[str, Any]] = {}
        self.alive: dict[str, dict[str, list[str]]] = {}  # node -> role -> PIDs (last ps)
        self.worker_kills: list[dict[str, Any]] = []
        self.node_kills: list[dict[str, Any]] = []
        self.down_until: dict[str, float] = {}
        self.spawn_failures: Counter[str] = Counter()
        self.pauser = Pauser(rng)
        self.collector = self.watcher = ""
        self.watched = 0

    @property
    def n1(self) -> Daemon:
        return self.c.daemons[Cluster.OBSERVER_NODE]

    def ask(self, dest: str, topic: str, value: Any = None) -> Any:
        r = self.n1.call("exec", 90.0, id="chaos:ask", host=OBSERVER_HOST,
                         args=[dest, topic, value, 60.0], timeout=75.0)
        if "error" in r:
            raise RuntimeError(f"ask {dest} {topic}: {r['error']}")
        return r["value"]

    def dump(self, dest: str, key: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        while True:
            page = self.ask(dest, "dump", [len(out), 200])
            out.update((pid, rec) for pid, rec in page[key])
            if len(out) >= page["total"] or not page[key]:
                return out

    def start_observers(self) -> None:
        self.collector = self.n1.call("spawn", id="chaos:ccollector", host=OBSERVER_HOST)
        self.watcher = self.n1.call("spawn", id="chaos:cwatcher", host=OBSERVER_HOST)

    # -- the workload ----------------------------------------------------------------------------
    def poll(self) -> None:
        """``ps`` on every live node; top the population up."""
        self.poll_only()
        for n in self.c.live():
            for _ in range(self.args.receivers - len(self.alive[n]["receiver"])):
                self.spawn(n, "receiver", [self.collector, REPORT,
                                           bool(self.args.remote_monitors),
                                           bool(self.args.links)])
        for n in self.c.live():
            for _ in range(self.args.senders - len(self.alive[n]["sender"])):
                pool = [r for m in self.c.live() if m != n for r in self.alive[m]["receiver"]]
                if not pool:
                    break
                targets = self.rng.sample(pool, min(len(pool), self.rng.randint(1, 3)))
                self.spawn(n, "sender", [self.collector, targets, self.rng.randrange(2**31),
                                         self.args.burst, self.args.pause, REPORT,
                                         self.rng.uniform(2.0, 8.0)], targets=targets)

    def spawn(self, node: str, role: str, args: list[Any], **rec: Any) -> None:
        host = self.rng.choice(sorted(CLUSTER_HOSTS))
        t = time.time()
        try:
            pid = self.c.daemons[node].call("spawn", id=f"chaos:c{role}", host=host, args=args)
        except CommandError as e:  # its worker was just killed: counted, topped up later
            self.spawn_failures[f"{role}: {e.kind}"] += 1
            return
        self.procs[pid] = {"role": role, "node": node, "run": self.c.runs[node], "t": t,
                           "host": host, **rec}
        self.alive[node][role].append(pid)
        if node == Cluster.OBSERVER_NODE or self.args.remote_monitors:
            self.n1.call("send", dest=self.watcher, topic="watch", values=[pid])
            self.watched += 1

    # -- the chaos -------------------------------------------------------------------------------
    def run(self, duration: float) -> None:
        rng, args = self.rng, self.args
        t0 = time.monotonic()

        def spread(n: int) -> list[float]:
            return [t0 + (i + rng.uniform(0.1, 0.9)) * duration / max(n, 1) for i in range(n)]

        worker_at, node_at = spread(args.kills), spread(args.node_kills)
        next_progress = t0 + 5.0
        next_stop = t0 + rng.uniform(1.0, 3.0)
        while True:
            now = time.monotonic()
            elapsed = now - t0
            if elapsed >= duration and not worker_at and not node_at:
                break
            if args.stops and elapsed < duration and now >= next_stop and self.pauser.idle:
                self._stop_worker()
                next_stop = now + rng.uniform(2.0, 5.0)
            if elapsed > duration + 60:
                raise RuntimeError(f"only {len(self.worker_kills)} worker and "
                                   f"{len(self.node_kills)} node kills in {elapsed:.0f}s")
            for n, at in list(self.down_until.items()):
                if now >= at:
                    del self.down_until[n]
                    self.c.start_node(n)
                    say(f"[{time.monotonic() - t0:5.1f}s] {n} restarted (run {self.c.runs[n]})")
            if node_at and now >= node_at[0] and not self.down_until and self._kill_node():
                node_at.pop(0)
            if worker_at and time.monotonic() >= worker_at[0] and self._kill_worker():
                worker_at.pop(0)
            self.poll()
            if now >= next_progress:
                s = self.ask(self.collector, "summary")
                say(f"[{elapsed:5.1f}s] worker kills {len(self.worker_kills)} node kills "
                    f"{len(self.node_kills)} stops {self.pauser.stops} | "
                    f"spawned {len(self.procs)} | received "
                    f"{s['received']} sent {s['sent']}")
                next_progress = now + 5.0
            time.sleep(0.1)
        self.pauser.resume()

    def _kill_node(self) -> bool:
        victims = [n for n in self.c.live() if n != Cluster.OBSERVER_NODE]
        if not victims:
            return False
        n = self.rng.choice(victims)
        run = self.c.runs[n]
        t = self.c.kill_node(n)
        self.down_until[n] = time.monotonic() + self.rng.uniform(0.2, 2.5)
        self.node_kills.append({"t": round(t, 3), "node": n, "run": run,
                                "processes": sum(map(len, self.alive[n].values()))})
        self._gone(n, {}, t)
        self.alive[n] = {"receiver": [], "sender": []}
        return True

    def _workers(self) -> list[tuple[str, dict[str, Any]]]:
        """Every live workload worker up for 0.3 s, with its node."""
        return [(n, w) for n in self.c.live() for w in self.c.daemons[n].workers()
                if w["host"] in CLUSTER_HOSTS and w["up"] and w.get("uptime", 1.0) >= 0.3]

    def _stop_worker(self) -> None:
        cands = self._workers()
        if cands:
            n, w = self.rng.choice(cands)
            self.pauser.stop(w["os_pid"], node=n, host=w["host"])

    def _kill_worker(self) -> bool:
        cands = self._workers()
        if not cands:
            return False
        n, w = self.rng.choice(cands)
        fd = signal_pid(w["os_pid"], signal.SIGKILL)
        if fd is None:
            return False
        os.close(fd)
        self.worker_kills.append({"t": round(time.time(), 3), "node": n, "run": self.c.runs[n],
                                  "host": w["host"], "os_pid": w["os_pid"],
                                  "processes": w["processes"]})
        return True

    # -- the end ---------------------------------------------------------------------------------
    def _everywhere(self, role: str) -> list[tuple[str, str]]:
        self.poll_only()
        return [(n, pid) for n in self.c.live() for pid in self.alive[n][role]]

    def poll_only(self) -> None:
        """``ps`` on every live node: the live sets, and ``gone`` (the wall time of the first
        ``ps`` without it: an upper bound of its end) of each process that ended."""
        for n in self.c.live():
            rows = self.c.daemons[n].call("ps")
            now = time.time()
            roles = {r: [row["pid"] for row in rows if WORKLOAD_IDS.get(row["id"]) == r]
                     for r in ("receiver", "sender")}
            self._gone(n, roles, now)
            self.alive[n] = roles

    def _gone(self, node: str, alive: dict[str, list[str]], now: float) -> None:
        still = {p for pids in alive.values() for p in pids}
        for pids in self.alive.get(node, {}).values():
            for pid in pids:
                if pid not in still:
                    self.procs[pid].setdefault("gone", round(now, 3))

    def _quiet(self, dest: str, *keys: str, timeout: float = 60.0) -> None:
        """Wait until ``dest``'s summary ``keys`` stayed the same for 1.5 s."""
        def sample() -> list[Any]:
            summary = self.ask(dest, "summary")
            return [summary[k] for k in keys]

        deadline = time.monotonic() + timeout
        prev = sample()
        still = time.monotonic()
        while time.monotonic() - still < 1.5:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{keys} never settled")
            time.sleep(0.25)
            cur = sample()
            if cur != prev:
                prev, still = cur, time.monotonic()

    def final_phase(self) -> dict[str, Any]:
        """Restart a node still down, cancel every sender, let the streams drain, cancel
        every receiver, check the tables, collect and judge (see ``verify_cluster``)."""
        for n in list(self.down_until):
            del self.down_until[n]
            self.c.start_node(n)
        self.c.wait_mesh()
        for n in self.c.live():
            wait_for(lambda n=n: all(w["up"] for w in self.c.daemons[n].workers()), 60,
                     interval=0.1, what=f"every worker of {n} up")
        for role in ("sender", "receiver"):
            for n, pid in self._everywhere(role):
                with contextlib.suppress(CommandError):  # NOT_FOUND: it just ended
                    self.c.daemons[n].call("cancel", dest=pid, reason="final")
            wait_for(lambda role=role: not self._everywhere(role), 60, interval=0.2,
                     what=f"every {role} ended")
            # after the senders: their last seqs, fins and EXITs reach the receivers
            self._quiet(self.collector, *(("received", "exits") if role == "sender"
                                          else ("rstat",)))
        self._quiet(self.watcher, "exits")
        leaks = []
        for n in self.c.live():
            d = self.c.daemons[n]
            want = {self.collector, self.watcher} if n == Cluster.OBSERVER_NODE else set()
            ps = {row["pid"] for row in d.call("ps")}
            if ps != want:
                leaks.append(f"{n}: ps {sorted(ps - want)[:5]} extra, {sorted(want - ps)} missing")
            st = d.call("status")
            if st.get("processes", len(want)) != len(want):
                leaks.append(f"{n}: status processes {st.get('processes')} != {len(want)}")
            if d.call("registry"):
                leaks.append(f"{n}: registry {d.call('registry')}")
            down = [r["node"] for r in d.call("nodes") if r["state"] != "up"]
            if down:
                leaks.append(f"{n}: nodes not up at the end: {down}")
        reports = self.dump(self.collector, "reports")
        watch = self.dump(self.watcher, "recs")
        for pid in (self.collector, self.watcher):
            self.n1.call("cancel", dest=pid, reason="done")
        wait_for(lambda: not self.n1.call("ps"), 30, interval=0.1, what="n1 empty")
        return {"reports": reports, "watch": watch, "leaks": leaks}


#: the workload hosts of every node of the cluster
CLUSTER_HOSTS = {"chaos:a", "chaos:b"}
#: seconds between two reports of a workload process to the collector
REPORT = 0.25


def log_breaks(logs: dict[str, str]) -> list[list[Any]]:
    """``[node, other node or "*", wall time, line]`` of every pair break in the logs."""
    out: list[list[Any]] = []
    for node, text in logs.items():
        for line in text.splitlines():
            for pat in LOG_BREAKS:
                m = pat.search(line)
                if m is None:
                    continue
                try:
                    t = time.mktime(time.strptime(line[:19], "%Y-%m-%d %H:%M:%S"))
                    t += int(line[20:23]) / 1000
                except ValueError:
                    continue
                other = "*" if m.group(1) == "NATS" else m.group(1)
                out.append([node, other, t, line[:200]])
    return out


def run_cluster(args: argparse.Namespace) -> dict[str, Any]:
    """One run on ``--nodes`` nodes; the report."""
    rng = random.Random(args.seed)
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="actord-chaos3-"))
    cluster = Cluster(workdir, args.nodes, args.node_timeout)
    report: dict[str, Any] = {"seed": args.seed, "duration": args.duration, "nodes": args.nodes,
                              "workdir": str(workdir), "leaks": []}
    ok = False
    try:
        cluster.start()
        chaos = ClusterChaos(cluster, rng, args)
        chaos.start_observers()
        if args.remote_monitors is None:
            args.remote_monitors = remote_monitors(chaos)
        report["remote_monitors"], report["links"] = args.remote_monitors, args.links
        chaos.poll()
        t0 = time.monotonic()
        chaos.run(args.duration)
        report["chaos_seconds"] = round(time.monotonic() - t0, 1)
        say("chaos over; final phase")
        end = chaos.final_phase()
        report["leaks"] += end["leaks"]
        stopped = cluster.stop()
        report.update(stopped)
        if any(code != 0 for code in stopped["exit_codes"].values()):
            report["leaks"].append(f"daemon exit codes {stopped['exit_codes']}")
        if stopped["survivors"]:
            report["leaks"].append(f"workers alive after their daemon stopped: "
                                   f"{stopped['survivors']}")
        if cluster.orphans:
            report["leaks"].append(f"workers alive 10 s after their node's kill -9: "
                                   f"{cluster.orphans}")
        logs = cluster.logs()
        breaks = log_breaks(logs)
        killed = [list(k) for k in cluster.killed]
        report["verdict"] = chaos_check.verify_cluster(chaos.procs, end["reports"], end["watch"],
                                                       killed, breaks)
        killed_os = {k["os_pid"] for k in chaos.worker_kills}
        report["unexplained_worker_deaths"] = [
            f"{n}: {line}" for n, text in logs.items() for line in text.splitlines()
            if " exited with " in line and "(os pid " in line
            and int(line.split("(os pid ")[1].split(")")[0]) not in killed_os]
        report["tracebacks"] = {n: text.count("Traceback") for n, text in logs.items()}
        report["spontaneous_breaks"] = [  # not within 5 s after a kill of either node
            b[3] for b in breaks
            if not any(n in (b[0], b[1]) and 0 <= b[2] - t <= 5.0 for n, _, t in cluster.killed)]
        report.update({
            "worker_kills": len(chaos.worker_kills), "node_kills": len(chaos.node_kills),
            "stops": chaos.pauser.stops, "resumes": chaos.pauser.resumes,
            "stop_log": chaos.pauser.log,
            "processes_started": len(chaos.procs), "watched": chaos.watched,
            "spawn_failures": dict(chaos.spawn_failures), "pair_breaks_logged": len(breaks),
            "worker_kill_log": chaos.worker_kills, "node_kill_log": chaos.node_kills,
        })
        if args.dump is not None:
            args.dump.write_text(json.dumps({"procs": chaos.procs, "reports": end["reports"],
                                             "watch": end["watch"], "killed": killed,
                                             "breaks": breaks}))
        ok = cluster_ok(report)
    finally:
        cluster.teardown()
        if ok and not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    return report


def remote_monitors(chaos: ClusterChaos) -> bool:
    """Whether this build monitors across nodes: a probe on n1 monitors a process on n2."""
    n2 = chaos.c.daemons["n2"]
    target = n2.call("spawn", id="chaos:creceiver", host="chaos:a", args=[chaos.collector, 1.0])
    r = chaos.n1.call("exec", 30.0, id="chaos:cprobe", host=OBSERVER_HOST, args=[target],
                      timeout=20.0)
    n2.call("kill", dest=target)
    say(f"monitor of a process on another node: {r}")
    return r.get("value") is True


def cluster_ok(report: dict[str, Any]) -> bool:
    v = report.get("verdict", {})
    return bool(v) and not (v["lost"] or v["duplicated"] or v["reordered"] or v["violations"]
                            or report["leaks"] or any(report["tracebacks"].values())
                            or report["unexplained_worker_deaths"])


def print_cluster_report(report: dict[str, Any]) -> None:
    v = report["verdict"]
    rows = [
        ("seed", report["seed"]),
        ("nodes", report["nodes"]),
        ("chaos duration (s)", report["chaos_seconds"]),
        ("node kill -9 + restart", report["node_kills"]),
        ("worker kill -9", report["worker_kills"]),
        ("worker SIGSTOP / SIGCONT", f"{report['stops']} / {report['resumes']}"),
        ("processes started (watched)", f"{report['processes_started']} "
                                        f"({report['watched']}; across nodes: "
                                        f"{report['remote_monitors']})"),
        ("messages checked", v["messages_checked"]),
        ("streams: exact / floor / prefix / cut by a break",
         f"{v['streams_exact']} / {v['streams_floor']} / {v['streams_prefix']} / "
         f"{v['streams_cut_by_break']}"),
        ("monitors: watcher / receivers", f"{v['monitored']} / {v['receiver_monitors']}"),
        ("links: receivers' (LINK_DOWNs, node down)",
         f"{v['receiver_links']} ({v['link_downs']}, {v['link_node_downs']})"),
        ("EXITs checked (watcher's node down)", f"{v['events_checked']} "
                                                f"({v['node_down_exits']})"),
        ("pair breaks logged (not from a kill)", f"{report['pair_breaks_logged']} "
                                                 f"({len(report['spontaneous_breaks'])})"),
        ("lost", v["lost"]),
        ("duplicated", v["duplicated"]),
        ("reordered", v["reordered"]),
        ("other violations", sum(v["violations"].values())),
        ("leaks", len(report["leaks"])),
        ("worker deaths the harness did not cause", len(report["unexplained_worker_deaths"])),
        ("daemon tracebacks", sum(report["tracebacks"].values())),
    ]
    print_findings(rows, v, report["leaks"])
    for line in report["unexplained_worker_deaths"][:10]:
        print(f"unexplained: {line}")
    verdict = "PASS" if cluster_ok(report) else f"FAIL (directory {report['workdir']})"
    print(f"verdict: {verdict}")


def print_findings(rows: list[tuple[str, Any]], v: dict[str, Any], leaks: list[Any]) -> None:
    """The metric | value table, then every violation kind, examples and leak."""
    width = max(len(k) for k, _ in rows)
    print(f"{'metric'.ljust(width)} | value")
    print(f"{'-' * width}-+-{'-' * 40}")
    for k, val in rows:
        print(f"{k.ljust(width)} | {val}")
    for kind, n in v["violations"].items():
        print(f"violation: {kind}: {n}")
    for ex in v["examples"][:20]:
        text = repr(ex)
        print(f"  e.g. {text[:400]}{'...' if len(text) > 400 else ''}")
    for leak in leaks:
        print(f"leak: {leak}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=180.0, help="seconds of chaos")
    parser.add_argument("--kills", type=int, default=None,
                        help="worker kill -9s (default 90, with --nodes 30)")
    parser.add_argument("--seed", type=int, default=None, help="default: random (printed)")
    parser.add_argument("--json", type=Path, default=None, help="write the report here")
    parser.add_argument("--workdir", default=None, help="daemon directory (kept)")
    parser.add_argument("--dump", type=Path, default=None, help="write the raw records here")
    parser.add_argument("--receivers", type=int, default=None,
                        help="receivers (default 6; with --nodes: per node, 2)")
    parser.add_argument("--senders", type=int, default=None,
                        help="senders (default 8; with --nodes: per node, 3)")
    parser.add_argument("--burst", type=int, default=None,
                        help="max messages per burst (default 10; with --nodes 5)")
    parser.add_argument("--pause", type=float, default=None,
                        help="mean pause between bursts (default 0.01; with --nodes 0.02)")
    cluster = parser.add_argument_group("three nodes (docstring of ClusterChaos)")
    cluster.add_argument("--nodes", type=int, default=1,
                         help="nodes joined through a nats-server started here (1: no cluster)")
    cluster.add_argument("--node-kills", type=int, default=8,
                         help="kill -9 + restart of a whole node (never n1)")
    cluster.add_argument("--node-timeout", default="1s", help="[cluster] node_timeout")
    cluster.add_argument("--remote-monitors", action=argparse.BooleanOptionalAction,
                         default=None, help="the watcher on n1 monitors every node's processes "
                                            "(default: when a probe shows the build can)")
    cluster.add_argument("--links", action=argparse.BooleanOptionalAction, default=True,
                         help="receivers trap links and link to their senders across nodes")
    cluster.add_argument("--stops", action=argparse.BooleanOptionalAction, default=True,
                         help="SIGSTOP a worker every 2-5 s, SIGCONT it 0.2-1.5 s later")
    args = parser.parse_args(argv)
    one = args.nodes == 1
    for key, single, per_node in (("kills", 90, 30), ("receivers", 6, 2), ("senders", 8, 3),
                                  ("burst", 10, 5), ("pause", 0.01, 0.02)):
        if getattr(args, key) is None:
            setattr(args, key, single if one else per_node)
    if args.seed is None:
        args.seed = random.randrange(2**31)
    if not one:
        if args.nodes < 2:
            parser.error("--nodes: 1, or 2 and more")
        say(f"chaos on {args.nodes} nodes: seed {args.seed}, {args.duration:.0f}s, "
            f"{args.kills} worker kills, {args.node_kills} node kills")
        report = run_cluster(args)
        print_cluster_report(report)
        ok = cluster_ok(report)
    else:
        say(f"chaos: seed {args.seed}, {args.duration:.0f}s, {args.kills} kills")
        report = run(args)
        print_report(report)
        ok = report_ok(report)
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2, default=str))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
