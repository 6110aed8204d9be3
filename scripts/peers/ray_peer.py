"""Peer: Ray actors on the workloads of actord's scenarios (a) ping-pong and (b) stream.

One local Ray instance per run (``ray.init(num_cpus=2)``, no dashboard, quiet logs, its
temp dir private to the run, on 127.0.0.1 only, no usage stats), two actors, each a worker
process of its own:

    pingpong  Pinger calls ``ray.get(b.ping.remote(i))`` in a loop inside one of its own
              methods: each round trip is one actor call and its reply, Pinger's process to
              Ponger's and back. The result is total time / rounds, in microseconds.
    stream    Pinger fires ``b.recv.options(num_returns=0).remote(i)`` (no reply object: the
              cheapest one-way call Ray has), then ``ray.get(b.count.remote())``; calls from
              one caller run in order, so the count answers after the last message. Messages/s.

Run: python scripts/peers/ray_peer.py [--rounds 1000] [--stream 5000] [--repeat 3] [--json]
"""

from __future__ import annotations

import os

# before ray is imported: 127.0.0.1 rather than the machine's address, and no usage report
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import logging
import time
from typing import Any

import peer_common
import ray
from peer_common import DEFAULT, PeerSizes

OBJECT_STORE_BYTES = 200 * 1024 * 1024  # the messages are ints: keep the store small


@ray.remote
class Ponger:
    """Actor B: echoes pings, counts stream messages."""

    def __init__(self) -> None:
        self.count_ = 0

    def ping(self, x: int) -> int:
        return x

    def recv(self, x: int) -> None:
        self.count_ += 1

    def count(self) -> int:
        n, self.count_ = self.count_, 0
        return n


@ray.remote
class Pinger:
    """Actor A: drives both workloads against B from its own process."""

    def __init__(self, b: Any) -> None:
        self.b = b

    def pingpong(self, rounds: int) -> float:
        ping = self.b.ping
        start = time.perf_counter()
        for i in range(rounds):
            if ray.get(ping.remote(i)) != i:
                raise AssertionError(f"wrong pong for ping {i}")
        return (time.perf_counter() - start) / rounds * 1e6

    def stream(self, n: int) -> float:
        recv = self.b.recv.options(num_returns=0)
        start = time.perf_counter()
        for i in range(n):
            recv.remote(i)
        got = ray.get(self.b.count.remote())
        elapsed = time.perf_counter() - start
        if got != n:
            raise AssertionError(f"B counted {got} of {n} messages")
        return n / elapsed


def pingpong(a: Any, rounds: int) -> float:
    """One sample: mean round trip in microseconds over ``rounds`` round trips."""
    return float(ray.get(a.pingpong.remote(rounds)))


def stream(a: Any, n: int) -> float:
    """One sample: messages per second of a stream of ``n`` messages."""
    return float(ray.get(a.stream.remote(n)))


def run(sizes: PeerSizes = DEFAULT, repeat: int = 3,
        workloads: tuple[str, ...] = ("pingpong", "stream")) -> dict[str, Any]:
    """Start Ray once, take ``repeat`` samples of each workload, stop it; the result dict."""
    samples: dict[str, list[float]] = {w: [] for w in workloads}
    with peer_common.private_run("ray-") as private:
        start = time.perf_counter()
        ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.ERROR,
                 log_to_driver=False, configure_logging=True, _temp_dir=str(private.tmp),
                 _node_ip_address="127.0.0.1", object_store_memory=OBJECT_STORE_BYTES)
        try:
            b = Ponger.remote()  # type: ignore[attr-defined]
            a = Pinger.remote(b)  # type: ignore[attr-defined]
            ray.get(a.__ray_ready__.remote())
            ray.get(b.__ray_ready__.remote())
            startup = time.perf_counter() - start
            if "pingpong" in workloads:
                pingpong(a, sizes.warmup)
            if "stream" in workloads:
                stream(a, sizes.stream_warmup)
            for _ in range(repeat):
                if "pingpong" in workloads:
                    samples["pingpong"].append(pingpong(a, sizes.rounds))
                if "stream" in workloads:
                    samples["stream"].append(stream(a, sizes.stream))
        finally:
            ray.shutdown()
    return peer_common.result("Ray", ray.__version__, sizes, repeat, startup, samples, private)


if __name__ == "__main__":
    peer_common.main(__doc__, run)
