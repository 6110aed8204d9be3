#!/usr/bin/env python3
"""Soak: a mixed workload on a real daemon for a long time, RSS sampled, so a leak is a slope.

The chaos workload (``scripts/chaos_actors/chaos_workload.py``) in its verify-and-forget mode:
the observer keeps receivers, senders and buddies topped up (spawn with monitor+link+name,
seq-numbered streams, link cascades), and drops each ended process's record once checked,
so nothing in the workload itself grows. On top, the harness keeps the churn going:
CANCELs and terminates random processes, runs an ``exec`` round trip and the ``status``,
``ps`` and ``registry`` commands, and (``--kills-per-min``) kill -9s workers.

Every ``--interval`` seconds it prints the RSS of the router (the daemon's OS process) and
of every worker, and at the end a least-squares slope per process in KiB/min over the
samples after the warm-up (the first 20%, at most 60 s; a worker only since its last
restart) and over their second half (a one-off step early on inflates the first, a leak
shows in both), then the workload's verdict and a leak check of the daemon's tables.

Run:  .venv/bin/python scripts/soak.py --duration 600 --interval 10 [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sys
import time
from pathlib import Path
from typing import Any

from harness_common import (  # first: it puts chaos_actors and the repo root on sys.path
    OBSERVER,
    WATCHER,
    Node,
    daemon_session,
    say,
    signal_pid,
)

from actord.testing import CommandError, wait_for


def rss_kib(os_pid: int) -> int | None:
    """Resident set size of an OS process in KiB (None once it is gone)."""
    try:
        with open(f"/proc/{os_pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def slope(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of ``(seconds, KiB)`` points, in KiB per minute."""
    if len(points) < 3:
        return None
    n = len(points)
    mx = sum(t for t, _ in points) / n
    my = sum(v for _, v in points) / n
    sxx = sum((t - mx) ** 2 for t, _ in points)
    if sxx == 0:
        return None
    sxy = sum((t - mx) * (v - my) for t, v in points)
    return sxy / sxx * 60.0


class Soak:
    """The churn driver and the RSS recorder."""

    def __init__(self, node: Node, rng: random.Random, args: argparse.Namespace) -> None:
        self.node = node
        self.rng = rng
        self.args = args
        self.series: dict[str, list[tuple[float, int, int]]] = {}  # label -> (t, os pid, KiB)
        self.counts = {"cancels": 0, "terminates": 0, "missed": 0, "execs": 0, "queries": 0,
                       "kills": 0}

    def sample(self, t: float) -> dict[str, int]:
        d = self.node.d
        row = {"router": rss_kib(d.pid) or 0}
        self.series.setdefault("router", []).append((t, d.pid, row["router"]))
        for h in d.call("status")["hosts"]:
            for w in h["workers"]:
                label = f"{h['name']}/{w['index']}"
                kib = rss_kib(w["os_pid"]) if w["up"] else None
                if kib is not None:
                    row[label] = kib
                    self.series.setdefault(label, []).append((t, w["os_pid"], kib))
        return row

    def _target(self) -> str | None:
        return self.node.random_alive(self.rng, 1.0)

    def churn(self) -> None:
        """One random operation of the mixed workload."""
        d, rng, c = self.node.d, self.rng, self.counts
        roll = rng.random()
        try:
            if roll < 0.45:
                pid = self._target()
                if pid is not None:
                    d.call("cancel", dest=pid, reason="soak", **(
                        {"deadline": "100ms"} if rng.random() < 0.3 else {}))
                    c["cancels"] += 1
            elif roll < 0.75:
                pid = self._target()
                if pid is not None:
                    d.call("kill", dest=pid)
                    c["terminates"] += 1
            elif roll < 0.9:
                host = rng.choice(sorted(self.node.hosts))
                r = d.call("exec", id="chaos:echo", host=host, args=[{"n": rng.random()}],
                           timeout=10.0)
                if "value" in r:
                    c["execs"] += 1
            else:
                d.call("ps")
                d.call("registry")
                c["queries"] += 1
        except CommandError as e:
            if e.kind != "NOT_FOUND":
                raise
            c["missed"] += 1

    def kill_one(self) -> None:
        workers = [w for w in self.node.workers() if w["up"] and w.get("uptime", 1) > 1.0]
        if workers:
            w = self.rng.choice(workers)
            fd = signal_pid(w["os_pid"], signal.SIGKILL)
            if fd is not None:
                os.close(fd)
                self.counts["kills"] += 1

    def run(self) -> list[dict[str, Any]]:
        args = self.args
        t0 = time.monotonic()
        next_sample = t0
        next_kill = t0 + 60.0 / args.kills_per_min if args.kills_per_min else float("inf")
        rows = []
        header_done = False
        while True:
            now = time.monotonic()
            t = now - t0
            if now >= next_sample:
                row = self.sample(t)
                s = self.node.summary()
                row_out = {"t": round(t, 1), **row, "spawned": s["spawned"], "ended": s["order"],
                           "msgs": s["totals"]["msgs"] + s["live_msgs"]}
                rows.append(row_out)
                if not header_done:  # the time series goes to stdout, as it comes
                    print("  t(s) | " + " | ".join(f"{k:>16}" for k in row) +
                          " |  spawned |    ended |      msgs   (RSS in KiB)", flush=True)
                    header_done = True
                print(f"{t:6.0f} | " + " | ".join(f"{v:>16}" for v in row.values()) +
                      f" | {s['spawned']:8} | {s['order']:8} | {row_out['msgs']:9}", flush=True)
                next_sample += args.interval
                if t >= args.duration:
                    return rows
            if now >= next_kill:
                self.kill_one()
                next_kill = now + 60.0 / args.kills_per_min
            self.churn()
            time.sleep(self.rng.uniform(0.1, 0.3))

    def slopes(self, duration: float) -> dict[str, dict[str, Any]]:
        warmup = min(60.0, 0.2 * duration)
        out = {}
        for label, pts in self.series.items():
            last_pid = pts[-1][1]
            mine = [(t, kib) for t, p, kib in pts if p == last_pid and t >= warmup]
            k = slope([(t, float(kib)) for t, kib in mine])
            # over the second half only: a one-off step early on (an allocator arena, a
            # table resized once) inflates the whole-run slope, a leak shows in both
            late = slope([(t, float(kib)) for t, kib in mine[len(mine) // 2:]])
            out[label] = {"slope_kib_per_min": None if k is None else round(k, 2),
                          "late_slope_kib_per_min": None if late is None else round(late, 2),
                          "first_kib": mine[0][1] if mine else None,
                          "last_kib": mine[-1][1] if mine else None,
                          "samples": len(mine), "since_s": round(mine[0][0], 1) if mine else None}
        return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(args.seed)
    with daemon_session(args.workdir, "actord-soak-") as session:
        daemon, node = session.daemon, session.node
        report: dict[str, Any] = {"seed": args.seed, "duration": args.duration,
                                  "interval": args.interval, "workdir": str(session.workdir)}
        cfg = {"keep": False, "seed": rng.randrange(2**31), "hosts": sorted(node.hosts),
               "receivers": args.receivers, "senders": args.senders, "burst": args.burst,
               "pause": args.pause, "report": 0.5}
        node.start_observers(cfg)
        node.ask(OBSERVER, "start")
        soak = Soak(node, rng, args)
        report["samples"] = soak.run()
        report["slopes"] = soak.slopes(args.duration)
        report["churn"] = soak.counts
        # wind down: stop the workload, then check nothing is left behind
        node.ask(OBSERVER, "quiesce")
        wait_for(lambda: all(w["up"] for w in node.workers()), 60, interval=0.1,
                 what="every worker up")
        for role in ("sender", "receiver", "buddy"):
            for pid in node.alive()[role]:
                try:
                    daemon.call("cancel" if role != "buddy" else "kill", dest=pid, reason="end")
                except CommandError as e:
                    if e.kind != "NOT_FOUND":
                        raise
            wait_for(lambda r=role: not node.alive()[r], 60, interval=0.2, what=f"{role}s end")
        settle = 3.0  # let the observer verify and forget the last ends
        time.sleep(settle)
        summary = node.summary()
        watch = node.ask(WATCHER, "summary")
        leaks = node.check_tables({node.observer_pid, node.watcher_pid})
        if set(daemon.call("registry")) != {OBSERVER, WATCHER}:
            leaks.append(f"registry {sorted(daemon.call('registry'))[:8]}")
        report.update({
            "settle_s": settle, "observer": summary, "watcher": watch, "leaks": leaks,
            "violations": summary["bad"] + summary["totals"]["recv_bad"] + watch["bad"],
        })
        for pid in (node.observer_pid, node.watcher_pid):
            daemon.call("cancel", dest=pid, reason="done")
        wait_for(lambda: daemon.call("status").get("processes", 0) == 0, 30, interval=0.1,
                 what="no process left")
        code = daemon.stop()
        report["exit_code"] = code
        report["tracebacks"] = daemon.log().count("Traceback")
        session.ok = (code == 0 and not leaks and not report["violations"]
                      and not report["tracebacks"])
        report["ok"] = session.ok
    return report


def print_report(report: dict[str, Any]) -> None:
    print(f"soak: {report['duration']:.0f}s, sample every {report['interval']:.0f}s, "
          f"seed {report['seed']}")
    print(f"{'process':<18} | {'RSS first KiB':>13} | {'RSS last KiB':>12} | "
          f"{'slope KiB/min':>13} | {'2nd half':>8} | samples (after warm-up)")
    for label, s in report["slopes"].items():
        k, late = s["slope_kib_per_min"], s["late_slope_kib_per_min"]
        shown = "n/a" if k is None else f"{k:+.2f}"
        shown_late = "n/a" if late is None else f"{late:+.2f}"
        print(f"{label:<18} | {s['first_kib']!s:>13} | {s['last_kib']!s:>12} | {shown:>13} | "
              f"{shown_late:>8} | {s['samples']} (from t={s['since_s']}s)")
    t = report["observer"]["totals"]
    print(f"workload: spawned {report['observer']['spawned']}, ended normal "
          f"{t['ended']['normal']} / abnormal {t['ended']['abnormal']}, events checked "
          f"{t['checked_events']}, messages checked {t['msgs']}, streams verified at EXIT "
          f"{t['recv_verified']}")
    print(f"churn: {report['churn']}")
    print(f"violations: {report['violations']}  leaks: {report['leaks'] or 0}  "
          f"tracebacks: {report['tracebacks']}  daemon exit: {report['exit_code']}")
    verdict = "PASS" if report["ok"] else f"FAIL (daemon dir {report['workdir']})"
    print(f"verdict: {verdict}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=600.0, help="seconds")
    parser.add_argument("--interval", type=float, default=10.0, help="seconds between samples")
    parser.add_argument("--seed", type=int, default=None, help="default: random (printed)")
    parser.add_argument("--kills-per-min", type=float, default=0.0, help="worker kill -9s")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--receivers", type=int, default=6)
    parser.add_argument("--senders", type=int, default=8)
    parser.add_argument("--burst", type=int, default=10)
    parser.add_argument("--pause", type=float, default=0.01)
    args = parser.parse_args(argv)
    if args.seed is None:
        args.seed = random.randrange(2**31)
    say(f"soak: seed {args.seed}, {args.duration:.0f}s")
    report = run(args)
    print_report(report)
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2, default=str))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
