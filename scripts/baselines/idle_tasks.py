"""Baseline: memory per idle ``asyncio`` task, each waiting on its own ``asyncio.Queue``.

In a fresh interpreter on uvloop: RSS (VmRSS) before and after starting ``n`` tasks that
each await ``get()`` on an empty queue of their own; the result is bytes per task. The
floor for actord's memory per idle process (scenario f), whose target is absolute.

Run: python scripts/baselines/idle_tasks.py [--n 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys

import uvloop
from baseline_common import rss_bytes

UNIT = "B"


async def measure(n: int) -> float:
    """Bytes of RSS per idle task."""

    async def idle(queue: asyncio.Queue[object]) -> None:
        await queue.get()

    await asyncio.sleep(0.05)
    before = rss_bytes()
    queues: list[asyncio.Queue[object]] = [asyncio.Queue() for _ in range(n)]
    tasks = [asyncio.create_task(idle(q)) for q in queues]
    await asyncio.sleep(0.05)  # every task has run up to its get()
    after = rss_bytes()
    for q in queues:
        q.put_nowait(None)
    await asyncio.gather(*tasks)
    return (after - before) / n


def run(n: int = 10_000) -> float:
    """Bytes per idle task, measured in a fresh interpreter (so RSS starts clean)."""
    out = subprocess.run(
        [sys.executable, __file__, "--n", str(n), "--child"],
        capture_output=True, text=True, check=True, timeout=120,
    )
    return float(json.loads(out.stdout)["bytes_per_task"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000, help="idle tasks")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps({"bytes_per_task": uvloop.run(measure(args.n))}))
        return
    results = sorted(run(args.n) for _ in range(args.repeat))
    print(f"idle asyncio task: median {results[len(results) // 2]:,.0f} B/task "
          f"(min {results[0]:,.0f}, max {results[-1]:,.0f}; {args.n} tasks x {args.repeat})")


if __name__ == "__main__":
    main()
