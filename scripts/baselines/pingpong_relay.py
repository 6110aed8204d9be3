"""Baseline: ping-pong through a relay process that decodes each frame's destination.

Three OS processes: this one (uvloop) <-> relay <-> echo. The relay decodes every frame to
read its destination and forwards the raw bytes there: the work a central router cannot
avoid. The result is the mean round trip in microseconds; actord's cross-worker ping-pong
(scenario a) is compared with it.

Run: python scripts/baselines/pingpong_relay.py [--n 2000]
"""

from __future__ import annotations

import argparse

import uvloop
from baseline_common import Peers, socketpair
from pingpong_direct import measure

UNIT = "us"


def run(n: int = 2000, warmup: int = 100) -> float:
    """Mean round-trip time in microseconds over ``n`` round trips through the relay."""
    here, relay_a = socketpair()
    relay_b, there = socketpair()
    peers = Peers()
    peers.start("relay", relay_a, relay_b)
    peers.start("echo", there)
    try:
        return uvloop.run(measure(here, n, warmup))
    finally:
        peers.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="round trips per run")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    results = sorted(run(args.n) for _ in range(args.repeat))
    print(f"relay ping-pong RTT: median {results[len(results) // 2]:.1f} us "
          f"(min {results[0]:.1f}, max {results[-1]:.1f}; {args.n} round trips x {args.repeat})")


if __name__ == "__main__":
    main()
