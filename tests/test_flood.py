"""Backpressure (flow control): a producer flooding a slow receiver on another worker does
not grow the router's memory without bound, and an unrelated pair keeps working."""

from __future__ import annotations

import statistics
import threading
from pathlib import Path

from actord.testing import Daemon, wait_for

PROCESSES = {
    "f:sink": "flood_probes:slow_sink", "f:producer": "flood_probes:producer",
    "f:ponger": "flood_probes:ponger", "f:pinger": "flood_probes:pinger",
    "f:ask": "flood_probes:ask_count",
}
HOSTS = {"f:slow": 1, "f:fast": 1, "f:p1": 1, "f:p2": 1}
MESSAGES, SIZE = 40_000, 1024  # 40 MiB through the router
#: the router may hold at most this much more memory while flooded (its write buffers are
#: bounded by transport.HIGH_WATER per worker; without flow control it would hold ~40 MiB)
RSS_BOUND_KIB = 24 * 1024
#: the unrelated ping-pong's median RTT during the flood is at most this many times its median
#: before it
LATENCY_FACTOR = 20


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_flood_keeps_router_memory_bounded(make_daemon) -> None:
    """40 MiB at a blocked receiver: router RSS stays within a bound, ping-pong continues."""
    d: Daemon = make_daemon(PROCESSES, hosts=HOSTS)
    ponger = d.call("spawn", id="f:ponger", host="f:p2")
    before = statistics.median(d.exec("f:pinger", "f:p1", ponger, 200))
    sink = d.call("spawn", id="f:sink", host="f:slow")
    base_rss = rss_kib(d.pid)
    peak = [base_rss]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], rss_kib(d.pid))
            done.wait(0.01)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        d.call("spawn", id="f:producer", host="f:fast", args=[sink, MESSAGES, SIZE])
        during = d.exec("f:pinger", "f:p1", ponger, 200, timeout=60)
        wait_for(lambda: d.exec("f:ask", "f:p1", sink) == MESSAGES, timeout=90, interval=0.2,
                 what="every flood message delivered")
    finally:
        done.set()
        sampler.join()
    d.kill(ponger, sink)  # they ignore CANCEL: end them, rather than the daemon's shutdown
    growth = peak[0] - base_rss
    assert growth < RSS_BOUND_KIB, f"router RSS grew by {growth} KiB"
    # the unrelated pair keeps its latency within a stated factor (generous: 2 vCPUs are
    # shared with the flood itself)
    assert statistics.median(during) <= LATENCY_FACTOR * before, (before, during)
    print(f"ping-pong median before {before:.0f} us, during flood "
          f"{statistics.median(during):.0f} us; router RSS growth {growth} KiB")
