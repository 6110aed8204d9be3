"""Where the time of ``bench.py``'s cross-node scenarios goes: CPU per operation, per process.

Runs (h) (ping-pong) and (i) (stream) on the same two-node cluster as ``bench.py`` and the
raw nats-py baselines through the same nats-server, and reads each process's CPU (user +
system, ``/proc/PID/stat``) before and after each run: for actord the routers and workers
of n1 and n2 and the nats-server; for raw nats-py this process, its peer and the server. The
raw peer is a fresh interpreter per run, so each raw figure is the difference between a run
of ``n`` and one of ``n / 4`` operations (its interpreter start cancels out). Prints, per
scenario, the median over ``--repeat`` runs of each process's CPU per round trip (h) or per
message (i), their sum, and the measured round trip or rate. On a machine whose cores are
all shared by the chain, a round trip costs about the sum, and a stream's rate is the CPU
it gets over the sum (README "Performance", *Across nodes*).

Run:  .venv/bin/python scripts/bench_cpu.py [--repeat 3] [--rounds 4000] [--stream 100000]
      .venv/bin/python scripts/bench_cpu.py --quick     (a smoke run: checks it works)
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE / "baselines"))

import bench  # noqa: E402
import nats_pingpong  # noqa: E402
import nats_stream  # noqa: E402

_TICK = os.sysconf("SC_CLK_TCK")
WARMUP = 100  # (h) round trips before the driver's clock starts (counted in the CPU here)
BATCH = 100  # (i) messages a sender sends between yields


def cpu(os_pid: int) -> float:
    """Seconds of CPU (user + system) used so far by ``os_pid``."""
    with open(f"/proc/{os_pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def own_cpu(who: int) -> float:
    """CPU seconds of this process (``RUSAGE_SELF``) or of its reaped children."""
    r = resource.getrusage(who)
    return r.ru_utime + r.ru_stime


def worker_pid(d: Any) -> int:
    """The OS pid of a node's only worker."""
    ((worker,),) = [h["workers"] for h in d.call("status")["hosts"]]
    return int(worker["os_pid"])


def server_pid(cluster: bench.Cluster) -> int:
    assert cluster.server.proc is not None
    return cluster.server.proc.pid


def actord_run(cluster: bench.Cluster, key: str, n: int) -> tuple[float, dict[str, float]]:
    """One run of (h) or (i) with ``n`` operations: its figure and CPU per operation."""
    n1, n2 = cluster.nodes["n1"], cluster.nodes["n2"]
    procs = {"router n1": n1.pid, "worker n1": worker_pid(n1), "router n2": n2.pid,
             "worker n2": worker_pid(n2), "nats-server": server_pid(cluster)}
    before = {name: cpu(p) for name, p in procs.items()}
    if key == "h":
        echo = n2.call("spawn", id="bench:echo", host=bench.DRIVER_HOST, args=[])
        figure = n1.exec("bench:remote_pingpong", bench.DRIVER_HOST, echo, n, WARMUP,
                         timeout=300)["rtt_us"]
        ops = n + WARMUP
    else:
        peer = n2.call("spawn", id="bench:go_streamer", host=bench.DRIVER_HOST, args=[n, BATCH])
        figure = n1.exec("bench:remote_stream", bench.DRIVER_HOST, peer, n, timeout=300)["rate"]
        ops = n
    return float(figure), {name: (cpu(p) - before[name]) / ops for name, p in procs.items()}


def raw_run(cluster: bench.Cluster, key: str, n: int) -> tuple[float, dict[str, float]]:
    """The raw baseline of (h) or (i): its figure for ``n`` operations and CPU per operation
    (runs of ``n`` and ``n // 4``, differenced: the peer's interpreter start cancels out)."""
    url = cluster.server.url
    server = server_pid(cluster)
    run: Callable[[int], float] = (
        (lambda k: nats_pingpong.run(url, k, WARMUP)) if key == "h"
        else (lambda k: nats_stream.run(url, k, BATCH)))
    samples = []
    for k in (n // 4, n):
        before = (own_cpu(resource.RUSAGE_SELF), own_cpu(resource.RUSAGE_CHILDREN), cpu(server))
        figure = run(k)
        after = (own_cpu(resource.RUSAGE_SELF), own_cpu(resource.RUSAGE_CHILDREN), cpu(server))
        samples.append((figure, [b - a for a, b in zip(before, after, strict=True)]))
    (_, small), (figure, big) = samples
    ops = n - n // 4
    first, second = ("pinger", "echo") if key == "h" else ("sender", "sink")
    per_op = [(b - s) / ops for s, b in zip(small, big, strict=True)]
    return figure, {first: per_op[0], second: per_op[1], "nats-server": per_op[2]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=4000, help="(h) round trips per run")
    parser.add_argument("--stream", type=int, default=100_000, help="(i) messages per run")
    parser.add_argument("--quick", action="store_true", help="a smoke run with tiny sizes")
    args = parser.parse_args(argv)
    if args.quick:
        args.repeat, args.rounds, args.stream = 1, 200, 4000
    missing = bench.nats_common.available()
    if missing:
        print(f"bench_cpu.py: {missing}", file=sys.stderr)
        return 2
    sizes = {"h": args.rounds, "i": args.stream}
    results: dict[tuple[str, str], list[tuple[float, dict[str, float]]]] = {}
    with tempfile.TemporaryDirectory(prefix="actord-bench-cpu-") as tmp:
        cluster = bench.Cluster(Path(tmp))
        bench.progress("starting a nats-server and nodes n1, n2 (one worker each)")
        try:
            cluster.start()
            for d in cluster.nodes.values():
                d.exec("bench:noop", bench.DRIVER_HOST)  # import the actors
            nats_pingpong.run(cluster.server.url, 10, 0)  # import nats-py here: not counted
            for rep in range(args.repeat):
                bench.progress(f"-- run {rep + 1}/{args.repeat}")
                for key in ("h", "i"):
                    for side, measure in (("actord", actord_run), ("raw nats-py", raw_run)):
                        results.setdefault((key, side), []).append(
                            measure(cluster, key, sizes[key]))
        finally:
            cluster.stop()
    rows = []
    for (key, side), runs in results.items():
        unit = "us" if key == "h" else "msg/s"
        names = list(runs[0][1])
        per = {name: statistics.median(r[1][name] for r in runs) * 1e6 for name in names}
        cells = ", ".join(f"{name} {v:,.1f}" for name, v in per.items())
        rows.append([f"({key}) {'per round trip' if key == 'h' else 'per message'}", side,
                     cells, f"{sum(per.values()):,.1f}",
                     f"{bench.num(statistics.median(r[0] for r in runs))} {unit}"])
    print(f"CPU (user + system, us) per operation, median of {args.repeat} run(s); "
          f"{args.rounds:,} round trips, {args.stream:,} messages; load "
          f"{os.getloadavg()[0]:.2f}")
    print(bench.table(["scenario", "side", "CPU per operation by process [us]", "sum [us]",
                       "measured"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
